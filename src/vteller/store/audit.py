"""Audit rows: session keys, the hash-chained events and signed checkpoints, the global
Merkle log of sessions, the access log, legal holds and purges. The cryptography lives
in `vteller.audit`; this module only stores and reads, with the database (never a
Python lock) ordering concurrent writers: a unique (session, seq) per event, and an
advisory lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite) around each global-log append.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from vteller.audit import merkle
from vteller.store.db import Database, IntegrityError, Row

GLOBAL_LOG_LOCK = "vteller global log"
ACCESS_LOG_LOCK = "vteller access log"
EVENT_COLUMNS = "seq, at, actor, kind, nonce, payload, prev_hash, hash"
CHECKPOINT_COLUMNS = "seq, head, at, final, signature"
ACCESS_COLUMNS = 'seq, at, "user", action, session_id, reason, detail, prev_hash, hash, signature'

# (size, root) -> (at, signature): signs a new tree head
HeadSigner = Callable[[int, bytes], tuple[str, bytes]]


class AuditRepository:
    db: Database

    # session keys -------------------------------------------------------------------------
    def put_session_key(self, session_id: str, kek_id: str, wrapped: bytes) -> None:
        self.db.execute("INSERT INTO session_keys VALUES (?,?,?)", (session_id, kek_id, wrapped))

    def session_key(self, session_id: str) -> tuple[Any, Any] | None:
        """(kek id, wrapped key) as stored (verify checks their types)."""
        rows = self.db.execute("SELECT kek_id, wrapped FROM session_keys WHERE call_id=?",
                               (session_id,))
        if not rows:
            return None
        kek_id, wrapped = rows[0]
        return kek_id, bytes(wrapped) if isinstance(wrapped, (bytes, memoryview)) else wrapped

    def delete_session_key(self, session_id: str) -> None:
        self.db.execute("DELETE FROM session_keys WHERE call_id=?", (session_id,))

    # events and checkpoints -----------------------------------------------------------------
    def append_event(self, session_id: str, seq: int, at: str, actor: str, kind: str,
                     nonce: bytes, payload: bytes, prev_hash: bytes, hash_: bytes) -> None:
        """IntegrityError when `seq` is taken: two writers can never fork a chain."""
        self.db.execute("INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?)",
                        (session_id, seq, at, actor, kind, nonce, payload, prev_hash, hash_))

    def events(self, session_id: str) -> list[Row]:
        return self.db.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE session_id=? "
                               "ORDER BY seq", (session_id,))

    def last_event(self, session_id: str) -> tuple[int, bytes] | None:
        rows = self.db.execute("SELECT seq, hash FROM audit_events WHERE session_id=? "
                               "ORDER BY seq DESC LIMIT 1", (session_id,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def session_exists(self, session_id: str) -> bool:
        return bool(self.db.execute(
            "SELECT 1 FROM audit_events WHERE session_id=? LIMIT 1", (session_id,)))

    def put_checkpoint(self, session_id: str, seq: int, head: bytes, at: str, final: bool,
                       signature: bytes) -> None:
        """The final checkpoint may replace a periodic one at the same event."""
        self.db.execute(
            "INSERT INTO audit_checkpoints VALUES (?,?,?,?,?,?) ON CONFLICT (session_id, seq) "
            "DO UPDATE SET head=excluded.head, at=excluded.at, final=excluded.final, "
            "signature=excluded.signature",
            (session_id, seq, head, at, int(final), signature))

    @contextlib.contextmanager
    def session_closing(self, session_id: str, seq: int, head: bytes) -> Iterator[None]:
        """One transaction, queued behind every other close (the global log's lock),
        that first checks the writer still holds the session's head: no event after
        `seq`, no final checkpoint. IntegrityError otherwise (a node taken for dead
        and sealed by a survivor must not close the session a second time)."""
        with self.db.atomic(lock=GLOBAL_LOG_LOCK):
            last = self.last_event(session_id)
            if (last is None and seq != 0) or (last is not None and last != (seq, head)) \
                    or self.db.execute("SELECT 1 FROM audit_checkpoints WHERE session_id=? "
                                       "AND final=1 LIMIT 1", (session_id,)):
                raise IntegrityError(f"session {session_id} was closed or written by "
                                     "another writer")
            yield

    def checkpoints(self, session_id: str) -> list[Row]:
        return self.db.execute(f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints "
                               "WHERE session_id=? ORDER BY seq", (session_id,))

    def checkpoint_count(self, session_id: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM audit_checkpoints WHERE session_id=?",
                                   (session_id,))[0][0])

    def sessions_without_final_checkpoint(self) -> list[str]:
        """Candidates for crash sealing (the caller decides from signatures)."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT session_id FROM audit_events WHERE session_id NOT IN "
            "(SELECT session_id FROM audit_checkpoints WHERE final=1) ORDER BY session_id")]

    def closed_session_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT session_id FROM audit_checkpoints WHERE final=1")}

    # the global log --------------------------------------------------------------------------
    def append_log_entry(self, session_id: str, entry: bytes, sign: HeadSigner) -> int:
        """Append one entry and sign the new tree head, in one transaction that every
        process queues for; O(log n) from the stored frontier. Returns the entry's index
        (0-based)."""
        with self.db.atomic(lock=GLOBAL_LOG_LOCK):
            state = self.db.execute("SELECT size, frontier FROM audit_log_state WHERE id=1")
            size, frontier = (state[0][0], merkle.unpack(bytes(state[0][1]))) if state \
                else (0, [])
            self.db.execute("INSERT INTO audit_log VALUES (?,?,?)", (size + 1, session_id, entry))
            frontier = merkle.frontier_append(frontier, size, merkle.leaf_hash(entry))
            root = merkle.frontier_root(frontier)
            at, signature = sign(size + 1, root)
            self.db.execute("INSERT INTO audit_log_heads VALUES (?,?,?,?)",
                            (size + 1, root, at, signature))
            self.db.execute(
                "INSERT INTO audit_log_state VALUES (1,?,?) ON CONFLICT (id) DO UPDATE "
                "SET size=excluded.size, frontier=excluded.frontier",
                (size + 1, merkle.pack(frontier)))
        return size

    def log_entries(self) -> list[Row]:
        """(idx, session_id, entry) of the whole log, in order."""
        return self.db.execute("SELECT idx, session_id, entry FROM audit_log ORDER BY idx")

    def log_entries_of(self, session_id: str) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute(
            "SELECT entry FROM audit_log WHERE session_id=? ORDER BY idx", (session_id,))]

    def in_global_log(self, session_id: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM audit_log WHERE session_id=? LIMIT 1",
                                    (session_id,)))

    def latest_head(self) -> Row | None:
        """(size, root, at, signature) of the largest signed tree head, as stored."""
        rows = self.db.execute("SELECT size, root, at, signature FROM audit_log_heads "
                               "ORDER BY size DESC LIMIT 1")
        return rows[0] if rows else None

    # the access log ---------------------------------------------------------------------------
    def append_access(self, make: Callable[[int, bytes], tuple[Any, ...]]) -> int:
        """`make(seq, prev_hash)` builds the row; the database orders the appends."""
        with self.db.atomic(lock=ACCESS_LOG_LOCK):
            last = self.db.execute("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1")
            seq, prev = (last[0][0] + 1, bytes(last[0][1])) if last else (1, b"")
            row = make(seq, prev)
            self.db.execute(f"INSERT INTO access_log ({ACCESS_COLUMNS}) VALUES "
                            "(?,?,?,?,?,?,?,?,?,?)", row)
        return seq

    def access_entries(self, limit: int, session_id: str | None = None) -> list[Row]:
        """Newest first: (seq, at, user, action, session_id, reason, detail)."""
        where, args = ("WHERE session_id=?", (session_id,)) if session_id else ("", ())
        return self.db.execute(
            f'SELECT seq, at, "user", action, session_id, reason, detail FROM access_log '
            f"{where} ORDER BY seq DESC LIMIT ?", (*args, limit))

    def opened_by(self, session_id: str, user: str) -> bool:
        """Whether this auditor opened (verified and read) the session."""
        return bool(self.db.execute(
            'SELECT 1 FROM access_log WHERE session_id=? AND "user"=? AND action=? LIMIT 1',
            (session_id, user, "open")))

    def access_rows(self, last: int | None = None) -> list[Row]:
        """Full rows in order: all of them, or the newest `last` + 1 (the anchor)."""
        if last is None:
            return self.db.execute(f"SELECT {ACCESS_COLUMNS} FROM access_log ORDER BY seq")
        return self.db.execute(f"SELECT {ACCESS_COLUMNS} FROM access_log ORDER BY seq DESC "
                               "LIMIT ?", (last + 1,))[::-1]

    # legal holds, retention ----------------------------------------------------------------------
    def set_legal_hold(self, session_id: str, hold: bool, by: str, reason: str,
                       at: float | None = None) -> None:
        import time

        if hold:
            self.db.execute(
                "INSERT INTO legal_holds VALUES (?,?,?,?) ON CONFLICT (session_id) DO UPDATE "
                "SET set_by=excluded.set_by, reason=excluded.reason, at=excluded.at",
                (session_id, by, reason, time.time() if at is None else at))
        else:
            self.db.execute("DELETE FROM legal_holds WHERE session_id=?", (session_id,))

    def legal_hold(self, session_id: str) -> tuple[str, str, float] | None:
        rows = self.db.execute("SELECT set_by, reason, at FROM legal_holds WHERE session_id=?",
                               (session_id,))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def purged(self, session_id: str) -> tuple[float, str] | None:
        rows = self.db.execute("SELECT at, reason FROM purged_sessions WHERE session_id=?",
                               (session_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def retention_candidates(self) -> list[tuple[str, str, float]]:
        """(session, business type, ended) of closed sessions not held, not purged."""
        return [(r[0], r[1], r[2]) for r in self.db.execute(
            "SELECT c.call_id, c.business_type, COALESCE(c.ended_at, c.queued_at) FROM calls c"
            " WHERE c.call_id IN (SELECT session_id FROM audit_checkpoints WHERE final=1)"
            " AND c.call_id NOT IN (SELECT session_id FROM legal_holds)"
            " AND c.call_id NOT IN (SELECT session_id FROM purged_sessions)")]

    def shred(self, session_id: str, reason: str, at: float) -> None:
        """After the tombstone: the data key goes (crypto-shredding) and what identifies
        the customer outside the encrypted trail is blanked."""
        with self.db.atomic():
            self.delete_session_key(session_id)
            self.db.execute("UPDATE calls SET customer_id='purged' WHERE call_id=?",
                            (session_id,))
            self.db.execute("UPDATE decisions SET notes='' WHERE call_id=?", (session_id,))
            self.db.execute("UPDATE surveys SET comment='' WHERE call_id=?", (session_id,))
            self.db.execute("UPDATE approvals SET payload='{}' WHERE call_id=?", (session_id,))
            self.db.execute("UPDATE outbox SET payload='{}' WHERE event_id=? AND state<>'pending'",
                            (f"decision:{session_id}",))
            self.db.execute(
                "INSERT INTO purged_sessions VALUES (?,?,?) ON CONFLICT (session_id) DO UPDATE "
                "SET at=excluded.at, reason=excluded.reason", (session_id, at, reason))
