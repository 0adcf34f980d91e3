"""CallManager: parties, calls, the queue and media legs, coordinated.

Every state change is synchronous code on the event loop, so each step is atomic
(an accept and an abandon cannot interleave). Only SDP negotiation awaits, and it
re-checks the call afterwards. Store writes go through one ordered writer task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from pydantic import BaseModel

from vteller.assist import ConsentState
from vteller.audit import KekProvider, StreamWriter, new_data_key
from vteller.audit.keys import seal_field
from vteller.audit.trail import AuditTrail
from vteller.calls.journal import Journal
from vteller.calls.session import IN_CALL, WAITING, Call, CallState
from vteller.config import Settings
from vteller.identity import IdentityService, IdentitySession, Verdict, to_jpeg
from vteller.media import MediaLeg, MediaNegotiationError, check_offer
from vteller.media.leg import filter_candidates
from vteller.media.taps import LatestFrameTap
from vteller.observability import Metrics
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.review import missing_evidence
from vteller.routing import (
    IllegalTransition,
    Request,
    Router,
    ServiceStats,
    TellerProfile,
    TellerState,
)
from vteller.routing.store import RoutingStore
from vteller.store import BlobStore, Store, StoreError

log = structlog.get_logger("vteller.calls")
TICK_S = 1.0


class Connection(Protocol):
    """What the gateway gives the manager: a non-blocking send and a close."""

    def send(self, message: BaseModel) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass
class Party:
    key: str
    role: str
    principal: str
    display_name: str
    conn: Connection | None = None
    resume_hash: str = ""
    grace: asyncio.Task[None] | None = None
    call_id: str | None = None
    segments: frozenset[str] = frozenset()
    media: dict[str, bool] = field(default_factory=lambda: {"audio": True, "video": True})
    last_status: tuple[Any, ...] | None = None

    @property
    def elderly(self) -> bool:
        return "elderly" in self.segments

    def send(self, message: BaseModel) -> None:
        if self.conn is not None:
            self.conn.send(message)

    def info(self) -> m.PartyInfo:
        return m.PartyInfo(display_name=self.display_name, role=self.role)  # type: ignore[arg-type]


LINK = re.compile(r"(?i)(\w+://|www\.|\b[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}\b|@)")


Handler = Callable[[Party, Any], Any]  # (sender, message) -> None or an awaitable


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityBridge:
    """A call's identity session reporting back: to the teller panel, the trail,
    review's evidence, the customer's prompt, the evidence snapshot."""

    def __init__(self, manager: CallManager, call: Call) -> None:
        self._m = manager
        self._call = call

    def _live(self) -> bool:
        return self._call.call_id in self._m.calls

    def status(self, status: dict[str, Any]) -> None:
        teller = self._m.parties.get(self._call.teller_key or "")
        if self._live() and teller is not None:
            teller.send(m.IdentityStatus(call_id=self._call.call_id, **status))

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if not self._live():
            return
        call, mgr = self._call, self._m
        mgr._event(call, "system", kind, **data)
        if kind == "identity.verdict":
            mgr._metrics.identity_verdicts.labels(verdict=data["verdict"]).inc()
            if data["verdict"] == "mismatch":
                mgr._persist(mgr._store.add_call_flag, call.call_id, "identity_mismatch")
        elif kind == "identity.liveness_result":
            mgr._metrics.liveness_results.labels(state=data["state"]).inc()
            if data["state"] != "passed":
                mgr._persist(mgr._store.add_call_flag, call.call_id, "liveness_failed")

    def evidence(self, evidence: str, data: dict[str, Any]) -> None:
        if self._live():
            self._m.add_evidence(self._call.call_id, evidence, **data)

    def challenge(self, challenge: dict[str, Any]) -> None:
        customer = self._m.parties.get(self._call.customer_key)
        if self._live() and customer is not None:
            customer.send(m.IdentityChallenge(**challenge))

    def snapshot(self, rgb: Any, frame_at: float, distance: float) -> None:
        call = self._call
        if not self._live() or not call.data_key:
            return
        name = f"evidence.face-{len(call.evidence_blobs) + 1}.jpg.vtenc"
        call.evidence_blobs[name] = ""
        call.recorder_tasks.append(self._m._background(
            self._m._store_snapshot(call, name, rgb, frame_at, distance)))


class CallManager:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics,
                 kek: KekProvider, trail: AuditTrail, blobs: BlobStore,
                 identity: IdentityService | None = None) -> None:
        self._settings = settings
        self._blocked_ice = settings.blocked_ice_networks()
        self._identity = identity
        self._blobs = blobs
        self._kek = kek
        self._trail = trail
        self._store = store
        self._metrics = metrics
        self.policy = settings.routing
        self.router: RoutingStore = Router(self.policy)
        self.stats = ServiceStats(self.policy.service_level_threshold_s,
                                  self.policy.default_handle_time_s)
        self._wrap_timers: dict[str, asyncio.Task[None]] = {}
        self.parties: dict[str, Party] = {}
        self.calls: dict[str, Call] = {}
        self._by_resume: dict[str, str] = {}
        self._ring: dict[str, asyncio.Task[None]] = {}
        self._cleanups: set[asyncio.Future[Any]] = set()
        self._journal = Journal()
        self._ticker: asyncio.Task[None] | None = None
        self._handlers: dict[str, Handler] = {
            "queue.join": self._on_queue_join,
            "queue.leave": self._on_queue_leave,
            "teller.status": self._on_teller_status,
            "teller.wrap_up_extend": self._on_teller_wrap_up_extend,
            "supervisor.set_teller": self._on_supervisor_set_teller,
            "supervisor.assign": self._on_supervisor_assign,
            "offer.accept": self._on_offer_accept,
            "offer.reject": self._on_offer_reject,
            "webrtc.offer": self._on_webrtc_offer,
            "call.media_state": self._on_call_media_state,
            "call.hangup": self._on_call_hangup,
            "assist.request": self._on_assist_request,
            "assist.respond": self._on_assist_respond,
            "assist.started": self._on_assist_started,
            "assist.stop": self._on_assist_stop,
            "nav.push": self._on_nav_push,
            "nav.opened": self._on_nav_opened,
            "review.decide": self._on_review_decide,
            "identity.verify": self._on_identity_verify,
            "identity.liveness": self._on_identity_liveness,
            "identity.judge": self._on_identity_judge,
        }

    def start(self) -> None:
        """Start the journal and the routing tick (on the running event loop)."""
        self._journal.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="routing-tick")

    def handles(self) -> frozenset[str]:
        """The message types this coordinator dispatches (hello and ping are the
        gateway's)."""
        return frozenset(self._handlers)

    # ------------------------------------------------------------ connections
    def connect(
        self, key: str, role: str, principal: str, display_name: str, conn: Connection,
        segments: frozenset[str] = frozenset(), profile: dict[str, Any] | None = None,
    ) -> tuple[Party, str, bool]:
        """Attach an authenticated connection. Returns (party, resume token, resumed)."""
        party = self.parties.get(key)
        resumed = party is not None
        if party is None:
            party = Party(key, role, principal, display_name, segments=segments)
            self.parties[key] = party
        if role == "teller":
            self.router.set_profile(principal, TellerProfile.from_dict(profile or {}))
        return party, self._attach(party, conn), resumed

    def resumable(self, token: str) -> Party:
        """The party a resume secret belongs to (nothing is attached yet)."""
        key = self._by_resume.get(_hash(token))
        party = self.parties.get(key) if key else None
        if party is None:
            raise ProtocolError(ErrorCode.RESUME_FAILED, "nothing to resume (expired or unknown)")
        return party

    def resume(self, token: str, conn: Connection) -> tuple[Party, str]:
        party = self.resumable(token)
        return party, self._attach(party, conn)

    def revoke(self, party: Party) -> None:
        """The party's credentials are gone (staff logged out or disabled): close its
        connection and end its session now, as if its grace period had run out."""
        if self.parties.get(party.key) is not party:
            return
        if party.conn is not None:
            party.conn.send(m.Error(code=ErrorCode.UNAUTHENTICATED,
                                    message="your session has ended; log in again"))
            party.conn.close(4401, "session revoked")
            self.disconnected(party, party.conn)
        if party.grace is not None:
            party.grace.cancel()
            party.grace = None
        self._expire(party)

    def _attach(self, party: Party, conn: Connection) -> str:
        if party.conn is not None and party.conn is not conn:
            party.conn.send(m.Error(code=ErrorCode.WRONG_STATE,
                                    message="this session was taken over by a new connection"))
            party.conn.close(4001, "superseded")
        if party.grace is not None:
            party.grace.cancel()
            party.grace = None
        party.conn = conn
        self._by_resume.pop(party.resume_hash, None)
        token = secrets.token_urlsafe(32)
        party.resume_hash = _hash(token)
        self._by_resume[party.resume_hash] = party.key
        self._tell_peer(party, "connected")
        return token

    def disconnected(self, party: Party, conn: Connection) -> None:
        if party.conn is not conn:
            return  # superseded connection
        party.conn = None
        if party.role == "teller":
            status = self.router.teller(party.principal)
            if status.state == TellerState.OFFERED:
                self._offer_failed(party, "teller_disconnected", decline=False)
            if status.state in (TellerState.AVAILABLE, TellerState.BREAK):
                status.to(TellerState.OFFLINE)
        self._tell_peer(party, "reconnecting")
        party.grace = asyncio.create_task(self._grace(party), name=f"grace:{party.key}")

    async def _grace(self, party: Party) -> None:
        await asyncio.sleep(self._settings.reconnect_grace_s)
        party.grace = None
        if party.conn is None:
            self._expire(party)

    def _expire(self, party: Party) -> None:
        call = self.calls.get(party.call_id) if party.call_id else None
        if call is not None:
            if call.state in WAITING:
                self._abandon(call, "disconnected")
            elif call.state in IN_CALL:
                self._end_call(call, f"{party.role}_disconnected")
            if party.role == "teller" and call.state == CallState.WRAP_UP:
                self._close_wrap_up(party, call)
        self.parties.pop(party.key, None)
        self._by_resume.pop(party.resume_hash, None)
        if party.role == "teller":
            self._cancel_wrap_timer(party.principal)
            self.router.forget_teller(party.principal)
        log.info("session_expired", role=party.role)

    def snapshot(self, party: Party) -> dict[str, Any]:
        """Current state for `welcome` (what a resuming client needs to redraw)."""
        state: dict[str, Any] = {}
        call = self.calls.get(party.call_id) if party.call_id else None
        if party.role == "teller":
            status = self.router.teller(party.principal)
            state["teller_state"] = status.state.value
            state["reason"] = status.reason
        if call is not None:
            other = self._other(party, call)
            state["call"] = {
                "call_id": call.call_id,
                "state": call.state.value,
                "position": self.router.position(call.call_id, time.monotonic()),
                "peer": other.info().model_dump() if other else None,
            }
        return state

    # ------------------------------------------------------------ dispatch
    async def handle(self, party: Party, msg: BaseModel) -> None:
        handler = self._handlers[msg.type]  # type: ignore[attr-defined]
        try:
            result = handler(party, msg)
            if asyncio.iscoroutine(result):
                await result
        except IllegalTransition as exc:
            raise ProtocolError(ErrorCode.WRONG_STATE, str(exc)) from None

    def _call_of(self, party: Party) -> Call | None:
        return self.calls.get(party.call_id) if party.call_id else None

    def _other(self, party: Party, call: Call) -> Party | None:
        key = call.teller_key if party.role == "customer" else call.customer_key
        return self.parties.get(key) if key else None

    # customer ------------------------------------------------------------
    def _on_queue_join(self, party: Party, msg: m.QueueJoin) -> None:
        if self._call_of(party) is not None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "already queued or in a call")
        call = Call(secrets.token_urlsafe(12), party.key, msg.business_type, msg.language,
                    encoded_media=self._settings.media_forwarding == "encoded")
        self.calls[call.call_id] = call
        party.call_id = call.call_id
        request = Request(call.call_id, msg.business_type, msg.language, party.segments,
                          enqueued_at=time.monotonic())
        self.router.enqueue(request)
        call.data_key = new_data_key()  # one per session: events and recordings
        self._audit(self._trail.open_session, call.call_id, call.data_key,
                    self._kek.wrap(call.data_key, call.call_id))
        self._event(call, "customer", "queued", customer=party.principal,
                    business_type=msg.business_type, language=msg.language,
                    priority_class=request.pclass.value)
        self._persist(self._store.record_call, call.call_id, party.principal, call.state.value, call.queued_at,
                      msg.business_type)
        log.info("queued", call_id=call.call_id, business_type=call.business_type)
        self._dispatch()
        self._push_queue_status(force=True)

    def _on_queue_leave(self, party: Party, msg: m.QueueLeave) -> None:
        call = self._call_of(party)
        if call is None or call.state not in WAITING:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not waiting in the queue")
        self._abandon(call, "left")

    # teller ----------------------------------------------------------------
    def _on_teller_status(self, party: Party, msg: m.TellerStatus) -> None:
        status = self.router.teller(party.principal)
        target = TellerState(msg.status)
        if status.state == TellerState.OFFERED:
            raise ProtocolError(ErrorCode.WRONG_STATE, "answer the offer first (accept or reject)")
        self._cancel_wrap_timer(party.principal)
        self._set_teller(party, target, msg.reason)

    def _set_teller(self, party: Party, target: TellerState, reason: str | None) -> None:
        status = self.router.teller(party.principal)
        call = self._call_of(party)
        status.to(target, reason)
        if call is not None and call.state == CallState.WRAP_UP:
            self._close_wrap_up(party, call)
        party.send(m.TellerState(state=status.state.value, reason=status.reason))
        self._dispatch()

    def _on_teller_wrap_up_extend(self, party: Party, msg: m.WrapUpExtend) -> None:
        if self.router.teller(party.principal).state != TellerState.WRAP_UP:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in wrap-up")
        self._start_wrap_timer(party, msg.seconds, extend=True)

    def _start_wrap_timer(self, teller: Party, seconds: float, extend: bool = False) -> None:
        old = self._wrap_timers.pop(teller.principal, None)
        remaining = 0.0
        if old is not None:
            old.cancel()
            remaining = max(0.0, getattr(old, "deadline", 0.0) - time.monotonic())
        delay = remaining + seconds if extend else seconds
        task = asyncio.create_task(self._wrap_up_expired(teller, delay))
        task.deadline = time.monotonic() + delay  # type: ignore[attr-defined]
        self._wrap_timers[teller.principal] = task
        teller.send(m.TellerState(state="wrap_up", wrap_up_s=round(delay)))

    async def _wrap_up_expired(self, teller: Party, delay: float) -> None:
        await asyncio.sleep(delay)
        self._wrap_timers.pop(teller.principal, None)
        if self.router.teller(teller.principal).state == TellerState.WRAP_UP:
            self._set_teller(teller, TellerState.AVAILABLE, None)

    def _cancel_wrap_timer(self, username: str) -> None:
        task = self._wrap_timers.pop(username, None)
        if task is not None:
            task.cancel()

    # supervisor --------------------------------------------------------------
    def _on_supervisor_assign(self, party: Party, msg: m.SupervisorAssign) -> None:
        """Offer a waiting customer to a chosen available teller, whatever the router
        would pick (a customer it declined before, a skill it does not list)."""
        call = self.calls.get(msg.call_id)
        if call is None or call.state != CallState.QUEUED or \
                self.router.request(msg.call_id) is None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such waiting customer")
        teller = self.parties.get(f"staff:{msg.username}")
        if teller is None or teller.role != "teller" or teller.conn is None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such teller logged in")
        if self.router.teller(teller.principal).state != TellerState.AVAILABLE:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the teller is not available")
        self._event(call, "supervisor", "supervisor.assigned", supervisor=party.principal,
                    teller=teller.principal)
        self._offer(call, teller)

    def _on_supervisor_set_teller(self, party: Party, msg: m.SupervisorSetTeller) -> None:
        teller = self.parties.get(f"staff:{msg.username}")
        if teller is None or teller.role != "teller":
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such teller logged in")
        status = self.router.teller(teller.principal)
        if status.state == TellerState.BUSY:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the teller is in a call")
        if status.state == TellerState.OFFERED:
            self._offer_failed(teller, "supervisor", decline=False)
        target = TellerState(msg.status)
        if status.state == target:
            status.reason = msg.reason if target == TellerState.BREAK else None
        else:
            self._set_teller(teller, target, msg.reason)
        log.info("supervisor_set_teller", status=msg.status)

    def _offered_call(self, party: Party, call_id: str) -> Call:
        call = self.calls.get(call_id)
        status = self.router.teller(party.principal)
        if (call is None or call.state != CallState.OFFERED or call.teller_key != party.key
                or status.state != TellerState.OFFERED):
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such offer (expired or withdrawn)")
        return call

    def _on_offer_accept(self, party: Party, msg: m.OfferAccept) -> None:
        call = self._offered_call(party, msg.call_id)
        self._cancel_ring(call.call_id)
        request = self.router.remove(call.call_id)
        call.to(CallState.CONNECTING)
        call.accepted_at = time.time()
        if self._settings.record_calls and call.encoded_media:
            call.start_recording(self._blobs, call.data_key)
        self.router.teller(party.principal).to(TellerState.BUSY)
        party.call_id = call.call_id
        customer = self.parties[call.customer_key]
        party.send(m.TellerState(state="busy"))
        party.send(m.CallStarted(call_id=call.call_id, peer=customer.info()))
        customer.send(m.CallStarted(call_id=call.call_id, peer=party.info()))
        party.send(self._context(call))
        self._event(call, "teller", "accepted", teller=party.principal)
        customer.send(m.QueueStatus(call_id=call.call_id, state="connecting"))
        self._metrics.answer_s.observe(call.accepted_at - call.queued_at)
        if request is not None:
            self.stats.answered(time.monotonic(), request.pclass.value,
                                call.accepted_at - call.queued_at)
        self._persist(self._store.update_call, call.call_id, teller=party.principal,
                      state=call.state.value, answered_at=call.accepted_at)
        log.info("accepted", call_id=call.call_id, wait_s=round(call.accepted_at - call.queued_at, 3))

    def _on_offer_reject(self, party: Party, msg: m.OfferReject) -> None:
        self._offered_call(party, msg.call_id)
        self._offer_failed(party, "rejected", decline=True)
        self.router.teller(party.principal).to(TellerState.AVAILABLE)
        party.send(m.TellerState(state="available"))
        self._dispatch()

    # assist: screen-share consent and navigation ---------------------------------
    def _live_call(self, party: Party) -> Call:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in a call")
        return call

    def _consent_to(self, call: Call, target: ConsentState, actor: str, **data: Any) -> None:
        call.consent.to(target, time.monotonic())
        if target == ConsentState.ACTIVE:
            self._persist(self._store.add_call_flag, call.call_id, "consent_used")
        call.screen_gate.set(call.consent.sharing)  # media follows the server's state only
        recorded = self._event(call, actor, f"consent.{target.value}", cycle=call.consent.cycle,
                               purpose=call.consent.purpose, **data)
        teller = self.parties.get(call.teller_key or "")
        expiry = call.consent.expiry(self._settings.assist.request_timeout_s,
                                     self._settings.assist.start_timeout_s)
        msg = m.AssistStateMsg(
            state=target.value, purpose=call.consent.purpose,  # type: ignore[arg-type]
            teller=teller.display_name if teller else "",
            expires_in_s=round(expiry - time.monotonic()) if expiry else None)
        self._when_recorded(recorded, *((self.parties.get(k), msg)
                                        for k in (call.customer_key, call.teller_key) if k))

    def _on_assist_request(self, party: Party, msg: m.AssistRequest) -> None:
        call = self._live_call(party)
        if call.consent.state in (ConsentState.REQUESTED, ConsentState.GRANTED,
                                  ConsentState.ACTIVE):
            raise ProtocolError(ErrorCode.WRONG_STATE, f"consent is {call.consent.state.value}")
        purposes = self._settings.assist.purposes
        if purposes and msg.purpose not in purposes:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "choose one of the configured purposes: " + "; ".join(purposes))
        if LINK.search(msg.purpose):  # shown to the customer: no place to plant a link
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "the purpose must not contain links or web addresses")
        call.consent.purpose = msg.purpose
        self._consent_to(call, ConsentState.REQUESTED, "teller")

    def _on_assist_respond(self, party: Party, msg: m.AssistRespond) -> None:
        call = self._live_call(party)
        if call.consent.state != ConsentState.REQUESTED:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no pending screen-share request")
        self._consent_to(call, ConsentState.GRANTED if msg.allow else ConsentState.DENIED,
                         "customer")

    def _on_assist_started(self, party: Party, msg: m.AssistStarted) -> None:
        call = self._live_call(party)
        self._consent_to(call, ConsentState.ACTIVE, "customer")

    def _on_assist_stop(self, party: Party, msg: m.AssistStop) -> None:
        call = self._live_call(party)
        target = ConsentState.REVOKED if party.role == "customer" else ConsentState.STOPPED
        self._consent_to(call, target, party.role)

    def _on_nav_push(self, party: Party, msg: m.NavPush) -> None:
        call = self._live_call(party)
        destination = self._settings.assist.destination(msg.destination)
        if destination is None:
            self._event(call, "teller", "nav.refused", destination=msg.destination[:64])
            raise ProtocolError(ErrorCode.NOT_ALLOWED,
                                "only the configured app destinations can be pushed")
        recorded = self._event(call, "teller", "nav.pushed", destination=destination.id)
        self._when_recorded(recorded, (self.parties.get(call.customer_key),
                                       m.NavPrompt(**destination.model_dump())))

    def _on_nav_opened(self, party: Party, msg: m.NavOpened) -> None:
        call = self._live_call(party)
        if self._settings.assist.destination(msg.destination) is None:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "unknown destination")
        self._event(call, "customer", "nav.opened", destination=msg.destination)

    # review ------------------------------------------------------------------------
    def _context(self, call: Call) -> m.CallContext:
        review = self._settings.review
        bt = review.business_type(call.business_type)
        return m.CallContext(
            call_id=call.call_id,
            business_type={"id": call.business_type, "title": bt.title if bt else call.business_type,
                           "required_evidence": sorted(bt.required_evidence) if bt else []},
            evidence=sorted(call.evidence),
            destinations=[{"id": d.id, "title": d.title} for d in self._settings.assist.destinations],
            reason_codes=review.reason_codes)

    def add_evidence(self, call_id: str, evidence: str, actor: str = "system",
                     **data: Any) -> None:
        """Capabilities (identity) record evidence on a live call; it becomes an event."""
        call = self.calls[call_id]
        call.evidence.add(evidence)
        self._event(call, actor, "evidence", evidence=evidence, **data)
        teller = self.parties.get(call.teller_key or "")
        if teller:
            teller.send(self._context(call))

    def _on_review_decide(self, party: Party, msg: m.ReviewDecide) -> None:
        call = self._call_of(party)
        if call is None or call.state not in (*IN_CALL, CallState.WRAP_UP):
            raise ProtocolError(ErrorCode.WRONG_STATE, "no call to decide on")
        if call.decision is not None:
            raise ProtocolError(ErrorCode.WRONG_STATE, f"already decided: {call.decision}")
        review = self._settings.review
        bt = review.business_type(call.business_type)
        if msg.decision == "approve":
            missing = missing_evidence(bt.required_evidence if bt else frozenset(),
                                       call.evidence)
            if missing:
                self._event(call, "teller", "review.refused", missing=missing)
                raise ProtocolError(ErrorCode.EVIDENCE_MISSING,
                                    "cannot approve: missing evidence " + ", ".join(missing))
        if msg.decision == "reject" and msg.reason_code not in review.reason_codes:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "reject needs a reason_code from: " + ", ".join(review.reason_codes))
        call.decision = msg.decision
        self._event(call, "teller", "review.decision", decision=msg.decision,
                    reason_code=msg.reason_code, notes=msg.notes)
        notes = seal_field(call.data_key, f"{call.call_id}|notes", msg.notes) \
            if msg.notes and call.data_key else ""  # the trail holds them too, encrypted
        stored = self._persist(self._store.add_decision, call.call_id, call.business_type,
                               party.principal, msg.decision, msg.reason_code, notes,
                               time.time())
        self._when_recorded(stored, (party, m.ReviewRecorded(
            call_id=call.call_id, decision=msg.decision, reason_code=msg.reason_code)))

    def _check_assist(self, call: Call) -> None:
        """Tick: expire stale consent; record screen frames that arrived without consent."""
        expiry = call.consent.expiry(self._settings.assist.request_timeout_s,
                                     self._settings.assist.start_timeout_s)
        if expiry is not None and time.monotonic() >= expiry:
            self._consent_to(call, ConsentState.EXPIRED, "system")
        feed = call.feeds.get("customer.screen")
        if feed is not None and feed.gated_out > call.screen_dropped_reported:
            self._event(call, "customer", "screen.dropped_without_consent",
                        frames=feed.gated_out - call.screen_dropped_reported)
            call.screen_dropped_reported = feed.gated_out

    def _event(self, call: Call, actor: str, kind: str, **data: Any) -> asyncio.Future[None]:
        """A session event: appended (encrypted, chained, durable) in order by the writer."""
        return self._audit(self._trail.append, call.call_id, actor, kind, data)

    # identity ------------------------------------------------------------------
    async def _identity_session(self, call: Call) -> IdentitySession:
        """The call's identity session (created on first use: reference, frame tap)."""
        if self._identity is None:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "identity checks are not configured")
        if call.identity is None:
            reference = await self._identity.reference(call.customer_id)
            if call.state not in IN_CALL:
                raise ProtocolError(ErrorCode.WRONG_STATE, "the call ended")
            if call.identity is None:
                feed = call.feed("customer", "video")
                call.identity_tap = LatestFrameTap(feed)
                feed.add_tap(call.identity_tap)
                bridge = IdentityBridge(self, call)
                call.identity = self._identity.session(call.identity_tap, reference, bridge)
                if reference is None:
                    self._event(call, "system", "identity.no_reference")
                bridge.status(call.identity.status())
        return call.identity

    async def _auto_verify(self, call: Call) -> None:
        with contextlib.suppress(ProtocolError):
            session = await self._identity_session(call)
            if session.has_reference and session.verdict == Verdict.IDLE:
                session.start_verification()

    async def _on_identity_verify(self, party: Party, msg: m.IdentityVerify) -> None:
        session = await self._identity_session(self._live_call(party))
        if not session.has_reference:
            raise ProtocolError(ErrorCode.NO_REFERENCE,
                                "no reference photo is enrolled for this customer")
        session.start_verification()

    async def _on_identity_liveness(self, party: Party, msg: m.IdentityLiveness) -> None:
        session = await self._identity_session(self._live_call(party))
        if not session.has_reference:
            raise ProtocolError(ErrorCode.NO_REFERENCE, "liveness is bound to the reference "
                                "face; no reference photo is enrolled for this customer")
        if session.liveness is not None and not session.liveness.done:
            raise ProtocolError(ErrorCode.WRONG_STATE, "a liveness check is running")
        session.start_liveness()

    def _on_identity_judge(self, party: Party, msg: m.IdentityJudge) -> None:
        call = self._live_call(party)
        session = call.identity
        if session is None or session.verdict != Verdict.NEEDS_REVIEW or session.judged:
            raise ProtocolError(ErrorCode.WRONG_STATE, "only a borderline result is judged, once")
        recorded = self._event(call, "teller", "identity.judged", accept=msg.accept,
                               notes=msg.notes, median_distance=session.status()["distance"])
        if msg.accept:
            call.evidence.add("face_verified")
            self._event(call, "teller", "evidence", evidence="face_verified",
                        basis="teller_review")
        session.judge(msg.accept)
        self._when_recorded(recorded, (party, self._context(call)))

    async def _store_snapshot(self, call: Call, name: str, rgb: Any, frame_at: float,
                              dist: float) -> None:
        """The best-matching frame as JPEG, encrypted with the session's data key (both
        in a worker thread)."""
        key, blobs = call.data_key, self._blobs

        def write() -> str:
            jpeg = to_jpeg(rgb)
            with blobs.open_write(f"{call.call_id}/{name}") as sink:
                writer = StreamWriter(sink, key, key_id=call.call_id)
                writer.write(jpeg)
                return writer.close()

        digest = await asyncio.to_thread(write)
        call.evidence_blobs[name] = digest
        self._event(call, "system", "identity.snapshot", file=name, digest=digest,
                    frame_at=frame_at, distance=dist)

    async def _close_identity(self, call: Call) -> None:
        if call.identity is not None:
            await call.identity.close()
        if call.identity_tap is not None:
            await asyncio.to_thread(call.identity_tap.close, 2.0)

    # both ------------------------------------------------------------------
    def _on_call_media_state(self, party: Party, msg: m.MediaState) -> None:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in a call")
        party.media = {"audio": msg.audio, "video": msg.video}
        self._tell_peer(party, "connected")

    def _on_call_hangup(self, party: Party, msg: m.Hangup) -> None:
        call = self._call_of(party)
        if call is not None and call.state in IN_CALL:
            self._end_call(call, f"hangup_{party.role}")
        elif call is not None and party.role == "customer" and call.state in WAITING:
            self._abandon(call, "left")
        else:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in a call")

    async def _on_webrtc_offer(self, party: Party, msg: m.WebrtcOffer) -> None:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no call to negotiate media for")
        side = party.role
        try:  # synchronous: the first leg fixes the call's video codec before any await
            call.video_codec = check_offer(side, msg.sdp, call.video_codec)
        except MediaNegotiationError as exc:
            raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
        offer = msg.sdp
        if side == "customer":  # never probe where a customer points (the bank's network)
            offer, dropped = filter_candidates(offer, self._blocked_ice)
            if dropped:
                log.info("ice_candidates_dropped", count=dropped)
        leg = MediaLeg(side, self._settings.ice_servers, call.feed, call.encoded_media,
                       on_state=lambda leg, state: self._leg_state(call, leg, state))
        try:
            sdp = await leg.answer(offer, call.video_codec)
        except MediaNegotiationError as exc:
            await leg.close()
            raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
        if call.state not in IN_CALL or party.call_id != call.call_id:
            await leg.close()
            raise ProtocolError(ErrorCode.WRONG_STATE, "the call ended during negotiation")
        old = call.legs.get(side)
        call.legs[side] = leg
        party.send(m.WebrtcAnswer(sdp=sdp))
        if old is not None:
            await old.close()

    def _leg_state(self, call: Call, leg: MediaLeg, state: str) -> None:
        if call.legs.get(leg.party) is not leg:
            return
        log.info("media_leg", call_id=call.call_id, party=leg.party, state=state)
        if state in ("connected", "failed", "closed") and self._trail.is_open(call.call_id):
            self._event(call, leg.party, f"media.{state}")
        if (state == "connected" and call.state == CallState.CONNECTING
                and all(call.legs.get(p) and call.legs[p].state == "connected"
                        for p in ("customer", "teller"))):
            call.to(CallState.ACTIVE)
            self._persist(self._store.update_call, call.call_id, state=call.state.value)
            customer = self.parties.get(call.customer_key)
            if customer:
                customer.send(m.QueueStatus(call_id=call.call_id, state="active"))
            bt = self._settings.review.business_type(call.business_type)
            if (self._identity is not None and self._settings.identity.auto_verify
                    and bt is not None and "face_verified" in bt.required_evidence):
                self._background(self._auto_verify(call))

    # ------------------------------------------------------------ internals
    def _dispatch(self) -> None:
        while (match := self.router.next_match(time.monotonic())) is not None:
            request, status = match
            teller = self.parties.get(f"staff:{status.username}")
            if teller is None or teller.conn is None:
                status.to(TellerState.OFFLINE)
                continue
            self._offer(self.calls[request.call_id], teller)

    def _offer(self, call: Call, teller: Party) -> None:
        """Offer a waiting request to an available teller and start the ring timer."""
        status = self.router.teller(teller.principal)
        self.router.hold(call.call_id)
        call.to(CallState.OFFERED)
        call.teller_key = teller.key
        status.to(TellerState.OFFERED)
        customer = self.parties[call.customer_key]
        teller.send(m.TellerState(state="offered"))
        teller.send(m.OfferIncoming(
            call_id=call.call_id, customer=customer.info(), business_type=call.business_type,
            ring_timeout_s=self._settings.ring_timeout_s))
        self._ring[call.call_id] = asyncio.create_task(self._ring_timeout(call.call_id, teller))
        self._event(call, "system", "offered", teller=teller.principal)
        customer.send(m.QueueStatus(call_id=call.call_id, state="offered",
                                    green_channel=customer.elderly))
        customer.last_status = None

    def _push_queue_status(self, force: bool = False) -> None:
        """Position and estimated wait to every waiting customer (only when changed).

        EWT = position x recent average handle time / staffed eligible tellers, where
        staffed means available, offered, busy or in wrap-up (not on break or offline).
        """
        now = time.monotonic()
        aht = self.stats.aht()
        self._metrics.waiting.set(self.router.waiting_count())
        for call_id, position in self.router.positions(now).items():
            call = self.calls[call_id]
            customer = self.parties.get(call.customer_key)
            request = self.router.request(call_id)
            if customer is None or request is None:
                continue
            staffed = self.router.staffed_for(request, now)
            servable = staffed > 0
            ewt = round(position * aht / staffed) if servable else None
            status = (position, ewt, servable)
            if force or status != customer.last_status:
                customer.last_status = status
                customer.send(m.QueueStatus(
                    call_id=call_id, state="queued", position=position, ewt_s=ewt,
                    green_channel=request.pclass.value == "green", servable=servable))

    async def _tick_loop(self) -> None:
        """Once a second: re-dispatch (elderly widening, aging), customer feedback,
        supervisor dashboards."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._dispatch()
                self._push_queue_status()
                self._push_dashboard()
                for call in list(self.calls.values()):
                    if call.state in IN_CALL:
                        self._check_assist(call)
            except Exception:
                log.exception("tick_failed")

    def dashboard(self) -> m.Dashboard:
        now = time.monotonic()
        queue: dict[str, int] = {c: 0 for c in ("green", "priority", "vip", "standard")}
        longest = 0.0
        for request in self.router.waiting():
            queue[request.pclass.value] += 1
            longest = max(longest, now - request.enqueued_at)
        tellers = []
        for status in sorted(self.router.tellers(), key=lambda t: t.username):
            party = self.parties.get(f"staff:{status.username}")
            call = self._call_of(party) if party else None
            customer = self.parties.get(call.customer_key) if call else None
            tellers.append({
                "username": status.username,
                "display_name": party.display_name if party else status.username,
                "state": status.state.value, "reason": status.reason,
                "in_state_s": round(now - status.since),
                "serving": customer.display_name if customer and call and call.state in IN_CALL
                else None,
            })
        waiting = [{"call_id": r.call_id, "class": r.pclass.value,
                    "waited_s": round(now - r.enqueued_at), "business_type": r.business_type,
                    "language": r.language, "staffed": self.router.staffed_for(r, now)}
                   for r in heapq.nsmallest(50, self.router.waiting(),
                                            key=lambda r: r.enqueued_at)]
        service = self.stats.summary(now)
        return m.Dashboard(queue=queue, longest_wait_s=round(longest, 1), tellers=tellers,
                           waiting=waiting, service=service)

    def _push_dashboard(self) -> None:
        supervisors = [p for p in self.parties.values() if p.role == "supervisor" and p.conn]
        if supervisors:
            board = self.dashboard()
            for sup in supervisors:
                sup.send(board)

    async def _ring_timeout(self, call_id: str, teller: Party) -> None:
        await asyncio.sleep(self._settings.ring_timeout_s)
        self._ring.pop(call_id, None)
        call = self.calls.get(call_id)
        if call is None or call.state != CallState.OFFERED or call.teller_key != teller.key:
            return
        self._offer_failed(teller, "no_answer", decline=True)
        status = self.router.teller(teller.principal)
        status.to(TellerState.BREAK, "missed_offer")  # not ready until the teller says so
        teller.send(m.TellerState(state="break", reason="missed_offer"))
        self._dispatch()

    def _cancel_ring(self, call_id: str) -> None:
        task = self._ring.pop(call_id, None)
        if task is not None:
            task.cancel()

    def _offer_failed(self, teller: Party, reason: str, decline: bool) -> None:
        """Put the offered request back in its place; the teller leaves `offered`."""
        for call in self.calls.values():
            if call.state == CallState.OFFERED and call.teller_key == teller.key:
                self._cancel_ring(call.call_id)
                call.to(CallState.QUEUED)
                call.teller_key = None
                self.router.requeue(call.call_id, teller.principal if decline else None,
                                    time.monotonic())
                self._event(call, "teller", "offer.failed", teller=teller.principal,
                            reason=reason)
                teller.send(m.OfferRevoked(call_id=call.call_id, reason=reason))
        status = self.router.teller(teller.principal)
        if status.state == TellerState.OFFERED and not decline:
            status.to(TellerState.AVAILABLE)

    def _abandon(self, call: Call, reason: str) -> None:
        if call.state == CallState.OFFERED and call.teller_key:
            teller = self.parties.get(call.teller_key)
            self._cancel_ring(call.call_id)
            if teller is not None:
                teller.send(m.OfferRevoked(call_id=call.call_id, reason="customer_left"))
                self.router.teller(teller.principal).to(TellerState.AVAILABLE)
                teller.send(m.TellerState(state="available"))
        request = self.router.remove(call.call_id)
        if request is not None:
            self.stats.abandoned(time.monotonic(), request.pclass.value,
                                 time.monotonic() - request.enqueued_at)
        call.to(CallState.ABANDONED)
        call.end_reason = reason
        customer = self.parties.get(call.customer_key)
        if customer is not None:
            customer.call_id = None
            customer.send(m.CallEnded(call_id=call.call_id, reason=reason))
        self._finish(call)
        self._dispatch()
        self._push_queue_status(force=True)

    def _end_call(self, call: Call, reason: str) -> None:
        if call.consent.state in (ConsentState.REQUESTED, ConsentState.GRANTED,
                                  ConsentState.ACTIVE):
            self._consent_to(call, ConsentState.STOPPED, "system", reason="call_ended")
        self._check_assist(call)
        call.to(CallState.WRAP_UP)
        call.end_reason = reason
        self._event(call, "system", "ended", reason=reason)
        if call.identity is not None:
            call.recorder_tasks.append(self._background(self._close_identity(call)))
        for leg in call.legs.values():
            self._background(leg.close())
        for feed in call.feeds.values():
            feed.close()
        call.legs.clear()
        call.recorder_tasks += [self._background(self._close_recorder(call.call_id, r))
                                for r in call.recorders]
        customer = self.parties.get(call.customer_key)
        if customer is not None:
            customer.call_id = None
            customer.send(m.CallEnded(call_id=call.call_id, reason=reason))
        teller = self.parties.get(call.teller_key or "")
        if teller is not None:
            self.router.teller(teller.principal).to(TellerState.WRAP_UP)
            teller.send(m.CallEnded(call_id=call.call_id, reason=reason))
            self._start_wrap_timer(teller, self.policy.wrap_up_s)
        self._persist(self._store.update_call, call.call_id, state=call.state.value, end_reason=reason,
                      ended_at=time.time())
        log.info("call_ended", call_id=call.call_id, reason=reason)

    def _close_wrap_up(self, teller: Party, call: Call) -> None:
        call.to(CallState.CLOSED)
        teller.call_id = None
        self._cancel_wrap_timer(teller.principal)
        if call.accepted_at is not None:
            self.stats.handled(time.monotonic(), time.time() - call.accepted_at)
        self._finish(call)

    def _finish(self, call: Call) -> None:
        self._event(call, "system", call.state.value, reason=call.end_reason)
        self._background(self._close_session(call))
        self._metrics.calls.labels(outcome=call.state.value).inc()
        self._persist(self._store.update_call, call.call_id, state=call.state.value,
                      end_reason=call.end_reason, **({"ended_at": time.time()}
                                                     if call.state == CallState.ABANDONED else {}))
        self.calls.pop(call.call_id, None)

    def _tell_peer(self, party: Party, connection: str) -> None:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            return
        other = self._other(party, call)
        if other is not None:
            other.send(m.PeerState(call_id=call.call_id, connection=connection,  # type: ignore[arg-type]
                                   audio=party.media["audio"], video=party.media["video"]))

    async def _close_recorder(self, call_id: str, recorder: Any) -> None:
        await asyncio.to_thread(recorder.close)
        track = recorder.feed.name.split(":", 1)[1]
        await self._store.add_recording(call_id, track, recorder.digest or "", recorder.written)

    async def _close_session(self, call: Call) -> None:
        """After the recorders finished: bind their digests and seal the trail."""
        if call.recorder_tasks:
            await asyncio.gather(*call.recorder_tasks, return_exceptions=True)
        failed = [r.file_name for r in call.recorders if r.digest is None and r.written]
        if failed:  # e.g. the object store went away: bind what was stored, when it can be
            self._event(call, "system", "recording.failed", tracks=failed)
            self._background(self._seal_when_stored(call.call_id))
        else:
            tracks = {r.file_name: r.digest for r in call.recorders if r.digest}
            tracks.update({name: d for name, d in call.evidence_blobs.items() if d})
            self._audit(self._trail.close_session, call.call_id, tracks)
        call.data_key = b""

    async def _seal_when_stored(self, call_id: str, retry_s: float = 5.0,
                                attempts: int = 60) -> None:
        """Seal a session whose recording failed as incomplete once the blob store
        answers again (else the next start seals it)."""
        for _ in range(attempts):
            try:
                await self._audit(self._trail.seal_incomplete, call_id, self._blobs,
                                  "recording failed: the blob store was unavailable")
                return
            except StoreError:
                await asyncio.sleep(retry_s)
        log.error("session_left_open", call_id=call_id)

    def _background(self, coro: Any) -> asyncio.Future[Any]:
        """Run cleanup work without blocking a state change; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def shutdown_cleanups(self, timeout: float = 10) -> None:
        """Wait for background cleanup (closing legs, finishing recordings)."""
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=timeout)

    # ------------------------------------------------------------ the journal
    def _persist(self, op: Any, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        """Queue a store write (an async store method); writes and audit appends keep
        their order."""
        return self._journal.write(op, *args, **kwargs)

    def _audit(self, fn: Any, *args: Any) -> asyncio.Future[None]:
        """Queue a blocking audit-trail operation (worker thread, in order)."""
        return self._journal.write(fn, *args)

    def _when_recorded(self, event: asyncio.Future[None], *sends: tuple[Party | None, Any]) -> None:
        """Acknowledge only after the event is durable (audit requirement)."""
        def deliver(fut: asyncio.Future[None]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                log.error("event_not_recorded_ack_withheld")
                for party, _ in sends:  # a typed answer instead of silence
                    if party is not None:
                        party.send(m.Error(code=ErrorCode.STORAGE_UNAVAILABLE,
                                           message="the server could not record this "
                                           "(storage unavailable); it was not acknowledged"))
                return
            for party, message in sends:
                if party is not None:
                    party.send(message)
        event.add_done_callback(deliver)

    async def flush(self) -> None:
        await self._journal.flush()

    async def shutdown(self) -> None:
        """End every call and seal every session trail (a kill -9 instead leaves them
        open; the next start seals them as incomplete)."""
        for call in list(self.calls.values()):
            if call.state in WAITING:
                self._abandon(call, "server_shutdown")
                continue
            if call.state in IN_CALL:
                self._end_call(call, "server_shutdown")
            if call.state == CallState.WRAP_UP:
                teller = self.parties.get(call.teller_key or "")
                if teller is not None:
                    self._close_wrap_up(teller, call)
                else:
                    call.to(CallState.CLOSED)
                    self._finish(call)
        if self._ticker is not None:
            self._ticker.cancel()
        for task in [*self._ring.values(), *self._wrap_timers.values(),
                     *(p.grace for p in self.parties.values() if p.grace)]:
            task.cancel()
        await self.shutdown_cleanups()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), 5)
        self._journal.stop()
