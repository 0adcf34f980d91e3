"""First-come-first-served router (v1). The Router seam the ACD issue replaces.

Waiting requests are ordered by enqueue time; a request keeps its place when an
offer is rejected or not answered. A teller is never re-offered a request it
declined. Available tellers are served longest-idle first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vteller.routing.tellers import TellerState, TellerStatus


@dataclass
class Request:
    call_id: str
    enqueued_at: float
    declined_by: set[str] = field(default_factory=set)


class FifoRouter:
    """In-memory, single process; every method is synchronous (atomic on the loop)."""

    def __init__(self) -> None:
        self._waiting: dict[str, Request] = {}
        self._offered: dict[str, Request] = {}
        self._tellers: dict[str, TellerStatus] = {}

    # requests -------------------------------------------------------------
    def enqueue(self, call_id: str, enqueued_at: float) -> None:
        self._waiting.setdefault(call_id, Request(call_id, enqueued_at))

    def hold(self, call_id: str) -> None:
        """Take a request out of the waiting line while it is offered."""
        self._offered[call_id] = self._waiting.pop(call_id)

    def requeue(self, call_id: str, declined_by: str | None) -> None:
        """Back into its original place (enqueue time is kept)."""
        request = self._offered.pop(call_id)
        if declined_by:
            request.declined_by.add(declined_by)
        self._waiting[call_id] = request

    def remove(self, call_id: str) -> None:
        self._waiting.pop(call_id, None)
        self._offered.pop(call_id, None)

    def ordered(self) -> list[Request]:
        return sorted(self._waiting.values(), key=lambda r: (r.enqueued_at, r.call_id))

    def position(self, call_id: str) -> int | None:
        for i, req in enumerate(self.ordered(), 1):
            if req.call_id == call_id:
                return i
        return None

    # tellers --------------------------------------------------------------
    def teller(self, username: str) -> TellerStatus:
        return self._tellers.setdefault(username, TellerStatus(username))

    def forget_teller(self, username: str) -> None:
        self._tellers.pop(username, None)

    def next_match(self) -> tuple[Request, TellerStatus] | None:
        """The next (request, teller) pair to offer, or None."""
        available = sorted(
            (t for t in self._tellers.values() if t.state == TellerState.AVAILABLE),
            key=lambda t: (t.since, t.username),
        )
        if not available or not self._waiting:
            return None
        for request in self.ordered():
            for teller in available:
                if teller.username not in request.declined_by:
                    return request, teller
        return None
