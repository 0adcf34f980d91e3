"""Discrete-event simulation of the contact centre, driving the real Router on a
simulated clock: Poisson arrivals, lognormal handle times and patience, a segment
and business-type mix, a teller roster with skills, languages and certifications.

Used by `vteller sim` and `tests/bench/routing_sim.py` to compare the policy with
plain FIFO on the same arrivals.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import time
from dataclasses import dataclass, field

from vteller.routing.model import PriorityClass, Request, TellerProfile
from vteller.routing.policy import RoutingPolicy
from vteller.routing.router import Router
from vteller.routing.stats import ServiceStats
from vteller.routing.store import RoutingStore
from vteller.routing.tellers import TellerState


@dataclass
class Scenario:
    tellers: int = 60
    occupancy: float = 0.85
    hours: float = 8.0
    handle_mean_s: float = 180.0
    handle_sigma: float = 0.5
    wrap_s: float = 15.0
    answer_s: float = 1.0  # teller's time to accept an offer
    patience_median_s: float = 120.0
    patience_sigma: float = 1.0
    segment_mix: dict[str, float] = field(default_factory=lambda: {
        "elderly": 0.20, "military": 0.03, "disability": 0.02, "vip": 0.05})
    business_mix: dict[str, float] = field(default_factory=lambda: {
        "general": 0.60, "card_issuance": 0.25, "video_ident": 0.15})
    language_mix: dict[str, float] = field(default_factory=lambda: {"en": 0.92, "zh": 0.08})
    seed: int = 7

    @property
    def arrival_rate(self) -> float:
        per_call = self.handle_mean_s + self.wrap_s + self.answer_s
        return self.occupancy * self.tellers / per_call


def roster(n: int, rng: random.Random) -> dict[str, TellerProfile]:
    out = {}
    for i in range(n):
        skills = {"general": rng.uniform(0.5, 1.0)}
        if rng.random() < 0.6:
            skills["card_issuance"] = rng.uniform(0.4, 1.0)
        if rng.random() < 0.4:
            skills["video_ident"] = rng.uniform(0.6, 1.0)
        out[f"t{i:03d}"] = TellerProfile(
            skills=skills,
            languages=frozenset({"en", "zh"}) if rng.random() < 0.25 else frozenset({"en"}),
            certifications=frozenset({"elderly_care"}) if rng.random() < 0.25 else frozenset(),
            capability=rng.uniform(0.3, 1.0))
    return out


def _pick(rng: random.Random, mix: dict[str, float]) -> str:
    r, acc = rng.random(), 0.0
    for key, p in mix.items():
        acc += p
        if r < acc:
            return key
    return next(iter(mix))


def simulate(sc: Scenario, policy: RoutingPolicy) -> dict[str, object]:
    """Run one scenario; returns per-class and overall figures."""
    rng = random.Random(sc.seed)  # same arrivals for every policy
    router = Router(policy, rng=random.Random(sc.seed + 1))
    stats = ServiceStats(policy.service_level_threshold_s, sc.handle_mean_s, window_s=1e12)
    for name, profile in roster(sc.tellers, random.Random(sc.seed + 2)).items():
        router.set_profile(name, profile)
        router.set_state(name, TellerState.AVAILABLE, now=0.0)
    events: list[tuple[float, int, str, object]] = []
    seq = itertools.count()

    def at(t: float, kind: str, data: object) -> None:
        heapq.heappush(events, (t, next(seq), kind, data))

    waits: dict[str, list[float]] = {c.value: [] for c in PriorityClass}
    abandons: dict[str, int] = {c.value: 0 for c in PriorityClass}
    offered_to: dict[str, str] = {}
    end = sc.hours * 3600
    decision_s: list[float] = []

    def dispatch(now: float) -> None:
        while True:
            t0 = time.perf_counter()
            match = router.next_match(now)
            decision_s.append(time.perf_counter() - t0)
            if match is None:
                return
            request, teller = match
            router.offer(request.call_id, teller.username, now=now)
            offered_to[request.call_id] = teller.username
            at(now + sc.answer_s, "answer", request.call_id)

    mu = math.log(sc.handle_mean_s) - sc.handle_sigma ** 2 / 2  # lognormal with that mean
    t, n = 0.0, 0
    while True:
        t += rng.expovariate(sc.arrival_rate)
        if t > end:
            break
        segs = frozenset(s for s, p in sc.segment_mix.items() if rng.random() < p)
        request = Request(f"r{n}", _pick(rng, sc.business_mix), _pick(rng, sc.language_mix),
                          segs, enqueued_at=t)
        at(t, "arrive", request)
        at(t + rng.lognormvariate(math.log(sc.patience_median_s), sc.patience_sigma),
           "abandon", request.call_id)
        if request.elderly and policy.elderly_widen_after_s > 0:
            at(t + policy.elderly_widen_after_s, "widen", None)
        n += 1

    requests: dict[str, Request] = {}
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            assert isinstance(data, Request)
            requests[data.call_id] = data
            router.enqueue(data)
            dispatch(now)
        elif kind == "answer":
            call_id = str(data)
            teller = router.set_state(offered_to.pop(call_id), TellerState.BUSY, now=now)
            request = requests.pop(call_id)
            router.remove(call_id)
            wait = now - request.enqueued_at
            waits[request.pclass.value].append(wait)
            stats.answered(now, request.pclass.value, wait)
            handle = rng.lognormvariate(mu, sc.handle_sigma)
            at(now + handle, "hangup", (teller.username, handle))
        elif kind == "hangup":
            name, handle = data  # type: ignore[misc]
            router.set_state(name, TellerState.WRAP_UP, now=now)
            stats.handled(now, handle + sc.wrap_s)
            at(now + sc.wrap_s, "ready", name)
        elif kind == "ready":
            router.set_state(str(data), TellerState.AVAILABLE, now=now)
            dispatch(now)
        elif kind == "abandon":
            call_id = str(data)
            request = requests.get(call_id)
            if request is not None and call_id not in offered_to:
                requests.pop(call_id)
                router.remove(call_id)
                abandons[request.pclass.value] += 1
                stats.abandoned(now, request.pclass.value, now - request.enqueued_at)
        elif kind == "widen":
            dispatch(now)

    per_class = {}
    for c in PriorityClass:
        w = sorted(waits[c.value])
        summary = stats.summary(end * 2, c.value)
        per_class[c.value] = {
            "answered": len(w),
            "mean_wait_s": statistics.fmean(w) if w else None,
            "p90_wait_s": w[int(0.9 * (len(w) - 1))] if w else None,
            "max_wait_s": w[-1] if w else None,
            "service_level": summary["service_level"],
            "abandon_rate": summary["abandon_rate"],
        }
    decision_s.sort()
    return {"classes": per_class, "overall": stats.summary(end * 2), "arrivals": n,
            "decision_p99_us": 1e6 * decision_s[int(0.99 * (len(decision_s) - 1))]}


def decision_latency(waiting: int = 10_000, tellers: int = 500, decisions: int = 2000,
                     seed: int = 3, router: RoutingStore | None = None) -> dict[str, float]:
    """Time next_match()+offer with `waiting` requests queued and one teller freeing up
    (in `router`, empty at the start; default: a new in-memory one)."""
    rng = random.Random(seed)
    router = router or Router(RoutingPolicy(), rng=random.Random(seed))
    sc = Scenario()
    names = list(roster(tellers, rng))
    for name, profile in roster(tellers, random.Random(seed)).items():
        router.set_profile(name, profile)
        router.set_state(name, TellerState.AVAILABLE, now=0)
        router.set_state(name, TellerState.OFFERED, now=0)
        router.set_state(name, TellerState.BUSY, now=0)
        router.set_state(name, TellerState.WRAP_UP, now=0)
    for i in range(waiting):
        segs = frozenset(s for s, p in sc.segment_mix.items() if rng.random() < p)
        router.enqueue(Request(f"w{i}", _pick(rng, sc.business_mix), _pick(rng, sc.language_mix),
                               segs, enqueued_at=rng.uniform(0, 600)))
    samples = []
    now = 600.0
    for i in range(decisions):
        name = rng.choice(names)
        router.set_state(name, TellerState.AVAILABLE, now=now)
        t0 = time.perf_counter()
        match = router.next_match(now)
        if match is not None:
            router.offer(match[0].call_id, match[1].username, now=now)
        samples.append(time.perf_counter() - t0)
        if match is not None:  # keep the queue at `waiting`
            router.requeue(match[0].call_id, None, now)
        else:
            router.set_state(name, TellerState.OFFLINE, now=now)
        if match:
            router.set_state(name, TellerState.BUSY, now=now)
            router.set_state(name, TellerState.WRAP_UP, now=now)
        else:
            router.set_state(name, TellerState.AVAILABLE, now=now)
            router.set_state(name, TellerState.OFFERED, now=now)
            router.set_state(name, TellerState.BUSY, now=now)
            router.set_state(name, TellerState.WRAP_UP, now=now)
        now += 0.01
    samples.sort()
    return {"p50_us": 1e6 * samples[len(samples) // 2],
            "p99_us": 1e6 * samples[int(0.99 * (len(samples) - 1))],
            "waiting": router.waiting_count()}
