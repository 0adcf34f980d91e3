"""The running server with its queue and teller states in Redis (a real redis-server the
test starts, pauses, kills and restarts): calls are routed through it, a Redis outage
gives new requests a typed `service_unavailable` while running calls go on, and the
server recovers without a restart, with nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import accept_call, free_port, make_settings, start_server
from tests.redis_server import RedisServer
from vteller.routing.redis_store import PROBE_S, SOCKET_TIMEOUT_S, RedisRouter

P = "{vteller}:"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder, free_port()).start()
    yield server
    server.stop()


async def _join_when_back(customer, within_s: float) -> dict:  # type: ignore[no-untyped-def]
    """Retry queue.join (as the customer page does) until it is queued."""
    deadline = time.monotonic() + within_s
    while True:
        await customer.send({"type": "queue.join"})
        reply = await customer.recv_any(("queue.status", {}), ("error", {}), timeout=3)
        if reply["type"] == "queue.status":
            return reply
        assert reply["code"] == "service_unavailable", reply
        assert time.monotonic() < deadline, "not back in time"
        await asyncio.sleep(0.2)


async def test_queue_in_redis_through_outage_and_restart(tmp_path, own_redis: RedisServer):
    runner, server = await start_server(make_settings(tmp_path, redis_url=own_redis.url))
    r = own_redis.client()
    clients = []
    try:
        assert isinstance(server.manager.router, RedisRouter)
        teller = await server.teller("teller1")
        c1 = await server.customer("c-1")
        c2 = await server.customer("c-2")
        clients += [teller, c1, c2]
        assert r.hget(P + "t:teller1", "state") == "available"  # the state lives in Redis
        call_id = await accept_call(teller, c1)
        assert r.hget(P + "t:teller1", "state") == "busy"
        assert r.scard(P + "waiting") == 0 and not r.exists(P + f"req:{call_id}")

        # Redis hangs (SIGSTOP): a new join gets a typed error after one socket timeout,
        # the next at once; the running call's signaling stays responsive
        own_redis.pause()
        started = time.monotonic()
        await c2.send({"type": "queue.join"})
        err = await c2.recv("error", timeout=5)
        first_s = time.monotonic() - started
        assert err["code"] == "service_unavailable" and "try again" in err["message"]
        assert first_s < SOCKET_TIMEOUT_S + 0.5, first_s
        started = time.monotonic()
        await c2.send({"type": "queue.join"})
        assert (await c2.recv("error", timeout=5))["code"] == "service_unavailable"
        assert time.monotonic() - started < 0.3  # failing fast, no second wait
        started = time.monotonic()
        await c1.send({"type": "ping"})
        await c1.recv("pong")
        assert time.monotonic() - started < 0.3
        assert server.manager.calls[call_id].state in ("connecting", "active")

        # Redis answers again: the same server takes the join without a restart
        own_redis.resume()
        status = await _join_when_back(c2, within_s=PROBE_S + 2)
        assert status["state"] == "queued"
        # the join that timed out may have landed once Redis woke: it is undone, and
        # the customer's position corrects itself within a tick
        if status["position"] != 1:
            await c2.recv("queue.status", position=1, timeout=3)
        assert r.scard(P + "waiting") == 1

        # Redis crashes (kill -9) and restarts: every acknowledged change is still there
        own_redis.kill()
        own_redis.start()
        r = own_redis.client()
        assert r.hget(P + "t:teller1", "state") == "busy" and r.scard(P + "waiting") == 1
        # and the queue goes on: the call ends, the teller frees up, c-2 is offered
        await c1.send({"type": "call.hangup"})
        await teller.recv("teller.state", state="wrap_up")
        await teller.send({"type": "review.decide", "decision": "incomplete"})
        await teller.recv("review.recorded")
        deadline = time.monotonic() + PROBE_S + 3
        while True:  # the first command after the crash may find Redis reconnecting
            await teller.send({"type": "teller.status", "status": "available"})
            reply = await teller.recv_any(("teller.state", {"state": "available"}),
                                          ("error", {}), timeout=3)
            if reply["type"] == "teller.state":
                break
            assert reply["code"] == "service_unavailable" and time.monotonic() < deadline, reply
            await asyncio.sleep(0.2)
        offer = await teller.recv("offer.incoming", timeout=5)
        assert offer["call_id"] != call_id and r.hget(P + "t:teller1", "state") == "offered"
    finally:
        for client in clients:
            await client.close()
        await runner.cleanup()
        server.components.store.close()


async def test_one_node_per_redis_prefix(tmp_path, own_redis: RedisServer):
    """One active node per prefix: a second one (not a standby) waits 1.5 leases for
    the holder's lease to run out (a restart after a crash), then refuses to start,
    naming the setting; once the first stops, the prefix is free again."""
    from vteller.app import build
    from vteller.config import SettingsError

    runner, server = await start_server(make_settings(tmp_path / "a", redis_url=own_redis.url))
    holder = own_redis.client().get(P + "node")
    assert holder and own_redis.client().pttl(P + "node") > 5000  # a lease, not forever
    t0 = time.monotonic()
    with pytest.raises(SettingsError, match="VTELLER_REDIS_PREFIX: .*held by node"):
        build(make_settings(tmp_path / "b", redis_url=own_redis.url, node_lease_s=2))
    assert 2.5 < time.monotonic() - t0 < 10
    other = build(make_settings(tmp_path / "c", redis_url=own_redis.url,
                                redis_prefix="{bank-b}:"))  # another deployment: fine
    other.router.close()
    other.store.close()
    await runner.cleanup()
    server.components.store.close()
    assert own_redis.client().get(P + "node") is None  # released at shutdown
    again = build(make_settings(tmp_path / "d", redis_url=own_redis.url))
    again.router.close()
    again.store.close()
