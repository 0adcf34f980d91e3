"""kill -9 the active node: a standby on the same Redis prefix and PostgreSQL takes
over the queue. Real `vteller serve` processes, a real Redis and PostgreSQL, and a real
HAProxy in front: clients only ever know the load balancer's address.

The waiting customer resumes on the standby with its resume secret and keeps its
place and its waited time; the teller logs back in with its cookie and keeps its
state; the dead node's open session is sealed incomplete by the survivor and
verifies, and the new session says which one it continues."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port, postgres_url
from tests.haproxy import haproxy_binary, start_haproxy
from tests.helpers import SignalClient, insecure_ssl
from tests.redis_server import RedisServer
from tests.serve_process import ServeProcess, start_serve
from tests.test_store_contract import PG_BASE, _need_postgres
from vteller.audit import LocalKeyring
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.auth import StaffAuth
from vteller.routing import RoutingPolicy
from vteller.routing.redis_store import RedisRouter
from vteller.store import Store, open_store


async def _login(url: str, username: str, password: str) -> dict[str, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        r = await s.post(f"{url}/api/login", json={"username": username, "password": password})
        r.raise_for_status()
        return {"__Host-vteller_session": r.cookies["__Host-vteller_session"].value}


async def _token(url: str, name: str = "Wei Zhang") -> str:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        r = await s.post(f"{url}/api/dev/customer-token", json={"name": name,
                                                                "birth_year": 1950})
        return (await r.json())["token"]


def _need_parts(haproxy: bool) -> None:
    """PostgreSQL, redis-server and (for the load-balanced tests) HAProxy, or a skip
    with the reason (a failure where CI says they must be there)."""
    _need_postgres()
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server")
    if haproxy and haproxy_binary() is None:
        if os.environ.get("VTELLER_REQUIRE_HAPROXY"):
            pytest.fail("HAProxy is required here (apt-get install haproxy)")
        pytest.skip("no haproxy (apt-get install haproxy)")


def _wss(url: str) -> str:
    return url.replace("https", "wss") + "/ws"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def node_label(url: str) -> str | None:
    """The node answering at `url` (the label its /metrics carries), or None."""
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                ssl=insecure_ssl(), force_close=True)) as s:
            text = await (await s.get(f"{url}/metrics")).text()
    except aiohttp.ClientError:
        return None
    found = re.search(r'node="([^"]+)"', text)
    return found.group(1) if found else None


async def _until_served_by(lb_url: str, node_url: str, timeout: float = 15) -> None:
    """Until requests through the load balancer reach this node (its /metrics names
    the node; we compare with the node's own answer)."""
    want = await node_label(node_url)
    assert want is not None
    deadline = time.monotonic() + timeout
    while await node_label(lb_url) != want:
        assert time.monotonic() < deadline, "the load balancer never sent us to that node"
        await asyncio.sleep(0.1)


@dataclass
class Pair:
    """An active node and its standby on one Redis and one PostgreSQL, HAProxy in front."""

    active: ServeProcess
    standby: ServeProcess
    url: str  # the load balancer's: all clients use it
    db_url: str
    sigs: list[SignalClient] = field(default_factory=list)  # closed at the end


@contextlib.asynccontextmanager
async def _standby_pair(tmp_path: Path, **env: str) -> AsyncIterator[Pair]:
    _need_parts(haproxy=True)
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    db_url = postgres_url(PG_BASE)
    with contextlib.ExitStack() as started:  # whatever started is stopped, in reverse
        redis = RedisServer(redis_dir, free_port()).start()
        started.callback(redis.stop)
        env = {"VTELLER_DATABASE_URL": db_url, "VTELLER_REDIS_URL": redis.url,
               "VTELLER_NODE_LEASE_S": "2", **env}
        active = start_serve(tmp_path, "--dev", env=env)
        started.callback(_stop_if_running, active)
        active.wait_warm()  # before its 2 s lease must hold against a standby
        standby = start_serve(tmp_path, "--dev", env={**env, "VTELLER_STANDBY": "true"},
                              until="standby:")
        started.callback(_stop_if_running, standby)
        lb = start_haproxy(tmp_path, [_port(active.url)], backups=[_port(standby.url)])
        started.callback(lb.stop)
        pair = Pair(active, standby, lb.url, db_url)
        try:
            await _until_served_by(lb.url, active.url)
            yield pair
        finally:
            for s in pair.sigs:
                await s.close()


def _stop_if_running(node: ServeProcess) -> None:
    if node.proc.poll() is None:
        node.stop()


async def _call_in_progress(pair: Pair, store: Store) -> tuple[SignalClient, dict[str, str],
                                                                SignalClient, dict, dict]:
    """teller2 in a call with customer "B" (Chinese-speaking): (teller2, its cookie, the
    customer's client, the customer's welcome, the offer)."""
    store.add_user("teller2", "Teller Two", "teller", StaffAuth.hash_password("pw-teller-2x"),
                   {"skills": {"general": 1.0}, "languages": ["en", "zh"]})
    cookie2 = await _login(pair.url, "teller2", "pw-teller-2x")
    teller2, _ = await _hello_through(pair.url, {"type": "hello"}, cookie2)
    pair.sigs.append(teller2)
    await teller2.request({"type": "teller.status", "status": "available"},
                          "teller.state", state="available")
    in_call, welcome_b = await _hello_through(
        pair.url, {"type": "hello", "token": await _token(pair.url, "B")})
    pair.sigs.append(in_call)
    await in_call.send({"type": "queue.join", "business_type": "general", "language": "zh"})
    offer_b = await teller2.recv("offer.incoming")
    await teller2.send({"type": "offer.accept", "call_id": offer_b["call_id"]})
    await in_call.recv("call.started")
    return teller2, cookie2, in_call, welcome_b, offer_b


@pytest.mark.timeout(240)
async def test_kill_9_active_node_standby_keeps_the_queue(tmp_path: Path):
    async with _standby_pair(tmp_path, VTELLER_RECONNECT_GRACE_S="30") as pair:
        ids = await _kill_9_scenario(pair, tmp_path)
    _check_sessions(tmp_path, pair.db_url, *ids)


async def _kill_9_scenario(pair: Pair, tmp_path: Path) -> tuple[str, str, str]:
    active, standby, url, db_url, sigs = (pair.active, pair.standby, pair.url, pair.db_url,
                                          pair.sigs)
    store = open_store(db_url, tmp_path / "unused.sqlite3")
    try:
        # on the active node: a call in progress (teller2 with customer "B"), a teller
        # on break, an elderly customer waiting
        teller2, cookie2, in_call, welcome_b, offer_b = await _call_in_progress(pair, store)

        cookie = await _login(url, "teller1", active.passwords["teller1"])
        teller = await SignalClient.open(_wss(url), cookies=cookie)
        sigs.append(teller)
        await teller.request({"type": "hello"}, "welcome")
        await teller.request({"type": "teller.status", "status": "break", "reason": "lunch"},
                             "teller.state", state="break")
        customer = await SignalClient.open(_wss(url))
        sigs.append(customer)
        welcome = await customer.request({"type": "hello", "token": await _token(url)},
                                         "welcome")
        assert welcome_b["resume"] != welcome["resume"]
        first = await customer.request({"type": "queue.join", "business_type": "general",
                                         "language": "zh"}, "queue.status", state="queued")
        watcher = await SignalClient.open(
            _wss(url), cookies=await _login(url, "supervisor1", active.passwords["supervisor1"]))
        sigs.append(watcher)
        await watcher.request({"type": "hello"}, "welcome")
        await asyncio.sleep(3.0)  # it has waited 3 s
        assert store.session_exists(first["call_id"])
        board = await watcher.recv("dashboard", timeout=5)
        roles = {n["node"].split(":")[1]: n["role"] for n in board["nodes"]}
        assert roles == {str(active.proc.pid): "active", str(standby.proc.pid): "standby"}
        assert [n["in_call"] for n in board["nodes"] if n["role"] == "active"] == [1]

        os.kill(active.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        active.proc.wait(10)
        for s in sigs:
            await s.closed.wait()
        # the standby starts listening when the active node's lease has run out
        out = []
        while True:
            line = await asyncio.to_thread(standby.proc.stdout.readline)  # type: ignore[union-attr]
            assert line, "".join(out)
            out.append(line)
            if "Ctrl-C stops" in line:
                break
        took_over = time.monotonic() - killed
        print(f"standby serving {took_over:.1f} s after kill -9 (lease 2 s)")
        await _until_served_by(url, standby.url)
        through_lb = time.monotonic() - killed
        print(f"the load balancer sends clients to it {through_lb:.1f} s after kill -9")
        assert took_over < 10 and through_lb < 12

        # the customer resumes on the survivor: same place, same waited time
        customer = await SignalClient.open(_wss(url))
        sigs.append(customer)
        back = await customer.request({"type": "hello", "resume": welcome["resume"]}, "welcome")
        assert back["resumed"] and back["display_name"] == "Wei Zhang"
        again = await customer.recv("queue.status", state="queued")
        assert again["call_id"] != first["call_id"] and again["position"] == 1
        assert again["green_channel"]  # its class came along (born 1950)

        # the customer whose call died with the node: told, and queued again at its
        # original place (it joined first: ahead of the waiting one)
        in_call = await SignalClient.open(_wss(url))
        sigs.append(in_call)
        await in_call.request({"type": "hello", "resume": welcome_b["resume"]}, "welcome")
        ended = await in_call.recv("call.ended", timeout=5)
        assert ended == {"type": "call.ended", "call_id": offer_b["call_id"],
                         "reason": "node_stopped"}
        requeued = await in_call.recv("queue.status", state="queued")
        assert requeued["call_id"] != offer_b["call_id"] and requeued["position"] == 1
        teller2 = await SignalClient.open(_wss(url), cookies=cookie2)
        sigs.append(teller2)
        hello2 = await teller2.request({"type": "hello"}, "welcome")
        assert hello2["state"]["teller_state"] == "wrap_up"  # busy in a call that is gone
        await teller2.request({"type": "teller.status", "status": "break", "reason": "x"},
                              "teller.state", state="break")
        await customer.recv("queue.status", state="queued", position=2)  # behind it now
        assert hello2["state"].get("call") is None

        supervisor = await SignalClient.open(
            _wss(url), cookies=await _login(url, "supervisor1", active.passwords["supervisor1"]))
        sigs.append(supervisor)
        await supervisor.request({"type": "hello"}, "welcome")
        board = await supervisor.recv("dashboard", timeout=5)
        (row,) = [w for w in board["waiting"] if w["call_id"] == again["call_id"]]
        assert row["waited_s"] >= 3.0 + took_over - 1.0, row  # the wait before the crash counts

        # the teller logs back in (cookie) and is still on break; then takes the call
        teller = await SignalClient.open(_wss(url), cookies=cookie)
        sigs.append(teller)
        hello = await teller.request({"type": "hello"}, "welcome")
        assert hello["state"]["teller_state"] == "break"
        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        offer = await teller.recv("offer.incoming", timeout=10)
        assert offer["call_id"] == requeued["call_id"] and offer["language"] == "zh"
        await teller.send({"type": "offer.reject", "call_id": offer["call_id"]})
        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        offer = await teller.recv("offer.incoming", timeout=10)
        assert offer["call_id"] == again["call_id"] and offer["language"] == "zh"
        await teller.send({"type": "offer.accept", "call_id": offer["call_id"]})
        await customer.recv("call.started", timeout=10)

        # the dead node's session: sealed by the survivor
        deadline = time.monotonic() + 10
        while first["call_id"] not in store.closed_session_ids():
            assert time.monotonic() < deadline, "the dead node's session was not sealed"
            await asyncio.sleep(0.2)
        await teller.send({"type": "call.hangup"})
        await customer.recv("call.ended", timeout=10)
    finally:
        store.close()
    return first["call_id"], offer_b["call_id"], again["call_id"]


def _check_sessions(tmp_path: Path, db_url: str, first: str, dead_call: str,
                    again: str) -> None:
    """After the nodes stopped: both dead sessions verify as sealed incomplete, the
    continued one verifies and names the call it continues."""
    env = {"PATH": "/usr/bin:/bin", "VTELLER_DATA_DIR": str(tmp_path / "var"),
           "VTELLER_KEK_DIR": str(tmp_path / "secrets"), "VTELLER_DATABASE_URL": db_url}
    for call_id, expect in ((first, "sealed as incomplete"), (dead_call, "sealed as incomplete"),
                            (again, "VERIFIED")):
        verified = subprocess.run([sys.executable, "-m", "vteller", "audit", "verify", call_id],
                                  capture_output=True, text=True, timeout=60, cwd=tmp_path,
                                  env=env)
        assert verified.returncode == 0 and expect in verified.stdout, verified.stdout
    store = open_store(db_url, tmp_path / "unused.sqlite3")
    trail = AuditTrail(store, LocalKeyring(tmp_path / "secrets"),
                       load_or_create_signing_key(tmp_path / "secrets"))
    events = trail.events(again)
    assert events[0]["kind"] == "queued" and events[0]["continued_from"] == first
    assert trail.events(first)[-1]["kind"] == "session.sealed_incomplete"
    store.close()


async def _hello_through(url: str, hello: dict, cookies: dict[str, str] | None = None,
                         timeout: float = 15) -> tuple[SignalClient, dict]:
    """Connect through the load balancer until a node answers the hello with a welcome
    (a draining node answers service_unavailable and closes; with several active nodes,
    one that knows the party's node still holds it answers `node.move`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sig = await SignalClient.open(_wss(url), cookies=cookies)
            await sig.send(hello)
            got = await sig.recv_any(("welcome", {}), ("error", {}), ("node.move", {}),
                                     timeout=5)
            if got["type"] == "welcome":
                return sig, got
            await sig.close()
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "no node welcomed us"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_sigterm_drains_the_active_node_into_the_standby(tmp_path: Path):
    """SIGTERM: the active node takes no new calls and hands the queue to the standby
    (the waiting customer and the idle teller reconnect through HAProxy and keep their
    place and state), while the call in progress finishes where it is; then it exits."""
    async with _standby_pair(tmp_path, VTELLER_DRAIN_S="60") as pair:
        active, url, sigs = pair.active, pair.url, pair.sigs
        store = open_store(pair.db_url, tmp_path / "unused.sqlite3")
        teller2, _, in_call, welcome_b, offer_b = await _call_in_progress(pair, store)

        cookie = await _login(url, "teller1", active.passwords["teller1"])
        teller, _ = await _hello_through(url, {"type": "hello"}, cookie)
        sigs.append(teller)
        await teller.request({"type": "teller.status", "status": "break", "reason": "lunch"},
                             "teller.state", state="break")
        waiting, welcome = await _hello_through(url, {"type": "hello", "token": await _token(url)})
        sigs.append(waiting)
        first = await waiting.request({"type": "queue.join", "business_type": "general",
                                       "language": "zh"}, "queue.status", state="queued")
        await asyncio.sleep(2.0)

        active.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        await asyncio.wait_for(waiting.closed.wait(), 10)  # asked to reconnect
        await asyncio.wait_for(teller.closed.wait(), 10)
        waiting, back = await _hello_through(url, {"type": "hello", "resume": welcome["resume"]})
        sigs.append(waiting)
        moved = time.monotonic() - t0
        print(f"SIGTERM: the waiting customer was welcomed by the standby {moved:.1f} s after")
        assert back["resumed"]
        again = await waiting.recv("queue.status", state="queued")
        assert again["call_id"] != first["call_id"] and again["position"] == 1
        teller, hello = await _hello_through(url, {"type": "hello"}, cookie)
        sigs.append(teller)
        assert hello["state"]["teller_state"] == "break"

        # the call in progress went on where it was
        assert active.proc.poll() is None and not in_call.closed.is_set()
        # its customer's connection drops; reconnecting lands on the new node, which
        # must not end a call the draining node still carries
        await in_call.close()
        in_call, again_b = await _hello_through(url, {"type": "hello",
                                                      "resume": welcome_b["resume"]})
        sigs.append(in_call)
        assert again_b["resumed"] and again_b["state"].get("call") is None
        await asyncio.sleep(1.0)
        assert not [m for m in in_call.inbox if m["type"] in ("call.ended", "queue.status")]
        # hanging up lets the old node go
        await teller2.send({"type": "call.hangup"})
        await teller2.recv("call.ended")
        assert await asyncio.to_thread(active.proc.wait, 20) == 0
        print(f"the drained node exited {time.monotonic() - t0:.1f} s after SIGTERM")

        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        offer = await teller.recv("offer.incoming", timeout=10)
        assert offer["call_id"] == again["call_id"]
    trail = AuditTrail(store, LocalKeyring(tmp_path / "secrets"),
                       load_or_create_signing_key(tmp_path / "secrets"))
    assert trail.events(first["call_id"])[-1]["kind"] == "handed_over"
    assert first["call_id"] in store.closed_session_ids()
    assert "incomplete" not in store.call_flags(first["call_id"])  # closed, not sealed
    assert trail.events(again["call_id"])[0]["continued_from"] == first["call_id"]
    store.close()


@pytest.mark.timeout(120)
async def test_a_node_that_lost_its_prefix_drains_instead_of_fighting(tmp_path: Path):
    """Redis was out of its reach past the lease and a standby took the prefix: when
    the old node sees another holder it must not go on as a second active node (it
    would drop the other's requests as stale); it hands its waiting customers over,
    leaves their requests in the queue, and exits."""
    _need_parts(haproxy=False)
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis = RedisServer(redis_dir, free_port()).start()
    node = start_serve(tmp_path, "--dev", env={
        "VTELLER_DATABASE_URL": postgres_url(PG_BASE), "VTELLER_REDIS_URL": redis.url,
        "VTELLER_NODE_LEASE_S": "2", "VTELLER_DRAIN_S": "30"})
    try:
        customer, _ = await _hello_through(node.url, {"type": "hello",
                                                      "token": await _token(node.url)})
        status = await customer.request({"type": "queue.join"}, "queue.status", state="queued")
        client = redis.client()
        client.set("{vteller}:node", "standby-that-took-over", px=60_000)
        await asyncio.wait_for(customer.closed.wait(), 5)  # asked to reconnect elsewhere
        assert await asyncio.to_thread(node.proc.wait, 15) == 0
        queue = RedisRouter.from_url(RoutingPolicy(), redis.url, "{vteller}:")
        assert [r.call_id for r in queue.waiting()] == [status["call_id"]]  # left for it
        queue.close()
        await customer.close()
    finally:
        if node.proc.poll() is None:
            node.stop()
        redis.stop()
