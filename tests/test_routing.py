"""Priority classes from segments, and the simulation's service targets (deterministic
seeds). The routing policy itself is tested on every store in test_routing_contract."""

from __future__ import annotations

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
