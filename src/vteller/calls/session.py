"""One call and its explicit state machine."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from vteller.media import Feed, MediaLeg
from vteller.routing import IllegalTransition


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
    feeds: dict[str, Feed] = field(default_factory=dict)
    legs: dict[str, MediaLeg] = field(default_factory=dict)

    def to(self, target: CallState) -> None:
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition("call", self.state, target)
        self.state = target

    def feed(self, party: str, kind: str) -> Feed:
        key = f"{party}.{kind}"
        if key not in self.feeds:
            self.feeds[key] = Feed(f"{self.call_id}:{key}", kind)
        return self.feeds[key]
