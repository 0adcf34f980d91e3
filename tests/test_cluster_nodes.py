"""Nodes sharing one database: leases by the database's clock, and sealing. A node
never seals a live neighbour's open session; a survivor seals a dead node's sessions
(process gone on this host: at once; lease expired: after it), they verify, and the
dead node's late writes are refused (its chain position is taken)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import postgres_url
from tests.helpers import SignalClient
from tests.serve_process import ServeProcess, start_serve
from tests.test_store_contract import PG_BASE, _need_postgres, engine, store  # noqa: F401
from vteller.audit import LocalKeyring, new_data_key
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.audit.verify import verify_session
from vteller.cluster import NodeId, SessionSweeper
from vteller.store import FileBlobStore, IntegrityError, Store, open_store

HERE = socket.gethostname()


def test_leases_are_judged_by_the_database_clock(store: Store):  # noqa: F811
    store.register_node("a", HERE, 1, 60)
    with pytest.raises(IntegrityError):
        store.register_node("a", HERE, 1, 60)
    store.register_node("b", "elsewhere", 2, 0.05)
    assert store.renew_node("a", 60, {"in_call": 3})
    rows = {r.node_id: r for r in store.nodes()}
    assert rows["a"].load == {"in_call": 3} and not rows["a"].expired
    assert not store.evict_node("a", only_if_expired=True)  # its lease runs
    time.sleep(0.2)
    assert {r.node_id: r.expired for r in store.nodes()} == {"a": False, "b": True}
    assert store.evict_node("b", only_if_expired=True)
    assert not store.evict_node("b", only_if_expired=True)  # one survivor decides
    assert not store.renew_node("b", 60, {})  # the evicted node learns it is out
    store.forget_node("b")
    assert [r.node_id for r in store.nodes()] == ["a"]
    store.forget_node("a")  # only evicted nodes are forgotten
    assert [r.node_id for r in store.nodes()] == ["a"]
    store.leave_node("a")
    assert store.nodes() == []


def _trails(db: Store, tmp: Path, *owners: NodeId) -> list[AuditTrail]:
    kek, signer = LocalKeyring(tmp / "secrets"), load_or_create_signing_key(tmp / "secrets")
    return [AuditTrail(db, kek, signer, owner=str(o)) for o in owners]


def _open(trail: AuditTrail, session_id: str, events: int) -> None:
    key = new_data_key()
    trail.open_session(session_id, key, trail._kek.wrap(key, session_id))
    for i in range(events):
        trail.append(session_id, "customer", "queued" if i == 0 else "note", {"i": i})


def test_a_live_neighbours_session_stays_open_a_dead_ones_is_sealed(store: Store,  # noqa: F811
                                                                    tmp_path: Path):
    a, b = NodeId(HERE, os.getpid(), "a"), NodeId(HERE, os.getpid(), "b")
    store.register_node(str(a), a.host, a.pid, 0.5)
    store.register_node(str(b), b.host, b.pid, 60)
    trail_a, trail_b = _trails(store, tmp_path, a, b)
    blobs = FileBlobStore(tmp_path / "rec")
    _open(trail_a, "s-a", 3)
    _open(trail_b, "s-b", 1)
    assert store.session_owner("s-a") == str(a)

    sweeper = SessionSweeper(store, trail_b, blobs, b, interval_s=0.25)
    assert sweeper.at_start() == []  # b (re)starting leaves a's open session alone
    assert trail_a.append("s-a", "teller", "note", {"i": 3}) == 4
    time.sleep(0.7)  # a stalls past its lease (same host, its process still runs)
    assert sweeper.sweep() == ["s-a"]
    assert store.session_owner("s-a") is None and [r.node_id for r in store.nodes()] == [str(b)]
    report = verify_session(store, "s-a", trail_b.public_key, trail_b._kek, blobs)
    assert report.ok, report.problems
    kinds = [e["kind"] for e in trail_b.events("s-a")]
    assert kinds[:4] == ["queued", "note", "note", "note"]  # every acknowledged event
    assert kinds[-1] == "session.sealed_incomplete"
    # a wakes up: its next write is refused, and so is its lease
    with pytest.raises(IntegrityError):
        trail_a.append("s-a", "teller", "note", {"late": True})
    with pytest.raises(IntegrityError):  # nor may it close the session a second time
        trail_a.close_session("s-a", {})
    assert verify_session(store, "s-a", trail_b.public_key, trail_b._kek, blobs).ok
    assert not store.renew_node(str(a), 60, {})
    assert trail_b.is_open("s-b") and store.session_owner("s-b") == str(b)


def test_a_node_whose_process_is_gone_is_sealed_at_once(store: Store,  # noqa: F811
                                                        tmp_path: Path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, me = NodeId(HERE, gone.pid, "x"), NodeId(HERE, os.getpid(), "me")
    store.register_node(str(dead), dead.host, dead.pid, 600)  # its lease has long to run
    store.register_node(str(me), me.host, me.pid, 600)
    trail_dead, trail_me = _trails(store, tmp_path, dead, me)
    _open(trail_dead, "s-dead", 2)
    elsewhere = NodeId("other-host", gone.pid, "y")  # a pid there says nothing here
    store.register_node(str(elsewhere), elsewhere.host, elsewhere.pid, 600)
    (trail_else,) = _trails(store, tmp_path, elsewhere)
    _open(trail_else, "s-else", 1)
    sweeper = SessionSweeper(store, trail_me, FileBlobStore(tmp_path / "rec"), me, 1)
    assert sweeper.sweep() == ["s-dead"]
    assert sweeper.sweep() == []
    assert store.session_owner("s-else") == str(elsewhere)


async def _queued_customer(server_url: str) -> tuple[SignalClient, str]:
    from tests.bench.media_relay import demo_token

    sig = await SignalClient.open(server_url.replace("https", "wss") + "/ws")
    await sig.request({"type": "hello", "token": await demo_token(server_url, 1)}, "welcome")
    status = await sig.request({"type": "queue.join"}, "queue.status")
    return sig, status["call_id"]


def _sealed(db: Store, session_id: str) -> bool:
    return session_id in db.closed_session_ids()


async def _until(pred, timeout: float) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not await asyncio.to_thread(pred):
        assert time.monotonic() - t0 < timeout, "timed out"
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


@pytest.mark.timeout(180)
async def test_real_nodes_on_postgres_kill_9_and_a_stalled_node(tmp_path: Path):
    """Three `vteller serve` processes on one PostgreSQL, each with a waiting customer.
    kill -9 one: the survivors seal its session within a second or so (its process is
    gone). SIGSTOP another past its 2 s lease: sealed; resumed, it finds itself
    evicted and stops on its own. The third node's session stays open throughout."""
    _need_postgres()
    url = postgres_url(PG_BASE)
    env = {"VTELLER_DATABASE_URL": url, "VTELLER_NODE_LEASE_S": "2"}
    nodes: list[ServeProcess] = []
    db = open_store(url, tmp_path / "unused.sqlite3")
    sigs = []
    ids: list[str] = []
    try:
        for _ in range(3):  # one at a time, each past its workers' start (see wait_warm)
            nodes.append(start_serve(tmp_path, "--dev", env=env))
            nodes[-1].wait_warm()
        killed, stalled, survivor = nodes
        for node in nodes:
            sig, call_id = await _queued_customer(node.url)
            sigs.append(sig)
            ids.append(call_id)
        await _until(lambda: all(db.session_exists(i) for i in ids), 10)
        assert len(db.nodes()) == 3

        os.kill(killed.proc.pid, signal.SIGKILL)
        killed.proc.wait(5)  # reaped, as its supervisor would (a zombie's pid still answers)
        took = await _until(lambda: _sealed(db, ids[0]), 10)
        print(f"kill -9: sealed by a survivor {took:.1f} s after")
        assert took < 3.0
        outcome = "SELECT outcome, outcome_reason FROM calls WHERE call_id=?"
        await _until(lambda: db.run(outcome, (ids[0],))[0][0] is not None, 5)
        assert db.run(outcome, (ids[0],)) == [("missed", "node_stopped")]  # it was waiting

        os.kill(stalled.proc.pid, signal.SIGSTOP)
        # its lease as last renewed (a renewal in flight can only make this later): no
        # survivor may seal it before then, whenever that last renewal came
        (lease_until,) = [r.lease_until for r in db.nodes()
                          if r.node_id.split(":")[1] == str(stalled.proc.pid)]
        took = await _until(lambda: _sealed(db, ids[1]), 15)
        print(f"SIGSTOP: sealed {took:.1f} s after (lease 2 s; "
              f"{time.time() - lease_until:+.1f} s from its end)")
        assert time.time() >= lease_until and took < 6.0
        os.kill(stalled.proc.pid, signal.SIGCONT)
        assert await asyncio.to_thread(stalled.proc.wait, 15) == 0  # stopped by itself
        assert not _sealed(db, ids[2]) and db.session_owner(ids[2]) is not None
        assert [r.node_id.split(":")[1] for r in db.nodes()] == [str(survivor.proc.pid)]
    finally:
        for sig in sigs:
            await sig.close()
        for node in nodes:
            if node.proc.poll() is None:
                node.stop()
        db.close()
    for call_id in ids:
        out = subprocess.run(
            [sys.executable, "-m", "vteller", "audit", "verify", call_id],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "VTELLER_DATA_DIR": str(tmp_path / "var"),
                 "VTELLER_KEK_DIR": str(tmp_path / "secrets"), "VTELLER_DATABASE_URL": url})
        assert out.returncode == 0 and "VERIFIED" in out.stdout, out.stdout + out.stderr


async def test_login_attempts_are_counted_over_every_node(store: Store):  # noqa: F811
    from vteller.auth import SharedLoginLimiter

    one, two = (SharedLoginLimiter(store, max_failures=3, window_s=60) for _ in range(2))
    keys = ["user:ann", "addr:10.0.0.1"]
    results = await asyncio.gather(*(node.attempt(keys) for node in (one, two) * 5))
    allowed = [stamp for wait, stamp in results if wait == 0]
    assert len(allowed) == 3  # a burst spread over two nodes gets 3 guesses, not 6
    assert all(0 < wait <= 60 for wait, _ in results if wait > 0)
    other = ["user:bob", "addr:10.0.0.1"]  # the address allows 30
    wait, stamp = await two.attempt(other)
    assert wait == 0
    await one.forgive(other, stamp)  # bob logged in: his slate is clean
    assert (await one.attempt(["user:bob", "addr:10.0.0.2"]))[0] == 0
    assert (await two.attempt(keys))[0] > 0  # ann is still locked, on every node


def test_replay_grants_are_seen_by_every_node_and_expire(store: Store):  # noqa: F811
    store.put_replay_grant("h1", "auditor1", "s-1", "complaint 42", 60)
    store.put_replay_grant("h2", "auditor1", "s-2", "sample", 0.05)
    assert store.replay_grant("h1") == ("auditor1", "s-1", "complaint 42")
    assert store.first_replay("h1", "customer.video.webm.vtenc")
    assert not store.first_replay("h1", "customer.video.webm.vtenc")  # logged once
    time.sleep(0.2)
    assert store.replay_grant("h2") is None and store.replay_grant("nope") is None
    store.put_replay_grant("h3", "auditor2", "s-1", "x", 60)  # purges the expired
    assert store.run("SELECT token_hash FROM replay_grants ORDER BY token_hash") == [
        ("h1",), ("h3",)]


async def test_a_customer_token_opens_one_connection_on_any_node(store: Store,  # noqa: F811
                                                                 tmp_path: Path):
    from vteller.auth import AuthError, DevTokenIssuer
    from vteller.auth.tokens import CustomerTokenVerifier, SharedUsedTokens

    issuer = DevTokenIssuer.load_or_create(tmp_path, "bank-backend", "vteller")
    one, two = (CustomerTokenVerifier("EdDSA", issuer.public_key, "bank-backend", "vteller",
                                      900, 10, used=SharedUsedTokens(store)) for _ in range(2))
    token = issuer.issue("c-1", "Ann", 1950)
    assert (await one.admit(token)).sub == "c-1"
    with pytest.raises(AuthError) as info:
        await two.admit(token)  # copied to another node: refused there too
    assert info.value.code == "token_reused"
    assert (await two.admit(issuer.issue("c-1", "Ann", 1950))).sub == "c-1"


def test_a_handover_opens_only_with_its_resume_secret():
    from vteller.calls.handover import Handover

    h = Handover("customer:c-9", "customer", "c-9", "Wei Zhang", frozenset({"elderly"}))
    sealed = h.seal("secret-A")
    assert b"c-9" not in sealed and b"Wei" not in sealed
    assert Handover.open("secret-A", sealed) == h
    assert Handover.open("secret-B", sealed) is None  # a stolen row without the secret
    assert Handover.open("secret-A", sealed[:-1] + bytes([sealed[-1] ^ 1])) is None
