"""The in-memory routing store: waiting requests and teller states of one process.

Waiting requests are kept in groups by (class, business type, language), each
ordered by enqueue time; the decision over them is `decide.next_match`, shared with
the Redis store. All methods are synchronous and complete before returning, so on one
event loop each is atomic.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Collection, Iterator
from dataclasses import replace

from vteller.routing import decide
from vteller.routing.decide import GroupKey, group_key
from vteller.routing.model import Request, TellerProfile
from vteller.routing.policy import RoutingPolicy
from vteller.routing.tellers import TellerState, TellerStatus


class Router:
    shared = False  # this process's memory: no other node sees it

    def __init__(self, policy: RoutingPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng or random.Random()
        self._groups: dict[GroupKey, list[Request]] = {}
        self._waiting: dict[str, Request] = {}
        self._offered: dict[str, Request] = {}
        self._tellers: dict[str, TellerStatus] = {}
        self._seq = itertools.count()

    # requests -------------------------------------------------------------
    def enqueue(self, request: Request) -> None:
        if request.call_id in self._waiting or request.call_id in self._offered:
            return
        request.seq = next(self._seq)
        self._insert(request)

    def _insert(self, request: Request) -> None:
        group = self._groups.setdefault(group_key(request), [])
        bisect.insort(group, request, key=lambda r: r.key)
        self._waiting[request.call_id] = request

    def _take(self, call_id: str) -> Request | None:
        request = self._waiting.pop(call_id, None)
        if request is not None:
            key = group_key(request)
            group = self._groups[key]
            del group[bisect.bisect_left(group, request.key, key=lambda r: r.key)]
            if not group:
                del self._groups[key]
        return request

    def offer(self, call_id: str, username: str, now: float | None = None
              ) -> TellerStatus | None:
        """Offer a waiting request to an available teller, both in one step: the
        request leaves the line (keeping its enqueue time) and the teller becomes
        offered. None, and nothing changed, if either has moved on meanwhile."""
        if call_id not in self._waiting or \
                self.teller(username).state != TellerState.AVAILABLE:
            return None
        self.hold(call_id)
        return self.set_state(username, TellerState.OFFERED, now=now)

    def hold(self, call_id: str) -> None:
        """Out of the waiting line while offered (keeps its enqueue time)."""
        request = self._take(call_id)
        if request is None:
            raise KeyError(call_id)
        self._offered[call_id] = request

    def requeue(self, call_id: str, declined_by: str | None, now: float) -> None:
        """Back in line; a teller who let it ring out or rejected it is not offered it
        again for `policy.decline_memory_s`."""
        request = self._offered.pop(call_id)
        if declined_by:
            request.declined_by[declined_by] = now
        self._insert(request)

    def declined(self, request: Request, username: str, now: float) -> bool:
        return decide.declined(self.policy, request, username, now)

    def remove(self, call_id: str) -> Request | None:
        return self._take(call_id) or self._offered.pop(call_id, None)

    def request(self, call_id: str) -> Request | None:
        return self._waiting.get(call_id) or self._offered.get(call_id)

    def waiting(self) -> Iterator[Request]:
        return iter(self._waiting.values())

    def waiting_count(self) -> int:
        return len(self._waiting)

    # tellers --------------------------------------------------------------
    def teller(self, username: str) -> TellerStatus:
        """A snapshot (offline for a teller never seen)."""
        return self._tellers.get(username) or TellerStatus(username)

    def set_state(self, username: str, target: TellerState, reason: str | None = None,
                  now: float | None = None) -> TellerStatus:
        """Check the transition and store it, in one step; IllegalTransition if not
        allowed from the current state."""
        status = self.teller(username).moved(target, reason, now)
        self._tellers[username] = status
        return status

    def set_reason(self, username: str, reason: str | None) -> None:
        """A new break reason while on break (no transition)."""
        status = self.teller(username)
        if status.state == TellerState.BREAK:
            self._tellers[username] = replace(status, reason=reason)

    def tellers(self) -> Iterator[TellerStatus]:
        return iter(self._tellers.values())

    def set_profile(self, username: str, profile: TellerProfile) -> None:
        self._tellers[username] = replace(self.teller(username), profile=profile)

    def forget_teller(self, username: str) -> None:
        self._tellers.pop(username, None)

    # decisions ------------------------------------------------------------
    def next_match(self, now: float, among: Collection[str] | None = None
                   ) -> tuple[Request, TellerStatus] | None:
        """The next (request, teller) to offer (`decide.next_match`), with a teller from
        `among` when given (a node of a shared queue offers to its own tellers)."""
        if not self._waiting:
            return None
        available = [t for t in self._tellers.values() if t.state == TellerState.AVAILABLE
                     and (among is None or t.username in among)]
        return decide.next_match(self.policy, (g[:decide.HEADS] for g in self._groups.values()),
                                 available, now, self._rng)

    # customer feedback ------------------------------------------------------
    def positions(self, now: float) -> dict[str, int]:
        return decide.positions(self.policy, self._waiting.values(), now)

    def staffed_for(self, request: Request, now: float) -> int:
        return decide.staffed_for(self.policy, self._tellers.values(), request, now)

    def release(self) -> None:
        """An in-memory queue cannot be handed to another node."""

    def close(self) -> None:
        """Nothing to release in memory."""

    def position(self, call_id: str, now: float) -> int | None:
        """1 + waiting requests for the same business type and language that rank higher."""
        return self.positions(now).get(call_id)
