"""The router's policy: classes, aging, skills, languages, elderly preference, random
assignment, scoring; and the simulation's service targets (deterministic seeds)."""

from __future__ import annotations

import collections
import datetime as dt

import pytest

from vteller.routing import (
    FIFO,
    PriorityClass,
    Request,
    Router,
    RoutingPolicy,
    TellerProfile,
    TellerState,
    classify,
    segments_for,
)
from vteller.routing.sim import Scenario, simulate


def req(call_id: str, at: float, *segs: str, bt: str = "general", lang: str = "en") -> Request:
    return Request(call_id, bt, lang, frozenset(segs), enqueued_at=at)


def teller(router: Router, name: str, since: float = 0.0, **profile: object) -> None:
    router.set_profile(name, TellerProfile(**profile))  # type: ignore[arg-type]
    router.set_state(name, TellerState.AVAILABLE, now=since)


def test_classes_from_segments_and_birth_year():
    today = dt.date(2026, 11, 23)
    assert segments_for((), 1966, 60, today) == {"elderly"}
    assert segments_for(("vip",), 1967, 60, today) == {"vip"}
    assert classify(frozenset({"elderly", "vip"})) == PriorityClass.GREEN
    assert classify(frozenset({"disability"})) == PriorityClass.PRIORITY
    assert classify(frozenset({"military", "vip"})) == PriorityClass.PRIORITY
    assert classify(frozenset({"vip"})) == PriorityClass.VIP
    assert classify(frozenset()) == PriorityClass.STANDARD


def test_priority_order_then_fifo_within_class():
    r = Router(RoutingPolicy(elderly_widen_after_s=0))
    for call_id, at, segs in [("s1", 0, ()), ("v1", 1, ("vip",)), ("p1", 2, ("military",)),
                              ("g1", 3, ("elderly",)), ("g2", 4, ("elderly",))]:
        r.enqueue(req(call_id, at, *segs))
    teller(r, "t1")
    order = []
    while (m := r.next_match(10.0)) is not None:
        order.append(m[0].call_id)
        r.hold(m[0].call_id)
        r.remove(m[0].call_id)
    assert order == ["g1", "g2", "p1", "v1", "s1"]


def test_aging_prevents_starvation():
    policy = RoutingPolicy(elderly_widen_after_s=0)
    r = Router(policy)
    r.enqueue(req("old-standard", 0.0))
    r.enqueue(req("fresh-green", 400.0, "elderly"))
    teller(r, "t1")
    # at t=400 the standard request waited 400 s: 0 + 400 > 300 + 0
    assert r.next_match(400.0)[0].call_id == "old-standard"
    r2 = Router(policy)
    r2.enqueue(req("standard", 0.0))
    r2.enqueue(req("green", 100.0, "elderly"))
    teller(r2, "t1")
    assert r2.next_match(100.0)[0].call_id == "green"


def test_skill_and_language_eligibility():
    r = Router(RoutingPolicy())
    r.enqueue(req("card", 0, bt="card_issuance"))
    r.enqueue(req("zh", 1, lang="zh"))
    teller(r, "generalist", skills={"general": 1.0})
    assert r.next_match(5.0) is None  # nobody can serve either request
    teller(r, "card-teller", skills={"card_issuance": 0.8})
    request, chosen = r.next_match(5.0)
    assert (request.call_id, chosen.username) == ("card", "card-teller")
    assert r.staffed_for(r.request("zh"), 0.0) == 0
    teller(r, "zh-teller", skills={"general": 0.5}, languages=frozenset({"en", "zh"}))
    r.hold("card")
    assert r.next_match(5.0)[1].username == "zh-teller"


def test_elderly_prefer_certified_then_widen():
    r = Router(RoutingPolicy(elderly_widen_after_s=10))
    r.enqueue(req("grandma", 0.0, "elderly"))
    teller(r, "plain")
    assert r.next_match(5.0) is None  # only certified tellers during the first 10 s
    assert r.next_match(10.5)[1].username == "plain"
    teller(r, "certified", certifications=frozenset({"elderly_care"}))
    assert r.next_match(5.0)[1].username == "certified"


def test_best_score_then_longest_idle():
    r = Router(RoutingPolicy())
    r.enqueue(req("c", 0, bt="card_issuance"))
    teller(r, "weak", since=0.0, skills={"card_issuance": 0.3})
    teller(r, "strong", since=5.0, skills={"card_issuance": 0.9})
    assert r.next_match(10.0)[1].username == "strong"
    r2 = Router(RoutingPolicy())
    r2.enqueue(req("c", 0))
    teller(r2, "recent", since=9.0)
    teller(r2, "idle-longest", since=1.0)
    assert r2.next_match(10.0)[1].username == "idle-longest"


def test_random_assignment_is_uniform_over_eligible():
    import random

    r = Router(RoutingPolicy(), rng=random.Random(42))
    names = ["a", "b", "c", "d"]
    for i, name in enumerate(names):
        teller(r, name, skills={"video_ident": 0.2 + 0.2 * i})  # scores differ on purpose
    teller(r, "no-skill", skills={"general": 1.0})
    counts: collections.Counter[str] = collections.Counter()
    trials = 4000
    for i in range(trials):
        r.enqueue(req(f"v{i}", i, bt="video_ident"))
        request, chosen = r.next_match(float(i))
        counts[chosen.username] += 1
        r.remove(request.call_id)
    assert set(counts) == set(names)
    expected = trials / len(names)
    chi2 = sum((counts[n] - expected) ** 2 / expected for n in names)
    assert chi2 < 16.27, counts  # p = 0.001 for 3 degrees of freedom


def test_declined_request_goes_to_another_teller_and_keeps_place():
    r = Router(RoutingPolicy())
    r.enqueue(req("first", 0.0))
    r.enqueue(req("second", 1.0))
    teller(r, "t1")
    request, _ = r.next_match(2.0)
    r.hold(request.call_id)
    r.requeue(request.call_id, declined_by="t1", now=2.0)
    assert r.position("first", 2.0) == 1
    assert r.next_match(2.0)[0].call_id == "second"  # t1 is not re-offered "first"
    teller(r, "t2", since=5.0)
    r.set_state("t1", TellerState.OFFLINE)
    assert r.next_match(6.0)[0].call_id == "first"


def test_position_counts_higher_priority_same_pool():
    r = Router(RoutingPolicy())
    r.enqueue(req("s1", 0.0))
    r.enqueue(req("s2", 1.0))
    r.enqueue(req("g1", 2.0, "elderly"))
    r.enqueue(req("other-pool", 0.0, bt="card_issuance"))
    assert [r.position(c, 3.0) for c in ("g1", "s1", "s2")] == [1, 2, 3]
    assert r.position("other-pool", 3.0) == 1


@pytest.mark.parametrize("occupancy", [0.85, 0.95])
def test_simulation_meets_service_targets(occupancy):
    result = simulate(Scenario(occupancy=occupancy, hours=8), RoutingPolicy())
    classes = result["classes"]
    for name, c in classes.items():  # nobody starves: every class is served, waits bounded
        assert c["answered"] > 100 and c["max_wait_s"] < 300, (name, c)
    if occupancy == 0.85:
        assert classes["green"]["mean_wait_s"] <= 3.0
        assert classes["standard"]["service_level"] >= 0.80
        fifo = simulate(Scenario(occupancy=occupancy, hours=8), FIFO)["classes"]
        assert classes["green"]["mean_wait_s"] < fifo["green"]["mean_wait_s"]
