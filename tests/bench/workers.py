"""Calls one machine carries with one node process against two (`vteller serve
--workers N`), in one run:

    uv run python -m tests.bench.workers [--seconds 15] [--start 4] [--step 2] [--max 16]

(needs PostgreSQL on 127.0.0.1:5432 and redis-server; several minutes).

For each worker count (1, then 2) the number of concurrent 1:1 calls grows by `--step`
until a step fails: fewer than 99% of video frames delivered, or any worker's event-loop
lag p99 above 20 ms. The calls carried are the last step that passed. Each call is the
media benchmark's (`tests.bench.media_relay`: pre-encoded 640x480 30 fps VP8 plus Opus
both ways, received undecoded, recorded); its teller connects to a worker's own port
(round robin), its customer to the shared port, so about half the customers are moved
to their teller's worker (`node.move`) as in production. Clients run in two processes
at nice 10 on the same two cores as the server. Prints per step: calls, delivery,
worst lag p99 (over the measured window, from the delay histogram), server CPU share, RSS per worker and per call; then the ratio of calls
carried, two workers against one (target >= 1.8).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.media_relay import (
    PASSWORD,
    BenchCall,
    Clients,
    cpu_seconds,
    demo_token,
    lag_quantile_between,
    rss_mb,
)
from tests.conftest import free_port, free_port_run, postgres_url
from tests.helpers import SignalClient, insecure_ssl
from tests.redis_server import RedisServer
from tests.serve_process import start_serve
from tests.test_store_contract import PG_BASE
from vteller.auth import StaffAuth
from vteller.store import open_store

DELIVERY_TARGET = 0.99
LAG_TARGET_MS = 20.0


class MovingCall(BenchCall):
    async def start_on(self, url: str, teller_ws: str, i: int) -> None:
        """The teller on its worker; the customer on the shared port, moved to the
        teller's worker when the kernel put it elsewhere."""
        teller_sig = await self.available_teller(url, teller_ws, i)
        cust_sig = await SignalClient.open(url.replace("https", "wss") + "/ws")
        welcome = await cust_sig.request({"type": "hello", "token": await demo_token(url, i)},
                                         "welcome")
        await cust_sig.send({"type": "queue.join"})
        got = await cust_sig.recv_any(("node.move", {}), ("queue.status", {"state": "offered"}),
                                      timeout=30)
        if got["type"] == "node.move":
            await cust_sig.close()
            cust_sig = await SignalClient.open(got["url"])
            await cust_sig.request({"type": "hello", "resume": welcome["resume"]}, "welcome")
        self.sigs = [cust_sig, teller_sig]
        await self.connect(cust_sig, teller_sig)


def client_worker(url: str, own_ports: list[int], ids: list[int], ready: Any, go: Any,
                  stop: Any, out: Any) -> None:
    """One client process: its share of the calls, set up one after the other (so each
    customer meets the teller that just became available)."""
    import uvloop

    os.nice(10)

    async def run() -> None:
        bench = [MovingCall() for _ in ids]
        try:
            for i, b in zip(ids, bench, strict=True):
                port = own_ports[i % len(own_ports)]
                await b.start_on(url, f"wss://localhost:{port}/ws", i)
            ready.put(len(bench))
            while not go.is_set():
                await asyncio.sleep(0.01)
            for b in bench:
                b.go()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            cutoff = time.monotonic() - 0.5
            for b in bench:
                b.stop_sending()
            await asyncio.sleep(1.5)
            sent = delivered = 0
            for b in bench:
                s_, d_, _ = b.results(cutoff)
                sent, delivered = sent + s_, delivered + d_
            out.put((sent, delivered))
        except Exception as exc:  # noqa: BLE001 - report to the coordinator
            ready.put(repr(exc))
            out.put(repr(exc))
        finally:
            for b in bench:
                await b.close()

    uvloop.run(run())


async def worker_metrics(port: int) -> tuple[int, str]:
    """(pid, /metrics text) of the worker listening on its own `port`."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=insecure_ssl(), force_close=True)) as s:
        text = await (await s.get(f"https://localhost:{port}/metrics")).text()
    pid = int(re.search(r'node="[^:"]+:(\d+):', text).group(1))  # type: ignore[union-attr]
    return pid, text


async def scenario(redis_url: str, workers: int, calls: int, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-workers-{workers}-"))
    db_url = postgres_url(PG_BASE)
    store = open_store(db_url, tmp / "unused.sqlite3")
    for i in range(calls):
        store.add_user(f"bench{i}", f"Bench Teller {i}", "teller",
                       StaffAuth.hash_password(PASSWORD))
    store.close()
    port = free_port_run(workers + 1)
    env = {"VTELLER_DATABASE_URL": db_url, "VTELLER_REDIS_URL": redis_url,
           "VTELLER_REDIS_PREFIX": f"{{bench{port}}}:", "VTELLER_RECORD_CALLS": "true",
           "VTELLER_LOG_LEVEL": "warning", "VTELLER_LOGIN_MAX_FAILURES": "1000"}
    server = start_serve(tmp, "--dev", "--workers", str(workers), port=port, env=env,
                         timeout=180)
    own = [port + k for k in range(1, workers + 1)]
    clients = Clients(client_worker, [list(range(calls))[k::2] for k in range(2)],
                      server.url, own)
    try:
        pids = [(await worker_metrics(p))[0] for p in own]
        await clients.start(ready_timeout=300)
        await asyncio.sleep(3)  # warm-up
        before = [(await worker_metrics(p))[1] for p in own]
        cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        after = [(await worker_metrics(p))[1] for p in own]
        lags = [1000 * lag_quantile_between(b, a, 0.99) for b, a in zip(before, after,
                                                                           strict=True)]
        rss = [rss_mb(p) for p in pids]
        results = await clients.finish()
    finally:
        clients.kill()
        server.stop()
    sent = sum(r[0] for r in results)
    delivered = sum(r[1] for r in results)
    return {"workers": workers, "calls": calls,
            "delivered": delivered / sent if sent else 0.0,
            "lag_p99_ms": max(lags), "server_core_share": (cpu1 - cpu0) / (t1 - t0),
            "rss_mb": rss, "rss_per_call_mb": sum(rss) / calls}


def passed(r: dict[str, Any]) -> bool:
    return r["delivered"] >= DELIVERY_TARGET and r["lag_p99_ms"] <= LAG_TARGET_MS


def report(r: dict[str, Any]) -> None:
    rss = "/".join(f"{x:.0f}" for x in r["rss_mb"])
    print(f"  workers={r['workers']} calls={r['calls']:<3} "
          f"delivered={100 * r['delivered']:6.2f}%  lag p99 (worst worker, measured window) <= "
          f"{r['lag_p99_ms']:4.0f} ms  server cores={r['server_core_share']:.2f}  "
          f"RSS {rss} MB ({r['rss_per_call_mb']:.1f} MB/call)  "
          f"{'ok' if passed(r) else 'over target'}", flush=True)


async def main(seconds: float, start: int, step: int, most: int) -> dict[int, int]:
    print(f"workers: {seconds:.0f} s windows; a step passes at >= {100 * DELIVERY_TARGET:.0f}% "
          f"of frames delivered and lag p99 <= {LAG_TARGET_MS:.0f} ms on every worker")
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-redis-"))
    redis = RedisServer(tmp, free_port()).start()
    carried: dict[int, int] = {}
    try:
        for workers in (1, 2):
            carried[workers] = 0
            calls = start
            while calls <= most:
                r = await scenario(redis.url, workers, calls, seconds)
                report(r)
                if not passed(r):
                    break
                carried[workers] = calls
                calls += step
    finally:
        redis.stop()
    one, two = carried[1], carried[2]
    ratio = two / one if one else float("nan")
    print(f"  calls carried: one worker {one}, two workers {two}: {ratio:.2f}x "
          "(target >= 1.8x)")
    return carried


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--start", type=int, default=4)
    ap.add_argument("--step", type=int, default=2)
    ap.add_argument("--max", type=int, default=16)
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.start, a.step, a.max))
    sys.exit(0)
