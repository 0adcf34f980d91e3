"""Every signaling message as a pydantic model: the one source of truth.

``signaling/schemas/*.json`` are exported from these (``vteller protocol export``)
and a test fails when they drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1

MsgId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
CallId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Sdp = Annotated[str, Field(min_length=10, max_length=60_000)]
Code = Annotated[str, Field(max_length=64, pattern=r"^[a-z0-9_]+$")]  # business type, disposition
Language = Annotated[str, Field(max_length=16, pattern=r"^[A-Za-z-]+$")]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ClientMsg(_Msg):
    id: MsgId | None = Field(None, description="client correlation id, echoed as `re` in errors")


# ---------------------------------------------------------------- client -> server
class Hello(_ClientMsg):
    """First message on every connection. Customers authenticate with `token`; staff with
    their session cookie. `resume` re-attaches to a session within the grace period."""

    type: Literal["hello"]
    v: Literal[1] = 1
    token: Annotated[str, Field(max_length=8192)] | None = None
    resume: Annotated[str, Field(max_length=128)] | None = None


class Ping(_ClientMsg):
    type: Literal["ping"]


class QueueJoin(_ClientMsg):
    """Customer asks for a teller."""

    type: Literal["queue.join"]
    business_type: Code = "general"
    language: Language = "en"


class QueueLeave(_ClientMsg):
    type: Literal["queue.leave"]


class TellerStatus(_ClientMsg):
    """Teller sets availability. `available` also ends wrap-up."""

    type: Literal["teller.status"]
    status: Literal["available", "break", "offline"]
    reason: Annotated[str, Field(max_length=64)] | None = None


class OfferAccept(_ClientMsg):
    type: Literal["offer.accept"]
    call_id: CallId


class OfferReject(_ClientMsg):
    type: Literal["offer.reject"]
    call_id: CallId


class WebrtcOffer(_ClientMsg):
    """SDP offer for this party's leg to the server (ICE gathered, no trickle).
    Customer: m-lines audio, video (camera), video (screen). Teller: audio, video."""

    type: Literal["webrtc.offer"]
    sdp: Sdp


class MediaState(_ClientMsg):
    """The sender muted/unmuted its microphone or camera (shown to the other side)."""

    type: Literal["call.media_state"]
    audio: bool
    video: bool


class Hangup(_ClientMsg):
    type: Literal["call.hangup"]


class WrapUpExtend(_ClientMsg):
    """Teller needs more after-call time (the wrap-up timer otherwise makes them available)."""

    type: Literal["teller.wrap_up_extend"]
    seconds: Annotated[int, Field(ge=5, le=600)] = 30


class SupervisorSetTeller(_ClientMsg):
    """Supervisor forces a teller to break or offline (not while in a call)."""

    type: Literal["supervisor.set_teller"]
    username: Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[a-z0-9_.-]+$")]
    status: Literal["break", "offline"]
    reason: Annotated[str, Field(max_length=64)] = "supervisor"


class SupervisorAssign(_ClientMsg):
    """Supervisor offers a waiting customer to a chosen available teller."""

    type: Literal["supervisor.assign"]
    call_id: CallId
    username: Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[a-z0-9_.-]+$")]


class AssistRequest(_ClientMsg):
    """Teller asks to see the customer's screen, saying why."""

    type: Literal["assist.request"]
    purpose: Annotated[str, Field(min_length=3, max_length=200)]


class AssistRespond(_ClientMsg):
    type: Literal["assist.respond"]
    allow: bool


class AssistStarted(_ClientMsg):
    """Customer's screen capture now feeds the screen transceiver."""

    type: Literal["assist.started"]


class AssistStop(_ClientMsg):
    """Customer: revoke consent; teller: end the screen share."""

    type: Literal["assist.stop"]


class NavPush(_ClientMsg):
    """Teller proposes an allowlisted app page (by id; URLs are never accepted)."""

    type: Literal["nav.push"]
    destination: Annotated[str, Field(min_length=1, max_length=64)]


class NavOpened(_ClientMsg):
    type: Literal["nav.opened"]
    destination: Annotated[str, Field(min_length=1, max_length=64)]


class ReviewDecide(_ClientMsg):
    """The teller's business decision for this call (once)."""

    type: Literal["review.decide"]
    decision: Literal["approve", "reject", "incomplete", "reschedule"]
    reason_code: Annotated[str, Field(max_length=64)] | None = None
    notes: Annotated[str, Field(max_length=2000)] = ""


class WrapUpRecord(_ClientMsg):
    """Teller, in wrap-up after a call: its disposition code and notes (once)."""

    type: Literal["wrap_up.record"]
    disposition: Code
    notes: Annotated[str, Field(max_length=2000)] = ""


class IdentityVerify(_ClientMsg):
    """Teller (re)starts face verification against the customer's reference photo."""

    type: Literal["identity.verify"]


class IdentityLiveness(_ClientMsg):
    """Teller starts a liveness check (the server picks 3-4 random challenges)."""

    type: Literal["identity.liveness"]


class IdentityJudge(_ClientMsg):
    """Teller's own judgement of a borderline (needs_review) verification result."""

    type: Literal["identity.judge"]
    accept: bool
    notes: Annotated[str, Field(min_length=3, max_length=500)]


class IdentitySpokenCheck(_ClientMsg):
    """Teller starts the spoken alternative to gesture liveness, with the reason (from
    `identity.alternative_reasons`; `other` needs notes)."""

    type: Literal["identity.spoken_check"]
    reason: Annotated[str, Field(min_length=1, max_length=64)]
    notes: Annotated[str, Field(max_length=500)] = ""


class IdentityAttest(_ClientMsg):
    """Teller attests the spoken check: did the customer say the phrase and answer the
    questions live, on camera?"""

    type: Literal["identity.attest"]
    passed: bool
    notes: Annotated[str, Field(min_length=3, max_length=500)]


class OtpRequest(_ClientMsg):
    """Teller: have the bank send the customer a one-time code (second factor)."""

    type: Literal["otp.request"]


class OtpSubmit(_ClientMsg):
    """Customer: the code received on the registered phone."""

    type: Literal["otp.submit"]
    code: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")]


StepId = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]


class ScriptRead(_ClientMsg):
    """Teller: this statement was read; ask the customer to confirm it."""

    type: Literal["script.read"]
    step: StepId


class ScriptConfirm(_ClientMsg):
    """Customer: confirms the statement on screen."""

    type: Literal["script.confirm"]
    step: StepId


class ScriptQuestion(_ClientMsg):
    """Customer: has a question about the statement before confirming it."""

    type: Literal["script.question"]
    step: StepId


class LocationReport(_ClientMsg):
    """Customer, with consent: where the phone is (the page's geolocation)."""

    type: Literal["location.report"]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    accuracy_m: Annotated[float, Field(ge=0, le=1_000_000)]


class IdCapture(_ClientMsg):
    """Teller: keep the customer's current camera frame as a picture of the ID document
    (the server takes the frame it received; nothing is uploaded by a client)."""

    type: Literal["id.capture"]
    side: Literal["front", "back"]


class SurveySubmit(_ClientMsg):
    """Customer, after a call: how it went (1-5) and an optional comment, once."""

    type: Literal["survey.submit"]
    call_id: CallId
    score: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=500)] = ""


class CallTransfer(_ClientMsg):
    """Teller: hand the customer to another queue (business type) or a named available
    teller; the customer keeps their original place in line."""

    type: Literal["call.transfer"]
    business_type: Code | None = None
    teller: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")] | None = None
    note: Annotated[str, Field(max_length=500)] = ""


class AppointmentFind(_ClientMsg):
    """Customer: the free video-appointment slots for this business and language, and
    the appointments they hold (`appointment.slots`)."""

    type: Literal["appointment.find"]
    business_type: Code = "general"
    language: Language = "en"


class AppointmentBook(_ClientMsg):
    """Customer: book the slot starting at `starts_at` (one of `appointment.slots`)."""

    type: Literal["appointment.book"]
    business_type: Code = "general"
    language: Language = "en"
    starts_at: Annotated[float, Field(gt=0, lt=1e11, description="epoch seconds")]


class MonitorStart(_ClientMsg):
    """Supervisor: listen to a call in progress (listen-only). The offer has four
    receive-only m-lines: audio (customer), audio (teller), video (customer camera),
    video (teller camera). Audited; the teller is told when the bank's policy says so."""

    type: Literal["monitor.start"]
    call_id: CallId
    sdp: Sdp


class MonitorStop(_ClientMsg):
    type: Literal["monitor.stop"]
    call_id: CallId


class AppointmentCancel(_ClientMsg):
    type: Literal["appointment.cancel"]
    appointment_id: CallId


ClientMessage = Annotated[
    Hello | Ping | QueueJoin | QueueLeave | TellerStatus | OfferAccept | OfferReject | WebrtcOffer | MediaState | Hangup | WrapUpExtend | SupervisorSetTeller | SupervisorAssign | AssistRequest | AssistRespond | AssistStarted | AssistStop | NavPush | NavOpened | ReviewDecide | WrapUpRecord | IdentityVerify | IdentityLiveness | IdentityJudge | IdentitySpokenCheck | IdentityAttest | OtpRequest | OtpSubmit | ScriptRead | ScriptConfirm | ScriptQuestion | LocationReport | IdCapture | SurveySubmit | CallTransfer | AppointmentFind | AppointmentBook | AppointmentCancel | MonitorStart | MonitorStop,
    Field(discriminator="type"),
]
CLIENT_MESSAGES: dict[str, type[_ClientMsg]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (Hello, Ping, QueueJoin, QueueLeave, TellerStatus, OfferAccept, OfferReject,
              WebrtcOffer, MediaState, Hangup, WrapUpExtend, SupervisorSetTeller, SupervisorAssign, AssistRequest,
              AssistRespond, AssistStarted, AssistStop, NavPush, NavOpened, ReviewDecide,
              WrapUpRecord, IdentityVerify, IdentityLiveness, IdentityJudge, IdentitySpokenCheck,
              IdentityAttest, OtpRequest, OtpSubmit, ScriptRead, ScriptConfirm, ScriptQuestion,
              LocationReport, IdCapture, SurveySubmit, CallTransfer, AppointmentFind,
              AppointmentBook, AppointmentCancel, MonitorStart, MonitorStop)
}
_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)

# Which roles may send which message (enforced by the gateway before dispatch).
ROLES_FOR: dict[str, frozenset[str]] = {
    "hello": frozenset({"customer", "teller", "supervisor", "auditor"}),
    "ping": frozenset({"customer", "teller", "supervisor", "auditor"}),
    "queue.join": frozenset({"customer"}),
    "queue.leave": frozenset({"customer"}),
    "teller.status": frozenset({"teller"}),
    "offer.accept": frozenset({"teller"}),
    "offer.reject": frozenset({"teller"}),
    "webrtc.offer": frozenset({"customer", "teller"}),
    "call.media_state": frozenset({"customer", "teller"}),
    "call.hangup": frozenset({"customer", "teller"}),
    "teller.wrap_up_extend": frozenset({"teller"}),
    "supervisor.set_teller": frozenset({"supervisor"}),
    "supervisor.assign": frozenset({"supervisor"}),
    "assist.request": frozenset({"teller"}),
    "assist.respond": frozenset({"customer"}),
    "assist.started": frozenset({"customer"}),
    "assist.stop": frozenset({"customer", "teller"}),
    "nav.push": frozenset({"teller"}),
    "nav.opened": frozenset({"customer"}),
    "review.decide": frozenset({"teller"}),
    "wrap_up.record": frozenset({"teller"}),
    "identity.verify": frozenset({"teller"}),
    "identity.liveness": frozenset({"teller"}),
    "identity.judge": frozenset({"teller"}),
    "identity.spoken_check": frozenset({"teller"}),
    "identity.attest": frozenset({"teller"}),
    "otp.request": frozenset({"teller"}),
    "otp.submit": frozenset({"customer"}),
    "script.read": frozenset({"teller"}),
    "script.confirm": frozenset({"customer"}),
    "script.question": frozenset({"customer"}),
    "location.report": frozenset({"customer"}),
    "id.capture": frozenset({"teller"}),
    "survey.submit": frozenset({"customer"}),
    "call.transfer": frozenset({"teller"}),
    "appointment.find": frozenset({"customer"}),
    "appointment.book": frozenset({"customer"}),
    "appointment.cancel": frozenset({"customer"}),
    "monitor.start": frozenset({"supervisor"}),
    "monitor.stop": frozenset({"supervisor"}),
}


def parse_client_message(data: dict[str, Any]) -> _ClientMsg:
    """Validate one decoded JSON object (raises pydantic.ValidationError)."""
    return _client_adapter.validate_python(data)


# ---------------------------------------------------------------- server -> client
class PartyInfo(_Msg):
    display_name: str
    role: Literal["customer", "teller"]


class Welcome(_Msg):
    type: Literal["welcome"] = "welcome"
    v: Literal[1] = 1
    role: Literal["customer", "teller", "supervisor", "auditor"]
    display_name: str
    resume: str = Field(description="opaque secret to resume this session after a drop")
    resumed: bool = False
    heartbeat_s: float
    grace_s: float
    ice_servers: list[dict[str, Any]]
    state: dict[str, Any] = Field(description="current queue/teller/call state")
    elderly: bool = False
    service: dict[str, Any] | None = Field(None, description="customers: {open, next_open_at, "
                                           "hours} when opening hours are configured")


class Pong(_Msg):
    type: Literal["pong"] = "pong"
    t: float


class QueueStatus(_Msg):
    type: Literal["queue.status"] = "queue.status"
    call_id: str
    state: Literal["queued", "offered", "connecting", "active", "wrap_up", "closed",
                   "abandoned", "failed"]
    position: int | None = Field(None, description="1 = next to be served")
    ewt_s: int | None = Field(None, description="estimated wait (see PROTOCOL.md)")
    green_channel: bool = False
    servable: bool = Field(True, description="false: no teller who can serve this is logged in")


class TellerState(_Msg):
    type: Literal["teller.state"] = "teller.state"
    state: Literal["offline", "available", "offered", "busy", "wrap_up", "break"]
    reason: str | None = None
    wrap_up_s: int | None = Field(None, description="wrap-up: seconds until auto-available")


class OfferIncoming(_Msg):
    type: Literal["offer.incoming"] = "offer.incoming"
    call_id: str
    customer: PartyInfo
    business_type: str
    language: str = "en"  # the customer's language (queue.join): greet them in it
    ring_timeout_s: float
    appointment_at: float | None = Field(None, description="the customer booked this teller "
                                         "for a slot starting then (epoch seconds)")


class OfferRevoked(_Msg):
    type: Literal["offer.revoked"] = "offer.revoked"
    call_id: str
    reason: str


class CallStarted(_Msg):
    """Both parties now negotiate their leg: send `webrtc.offer`."""

    type: Literal["call.started"] = "call.started"
    call_id: str
    peer: PartyInfo


class WebrtcAnswer(_Msg):
    type: Literal["webrtc.answer"] = "webrtc.answer"
    sdp: str


class PeerState(_Msg):
    type: Literal["call.peer"] = "call.peer"
    call_id: str
    connection: Literal["connected", "reconnecting"]
    audio: bool = True
    video: bool = True


class WrapUpRecorded(_Msg):
    """The disposition is durable in the call's trail and record."""

    type: Literal["wrap_up.recorded"] = "wrap_up.recorded"
    call_id: str
    disposition: str


class NodeMove(_Msg):
    """Reconnect to `url` and resume there (the same resume secret): the customer's
    teller is on that node, which hosts the call. The server closes this connection
    (1012) right after; a client that cannot reach `url` reconnects to its usual
    address and keeps its place in the queue."""

    type: Literal["node.move"] = "node.move"
    url: str = Field(pattern=r"^wss://\S+$", max_length=512)


class CallEnded(_Msg):
    type: Literal["call.ended"] = "call.ended"
    call_id: str
    reason: str


class AssistStateMsg(_Msg):
    """Consent state, to both parties on every transition."""

    type: Literal["assist.state"] = "assist.state"
    state: Literal["none", "requested", "granted", "active", "stopped", "denied", "expired",
                   "revoked"]
    purpose: str
    teller: str = Field(description="the teller's display name (shown in the dialog and bar)")
    expires_in_s: int | None = None


class NavPrompt(_Msg):
    type: Literal["nav.prompt"] = "nav.prompt"
    id: str
    title: str
    link: str


class CallContext(_Msg):
    """To the teller when a call starts: what this business needs and what they may push."""

    type: Literal["call.context"] = "call.context"
    call_id: str
    business_type: dict[str, Any]
    evidence: list[str]
    destinations: list[dict[str, str]]
    reason_codes: list[str]
    dispositions: list[str] = Field(default_factory=list, description="wrap-up codes "
                                    "(`wrap_up.record`)")
    transfer_types: list[dict[str, str]] = Field(default_factory=list, description="queues "
                                                 "a call may be transferred to: {id, title}")
    history: list[dict[str, Any]] = Field(default_factory=list, description="the customer's "
                                          "earlier calls, newest first: {at, business_type, "
                                          "outcome, reason}")


class ReviewRecorded(_Msg):
    type: Literal["review.recorded"] = "review.recorded"
    call_id: str
    decision: str
    reason_code: str | None = None
    pending_audit: bool = False  # four eyes: final once an auditor approves it


class IdentityStatus(_Msg):
    """To the teller: the live identity panel (sent on every change)."""

    type: Literal["identity.status"] = "identity.status"
    call_id: str
    verdict: Literal["idle", "verifying", "verified", "mismatch", "needs_review", "no_face",
                     "several_faces", "poor_quality", "no_reference"]
    condition: str | None = Field(None, description="while verifying: what the last frame showed")
    detail: str | None = Field(
        None, description="poor_quality: face_too_small|poorly_lit|too_blurry|turned_away")
    distance: float | None = Field(None, description="median distance over the window")
    trend: list[float] = Field(description="recent distances, oldest first")
    samples: int
    match_threshold: float
    mismatch_threshold: float
    borderline: bool = Field(description="true: the machine cannot decide; the teller judges")
    judged: str | None = Field(None, description="teller judgement: accepted|rejected")
    verdict_s: float | None = Field(None, description="first face frame to verdict")
    presence: str | None = Field(None, description="left_frame|several_faces|different_person")
    liveness: dict[str, Any] | None = Field(
        None, description="{state, reason, phase, steps: [{action, state, prompt, detail}]}")
    spoken: dict[str, Any] | None = Field(
        None, description="the spoken alternative: {state, reason, phrase, questions}")


class IdentityChallenge(_Msg):
    """To the customer: the liveness prompt to show (large) and speak."""

    type: Literal["identity.challenge"] = "identity.challenge"
    state: Literal["running", "passed", "failed", "timed_out"]
    action: Literal["calibrate", "rest", "blink_twice", "blink_three_times", "turn_left",
                    "turn_right", "tilt_left", "tilt_right", "open_mouth", "smile",
                    "speak_phrase"] | None
    phase: Literal["do", "release", "again"] = Field(
        "do", description="release: the cue to let go of a held action, back to rest; "
        "again (with rest): the last movement could not be seen (the video paused), "
        "another one follows")
    prompt: str
    step: int = Field(description="1-based challenge number; 0 while calibrating or done")
    steps: int
    timeout_s: float | None = None
    phrase: str | None = Field(None, description="speak_phrase: the digits to read aloud")


class IdentityHint(_Msg):
    """To the customer while their face is being verified: what would help."""

    type: Literal["identity.hint"] = "identity.hint"
    hint: Literal["come_closer", "more_light", "hold_still", "face_camera", "alone_in_frame"]


class Dashboard(_Msg):
    """Pushed to supervisors every second."""

    type: Literal["dashboard"] = "dashboard"
    queue: dict[str, int] = Field(description="waiting requests by priority class")
    longest_wait_s: float
    tellers: list[dict[str, Any]]
    waiting: list[dict[str, Any]] = Field(
        default_factory=list, description="the longest-waiting customers (at most 50): "
        "call_id, class, waited_s, business_type, language, staffed (tellers able to take "
        "it now; 0 means nobody can serve it: assign one with supervisor.assign)")
    service: dict[str, Any] = Field(description="service level, ASA, AHT, rates (last hour)")
    staffing: dict[str, Any] = Field(
        default_factory=dict, description="Erlang C forecast for the next interval, taken "
        "to be like the last: interval_s, offered, aht_s, aht_measured, traffic_erlangs, "
        "tellers_needed, scheduled_needed (with shrinkage), expected_service_level, "
        "staffed_now")
    nodes: list[dict[str, Any]] = Field(
        default_factory=list, description="the nodes sharing this database, as of their "
        "last lease renewal: node, host, role (active, standby, draining), in_call, "
        "waiting, connections, expired (lease run out: being sealed)")


class OtpState(_Msg):
    """To both parties: the second factor. `sent`: the customer types the code
    (`digits`, `expires_in_s`); `wrong`: try again (`attempts_left`); `verified`;
    `failed` (no attempts left), `expired`, `delivery_failed` (the bank could not be
    reached): the teller may request a new code."""

    type: Literal["otp.state"] = "otp.state"
    call_id: str
    state: Literal["sent", "wrong", "verified", "failed", "expired", "delivery_failed"]
    digits: int | None = None
    expires_in_s: int | None = None
    attempts_left: int | None = None


class ScriptState(_Msg):
    """To the teller: the sales script's statements in order, each `open`, `read`
    (waiting for the customer), `question` (the customer asks first) or `confirmed`."""

    type: Literal["script.state"] = "script.state"
    call_id: str
    steps: list[dict[str, str]]


class LocationState(_Msg):
    """To the teller: whether the customer shared a place and whether the business type
    allows it (`region`: the allowed region it is in). Coordinates stay in the trail."""

    type: Literal["location.state"] = "location.state"
    call_id: str
    state: Literal["allowed", "outside", "shared", "not_shared"]
    region: str | None = None
    required: bool = False


class IdState(_Msg):
    """To the teller: a side of the ID document was captured. For the front: faces
    found, the printed photo's distance to the reference and to the live face, and
    whether both are below the match threshold."""

    type: Literal["id.state"] = "id.state"
    call_id: str
    side: Literal["front", "back"]
    faces: int | None = None
    distance_reference: float | None = None
    distance_live: float | None = None
    matched: bool | None = None


class SurveyRecorded(_Msg):
    type: Literal["survey.recorded"] = "survey.recorded"
    call_id: str


class LocationAsk(_Msg):
    """To the customer: this service needs the phone's location (with consent)."""

    type: Literal["location.ask"] = "location.ask"
    call_id: str


class ScriptStepMsg(_Msg):
    """To the customer: one statement to confirm (`index` of `total`)."""

    type: Literal["script.step"] = "script.step"
    call_id: str
    step: str
    title: str
    text: str
    index: int
    total: int


class MonitorAnswer(_Msg):
    """The server's answer to `monitor.start`, sent once the start is in the call's
    trail."""

    type: Literal["monitor.answer"] = "monitor.answer"
    call_id: str
    sdp: str


class MonitorEnded(_Msg):
    type: Literal["monitor.ended"] = "monitor.ended"
    call_id: str
    reason: Literal["stopped", "call_ended", "media_failed", "disconnected"]


class MonitorState(_Msg):
    """To the teller (when the bank's policy says so): who is listening to the call."""

    type: Literal["monitor.state"] = "monitor.state"
    call_id: str
    listeners: list[str] = Field(description="display names of the supervisors listening")


class AppointmentInfo(_Msg):
    appointment_id: str
    business_type: str
    language: str
    starts_at: float
    ends_at: float


class AppointmentSlots(_Msg):
    """To the customer: free slot starts (epoch seconds, soonest first) and the
    appointments they hold; times are shown in the bank's `timezone`."""

    type: Literal["appointment.slots"] = "appointment.slots"
    business_type: str
    language: str
    slot_s: int
    timezone: str
    slots: list[float]
    booked: list[AppointmentInfo]


class AppointmentBooked(_Msg):
    """The booking is durable: come back in its window and the booked teller is
    offered the call first."""

    type: Literal["appointment.booked"] = "appointment.booked"
    appointment: AppointmentInfo


class AppointmentCancelled(_Msg):
    type: Literal["appointment.cancelled"] = "appointment.cancelled"
    appointment_id: str


class Error(_Msg):
    type: Literal["error"] = "error"
    code: str
    message: str
    re: str | None = Field(None, description="the `id` (else `type`) of the offending message")


SERVER_MESSAGES: dict[str, type[_Msg]] = {
    m.model_fields["type"].default: m
    for m in (Welcome, Pong, QueueStatus, TellerState, OfferIncoming, OfferRevoked, NodeMove,
              WrapUpRecorded,
              CallStarted, WebrtcAnswer, PeerState, CallEnded, Dashboard, AssistStateMsg,
              NavPrompt, CallContext, ReviewRecorded, IdentityStatus, IdentityChallenge,
              IdentityHint, OtpState, ScriptState, ScriptStepMsg, LocationState, LocationAsk, IdState, SurveyRecorded, AppointmentSlots, AppointmentBooked,
              AppointmentCancelled, MonitorAnswer, MonitorEnded, MonitorState, Error)
}
