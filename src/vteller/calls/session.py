"""One call and its explicit state machine."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vteller.assist import Consent
from vteller.audit import StreamWriter
from vteller.media import Feed, MediaGate, MediaLeg
from vteller.media.leg import SLOT_KIND, SLOTS
from vteller.media.taps import TrackRecorder
from vteller.routing import IllegalTransition
from vteller.store import BlobStore


class CallState(StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"
    CONNECTING = "connecting"
    ACTIVE = "active"
    WRAP_UP = "wrap_up"
    CLOSED = "closed"
    ABANDONED = "abandoned"
    FAILED = "failed"


C = CallState
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    C.QUEUED: frozenset({C.OFFERED, C.ABANDONED}),
    C.OFFERED: frozenset({C.QUEUED, C.CONNECTING, C.ABANDONED}),
    C.CONNECTING: frozenset({C.ACTIVE, C.WRAP_UP, C.FAILED}),
    C.ACTIVE: frozenset({C.WRAP_UP, C.FAILED}),
    C.WRAP_UP: frozenset({C.CLOSED}),
    C.CLOSED: frozenset(),
    C.ABANDONED: frozenset(),
    C.FAILED: frozenset({C.CLOSED}),
}
IN_CALL = frozenset({C.CONNECTING, C.ACTIVE})
WAITING = frozenset({C.QUEUED, C.OFFERED})


def new_call_id() -> str:
    """A random call (and audit session) id: 16 URL-safe characters, never starting
    with '-' (it names folders and objects, and is typed into `vteller audit ...`)."""
    while True:
        call_id = secrets.token_urlsafe(12)
        if call_id[0] != "-":
            return call_id


class _EncryptedBlob:
    """An encrypting blob writer, opened on first use (on the recorder's thread, never
    the event loop); closing also closes the blob. No ``seek``: PyAV writes linearly."""

    def __init__(self, blobs: BlobStore, key: str, data_key: bytes, key_id: str) -> None:
        self._open = lambda: StreamWriter(blobs.open_write(key), data_key, key_id=key_id)
        self._writer: StreamWriter | None = None

    def _w(self) -> StreamWriter:
        if self._writer is None:
            self._writer = self._open()
        return self._writer

    def write(self, data: bytes) -> int:
        return self._w().write(data)

    def flush(self) -> None:
        self._w().flush()

    def close(self) -> str:
        writer = self._w()
        digest = writer.close()
        writer._sink.close()
        return digest


@dataclass
class Call:
    call_id: str
    customer_key: str
    business_type: str
    language: str
    queued_at: float = field(default_factory=time.time)
    state: CallState = CallState.QUEUED
    teller_key: str | None = None
    accepted_at: float | None = None
    end_reason: str | None = None
    encoded_media: bool = True
    video_codec: str | None = None
    screen_gate: MediaGate = field(default_factory=MediaGate)
    feeds: dict[str, Feed] = field(default_factory=dict)
    legs: dict[str, MediaLeg] = field(default_factory=dict)
    recorders: list[TrackRecorder] = field(default_factory=list)
    recorder_tasks: list[Any] = field(default_factory=list)
    data_key: bytes = b""
    consent: Consent = field(default_factory=Consent)
    evidence: set[str] = field(default_factory=set)
    decision: str | None = None
    reason_code: str | None = None
    disposition: str | None = None  # the teller's wrap-up code, once
    appointment_at: float | None = None  # the customer came to a booked slot starting then
    # supervisors listening: principal -> (their party key, their MonitorLeg)
    monitors: dict[str, tuple[str, Any]] = field(default_factory=dict)
    # the first loss of a party's connection or media while in the call (V-CIP: a
    # session that dropped may not be approved for types with `restart_on_drop`)
    media_dropped: str | None = None
    screen_dropped_reported: int = 0
    identity: Any = None  # identity.IdentitySession once a check starts
    identity_tap: Any = None  # media.LatestFrameTap on the customer camera
    evidence_blobs: dict[str, str] = field(default_factory=dict)  # name -> digest
    otp: Any = None  # bank.otp.OneTimeCode while a code is out
    otp_codes: int = 0  # codes requested in this call
    script: dict[str, str] = field(default_factory=dict)  # step -> read|question|confirmed
    region: str | None = None  # allowed region the customer's last location is in
    located: bool = False  # the customer shared a location in this call
    location_reports: int = 0
    id_captures: int = 0  # pictures of the ID document taken
    id_sides: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)  # the customer's earlier calls

    @property
    def customer_id(self) -> str:
        return self.customer_key.split(":", 1)[1]

    def to(self, target: CallState) -> None:
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition("call", self.state, target)
        self.state = target

    def start_recording(self, blobs: BlobStore, data_key: bytes) -> None:
        """An encrypting recorder tap on every feed a party sends (the screen only
        passes its consent gate). Blobs: ``<call>/<party>.<slot>.webm.vtenc``
        (format: audit/FORMAT.md)."""
        for party, slots in (("customer", SLOTS), ("teller", SLOTS[:2])):
            for slot in slots:
                feed = self.feed(party, slot)
                name = f"{party}.{slot}.webm.vtenc"
                sink = _EncryptedBlob(blobs, f"{self.call_id}/{name}", data_key, self.call_id)
                recorder = TrackRecorder(feed, sink)  # type: ignore[arg-type]
                recorder.file_name = name
                feed.add_tap(recorder)
                self.recorders.append(recorder)

    def feed(self, party: str, slot: str) -> Feed:
        """The call's feed of one party's audio, video (camera) or screen."""
        key = f"{party}.{slot}"
        if key not in self.feeds:
            gate = self.screen_gate if slot == "screen" else None
            self.feeds[key] = Feed(f"{self.call_id}:{key}", SLOT_KIND[slot], self.encoded_media,
                                   gate)
        return self.feeds[key]
