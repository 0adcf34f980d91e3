"""Routing decisions through Redis beside the in-memory store, in one run:
`uv run python -m tests.bench.routing_redis` (needs Redis on 127.0.0.1:6379 or
VTELLER_TEST_REDIS_URL; ~1 min).

Each decision is what the call host does when a teller frees up: next_match (one Lua
script reading the available tellers and every group's first requests, then the shared
policy in Python) and offer (one Lua script), with 10,000 waiting and 500 tellers.
Prints p50/p99 per decision for both stores, their ratio, the Redis server's own CPU
per decision and this process's RSS. Target (issue 12): p99 <= 5 ms through Redis."""

from __future__ import annotations

import os
import random
import resource
import uuid

import redis

from vteller.routing import Router, RoutingPolicy
from vteller.routing.redis_store import RedisRouter
from vteller.routing.sim import decision_latency

URL = os.environ.get("VTELLER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main(waiting: int = 10_000, tellers: int = 500, decisions: int = 2000) -> dict[str, float]:
    memory = decision_latency(waiting, tellers, decisions,
                              router=Router(RoutingPolicy(), rng=random.Random(3)))
    client = redis.Redis.from_url(URL, decode_responses=True)
    store = RedisRouter(RoutingPolicy(), client, f"{{vt-bench-{uuid.uuid4().hex[:8]}}}:",
                        rng=random.Random(3))
    try:
        cpu0 = redis_cpu_s(client)
        shared = decision_latency(waiting, tellers, decisions, router=store)
        cpu_s = redis_cpu_s(client) - cpu0
        keys = len(list(client.scan_iter(f"{store._p}*", count=1000)))
        used_mb = int(client.info("memory")["used_memory"]) / 1e6
    finally:
        store.clear()
    print(f"routing decisions with {waiting} waiting, {tellers} tellers, {decisions} decisions")
    print(f"  in memory: p50 {memory['p50_us']:7.0f} us   p99 {memory['p99_us']:7.0f} us")
    print(f"  Redis:     p50 {shared['p50_us']:7.0f} us   p99 {shared['p99_us']:7.0f} us"
          f"   (target p99 <= 5000 us)")
    print(f"  ratio Redis / memory: p50 {shared['p50_us'] / memory['p50_us']:.1f}x, "
          f"p99 {shared['p99_us'] / memory['p99_us']:.1f}x")
    print(f"  Redis server CPU for the whole run (enqueue {waiting} + decisions and their "
          f"state changes): {cpu_s:.2f} s; {keys} keys, {used_mb:.1f} MB used in Redis")
    print(f"  this process: max RSS {rss_mb():.0f} MB")
    return {"memory_p99_us": memory["p99_us"], "redis_p99_us": shared["p99_us"],
            "redis_p50_us": shared["p50_us"]}


if __name__ == "__main__":
    main()
