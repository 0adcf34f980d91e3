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


def test_erlang_c_staffing_meets_the_textbook_check():
    """The issue's check: 100 calls per 30 minutes, 180 s handle time, 80% answered in
    20 s, 30% shrinkage: 14 tellers, 20 on the rota."""
    from vteller.routing.staffing import erlang_c, service_level, tellers_needed

    need = tellers_needed(100, 1800, 180, 0.8, 20, 0.3)
    assert (need.traffic, need.tellers, need.scheduled) == (10.0, 14, 20)
    assert need.service_level == pytest.approx(0.8884, abs=1e-4)
    assert service_level(13, 10.0, 180, 20) == pytest.approx(0.7956, abs=1e-4)  # one short
    # Erlang C values for A = 10 Erlangs (standard tables)
    assert erlang_c(11, 10.0) == pytest.approx(0.6821, abs=1e-4)
    assert erlang_c(15, 10.0) == pytest.approx(0.1020, abs=1e-4)
    assert erlang_c(10, 10.0) == 1.0 and service_level(9, 10.0, 180, 20) == 0.0
    big = tellers_needed(2000, 1800, 240, 0.8, 20, 0.0)  # ~267 Erlangs stays stable
    assert 267 < big.tellers < 290 and big.scheduled == big.tellers
    assert tellers_needed(0, 1800, 180, 0.8, 20, 0.3).tellers == 0
    with pytest.raises(ValueError):
        tellers_needed(10, 1800, 180, 1.0, 20, 0.3)
