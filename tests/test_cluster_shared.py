"""Several active nodes on one queue (`VTELLER_SHARE_QUEUE`): real `vteller serve`
processes on one Redis and one PostgreSQL, HAProxy in front, real aiortc peers.

A node offers customers to its own tellers; a customer waiting on another node is
moved (`node.move`) to the node of the teller it is offered to, where the call is
hosted; a reconnect the load balancer sends to the wrong node is sent home; when a
node dies its waiting customers resume on a survivor with their place and wait."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import end_call, free_port, free_port_run, postgres_url
from tests.haproxy import start_haproxy
from tests.helpers import Party, SignalClient
from tests.redis_server import RedisServer
from tests.serve_process import ServeProcess, start_serve
from tests.test_cluster_failover import (
    _hello_through,
    _login,
    _need_parts,
    _token,
    _until_served_by,
    _wss,
    node_label,
)
from tests.test_store_contract import PG_BASE
from vteller.audit import LocalKeyring
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.auth import StaffAuth
from vteller.store import Store, open_store

pytestmark = pytest.mark.timeout(240)


@dataclass
class Nodes:
    a: ServeProcess
    b: ServeProcess
    lb: str  # the load balancer's address
    db_url: str
    sigs: list[SignalClient] = field(default_factory=list)

    async def open(self, url: str, hello: dict, cookies: dict[str, str] | None = None
                   ) -> tuple[SignalClient, dict]:
        sig = await SignalClient.open(_wss(url), cookies=cookies)
        self.sigs.append(sig)
        return sig, await sig.request(hello, "welcome")

    async def teller(self, url: str, username: str = "teller1") -> tuple[SignalClient, dict]:
        cookie = await _login(self.lb, username, self.a.passwords[username])
        sig, _ = await self.open(url, {"type": "hello"}, cookie)
        return sig, cookie


@contextlib.asynccontextmanager
async def _two_active_nodes(tmp_path: Path, **env: str) -> AsyncIterator[Nodes]:
    _need_parts(haproxy=True)
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis", free_port()).start()
    db_url = postgres_url(PG_BASE)
    base = {"VTELLER_DATABASE_URL": db_url, "VTELLER_REDIS_URL": redis.url,
            "VTELLER_NODE_LEASE_S": "2", "VTELLER_SHARE_QUEUE": "true", **env}
    nodes: list[ServeProcess] = []
    lb = None
    sigs: list[SignalClient] = []
    try:
        for _ in range(2):
            port = free_port()
            nodes.append(start_serve(tmp_path, "--dev", port=port, env={
                **base, "VTELLER_NODE_URL": f"wss://localhost:{port}/ws"}))
            nodes[-1].wait_warm()
        lb = start_haproxy(tmp_path, [int(n.url.rsplit(":", 1)[1]) for n in nodes])
        pair = Nodes(nodes[0], nodes[1], lb.url, db_url, sigs)
        await _until_served_by(lb.url, nodes[0].url)
        yield pair
    finally:
        for sig in sigs:
            await sig.close()
        if lb is not None:
            lb.stop()
        for node in nodes:
            if node.proc.poll() is None:
                node.stop()
        redis.stop()


def _trail(tmp_path: Path, db_url: str) -> tuple[AuditTrail, Store]:
    store = open_store(db_url, tmp_path / "unused.sqlite3")
    return AuditTrail(store, LocalKeyring(tmp_path / "secrets"),
                      load_or_create_signing_key(tmp_path / "secrets")), store


def _verify(tmp_path: Path, db_url: str, call_id: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "VTELLER_DATA_DIR": str(tmp_path / "var"),
           "VTELLER_KEK_DIR": str(tmp_path / "secrets"), "VTELLER_DATABASE_URL": db_url}
    done = subprocess.run([sys.executable, "-m", "vteller", "audit", "verify", call_id],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_a_customer_on_one_node_is_served_by_a_teller_on_the_other(tmp_path: Path):
    async with _two_active_nodes(tmp_path) as nodes:
        teller, _ = await nodes.teller(nodes.b.url)
        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        customer, welcome = await nodes.open(
            nodes.a.url, {"type": "hello", "token": await _token(nodes.lb)})
        joined_at = time.time()
        await customer.send({"type": "queue.join", "business_type": "general",
                             "language": "zh"})
        moved = await customer.recv("node.move", timeout=5)
        assert moved["url"] == f"wss://localhost:{nodes.b.url.rsplit(':', 1)[1]}/ws"
        await asyncio.wait_for(customer.closed.wait(), 5)  # the server closes it (1012)

        # the customer resumes on the teller's node; the teller is rung only now
        customer, back = await nodes.open(nodes.b.url,
                                          {"type": "hello", "resume": welcome["resume"]})
        assert back["resumed"] and back["display_name"] == "Wei Zhang"
        offer = await teller.recv("offer.incoming", timeout=5)
        assert offer["language"] == "zh"
        assert offer["customer"]["display_name"] == "Wei Zhang"
        moved_in = time.time() - joined_at
        print(f"queue.join on node A to offer.incoming on node B: {moved_in * 1000:.0f} ms")
        await teller.send({"type": "offer.accept", "call_id": offer["call_id"]})
        await customer.recv("call.started", timeout=5)

        # media flows through node B, both ways
        c_peer, t_peer = Party("customer", encoded=True), Party("teller", encoded=True)
        try:
            await asyncio.gather(c_peer.negotiate(customer), t_peer.negotiate(teller))
            await asyncio.gather(c_peer.wait_frames("video", 20), t_peer.wait_frames("video", 20),
                                 t_peer.wait_frames("audio", 20))
            await end_call(teller, customer)
        finally:
            await c_peer.close()
            await t_peer.close()

        trail, store = _trail(tmp_path, nodes.db_url)
        try:  # the call on node B continues the one the customer joined on node A
            events = trail.events(offer["call_id"])
            assert events[0]["kind"] == "queued"
            first = {"call_id": events[0]["continued_from"]}
            assert first["call_id"] != offer["call_id"]
            old = await store.get_call(first["call_id"])
            new = await store.get_call(offer["call_id"])
            # the customer's wait runs from its first join, on node A
            assert abs(float(new["queued_at"]) - float(old["queued_at"])) < 0.5
            assert float(old["queued_at"]) <= joined_at + 0.5
            (handed,) = [e for e in trail.events(first["call_id"])
                         if e["kind"] == "handed_over"]
            assert handed["reason"] == "moved"
            assert (old["outcome"], old["outcome_reason"]) == ("transferred", "moved")
        finally:
            store.close()
        assert "VERIFIED" in _verify(tmp_path, nodes.db_url, first["call_id"])
        assert "VERIFIED" in _verify(tmp_path, nodes.db_url, offer["call_id"])


async def test_exactly_one_node_offers_a_customer_both_could_serve(tmp_path: Path):
    """A teller on each node, both available; customers join on node A one after the
    other. Each customer is offered exactly once (both nodes decide on every join: A at
    once, B on the join's nudge; the store's atomic offer lets one win)."""
    async with _two_active_nodes(tmp_path) as nodes:
        store = open_store(nodes.db_url, tmp_path / "unused.sqlite3")
        store.add_user("teller2", "Teller Two", "teller",
                       StaffAuth.hash_password("pw-teller-2x"),
                       {"skills": {"general": 1.0}, "languages": ["en", "zh"]})
        store.close()
        nodes.a.passwords["teller2"] = "pw-teller-2x"
        t1, _ = await nodes.teller(nodes.a.url, "teller1")
        t2, _ = await nodes.teller(nodes.b.url, "teller2")
        for t in (t1, t2):
            await t.request({"type": "teller.status", "status": "available"},
                            "teller.state", state="available")
        customer, _ = await nodes.open(nodes.a.url,
                                       {"type": "hello", "token": await _token(nodes.lb)})
        await customer.send({"type": "queue.join", "business_type": "general",
                             "language": "zh"})
        got = await asyncio.wait(
            [asyncio.ensure_future(t.recv("offer.incoming", timeout=8)) for t in (t1, t2)],
            timeout=9)
        offers = [f.result() for f in got[0] if f.exception() is None]
        assert len(offers) == 1, offers


async def test_a_supervisor_assigns_a_customer_waiting_on_another_node(tmp_path: Path):
    """A French-speaking customer nobody lists: the supervisor on node B gives it to B's
    teller anyway; the customer moves to B and the assignment is in the new session."""
    async with _two_active_nodes(tmp_path) as nodes:
        teller, _ = await nodes.teller(nodes.b.url)
        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        cookie = await _login(nodes.lb, "supervisor1", nodes.a.passwords["supervisor1"])
        supervisor, _ = await nodes.open(nodes.b.url, {"type": "hello"}, cookie)
        customer, welcome = await nodes.open(
            nodes.a.url, {"type": "hello", "token": await _token(nodes.lb)})
        first = await customer.request({"type": "queue.join", "business_type": "general",
                                        "language": "fr"}, "queue.status", state="queued")
        deadline = time.monotonic() + 5
        while True:  # a board published before node B saw the join lists nobody yet
            board = await supervisor.recv("dashboard", timeout=5)
            waiting = [w["call_id"] for w in board["waiting"]]
            if waiting or time.monotonic() > deadline:
                break
        assert waiting == [first["call_id"]]
        await supervisor.send({"type": "supervisor.assign", "call_id": first["call_id"],
                               "username": "teller1"})
        moved = await customer.recv("node.move", timeout=5)
        customer, _ = await nodes.open(nodes.b.url,
                                       {"type": "hello", "resume": welcome["resume"]})
        assert moved["url"].endswith(f":{nodes.b.url.rsplit(':', 1)[1]}/ws")
        offer = await teller.recv("offer.incoming", timeout=5)
        assert offer["language"] == "fr"
        trail, store = _trail(tmp_path, nodes.db_url)
        try:
            deadline = time.monotonic() + 5
            while True:  # node B's journal writes the session (key, events) just after
                try:
                    kinds = {e["kind"]: e for e in trail.events(offer["call_id"])}
                except LookupError:  # its key is not stored yet
                    kinds = {}
                if "supervisor.assigned" in kinds or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert kinds["supervisor.assigned"]["supervisor"] == "supervisor1"
            assert kinds["queued"]["continued_from"] == first["call_id"]
        finally:
            store.close()


async def test_a_reconnect_sent_to_the_wrong_node_is_sent_home(tmp_path: Path):
    async with _two_active_nodes(tmp_path) as nodes:
        customer, welcome = await nodes.open(
            nodes.a.url, {"type": "hello", "token": await _token(nodes.lb)})
        first = await customer.request({"type": "queue.join", "business_type": "general",
                                        "language": "zh"}, "queue.status", state="queued")
        await customer.close()
        wrong = await SignalClient.open(_wss(nodes.b.url))
        nodes.sigs.append(wrong)
        await wrong.send({"type": "hello", "resume": welcome["resume"]})
        home = await wrong.recv("node.move", timeout=5)
        assert home["url"].endswith(f":{nodes.a.url.rsplit(':', 1)[1]}/ws")
        await asyncio.wait_for(wrong.closed.wait(), 5)
        customer, back = await nodes.open(nodes.a.url,
                                          {"type": "hello", "resume": welcome["resume"]})
        assert back["resumed"] and back["state"]["call"]["call_id"] == first["call_id"]

        # a teller's console the same way: its cookie names it, node A holds it
        teller, cookie = await nodes.teller(nodes.a.url)
        await teller.request({"type": "teller.status", "status": "break", "reason": "x"},
                             "teller.state", state="break")
        await teller.close()
        wrong = await SignalClient.open(_wss(nodes.b.url), cookies=cookie)
        nodes.sigs.append(wrong)
        await wrong.send({"type": "hello"})
        assert (await wrong.recv("node.move", timeout=5))["url"] == home["url"]


def _more_tellers(nodes: Nodes, tmp_path: Path, *names: str) -> None:
    store = open_store(nodes.db_url, tmp_path / "unused.sqlite3")
    for name in names:
        store.add_user(name, name.title(), "teller", StaffAuth.hash_password(f"pw-{name}-x"),
                       {"skills": {"general": 1.0}, "languages": ["en", "zh"],
                        "certifications": ["elderly_care"]})
        nodes.a.passwords[name] = f"pw-{name}-x"
    store.close()


async def _call_on(nodes: Nodes, url: str, teller_name: str, customer_name: str
                   ) -> tuple[SignalClient, dict[str, str], SignalClient, dict, str]:
    """A call hosted on the node at `url`: (teller, its cookie, customer, its welcome,
    call id)."""
    teller, cookie = await nodes.teller(url, teller_name)
    await teller.request({"type": "teller.status", "status": "available"},
                         "teller.state", state="available")
    customer, welcome = await nodes.open(
        url, {"type": "hello", "token": await _token(nodes.lb, customer_name)})
    await customer.send({"type": "queue.join", "business_type": "general", "language": "zh"})
    offer = await teller.recv("offer.incoming", timeout=10)
    await teller.send({"type": "offer.accept", "call_id": offer["call_id"]})
    await customer.recv("call.started", timeout=10)
    return teller, cookie, customer, welcome, offer["call_id"]


async def test_kill_9_a_node_its_waiting_customer_resumes_on_the_survivor(tmp_path: Path):
    """Node A dies with a customer waiting and a call in progress on it, while node B
    carries a call of its own: the waiting customer resumes on B with its place and
    wait; the customer of A's call is told and queued again, its teller finds itself in
    wrap-up; B's call goes on, media and all."""
    async with _two_active_nodes(tmp_path) as nodes:
        _more_tellers(nodes, tmp_path, "teller2", "teller3")
        teller, cookie = await nodes.teller(nodes.b.url)
        await teller.request({"type": "teller.status", "status": "break", "reason": "x"},
                             "teller.state", state="break")
        teller2, cookie2, in_call, welcome2, dead_call = await _call_on(
            nodes, nodes.a.url, "teller2", "Li Na")
        teller3, _, survivor, _, _ = await _call_on(nodes, nodes.b.url, "teller3", "Wang Fang")
        c_peer, t_peer = Party("customer", encoded=True), Party("teller", encoded=True)
        await asyncio.gather(c_peer.negotiate(survivor), t_peer.negotiate(teller3))
        await asyncio.gather(c_peer.wait_frames("video", 10), t_peer.wait_frames("video", 10))
        customer, welcome = await nodes.open(
            nodes.a.url, {"type": "hello", "token": await _token(nodes.lb)})
        first = await customer.request({"type": "queue.join", "business_type": "general",
                                        "language": "zh"}, "queue.status", state="queued")
        await asyncio.sleep(2.0)  # the waiting customer has waited 2 s
        os.kill(nodes.a.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        nodes.a.proc.wait(10)
        await asyncio.wait_for(customer.closed.wait(), 5)
        await _until_served_by(nodes.lb, nodes.b.url)
        frames = (c_peer.received["video"], t_peer.received["video"])

        # the customer's client retries through the load balancer until it is queued
        while True:
            customer, back = await _hello_through(nodes.lb, {"type": "hello",
                                                            "resume": welcome["resume"]})
            nodes.sigs.append(customer)
            got = await customer.recv_any(("queue.status", {"state": "queued"}),
                                          ("node.move", {}), timeout=5)
            if got["type"] == "queue.status":
                break
            welcome = {"resume": back["resume"]}
            await asyncio.sleep(0.5)  # sent to the dead node: its lease still runs
        requeued = time.monotonic() - killed
        print(f"kill -9 to 'queued again on the survivor': {requeued:.1f} s (lease 2 s)")
        assert requeued < 10
        assert got["call_id"] != first["call_id"] and got["position"] == 1

        # the call that was on node A: its customer is told and queued again at its
        # place, ahead of the first (it joined earlier); its teller finds itself in
        # wrap-up
        in_call, _ = await _hello_through(nodes.lb, {"type": "hello",
                                                    "resume": welcome2["resume"]})
        nodes.sigs.append(in_call)
        ended = await in_call.recv("call.ended", timeout=5)
        assert ended == {"type": "call.ended", "call_id": dead_call, "reason": "node_stopped"}
        again = await in_call.recv("queue.status", state="queued")
        print(f"kill -9 to 'told its call ended': {time.monotonic() - killed:.1f} s")
        assert again["position"] == 1
        await customer.recv("queue.status", state="queued", position=2)  # behind it now
        teller2, hello2 = await _hello_through(nodes.lb, {"type": "hello"}, cookie2)
        nodes.sigs.append(teller2)
        assert hello2["state"]["teller_state"] == "wrap_up"

        # node B's own call never noticed
        await asyncio.gather(c_peer.wait_frames("video", frames[0] + 60),
                             t_peer.wait_frames("video", frames[1] + 60))
        assert not any(m["type"] == "call.ended" for m in survivor.inbox + teller3.inbox)
        await c_peer.close()
        await t_peer.close()
        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        offer = await teller.recv("offer.incoming", timeout=10)
        assert offer["call_id"] == again["call_id"]  # the head of the line
        trail, store = _trail(tmp_path, nodes.db_url)
        try:
            events = trail.events(got["call_id"])
            assert events[0]["continued_from"] == first["call_id"]
            deadline = time.monotonic() + 10
            while first["call_id"] not in store.closed_session_ids():
                assert time.monotonic() < deadline, "the dead node's session was not sealed"
                await asyncio.sleep(0.2)
        finally:
            store.close()
        assert "sealed as incomplete" in _verify(tmp_path, nodes.db_url, first["call_id"])


async def test_sigterm_hands_a_waiting_customer_to_the_other_active_node(tmp_path: Path):
    """A draining node leaves its waiting customer's request with a hand-off record; the
    customer reconnects through the balancer (the draining node fails its readiness
    check) and is queued on the other node at its original place."""
    async with _two_active_nodes(tmp_path, VTELLER_DRAIN_S="30") as nodes:
        teller, _ = await nodes.teller(nodes.b.url)
        await teller.request({"type": "teller.status", "status": "break", "reason": "x"},
                             "teller.state", state="break")
        customer, welcome = await nodes.open(
            nodes.a.url, {"type": "hello", "token": await _token(nodes.lb)})
        first = await customer.request({"type": "queue.join", "business_type": "general",
                                        "language": "zh"}, "queue.status", state="queued")
        await asyncio.sleep(1.0)
        nodes.a.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(customer.closed.wait(), 10)
        customer, back = await _hello_through(nodes.lb, {"type": "hello",
                                                        "resume": welcome["resume"]})
        nodes.sigs.append(customer)
        assert back["resumed"]
        again = await customer.recv("queue.status", state="queued", timeout=5)
        assert again["call_id"] != first["call_id"] and again["position"] == 1
        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        offer = await teller.recv("offer.incoming", timeout=10)
        assert offer["call_id"] == again["call_id"]
        assert nodes.a.proc.wait(20) == 0  # nothing in progress: it exits
        trail, store = _trail(tmp_path, nodes.db_url)
        try:
            new = await store.get_call(again["call_id"])
            old = await store.get_call(first["call_id"])
            assert abs(float(new["queued_at"]) - float(old["queued_at"])) < 0.5
            assert trail.events(again["call_id"])[0]["continued_from"] == first["call_id"]
        finally:
            store.close()


async def test_serve_workers_share_one_port_and_one_queue(tmp_path: Path):
    """`vteller serve --workers 2`: two node processes behind one port (SO_REUSEPORT),
    each with its own port; a call between a teller on one and a customer on the other;
    a worker killed with -9 is started again; SIGTERM stops them all."""
    _need_parts(haproxy=False)
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis", free_port()).start()
    port = free_port_run(3)  # the shared port and the two workers' own
    serve = start_serve(tmp_path, "--dev", "--workers", "2", port=port, timeout=120, env={
        "VTELLER_DATABASE_URL": postgres_url(PG_BASE), "VTELLER_REDIS_URL": redis.url,
        "VTELLER_NODE_LEASE_S": "2"})
    sigs: list[SignalClient] = []
    try:
        assert "2 workers share" in "".join(serve.stdout)
        one, two = f"https://localhost:{port + 1}", f"https://localhost:{port + 2}"
        labels = {await node_label(one), await node_label(two)}
        assert None not in labels and len(labels) == 2  # two nodes
        seen = {await node_label(serve.url) for _ in range(12)}
        assert seen <= labels and seen  # the shared port reaches the workers

        cookie = await _login(serve.url, "teller1", serve.passwords["teller1"])
        teller = await SignalClient.open(_wss(one), cookies=cookie)
        sigs.append(teller)
        await teller.request({"type": "hello"}, "welcome")
        await teller.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
        customer = await SignalClient.open(_wss(two))
        sigs.append(customer)
        welcome = await customer.request({"type": "hello", "token": await _token(serve.url)},
                                         "welcome")
        await customer.send({"type": "queue.join", "business_type": "general",
                             "language": "zh"})
        moved = await customer.recv("node.move", timeout=5)
        assert moved["url"] == f"wss://localhost:{port + 1}/ws"
        customer = await SignalClient.open(moved["url"])
        sigs.append(customer)
        await customer.request({"type": "hello", "resume": welcome["resume"]}, "welcome")
        offer = await teller.recv("offer.incoming", timeout=5)
        await teller.send({"type": "offer.accept", "call_id": offer["call_id"]})
        await customer.recv("call.started", timeout=5)
        await end_call(teller, customer)

        victim = await node_label(two)
        assert victim is not None
        os.kill(int(victim.split(":")[1]), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (label := await node_label(two)) in (None, victim):
            assert time.monotonic() < deadline, "the killed worker was not started again"
            await asyncio.sleep(0.5)
        print(f"worker 2 started again as {label}")
    finally:
        for sig in sigs:
            await sig.close()
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(60) == 0
        redis.stop()


def test_serve_workers_says_which_worker_could_not_start(tmp_path: Path):
    """A worker whose own port is taken: `serve --workers` names it and exits 1 rather
    than leaving the other workers up without it."""
    _need_parts(haproxy=False)
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis", free_port()).start()
    port = free_port_run(3)
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(("0.0.0.0", port + 2))
    taken.listen()
    try:
        with pytest.raises(RuntimeError) as failed:
            start_serve(tmp_path, "--dev", "--workers", "2", port=port, timeout=120, env={
                "VTELLER_DATABASE_URL": postgres_url(PG_BASE), "VTELLER_REDIS_URL": redis.url})
        text = str(failed.value)
        assert "exited with 1" in text
        assert f"worker 2 (port {port + 2}) exited with" in text
    finally:
        taken.close()
        redis.stop()
