"""Teller states and their allowed transitions, written down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from vteller.routing import clock
from vteller.routing.model import TellerProfile


class TellerState(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    OFFERED = "offered"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    BREAK = "break"


S = TellerState
TRANSITIONS: dict[TellerState, frozenset[TellerState]] = {
    S.OFFLINE: frozenset({S.AVAILABLE, S.BREAK}),
    S.AVAILABLE: frozenset({S.OFFERED, S.BREAK, S.OFFLINE}),
    S.OFFERED: frozenset({S.BUSY, S.AVAILABLE, S.BREAK, S.OFFLINE}),
    S.BUSY: frozenset({S.WRAP_UP}),
    S.WRAP_UP: frozenset({S.AVAILABLE, S.BREAK, S.OFFLINE}),
    S.BREAK: frozenset({S.AVAILABLE, S.OFFLINE}),
}


class IllegalTransition(Exception):
    def __init__(self, what: str, current: str, target: str) -> None:
        super().__init__(f"{what} cannot go from {current} to {target}")
        self.current = current
        self.target = target


@dataclass(frozen=True)
class TellerStatus:
    """A teller's routing state, as a value: the router stores one per teller and
    hands out these snapshots; a change is a new value (`moved`), stored by the router
    in one step. ``since`` orders available tellers (longest idle first)."""

    username: str
    state: TellerState = TellerState.OFFLINE
    reason: str | None = None
    since: float = field(default_factory=clock.now)
    profile: TellerProfile = field(default_factory=TellerProfile)

    def moved(self, target: TellerState, reason: str | None = None,
              now: float | None = None) -> TellerStatus:
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition("teller", self.state, target)
        return replace(self, state=target,
                       reason=reason if target == TellerState.BREAK else None,
                       since=clock.now() if now is None else now)
