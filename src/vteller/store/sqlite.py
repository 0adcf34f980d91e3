"""SQLite store: staff users, staff sessions, call records, service credentials,
encrypted identity references, audit rows.

One connection guarded by a lock; every call runs in a worker thread so the
event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS staff_users (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    profile TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS staff_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES staff_users(username),
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head BLOB NOT NULL,
    at TEXT NOT NULL,
    final INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS audit_log (
    idx INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    entry BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log_heads (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    at TEXT NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    call_id TEXT PRIMARY KEY,
    business_type TEXT NOT NULL,
    teller TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason_code TEXT,
    notes TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS session_keys (
    call_id TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recordings (
    call_id TEXT NOT NULL,
    track TEXT NOT NULL,
    digest TEXT NOT NULL,
    packets INTEGER NOT NULL,
    PRIMARY KEY (call_id, track)
);
CREATE TABLE IF NOT EXISTS identity_references (
    customer_id TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    encoding BLOB NOT NULL,
    photo BLOB,
    source TEXT NOT NULL,
    updated_at REAL NOT NULL,
    face_px INTEGER NOT NULL,
    sharpness REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS service_credentials (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    teller TEXT,
    state TEXT NOT NULL,
    end_reason TEXT,
    queued_at REAL NOT NULL,
    answered_at REAL,
    ended_at REAL,
    business_type TEXT NOT NULL DEFAULT 'general',
    flags TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS legal_holds (
    session_id TEXT PRIMARY KEY,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS purged_sessions (
    session_id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS access_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    session_id TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    signature BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class StaffUser:
    username: str
    display_name: str
    role: str
    password_hash: str
    disabled: bool
    profile: dict[str, Any] = field(default_factory=dict)


def _user(row: tuple[Any, ...]) -> StaffUser:
    return StaffUser(row[0], row[1], row[2], row[3], bool(row[4]), json.loads(row[5] or "{}"))


class SqliteStore:
    """Embedded store. Sync methods for the CLI, ``a*`` async twins for the server."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)  # holds password hashes: owner only
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(staff_users)")}
        if "profile" not in columns:  # databases made before routing profiles
            self._db.execute("ALTER TABLE staff_users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}'")
        call_columns = {r[1] for r in self._db.execute("PRAGMA table_info(calls)")}
        for column in ("business_type", "flags"):  # databases made before the auditor console
            if column not in call_columns:
                default = "'general'" if column == "business_type" else "''"
                self._db.execute(f"ALTER TABLE calls ADD COLUMN {column} TEXT NOT NULL "
                                 f"DEFAULT {default}")
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Statements in the block commit together or not at all (the database, not a
        Python lock, orders writers from other processes: BEGIN IMMEDIATE)."""
        with self._lock:
            if self._db.in_transaction:  # nested: part of the outer transaction
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads in the block see one consistent state (one read transaction)."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    async def _arun(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._run, sql, args)

    def ping(self) -> bool:
        return self._run("SELECT 1") == [(1,)]

    # staff users --------------------------------------------------------
    def add_user(self, username: str, display_name: str, role: str, password_hash: str,
                 profile: dict[str, Any] | None = None) -> None:
        try:
            self._run(
                "INSERT INTO staff_users VALUES (?,?,?,?,0,?,?)",
                (username, display_name, role, password_hash, time.time(),
                 json.dumps(profile or {})),
            )
        except sqlite3.IntegrityError:
            raise KeyError(f"user {username!r} already exists") from None

    def get_user(self, username: str) -> StaffUser | None:
        rows = self._run(
            "SELECT username, display_name, role, password_hash, disabled, profile"
            " FROM staff_users WHERE username=?",
            (username,),
        )
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[StaffUser]:
        rows = self._run(
            "SELECT username, display_name, role, password_hash, disabled, profile"
            " FROM staff_users ORDER BY username"
        )
        return [_user(r) for r in rows]

    def set_disabled(self, username: str, disabled: bool) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE staff_users SET disabled=? WHERE username=?", (int(disabled), username)
            )
            if disabled:
                self._db.execute("DELETE FROM staff_sessions WHERE username=?", (username,))
            return cur.rowcount == 1

    def set_profile(self, username: str, profile: dict[str, Any]) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE staff_users SET profile=? WHERE username=?",
                                   (json.dumps(profile), username))
            return cur.rowcount == 1

    def set_password_hash(self, username: str, password_hash: str) -> None:
        self._run("UPDATE staff_users SET password_hash=? WHERE username=?", (password_hash, username))

    async def aget_user(self, username: str) -> StaffUser | None:
        return await asyncio.to_thread(self.get_user, username)

    # staff sessions -----------------------------------------------------
    async def add_session(self, token_hash: str, username: str, expires_at: float) -> None:
        await self._arun("INSERT INTO staff_sessions VALUES (?,?,?)", (token_hash, username, expires_at))

    async def session_user(self, token_hash: str) -> StaffUser | None:
        rows = await self._arun(
            "SELECT u.username, u.display_name, u.role, u.password_hash, u.disabled, u.profile"
            " FROM staff_sessions s JOIN staff_users u USING (username)"
            " WHERE s.token_hash=? AND s.expires_at>? AND u.disabled=0",
            (token_hash, time.time()),
        )
        return _user(rows[0]) if rows else None

    async def delete_session(self, token_hash: str) -> None:
        await self._arun("DELETE FROM staff_sessions WHERE token_hash=?", (token_hash,))

    async def purge_sessions(self) -> None:
        await self._arun("DELETE FROM staff_sessions WHERE expires_at<=?", (time.time(),))

    # calls ----------------------------------------------------------------
    async def record_call(self, call_id: str, customer_id: str, state: str, queued_at: float,
                          business_type: str = "general") -> None:
        await self._arun(
            "INSERT INTO calls (call_id, customer_id, state, queued_at, business_type)"
            " VALUES (?,?,?,?,?)",
            (call_id, customer_id, state, queued_at, business_type),
        )

    async def add_call_flag(self, call_id: str, flag: str) -> None:
        """Flags for the auditors' search (identity_mismatch, liveness_failed, ...)."""
        await asyncio.to_thread(self._add_call_flag, call_id, flag)

    def _add_call_flag(self, call_id: str, flag: str) -> None:
        with self._lock:
            row = self._db.execute("SELECT flags FROM calls WHERE call_id=?",
                                   (call_id,)).fetchone()
            if row is not None and flag not in row[0].split(","):
                flags = ",".join(sorted({*filter(None, row[0].split(",")), flag}))
                self._db.execute("UPDATE calls SET flags=? WHERE call_id=?", (flags, call_id))

    async def update_call(self, call_id: str, **fields: Any) -> None:
        allowed = {"teller", "state", "end_reason", "answered_at", "ended_at"}
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"bad call fields: {sorted(fields)}")
        cols = ", ".join(f"{k}=?" for k in fields)
        await self._arun(f"UPDATE calls SET {cols} WHERE call_id=?", (*fields.values(), call_id))

    # audit trail rows (the crypto lives in vteller.audit) ------------------------
    def run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Raw access for the audit trail's own tables (one statement, atomic)."""
        return self._run(sql, args)

    def session_key(self, call_id: str) -> tuple[str, bytes] | None:
        rows = self._run("SELECT kek_id, wrapped FROM session_keys WHERE call_id=?", (call_id,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    async def add_recording(self, call_id: str, track: str, digest: str, packets: int) -> None:
        await self._arun("INSERT OR REPLACE INTO recordings VALUES (?,?,?,?)",
                         (call_id, track, digest, packets))

    def recordings(self, call_id: str) -> dict[str, tuple[str, int]]:
        rows = self._run("SELECT track, digest, packets FROM recordings WHERE call_id=?",
                         (call_id,))
        return {r[0]: (r[1], r[2]) for r in rows}

    async def add_decision(self, call_id: str, business_type: str, teller: str, decision: str,
                           reason_code: str | None, notes: str, at: float) -> None:
        await self._arun("INSERT INTO decisions VALUES (?,?,?,?,?,?,?)",
                         (call_id, business_type, teller, decision, reason_code, notes, at))

    async def review_report(self, since: float, until: float) -> list[dict[str, Any]]:
        """Counts per business type and teller between two times (epoch seconds)."""
        rows = await self._arun(
            "SELECT business_type, teller, decision, COUNT(*) FROM decisions"
            " WHERE at>=? AND at<? GROUP BY business_type, teller, decision", (since, until))
        table: dict[tuple[str, str], dict[str, Any]] = {}
        for bt, teller, decision, n in rows:
            row = table.setdefault((bt, teller), {"business_type": bt, "teller": teller,
                                                  "approve": 0, "reject": 0, "incomplete": 0})
            row[decision] = n
        for row in table.values():
            total = row["approve"] + row["reject"] + row["incomplete"]
            row["total"] = total
            row["pass_rate"] = row["approve"] / total if total else None
        return sorted(table.values(), key=lambda r: (r["business_type"], r["teller"]))

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        rows = await self._arun(
            "SELECT call_id, customer_id, teller, state, end_reason, queued_at, answered_at,"
            " ended_at FROM calls WHERE call_id=?",
            (call_id,),
        )
        keys = ("call_id", "customer_id", "teller", "state", "end_reason", "queued_at",
                "answered_at", "ended_at")
        return dict(zip(keys, rows[0])) if rows else None

    # identity references (encrypted by vteller.identity.reference) ----------------
    def put_reference(self, customer_id: str, kek_id: str, wrapped: bytes, encoding: bytes,
                      photo: bytes | None, source: str, at: float, face_px: int,
                      sharpness: float) -> bool:
        """Insert or replace; True when a previous reference was replaced."""
        with self._lock:
            existed = self._db.execute("SELECT 1 FROM identity_references WHERE customer_id=?",
                                       (customer_id,)).fetchone() is not None
            self._db.execute("INSERT OR REPLACE INTO identity_references VALUES (?,?,?,?,?,?,?,?,?)",
                             (customer_id, kek_id, wrapped, encoding, photo, source, at, face_px,
                              sharpness))
            return existed

    def get_reference(self, customer_id: str) -> tuple[str, bytes, bytes] | None:
        rows = self._run("SELECT kek_id, wrapped_key, encoding FROM identity_references"
                         " WHERE customer_id=?", (customer_id,))
        return (rows[0][0], bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    def delete_reference(self, customer_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM identity_references WHERE customer_id=?",
                                   (customer_id,))
            return cur.rowcount == 1

    # legal holds (retention) ----------------------------------------------------------
    def set_legal_hold(self, session_id: str, hold: bool, by: str, reason: str) -> None:
        if hold:
            self._run("INSERT OR REPLACE INTO legal_holds VALUES (?,?,?,?)",
                      (session_id, by, reason, time.time()))
        else:
            self._run("DELETE FROM legal_holds WHERE session_id=?", (session_id,))

    # service credentials (the bank backend) -------------------------------------------
    def add_service_credential(self, name: str, key_hash: str) -> None:
        try:
            self._run("INSERT INTO service_credentials VALUES (?,?,?,0)",
                      (name, key_hash, time.time()))
        except sqlite3.IntegrityError:
            raise KeyError(f"service credential {name!r} already exists") from None

    def service_by_hash(self, key_hash: str) -> str | None:
        rows = self._run("SELECT name FROM service_credentials WHERE key_hash=? AND disabled=0",
                         (key_hash,))
        return rows[0][0] if rows else None

    def list_service_credentials(self) -> list[tuple[str, float, bool]]:
        return [(r[0], r[1], bool(r[2])) for r in self._run(
            "SELECT name, created_at, disabled FROM service_credentials ORDER BY name")]

    def revoke_service_credential(self, name: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE service_credentials SET disabled=1 WHERE name=?",
                                   (name,))
            return cur.rowcount == 1
