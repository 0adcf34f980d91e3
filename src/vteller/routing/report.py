"""Printable comparison of the policy against FIFO (used by `vteller sim` and the bench)."""

from __future__ import annotations

from vteller.routing.policy import FIFO, RoutingPolicy
from vteller.routing.sim import Scenario, decision_latency, simulate


def _fmt(value: object, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:5.1f}%" if pct else f"{value:6.1f}"  # type: ignore[operator]


def run(tellers: int = 60, hours: float = 8.0, policy: RoutingPolicy | None = None,
        occupancies: tuple[float, ...] = (0.85, 0.95)) -> dict[str, object]:
    policy = policy or RoutingPolicy()
    results: dict[str, object] = {}
    print(f"routing simulation: {tellers} tellers, {hours:g} h, 20% elderly, 5% other priority,"
          " 5% VIP; skills, languages, 25% elderly-certified; same arrivals for both policies")
    for occ in occupancies:
        for name, pol in (("policy", policy), ("fifo", FIFO)):
            r = simulate(Scenario(tellers=tellers, occupancy=occ, hours=hours), pol)
            results[f"{name}@{occ}"] = r
            print(f"  occupancy {occ:.0%} {name:6} ({r['arrivals']} arrivals)")
            print("    class      answered  mean wait  p90 wait  max wait  SL(20s)  abandon")
            for c, v in r["classes"].items():  # type: ignore[attr-defined]
                print(f"    {c:9} {v['answered']:9} {_fmt(v['mean_wait_s'])} s {_fmt(v['p90_wait_s'])} s"
                      f" {_fmt(v['max_wait_s'])} s  {_fmt(v['service_level'], True)}"
                      f"  {_fmt(v['abandon_rate'], True)}")
    lat = decision_latency()
    results["decision"] = lat
    print(f"  decision latency with {lat['waiting']:.0f} waiting, 500 tellers: "
          f"p50 {lat['p50_us']:.0f} us, p99 {lat['p99_us']:.0f} us (target p99 <= 1000 us)")
    green = results["policy@0.85"]["classes"]["green"]  # type: ignore[index]
    std = results["policy@0.85"]["classes"]["standard"]  # type: ignore[index]
    print(f"  targets at 85%: green mean wait {green['mean_wait_s']:.2f} s (<= 3 s), standard "
          f"SL {100 * std['service_level']:.1f}% (>= 80%)")
    return results
