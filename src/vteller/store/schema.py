"""Versioned schema migrations: a small ordered runner (no Alembic: there is no ORM to
autogenerate from, the DDL is a few tables shared by two engines, and data steps are
plain Python over the same `Database` interface).

`vteller db migrate` applies what is pending; `vteller db status` shows where a
database stands. The embedded SQLite file is migrated at start (one process owns it);
a server on a PostgreSQL schema older or newer than its own refuses to start.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from vteller.store.db import Database, StoreError


class SchemaMismatch(StoreError):
    pass


def _ddl(db: Database, sql: str) -> None:
    if db.dialect == "postgres":
        sql = sql.replace("BLOB", "BYTEA").replace("REAL", "DOUBLE PRECISION")
    for statement in filter(None, (s.strip() for s in sql.split(";"))):
        db.execute(statement)


def _columns(db: Database, table: str) -> set[str]:
    if db.dialect == "sqlite":
        return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    return {r[0] for r in db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name=? "
        "AND table_schema=current_schema()", (table,))}


BASELINE = """
CREATE TABLE IF NOT EXISTS staff_users (
    username TEXT PRIMARY KEY, display_name TEXT NOT NULL, role TEXT NOT NULL,
    password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, profile TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS staff_sessions (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL REFERENCES staff_users(username),
    expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit_events (
    session_id TEXT NOT NULL, seq BIGINT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL,
    kind TEXT NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL, prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL, PRIMARY KEY (session_id, seq));
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    session_id TEXT NOT NULL, seq BIGINT NOT NULL, head BLOB NOT NULL, at TEXT NOT NULL,
    final INTEGER NOT NULL, signature BLOB NOT NULL, PRIMARY KEY (session_id, seq));
CREATE TABLE IF NOT EXISTS audit_log (
    idx BIGINT PRIMARY KEY, session_id TEXT NOT NULL, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log_heads (
    size BIGINT PRIMARY KEY, root BLOB NOT NULL, at TEXT NOT NULL, signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    call_id TEXT PRIMARY KEY, business_type TEXT NOT NULL, teller TEXT NOT NULL,
    decision TEXT NOT NULL, reason_code TEXT, notes TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS session_keys (
    call_id TEXT PRIMARY KEY, kek_id TEXT NOT NULL, wrapped BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    call_id TEXT NOT NULL, track TEXT NOT NULL, digest TEXT NOT NULL, packets BIGINT NOT NULL,
    PRIMARY KEY (call_id, track));
CREATE TABLE IF NOT EXISTS identity_references (
    customer_id TEXT PRIMARY KEY, kek_id TEXT NOT NULL, wrapped_key BLOB NOT NULL,
    encoding BLOB NOT NULL, photo BLOB, source TEXT NOT NULL, updated_at REAL NOT NULL,
    face_px INTEGER NOT NULL, sharpness REAL NOT NULL);
CREATE TABLE IF NOT EXISTS service_credentials (
    name TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, teller TEXT, state TEXT NOT NULL,
    end_reason TEXT, queued_at REAL NOT NULL, answered_at REAL, ended_at REAL,
    business_type TEXT NOT NULL DEFAULT 'general', flags TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS legal_holds (
    session_id TEXT PRIMARY KEY, set_by TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS purged_sessions (
    session_id TEXT PRIMARY KEY, at REAL NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS access_log (
    seq BIGINT PRIMARY KEY, at TEXT NOT NULL, "user" TEXT NOT NULL, action TEXT NOT NULL,
    session_id TEXT, reason TEXT NOT NULL, detail TEXT NOT NULL, prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL, signature BLOB NOT NULL)
"""


def _m1_baseline(db: Database) -> None:
    """The schema as it stood before migrations (databases from then get the columns
    added later, in place)."""
    _ddl(db, BASELINE)
    if "profile" not in _columns(db, "staff_users"):
        db.execute("ALTER TABLE staff_users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}'")
    call_columns = _columns(db, "calls")
    if "business_type" not in call_columns:
        db.execute("ALTER TABLE calls ADD COLUMN business_type TEXT NOT NULL DEFAULT 'general'")
    if "flags" not in call_columns:
        db.execute("ALTER TABLE calls ADD COLUMN flags TEXT NOT NULL DEFAULT ''")


def _m2_flags_and_log_state(db: Database) -> None:
    """Call flags in their own table (one rule: every flag is stored, `incomplete` too,
    from the sealed sessions' log entries); the global log's Merkle frontier, so a
    close appends in O(log n) instead of rehashing the whole log."""
    _ddl(db, """
    CREATE TABLE IF NOT EXISTS call_flags (
        call_id TEXT NOT NULL, flag TEXT NOT NULL, PRIMARY KEY (call_id, flag));
    CREATE INDEX IF NOT EXISTS call_flags_by_flag ON call_flags (flag);
    CREATE INDEX IF NOT EXISTS audit_log_by_session ON audit_log (session_id);
    CREATE INDEX IF NOT EXISTS calls_by_customer ON calls (customer_id);
    CREATE INDEX IF NOT EXISTS calls_by_queued ON calls (queued_at);
    CREATE TABLE IF NOT EXISTS audit_log_state (
        id INTEGER PRIMARY KEY, size BIGINT NOT NULL, frontier BLOB NOT NULL)
    """)
    for call_id, flags in db.execute("SELECT call_id, flags FROM calls WHERE flags <> ''"):
        for flag in filter(None, flags.split(",")):
            db.execute("INSERT INTO call_flags VALUES (?,?) ON CONFLICT DO NOTHING",
                       (call_id, flag))
    from vteller.audit import merkle  # the frontier of what is already logged

    frontier: list[bytes] = []
    size = 0
    for session_id, entry in db.execute("SELECT session_id, entry FROM audit_log ORDER BY idx"):
        frontier = merkle.frontier_append(frontier, size, merkle.leaf_hash(bytes(entry)))
        size += 1
        try:
            data = json.loads(bytes(entry))
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("incomplete") is True:
            db.execute("INSERT INTO call_flags VALUES (?,?) ON CONFLICT DO NOTHING",
                       (session_id, "incomplete"))
    db.execute("INSERT INTO audit_log_state VALUES (1,?,?) ON CONFLICT DO NOTHING",
               (size, b"".join(frontier)))


def _m3_nodes(db: Database) -> None:
    """Nodes with leases and the node that owns each open audit session, so a node
    seals only the sessions of nodes that are gone (never a live neighbour's); login
    attempts and replay grants, which every node must see."""
    _ddl(db, """
    CREATE TABLE IF NOT EXISTS nodes (
        node_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
        started_at REAL NOT NULL, lease_until REAL NOT NULL,
        evicted INTEGER NOT NULL DEFAULT 0, load TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE IF NOT EXISTS session_owners (
        session_id TEXT PRIMARY KEY, node_id TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS session_owners_by_node ON session_owners (node_id);
    CREATE TABLE IF NOT EXISTS login_attempts (
        key TEXT NOT NULL, stamp TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (key, stamp));
    CREATE INDEX IF NOT EXISTS login_attempts_by_at ON login_attempts (at);
    CREATE TABLE IF NOT EXISTS replay_grants (
        token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, session_id TEXT NOT NULL,
        reason TEXT NOT NULL, expires_at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS resume_secrets (
        token_hash TEXT PRIMARY KEY, node_id TEXT NOT NULL, sealed BLOB NOT NULL,
        at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS used_token_ids (
        jti TEXT PRIMARY KEY, expires_at REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS used_token_ids_by_expiry ON used_token_ids (expires_at);
    CREATE TABLE IF NOT EXISTS replay_grant_tracks (
        token_hash TEXT NOT NULL, track TEXT NOT NULL, PRIMARY KEY (token_hash, track))
    """)
    if "language" not in _columns(db, "calls"):
        db.execute("ALTER TABLE calls ADD COLUMN language TEXT NOT NULL DEFAULT 'en'")
    if "priority_class" not in _columns(db, "calls"):
        db.execute("ALTER TABLE calls ADD COLUMN priority_class TEXT")


def _m4_outcomes(db: Database) -> None:
    """Every call's outcome code and its reason (successful, unsuccessful, dropped,
    missed, rescheduled), for the reports and the auditors' search; four-eyes approvals
    and the outbox of events for the bank backend."""
    _ddl(db, """
    CREATE TABLE IF NOT EXISTS approvals (
        call_id TEXT PRIMARY KEY, business_type TEXT NOT NULL, teller TEXT NOT NULL,
        requested_at REAL NOT NULL, status TEXT NOT NULL, auditor TEXT, reason TEXT,
        decided_at REAL, payload TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS approvals_pending ON approvals (status, requested_at);
    CREATE TABLE IF NOT EXISTS outbox (
        event_id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL,
        created_at REAL NOT NULL, next_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT, claimed_until REAL, delivered_at REAL, last_error TEXT);
    CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
    CREATE TABLE IF NOT EXISTS surveys (
        call_id TEXT PRIMARY KEY, score INTEGER NOT NULL, comment TEXT NOT NULL,
        at REAL NOT NULL)
    """)
    for column in ("outcome", "outcome_reason"):
        if column not in _columns(db, "calls"):
            db.execute(f"ALTER TABLE calls ADD COLUMN {column} TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS calls_by_outcome ON calls (outcome, queued_at)")


def _m5_dispositions(db: Database) -> None:
    """The teller's wrap-up disposition code per call (its notes are in the trail)."""
    if "disposition" not in _columns(db, "calls"):
        db.execute("ALTER TABLE calls ADD COLUMN disposition TEXT")


def _m6_appointments(db: Database) -> None:
    """Booked video appointments; one booked appointment per teller and slot."""
    _ddl(db, """
    CREATE TABLE IF NOT EXISTS appointments (
        appointment_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,
        business_type TEXT NOT NULL, language TEXT NOT NULL, teller TEXT NOT NULL,
        starts_at REAL NOT NULL, ends_at REAL NOT NULL, state TEXT NOT NULL,
        call_id TEXT, created_at REAL NOT NULL);
    CREATE UNIQUE INDEX IF NOT EXISTS appointments_one_per_slot
        ON appointments (teller, starts_at) WHERE state = 'booked';
    CREATE INDEX IF NOT EXISTS appointments_by_customer ON appointments (customer_id, state);
    CREATE INDEX IF NOT EXISTS appointments_by_start ON appointments (starts_at)
    """)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Database], None]


MIGRATIONS = (
    Migration(1, "baseline", _m1_baseline),
    Migration(2, "call flags table, global log frontier, indexes", _m2_flags_and_log_state),
    Migration(3, "node leases, session owners, resume secrets, login attempts, used token "
              "ids, replay grants", _m3_nodes),
    Migration(4, "call outcome codes, four-eyes approvals, bank outbox, surveys",
              _m4_outcomes),
    Migration(5, "wrap-up disposition codes", _m5_dispositions),
    Migration(6, "video appointments", _m6_appointments),
)
LATEST = MIGRATIONS[-1].version


def current_version(db: Database) -> int:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
               "name TEXT NOT NULL, applied_at REAL NOT NULL)")
    rows = db.execute("SELECT MAX(version) FROM schema_version")
    return int(rows[0][0] or 0)


def migrate(db: Database) -> list[Migration]:
    """Apply every pending migration, each in its own transaction, under a lock that
    every node shares (two nodes migrating at once: one waits, then finds nothing)."""
    applied = []
    with db.atomic(lock="vteller schema migration"):
        current = current_version(db)
        if current > LATEST:
            raise SchemaMismatch(f"the database schema is version {current}, newer than this "
                                 f"vteller ({LATEST}): upgrade vteller")
        for m in MIGRATIONS:
            if m.version > current:
                m.apply(db)
                db.execute("INSERT INTO schema_version VALUES (?,?,?)",
                           (m.version, m.name, time.time()))
                applied.append(m)
    return applied


def check(db: Database) -> None:
    """Refuse to run on a schema other than this code's."""
    current = current_version(db)
    if current < LATEST:
        raise SchemaMismatch(f"the database schema is version {current}, this vteller needs "
                             f"{LATEST}: run `vteller db migrate` first")
    if current > LATEST:
        raise SchemaMismatch(f"the database schema is version {current}, newer than this "
                             f"vteller ({LATEST}): upgrade this node")
