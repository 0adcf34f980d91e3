"""The router: waiting requests, teller states, and the matching decision.

Waiting requests are kept in groups by (class, business type, language), each
ordered by enqueue time. Within a group the oldest request has the highest
priority (same base, more aging), so a decision only compares group heads: cost
grows with the number of groups and available tellers, not with the queue length.

All methods are synchronous and complete before returning, so on one event loop
each is atomic. A Redis implementation keeps the same operations as Lua scripts.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import replace

from vteller.routing.model import PriorityClass, Request, TellerProfile
from vteller.routing.policy import RoutingPolicy
from vteller.routing.tellers import TellerState, TellerStatus

GroupKey = tuple[PriorityClass, str, str]
STAFFED = frozenset({TellerState.AVAILABLE, TellerState.OFFERED, TellerState.BUSY,
                     TellerState.WRAP_UP})


class Router:
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
        group = self._groups.setdefault(
            (request.pclass, request.business_type, request.language), [])
        bisect.insort(group, request, key=lambda r: r.key)
        self._waiting[request.call_id] = request

    def _take(self, call_id: str) -> Request | None:
        request = self._waiting.pop(call_id, None)
        if request is not None:
            key = (request.pclass, request.business_type, request.language)
            group = self._groups[key]
            del group[bisect.bisect_left(group, request.key, key=lambda r: r.key)]
            if not group:
                del self._groups[key]
        return request

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
        at = request.declined_by.get(username)
        return at is not None and now - at < self.policy.decline_memory_s

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
    def _eligible(self, teller: TellerStatus, request: Request, now: float) -> bool:
        profile = teller.profile
        if not profile.can_serve(request.business_type, request.language):
            return False
        if self.declined(request, teller.username, now):
            return False
        if (request.elderly and now - request.enqueued_at < self.policy.elderly_widen_after_s
                and self.policy.elderly_certification not in profile.certifications):
            return False
        return True

    def _score(self, teller: TellerStatus, request: Request) -> float:
        p = self.policy
        profile = teller.profile
        score = (p.w_proficiency * profile.skills.get(request.business_type, 0.0)
                 + p.w_capability * profile.capability)
        if request.elderly and p.elderly_certification in profile.certifications:
            score += p.certified_bonus
        return score

    def choose_teller(self, request: Request, candidates: list[TellerStatus]) -> TellerStatus:
        if request.business_type in self.policy.random_business_types:
            return self._rng.choice(candidates)
        return max(candidates, key=lambda t: (self._score(t, request), -t.since, t.username))

    def next_match(self, now: float) -> tuple[Request, TellerStatus] | None:
        """The next (request, teller) to offer: highest-priority request that has an
        eligible available teller, and its best (or random) teller."""
        available = [t for t in self._tellers.values() if t.state == TellerState.AVAILABLE]
        if not available or not self._waiting:
            return None
        heads = sorted(
            ((self.policy.priority(key[0], now - group[0].enqueued_at), group)
             for key, group in self._groups.items()),
            key=lambda h: -h[0])
        for _, group in heads:
            for request in group[:4]:  # past the head only when it was declined
                candidates = [t for t in available if self._eligible(t, request, now)]
                if candidates:
                    return request, self.choose_teller(request, candidates)
                if not request.declined_by:
                    break
        return None

    # customer feedback ------------------------------------------------------
    def positions(self, now: float) -> dict[str, int]:
        """Position of every waiting request within its pool (business type, language),
        by current priority: one sort per pool, O(n log n) overall."""
        pools: dict[tuple[str, str], list[Request]] = {}
        for request in self._waiting.values():
            pools.setdefault((request.business_type, request.language), []).append(request)
        out: dict[str, int] = {}
        for requests in pools.values():
            requests.sort(key=lambda r: (-self.policy.priority(r.pclass, now - r.enqueued_at),
                                         r.key))
            out.update((r.call_id, i) for i, r in enumerate(requests, 1))
        return out

    def staffed_for(self, request: Request, now: float) -> int:
        """Staffed tellers who could take this request now (not one who just declined)."""
        return sum(1 for t in self._tellers.values()
                   if t.state in STAFFED
                   and t.profile.can_serve(request.business_type, request.language)
                   and not self.declined(request, t.username, now))

    def position(self, call_id: str, now: float) -> int | None:
        """1 + waiting requests for the same business type and language that rank higher."""
        return self.positions(now).get(call_id)
