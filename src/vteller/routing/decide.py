"""The routing decision as pure functions over a snapshot, shared by every routing store
(in memory, Redis): the same policy decides whichever store holds the state.

A snapshot is the waiting requests as groups (class, business type, language), each
ordered oldest first, and the tellers. Within a group the oldest request has the
highest priority (same base, more aging), so a decision only compares group heads:
cost grows with the number of groups and available tellers, not the queue length.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from vteller.routing.model import PriorityClass, Request
from vteller.routing.policy import RoutingPolicy
from vteller.routing.tellers import TellerState, TellerStatus

GroupKey = tuple[PriorityClass, str, str, str]
STAFFED = frozenset({TellerState.AVAILABLE, TellerState.OFFERED, TellerState.BUSY,
                     TellerState.WRAP_UP})
HEADS = 4  # requests looked at per group: past the head only when it was declined


def group_key(request: Request) -> GroupKey:
    """Requests that compare by arrival alone: class, business, language and the teller
    a booking names (each teller's bookings are their own group)."""
    return (request.pclass, request.business_type, request.language, request.booked_teller)


def reserved(request: Request, username: str, now: float) -> bool:
    """Held for its booked teller, who is someone else."""
    return bool(request.booked_teller) and request.booked_teller != username \
        and now < request.booked_until


def declined(policy: RoutingPolicy, request: Request, username: str, now: float) -> bool:
    at = request.declined_by.get(username)
    return at is not None and now - at < policy.decline_memory_s


def eligible(policy: RoutingPolicy, teller: TellerStatus, request: Request, now: float) -> bool:
    profile = teller.profile
    if not profile.can_serve(request.business_type, request.language):
        return False
    if declined(policy, request, teller.username, now) or reserved(request, teller.username, now):
        return False
    return not (request.elderly and now - request.enqueued_at < policy.elderly_widen_after_s
                and policy.elderly_certification not in profile.certifications)


def score(policy: RoutingPolicy, teller: TellerStatus, request: Request) -> float:
    profile = teller.profile
    value = (policy.w_proficiency * profile.skills.get(request.business_type, 0.0)
             + policy.w_capability * profile.capability)
    if request.elderly and policy.elderly_certification in profile.certifications:
        value += policy.certified_bonus
    return value


def choose_teller(policy: RoutingPolicy, request: Request, candidates: list[TellerStatus],
                  rng: random.Random) -> TellerStatus:
    if request.business_type in policy.random_business_types:
        return rng.choice(sorted(candidates, key=lambda t: t.username))
    return max(candidates, key=lambda t: (score(policy, t, request), -t.since, t.username))


def next_match(policy: RoutingPolicy, heads: Iterable[list[Request]],
               available: list[TellerStatus], now: float, rng: random.Random
               ) -> tuple[Request, TellerStatus] | None:
    """The next (request, teller) to offer: the highest-priority request that has an
    eligible available teller, and its best (or random) teller. `heads` holds the first
    `HEADS` requests of each group, oldest first."""
    if not available:
        return None
    heads = [g for g in heads if g]
    by_name = {t.username: t for t in available}
    booked = sorted((g[0] for g in heads if g[0].booked_teller in by_name),
                    key=lambda r: r.key)  # a booked teller takes their booking first
    for request in booked:
        teller = by_name[request.booked_teller]
        if eligible(policy, teller, request, now):
            return request, teller
    ranked = sorted(heads, key=lambda g: (
        -policy.priority(g[0].pclass, now - g[0].enqueued_at), g[0].key))  # ties: arrival
    for group in ranked:
        for request in group[:HEADS]:
            candidates = [t for t in available if eligible(policy, t, request, now)]
            if candidates:
                return request, choose_teller(policy, request, candidates, rng)
            if not request.declined_by and not request.booked_teller:
                break
    return None


def positions(policy: RoutingPolicy, waiting: Iterable[Request], now: float) -> dict[str, int]:
    """Position of every waiting request within its pool (business type, language), by
    current priority: one sort per pool, O(n log n) overall."""
    pools: dict[tuple[str, str], list[Request]] = {}
    for request in waiting:
        pools.setdefault((request.business_type, request.language), []).append(request)
    out: dict[str, int] = {}
    for requests in pools.values():
        requests.sort(key=lambda r: (-policy.priority(r.pclass, now - r.enqueued_at), r.key))
        out.update((r.call_id, i) for i, r in enumerate(requests, 1))
    return out


def staffed_for(policy: RoutingPolicy, tellers: Iterable[TellerStatus], request: Request,
                now: float) -> int:
    """Staffed tellers who could take this request now (not one who just declined)."""
    return sum(1 for t in tellers
               if t.state in STAFFED
               and t.profile.can_serve(request.business_type, request.language)
               and not declined(policy, request, t.username, now))
