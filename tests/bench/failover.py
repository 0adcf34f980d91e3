"""Failover time against a cold restart, in one run:
`uv run python -m tests.bench.failover [--rounds 3] [--lease 2]` (needs PostgreSQL on
127.0.0.1:5432, redis-server and haproxy; ~2 min).

Each round: one node carries a waiting customer (3 s into its wait); kill -9.
- baseline, cold restart: the same command starts again on the same data (what a
  process supervisor does); it waits out the dead node's Redis lease, takes the queue
  over and the customer resumes.
- standby: a second node was already waiting (`VTELLER_STANDBY=true`); HAProxy sends
  the customer there once its health check passes.
- active-active: two nodes share the queue (`VTELLER_SHARE_QUEUE`); the customer waits
  on the one killed and resumes on the survivor once the dead node's lease is out.
Measured from the kill to the customer queued again with its original place
(through HAProxy in both cases). Prints p50/max for both, their ratio, and each node's
RSS after it took over."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench.media_relay import rss_mb
from tests.conftest import free_port, postgres_url
from tests.haproxy import start_haproxy
from tests.helpers import SignalClient
from tests.redis_server import RedisServer
from tests.serve_process import ServeProcess, start_serve
from tests.test_cluster_failover import _hello_through, _port, _token, _until_served_by
from tests.test_store_contract import PG_BASE


async def _waiting_customer(url: str) -> tuple[SignalClient, str]:
    sig, welcome = await _hello_through(url, {"type": "hello", "token": await _token(url)})
    await sig.request({"type": "queue.join", "business_type": "general", "language": "en"},
                      "queue.status", state="queued")
    return sig, welcome["resume"]


async def _back_in_queue(url: str, resume: str) -> SignalClient:
    sig, _ = await _hello_through(url, {"type": "hello", "resume": resume}, timeout=60)
    await sig.recv("queue.status", state="queued", timeout=10)
    return sig


async def one_round(tmp: Path, lease: float, mode: str) -> tuple[float, float]:
    redis_dir = tmp / "redis"
    redis_dir.mkdir(parents=True)
    redis = RedisServer(redis_dir, free_port()).start()
    env = {"VTELLER_DATABASE_URL": postgres_url(PG_BASE), "VTELLER_REDIS_URL": redis.url,
           "VTELLER_NODE_LEASE_S": str(lease)}
    nodes: list[ServeProcess] = []
    if mode == "active-active":
        for _ in range(2):
            port = free_port()
            nodes.append(start_serve(tmp, "--dev", port=port, env={
                **env, "VTELLER_SHARE_QUEUE": "true",
                "VTELLER_NODE_URL": f"wss://localhost:{port}/ws"}))
    else:
        nodes.append(start_serve(tmp, "--dev", env=env))
    port_a = _port(nodes[0].url)
    if mode == "standby":
        nodes.append(start_serve(tmp, "--dev", env={**env, "VTELLER_STANDBY": "true"},
                                 until="standby:"))
    if mode == "active-active":
        lb = start_haproxy(tmp, [port_a, _port(nodes[1].url)])
    else:
        lb = start_haproxy(tmp, [port_a], backups=[_port(nodes[1].url)] if len(nodes) > 1
                           else [])
    sigs: list[SignalClient] = []
    try:
        await _until_served_by(lb.url, nodes[0].url)
        # the customer waits on the node that will be killed
        sig, resume = await _waiting_customer(nodes[0].url if mode == "active-active"
                                              else lb.url)
        sigs.append(sig)
        await asyncio.sleep(3.0)
        os.kill(nodes[0].proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        nodes[0].proc.wait(10)
        if mode == "cold restart":  # the supervisor starts it again, same port, same data
            restart = asyncio.create_task(asyncio.to_thread(
                start_serve, tmp, "--dev", env={**env, "VTELLER_PORT": str(port_a)},
                timeout=120))
        sigs.append(await _back_in_queue(lb.url, resume))
        took = time.monotonic() - killed
        if mode == "cold restart":
            nodes.append(await restart)
        return took, rss_mb(nodes[-1].proc.pid)
    finally:
        for s in sigs:
            await s.close()
        lb.stop()
        for node in nodes:
            if node.proc.poll() is None:
                node.stop()
        redis.stop()


async def run(rounds: int, lease: float) -> None:
    results: dict[str, list[tuple[float, float]]] = {
        "cold restart": [], "standby": [], "active-active": []}
    for i in range(rounds):
        for name in results:
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(await one_round(Path(tmp), lease, name))
            print(f"round {i + 1} {name}: customer queued again "
                  f"{results[name][-1][0]:.2f} s after kill -9", flush=True)
    print(f"\nnode lease {lease} s, {rounds} rounds; kill -9 -> waiting customer queued again "
          "(same place), through HAProxy")
    for name, rows in results.items():
        times = [t for t, _ in rows]
        print(f"  {name:13s} p50 {statistics.median(times):5.2f} s  max {max(times):5.2f} s  "
              f"RSS of the node that took over {statistics.median([r for _, r in rows]):.0f} MB")
    base = statistics.median(t for t, _ in results["cold restart"])
    for name in ("standby", "active-active"):
        ours = statistics.median(t for t, _ in results[name])
        print(f"  {name} / cold restart: {ours / base:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lease", type=float, default=2.0)
    args = p.parse_args(argv)
    asyncio.run(run(args.rounds, args.lease))


if __name__ == "__main__":
    main()
