"""Screen-share consent for one call, as an explicit state machine.

none -> requested -> granted -> active -> stopped, plus denied, expired, revoked.
Each request is a new cycle: a terminal state only leads to a new `requested`
(consent is never remembered). The media gate is open only in `active`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vteller.routing import IllegalTransition


class ConsentState(StrEnum):
    NONE = "none"
    REQUESTED = "requested"
    GRANTED = "granted"
    ACTIVE = "active"
    STOPPED = "stopped"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"


S = ConsentState
TERMINAL = frozenset({S.STOPPED, S.DENIED, S.EXPIRED, S.REVOKED})
TRANSITIONS: dict[ConsentState, frozenset[ConsentState]] = {
    S.NONE: frozenset({S.REQUESTED}),
    S.REQUESTED: frozenset({S.GRANTED, S.DENIED, S.EXPIRED, S.STOPPED}),
    S.GRANTED: frozenset({S.ACTIVE, S.REVOKED, S.STOPPED, S.EXPIRED}),
    S.ACTIVE: frozenset({S.STOPPED, S.REVOKED}),
    **{t: frozenset({S.REQUESTED}) for t in TERMINAL},
}


@dataclass
class Consent:
    state: ConsentState = ConsentState.NONE
    purpose: str = ""
    since: float = 0.0
    cycle: int = 0

    def to(self, target: ConsentState, now: float) -> None:
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition("consent", self.state, target)
        if target == ConsentState.REQUESTED:
            self.cycle += 1
        self.state = target
        self.since = now

    @property
    def sharing(self) -> bool:
        return self.state == ConsentState.ACTIVE

    def expiry(self, request_timeout_s: float, start_timeout_s: float) -> float | None:
        """When the current state expires, if it does."""
        if self.state == ConsentState.REQUESTED:
            return self.since + request_timeout_s
        if self.state == ConsentState.GRANTED:
            return self.since + start_timeout_s
        return None
