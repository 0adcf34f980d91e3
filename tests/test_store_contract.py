"""One contract for the repositories, run against SQLite and PostgreSQL: the same calls
give the same results, constraints hold, and concurrent writers in several processes
keep every hash chain and the global Merkle log correct (ordered by the database)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from tests.conftest import postgres_url
from vteller.audit import LocalKeyring, merkle, new_data_key
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.audit.verify import verify_session
from vteller.store import (
    CallSearch,
    FileBlobStore,
    IntegrityError,
    SchemaMismatch,
    Store,
    open_store,
    schema,
)
from vteller.store import db as store_db

PG_BASE = os.environ.get("VTELLER_TEST_DATABASE_URL",
                         "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_available() -> bool:
    try:
        store_db.PostgresDatabase(PG_BASE, max_size=1, connect_timeout_s=3).close()
        return True
    except store_db.StoreError:
        return False


def _need_postgres() -> None:
    if not postgres_available():
        if os.environ.get("VTELLER_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here and not reachable at {PG_BASE}")
        pytest.skip(f"no PostgreSQL at {PG_BASE}")


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str | None, Path]:
    """(database URL or None, SQLite path) for a fresh, migrated database."""
    if request.param == "postgres":
        _need_postgres()
        return postgres_url(PG_BASE), tmp_path / "unused.sqlite3"
    return None, tmp_path / "vteller.sqlite3"


@pytest.fixture
def store(engine):  # type: ignore[no-untyped-def]
    s = open_store(engine[0], engine[1])
    yield s
    s.close()


def test_staff_users_sessions_and_credentials(store: Store):
    import asyncio

    store.add_user("ann", "Ann", "teller", "hash", {"skills": {"general": 1.0}})
    with pytest.raises(KeyError):
        store.add_user("ann", "Ann again", "teller", "hash")
    user = store.get_user("ann")
    assert user is not None and user.profile == {"skills": {"general": 1.0}}
    assert not user.disabled and store.get_user("nobody") is None
    assert store.set_profile("ann", {"languages": ["zh"]}) and not store.set_profile("x", {})

    async def sessions() -> None:
        await store.add_session("h1", "ann", time.time() + 60)
        await store.add_session("h-old", "ann", time.time() - 1)
        assert (await store.session_user("h1")).username == "ann"  # type: ignore[union-attr]
        assert await store.session_user("h-old") is None
        await store.purge_sessions()
        assert store.set_disabled("ann", True)
        assert await store.session_user("h1") is None  # disabling ends sessions

    asyncio.run(sessions())
    assert [u.username for u in store.list_users()] == ["ann"]
    store.add_service_credential("backend", "keyhash")
    with pytest.raises(KeyError):
        store.add_service_credential("backend", "other")
    assert store.service_by_hash("keyhash") == "backend"
    assert store.revoke_service_credential("backend") and store.service_by_hash("keyhash") is None
    assert store.list_service_credentials()[0][0] == "backend"


def test_calls_flags_decisions_and_search(store: Store):
    import asyncio

    async def fill() -> None:
        for i in range(30):
            await store.record_call(f"call-{i:02d}", f"cust-{i % 3}", "queued", 1000.0 + i,
                                    "video_ident" if i % 2 else "general")
            await store.update_call(f"call-{i:02d}", teller="t1" if i < 10 else "t2",
                                    state="closed", ended_at=2000.0 + i)
        await store.add_call_flag("call-05", "identity_mismatch")
        await store.add_call_flag("call-05", "identity_mismatch")  # written once
        await store.add_call_flag("call-07", "incomplete")
        await store.add_decision("call-05", "general", "t1", "reject", "fraud", "enc:x", 3000.0)
        await store.add_recording("call-05", "customer.video", "d1", 10)
        await store.add_recording("call-05", "customer.video", "d2", 12)  # replaced
        with pytest.raises(ValueError):
            await store.update_call("call-01", customer_id="evil")
        report = await store.review_report(0, 4000)
        assert report == [{"business_type": "general", "teller": "t1", "approve": 0,
                           "reject": 1, "incomplete": 0, "reschedule": 0, "total": 1,
                           "pass_rate": 0.0}]
        await store.update_call("call-05", outcome="unsuccessful", outcome_reason="fraud")
        await store.update_call("call-06", outcome="successful")
        await store.update_call("call-07", answered_at=1500.0)
        store.settle_lost_calls(["call-05", "call-07", "call-08"])  # 05 keeps its outcome
        assert await store.outcome_report(1004.0, 1009.0) == [
            {"business_type": "general", "open": 1, "successful": 1, "missed": 1, "total": 3},
            {"business_type": "video_ident", "unsuccessful": 1, "dropped": 1, "total": 2}]
        call = await store.get_call("call-05")
        assert call is not None and call["teller"] == "t1" and call["ended_at"] == 2005.0

    asyncio.run(fill())
    assert store.call_flags("call-05") == ["identity_mismatch"]
    assert store.recordings("call-05") == {"customer.video": ("d2", 12)}
    total, rows = store.search_calls(CallSearch(), 1, 25)
    assert total == 30 and len(rows) == 25 and rows[0].session_id == "call-29"
    total, rows = store.search_calls(CallSearch(), 2, 25)
    assert [r.session_id for r in rows] == [f"call-{i:02d}" for i in range(4, -1, -1)]
    total, rows = store.search_calls(CallSearch(flag="incomplete"), 1, 25)
    assert [r.session_id for r in rows] == ["call-07"]
    total, rows = store.search_calls(CallSearch(customer_id="cust-2", teller="t1"), 1, 25)
    assert [r.session_id for r in rows] == ["call-08", "call-05", "call-02"]
    total, rows = store.search_calls(CallSearch(outcome="missed"), 1, 25)
    assert [(r.session_id, r.outcome, r.outcome_reason) for r in rows] == [
        ("call-08", "missed", "node_stopped")]
    total, rows = store.search_calls(CallSearch(decision="reject"), 1, 25)
    assert rows[0].flags == ["identity_mismatch"] and rows[0].decision == "reject"
    total, _ = store.search_calls(CallSearch(queued_from=1010.0, queued_to=1020.0,
                                             business_type="general"), 1, 25)
    assert total == 5


def test_references_and_holds(store: Store):
    assert store.put_reference("c1", "k1", b"w", b"enc", None, "backend:x", 1.0, 90, 10.0) \
        is False
    assert store.put_reference("c1", "k2", b"w2", b"enc2", b"jpg", "cli", 2.0, 91, 11.0) is True
    assert store.get_reference("c1") == ("k2", b"w2", b"enc2")
    assert store.delete_reference("c1") and not store.delete_reference("c1")
    store.set_legal_hold("s1", True, "aud1", "litigation")
    assert store.legal_hold("s1")[:2] == ("aud1", "litigation")  # type: ignore[index]
    store.set_legal_hold("s1", False, "aud1", "done")
    assert store.legal_hold("s1") is None


def test_event_sequence_is_unique(store: Store):
    store.append_event("s", 1, "1.0", "system", "k", b"n" * 12, b"p", b"0" * 32, b"h" * 32)
    with pytest.raises(IntegrityError):  # a second writer cannot fork the chain
        store.append_event("s", 1, "1.0", "system", "k", b"n" * 12, b"q", b"0" * 32, b"i" * 32)
    assert store.last_event("s") == (1, b"h" * 32)


def test_log_frontier_gives_the_same_root_as_a_full_recompute(store: Store):
    for i in range(37):
        store.append_log_entry(f"s{i}", f"entry {i}".encode(),
                               lambda size, root: (f"{size}", b"s" * 64))
    entries = store.log_entries()
    assert [e[0] for e in entries] == list(range(1, 38))
    size, root, _, _ = store.latest_head()  # type: ignore[misc]
    assert size == 37
    assert bytes(root) == merkle.root([merkle.leaf_hash(bytes(e[2])) for e in entries])


def test_schema_version_is_enforced(engine):
    url, path = engine
    open_store(url, path).close()  # migrated on open (SQLite) or by the fixture (PostgreSQL)
    database = store_db.connect(url, path)
    assert schema.current_version(database) == schema.LATEST
    assert schema.migrate(database) == []  # idempotent
    database.execute("DELETE FROM schema_version WHERE version=?", (schema.LATEST,))
    with pytest.raises(SchemaMismatch, match="vteller db migrate"):
        schema.check(database)
    assert [m.version for m in schema.migrate(database)] == [schema.LATEST]
    database.execute("INSERT INTO schema_version VALUES (?,?,?)", (schema.LATEST + 1, "x", 0.0))
    with pytest.raises(SchemaMismatch, match="newer"):
        schema.check(database)
    database.close()


# ---- concurrent writers in several processes ------------------------------------------------

def _writer(url: str | None, path: str, secrets_dir: str, worker: int, sessions: int) -> None:
    store = open_store(url, Path(path))
    kek = LocalKeyring(Path(secrets_dir))
    trail = AuditTrail(store, kek, load_or_create_signing_key(Path(secrets_dir)),
                       checkpoint_every=3)
    for n in range(sessions):
        sid = f"w{worker}-s{n}"
        key = new_data_key()
        trail.open_session(sid, key, kek.wrap(key, sid))
        for i in range(5):
            trail.append(sid, "system", "step", {"i": i})
        trail.close_session(sid, {})
    store.close()


def test_several_processes_closing_sessions_at_once(engine, tmp_path):
    url, path = engine
    open_store(url, path).close()
    secrets_dir = tmp_path / "secrets"
    LocalKeyring(secrets_dir)
    load_or_create_signing_key(secrets_dir)
    workers, each = 4, 12
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, str(path), str(secrets_dir), w, each))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = open_store(url, path)
    entries = store.log_entries()
    assert [e[0] for e in entries] == list(range(1, workers * each + 1))  # no gap, no clash
    kek = LocalKeyring(secrets_dir)
    public = load_or_create_signing_key(secrets_dir).public_key()
    blobs = FileBlobStore(tmp_path / "recordings")
    for w in range(workers):
        for n in range(each):
            report = verify_session(store, f"w{w}-s{n}", public, kek, blobs)
            assert report.ok, report.problems
    store.close()


@pytest.mark.parametrize("url, expect", [
    ("mysql://root@127.0.0.1/db", "unsupported scheme"),
    ("postgresql://postgres:hunter2-secret@127.0.0.1:1/nowhere", "cannot connect"),
    ("postgresql://postgres:hunter2-secret@[::1/x", "URL"),
])
def test_bad_database_urls_name_the_setting_and_hide_the_password(tmp_path, url, expect):
    from tests.conftest import make_settings
    from vteller.app import open_database
    from vteller.config import SettingsError

    settings = make_settings(tmp_path, database_url=url)
    with pytest.raises(SettingsError) as info:
        open_database(settings)
    message = str(info.value)
    assert message.startswith("VTELLER_DATABASE_URL") and expect in message, message
    assert "hunter2" not in message


def test_outbox_claims_retries_and_survives_its_node(store: Store):
    """Events for the bank: one node claims a due event for a while (another skips it);
    a claim that ran out (its node died mid-delivery) is claimed again; retries wait
    for their time; delivered and failed events are never claimed again."""
    import asyncio

    payload = {"call_id": "call-1", "business_type": "general", "teller": "t1"}
    asyncio.run(store.record_final_decision("decision:call-1", payload, 100.0,
                                            four_eyes=False, send=True))
    asyncio.run(store.record_final_decision("decision:call-1", payload, 100.0,
                                            four_eyes=False, send=True))  # idempotent
    asyncio.run(store.record_final_decision("decision:call-2", {**payload, "call_id": "call-2"},
                                            100.0, four_eyes=False, send=False))  # no webhook
    assert store.claim_outbox("node-a", 100.0, 30.0, 10) == [
        ("decision:call-1", "decision.final", json.dumps(payload, sort_keys=True), 0)]
    assert store.claim_outbox("node-b", 110.0, 30.0, 10) == []  # node-a holds it
    # node-a died mid-delivery: after its claim ran out, node-b delivers
    assert [e[0] for e in store.claim_outbox("node-b", 131.0, 30.0, 10)] == ["decision:call-1"]
    store.outbox_retry("decision:call-1", 1, 200.0, "HTTP 503")
    assert store.claim_outbox("node-b", 199.0, 30.0, 10) == []  # not due yet
    assert store.claim_outbox("node-a", 200.0, 30.0, 10)[0][3] == 1
    store.outbox_delivered("decision:call-1", 201.0)
    assert store.claim_outbox("node-a", 10_000.0, 30.0, 10) == []
    assert store.outbox_counts() == {"delivered": 1}

    asyncio.run(store.record_final_decision("decision:call-3", {**payload, "call_id": "call-3"},
                                            300.0, four_eyes=True, send=True))
    assert [a.call_id for a in store.pending_approvals()] == ["call-3"]
    assert store.claim_outbox("node-a", 10_000.0, 30.0, 10) == []  # waits for an auditor
    assert store.decide_approval("call-3", "aud1", True, "looked fine", 400.0,
                                 "decision:call-3", send=True)
    assert not store.decide_approval("call-3", "aud2", False, "too late", 401.0,
                                     "decision:call-3", send=True)  # one decision wins
    approval = store.approval("call-3")
    assert approval is not None and (approval.status, approval.auditor) == ("approved", "aud1")
    (event,) = store.claim_outbox("node-a", 10_000.0, 30.0, 10)
    assert json.loads(event[2])["four_eyes"] == {"auditor": "aud1", "status": "approved",
                                                 "at": 400.0}
    store.outbox_failed(event[0], 50, "HTTP 500")
    assert store.outbox_counts() == {"delivered": 1, "failed": 1}


def test_appointments_one_per_teller_and_slot(store: Store):
    """Two customers booking the same teller and slot at once: exactly one wins. A
    customer holds one booking at a time; a cancelled slot is free again; a kept
    booking is used once and leaves the customer's list."""
    from concurrent.futures import ThreadPoolExecutor

    from vteller.routing.appointments import Appointment

    def appt(aid: str, customer: str, teller: str = "ann", at: float = 10_000.0) -> Appointment:
        return Appointment(aid, customer, "general", "zh", teller, at, at + 900)

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(
            lambda a: store.book_appointment(a, 1, now=0.0, created_at=0.0),
            [appt("ap_one", "c1"), appt("ap_two", "c2")]))
    assert results == ["booked", "slot_taken"]
    winner = "c1" if store.customer_appointments("c1", 0.0) else "c2"
    loser = "c2" if winner == "c1" else "c1"
    assert store.book_appointment(appt("ap_3", winner, teller="bob"), 1, 0.0, 0.0) == "limit"
    assert store.book_appointment(appt("ap_4", loser, teller="bob"), 1, 0.0, 0.0) == "booked"
    assert sorted(store.booked_slots(0.0, 20_000.0)) == [("ann", 10_000.0), ("bob", 10_000.0)]
    assert store.booked_slots(10_000.5, 20_000.0) == []

    mine = store.customer_appointments(winner, 0.0)
    assert [(a.teller, a.starts_at, a.ends_at, a.language, a.state) for a in mine] == [
        ("ann", 10_000.0, 10_900.0, "zh", "booked")]
    assert store.customer_appointments(winner, 10_900.0) == []  # over by then
    assert not store.cancel_appointment(mine[0].appointment_id, loser)  # not theirs
    assert store.cancel_appointment(mine[0].appointment_id, winner)
    assert not store.cancel_appointment(mine[0].appointment_id, winner)  # once
    assert store.book_appointment(appt("ap_5", "c3"), 1, 0.0, 0.0) == "booked"  # free again
    assert store.keep_appointment("ap_5", "call-1") and not store.keep_appointment("ap_5", "x")
    assert store.customer_appointments("c3", 0.0) == []


def test_a_node_frozen_mid_transaction_does_not_hold_the_others(tmp_path):
    """A node stopped (SIGSTOP, a frozen VM, cut off) inside a transaction that holds the
    global log's lock: PostgreSQL ends that transaction after the idle bound and the
    other nodes' writers go on; the frozen one, resumed, gets a typed error, nothing
    half-written."""
    import threading

    _need_postgres()
    url = postgres_url(PG_BASE)
    frozen = store_db.PostgresDatabase(url, max_size=1, idle_in_transaction_s=1.0)
    other = store_db.PostgresDatabase(url, max_size=1)
    other.execute("CREATE TABLE IF NOT EXISTS frozen_probe (n integer)")
    holding, thaw, outcome = threading.Event(), threading.Event(), []

    def freeze() -> None:
        try:
            with frozen.atomic(lock="vteller global log"):
                frozen.execute("INSERT INTO frozen_probe VALUES (1)")
                holding.set()
                thaw.wait(10)  # the node is frozen here, its lock held
                frozen.execute("INSERT INTO frozen_probe VALUES (2)")
            outcome.append("committed")
        except store_db.Unavailable:
            outcome.append("unavailable")

    def write() -> None:
        with other.atomic(lock="vteller global log"):
            other.execute("INSERT INTO frozen_probe VALUES (3)")

    stalled = threading.Thread(target=freeze)
    stalled.start()
    assert holding.wait(5)
    t0 = time.monotonic()
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(10)
    waited = time.monotonic() - t0
    thaw.set()
    stalled.join(10)
    try:
        assert not writer.is_alive(), "the other node is still waiting for the lock"
        assert 0.5 < waited < 5, waited
        assert outcome == ["unavailable"]
        assert sorted(r[0] for r in other.execute("SELECT n FROM frozen_probe")) == [3]
        frozen.execute("SELECT 1")  # the pool gives the resumed node a fresh connection
    finally:
        other.execute("DROP TABLE frozen_probe")
        frozen.close()
        other.close()
