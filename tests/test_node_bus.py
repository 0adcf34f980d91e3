"""The node bus (`cluster/bus.py`) against a real redis-server: liveness, messages to
the right node, hand-offs taken once, homes, and a Redis that stops answering."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.redis_server import RedisServer
from vteller.cluster.bus import BusUnavailable, Gone, Handoff, Move, NodeBus, Nudge
from vteller.routing import Request

pytestmark = [pytest.mark.nodb, pytest.mark.timeout(60)]


class Inbox:
    def __init__(self) -> None:
        self.got: list[object] = []
        self.new = asyncio.Event()

    def _add(self, item: object) -> None:
        self.got.append(item)
        self.new.set()

    def on_move(self, move: Move) -> None:
        self._add(move)

    def on_gone(self, gone: Gone) -> None:
        self._add(gone)

    def on_nudge(self, nudge: Nudge) -> None:
        self._add(nudge)

    async def wait(self, count: int, timeout: float = 5) -> list[object]:
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            assert time.monotonic() < deadline, self.got
            self.new.clear()
            await asyncio.wait_for(self.new.wait(), deadline - time.monotonic())
        return self.got


@pytest.fixture
def redis_server(tmp_path: Path):
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server")
    server = RedisServer(tmp_path, free_port()).start()
    yield server
    server.stop()


async def test_nodes_hear_what_is_meant_for_them(redis_server):
    a = NodeBus(redis_server.url, "{t}:", "node-a", "wss://a:1/ws", lease_s=2)
    b = NodeBus(redis_server.url, "{t}:", "node-b", "wss://b:2/ws", lease_s=2)
    inbox_a, inbox_b = Inbox(), Inbox()
    a.start(inbox_a)
    b.start(inbox_b)
    try:
        await asyncio.sleep(0.3)  # both subscribed
        assert a.alive("node-b") and b.alive("node-a") and not a.alive("node-c")
        b.move(Move("call-1", "node-b", "wss://b:2/ws"))  # b asks: a hears it
        a.gone(Gone("call-1", "node-b", requeue=True))  # a answers b only
        a.nudge()  # the others decide again; the sender does not
        assert await inbox_a.wait(1) == [Move("call-1", "node-b", "wss://b:2/ws")]
        assert await inbox_b.wait(2) == [Gone("call-1", "node-b", True), Nudge("node-a")]
        await asyncio.sleep(0.3)
        assert len(inbox_a.got) == 1 and len(inbox_b.got) == 2

        # hand-offs: one taker, the request as it was
        request = Request("call-1", "general", "zh", frozenset({"elderly"}), enqueued_at=1.5e9,
                          node="node-a")
        a.hand_off("customer:c1", Handoff("call-1", "node-a", request=request), ttl_s=5)
        taken = await asyncio.to_thread(b.take_handoff, "customer:c1")
        assert taken == Handoff("call-1", "node-a", None, request)
        assert taken.request is not None and taken.request.pclass.value == "green"
        assert await asyncio.to_thread(a.take_handoff, "customer:c1") is None

        # homes: the other node's address while it holds the party
        a.set_home("customer:c1")
        assert await asyncio.to_thread(b.home_url, "customer:c1") == "wss://a:1/ws"
        assert await asyncio.to_thread(a.home_url, "customer:c1") is None  # ours
        b.clear_home("customer:c1")  # not b's to clear
        assert await asyncio.to_thread(b.home_url, "customer:c1") == "wss://a:1/ws"
        a.clear_home("customer:c1")
        assert await asyncio.to_thread(b.home_url, "customer:c1") is None
    finally:
        a.stop()
        await asyncio.to_thread(b.stop)
    assert not NodeBus(redis_server.url, "{t}:", "x", "wss://x:3/ws", 2).alive("node-a")


async def test_a_node_whose_lease_lapses_is_not_alive(redis_server):
    a = NodeBus(redis_server.url, "{t}:", "node-a", "wss://a:1/ws", lease_s=1)
    b = NodeBus(redis_server.url, "{t}:", "node-b", "wss://b:2/ws", lease_s=1)
    a.start(Inbox())
    a._stop.set()  # renewals stop, as when its process is killed (the key is not deleted)
    assert b.alive("node-a")
    await asyncio.sleep(1.3)
    assert not b.alive("node-a")


async def test_an_unreachable_redis_fails_fast_and_recovers(redis_server):
    bus = NodeBus(redis_server.url, "{t}:", "node-a", "wss://a:1/ws", lease_s=2)
    redis_server.pause()  # accepts connections, answers nothing
    try:
        t0 = time.monotonic()
        with pytest.raises(BusUnavailable):
            bus.move(Move("c", "node-a", "wss://a:1/ws"))
        first = time.monotonic() - t0
        t0 = time.monotonic()
        for _ in range(20):  # within the retry window: no socket wait at all
            with pytest.raises(BusUnavailable):
                bus.gone(Gone("c", "node-b", False))
        assert bus.alive("node-b")  # unknown: never taken for dead
        bus.nudge()  # best effort: no error
        assert first < 1.5 and time.monotonic() - t0 < 0.1
    finally:
        redis_server.resume()
    await asyncio.sleep(1.1)
    bus.move(Move("c", "node-a", "wss://a:1/ws"))  # reachable again


def test_a_node_starting_waits_for_a_slow_redis_and_not_for_an_absent_one(redis_server):
    """At start the routing store's check gives a Redis that accepts but does not answer
    (here stopped for 1.5 s: a long fsync, a busy machine) up to 5 s; a port where
    nothing listens is a clear error at once."""
    from vteller.routing import RoutingPolicy
    from vteller.routing.redis_store import RoutingUnavailable
    from vteller.routing.store import make_router

    redis_server.pause()
    threading.Timer(1.5, redis_server.resume).start()
    t0 = time.monotonic()
    router = make_router(RoutingPolicy(), redis_server.url, "{slow}:")
    waited = time.monotonic() - t0
    router.close()
    assert 1.4 < waited < 4.0, waited  # one 0.5 s timeout would have ended the start

    t0 = time.monotonic()
    with pytest.raises(RoutingUnavailable, match=r"unreachable \(ConnectionError\)"):
        make_router(RoutingPolicy(), f"redis://127.0.0.1:{free_port()}/0", "{absent}:")
    assert time.monotonic() - t0 < 1.0
