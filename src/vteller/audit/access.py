"""The access log: who searched, opened, replayed, exported or held which session,
when and why. Its own hash chain, every entry signed with the checkpoint key, so a
deleted, changed or reordered entry is detected (`verify`)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vteller.store import SqliteStore

GENESIS = hashlib.sha256(b"vteller access log v1").digest()


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def entry_hash(seq: int, at: str, user: str, action: str, session_id: str, reason: str,
               detail: str, prev: bytes) -> bytes:
    parts = [str(seq).encode(), at.encode(), user.encode(), action.encode(),
             session_id.encode(), reason.encode(), detail.encode(), prev]
    return hashlib.sha256(b"".join(_lp(p) for p in parts)).digest()


@dataclass
class AccessReport:
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AccessLog:
    def __init__(self, store: SqliteStore, signer: Ed25519PrivateKey) -> None:
        self._store = store
        self._signer = signer
        self._lock = threading.Lock()

    def record(self, user: str, action: str, session_id: str | None, reason: str,
               **detail: Any) -> int:
        """Append one entry (blocking; durable when it returns)."""
        with self._lock:
            last = self._store.run("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1")
            seq, prev = (last[0][0] + 1, bytes(last[0][1])) if last else (1, GENESIS)
            at = f"{time.time():.6f}"
            text = json.dumps(detail, sort_keys=True)
            h = entry_hash(seq, at, user, action, session_id or "", reason, text, prev)
            self._store.run("INSERT INTO access_log VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (seq, at, user, action, session_id, reason, text, prev, h,
                             self._signer.sign(h)))
            return seq

    def entries(self, limit: int = 200, session_id: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE session_id=?", (session_id,)) if session_id else ("", ())
        rows = self._store.run(
            f"SELECT seq, at, user, action, session_id, reason, detail FROM access_log {where}"
            " ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [{"seq": r[0], "at": float(r[1]), "user": r[2], "action": r[3],
                 "session_id": r[4], "reason": r[5], "detail": json.loads(r[6])} for r in rows]


def verify(store: SqliteStore, public_key: Ed25519PublicKey) -> AccessReport:
    report = AccessReport()
    prev = GENESIS
    rows = store.run("SELECT seq, at, user, action, session_id, reason, detail, prev_hash, hash,"
                     " signature FROM access_log ORDER BY seq")
    for i, (seq, at, user, action, sid, reason, detail, prev_hash, h, sig) in enumerate(rows, 1):
        where = f"entry {seq}"
        if seq != i:
            report.problems.append(f"{where}: sequence gap (expected {i}: entries deleted)")
        if bytes(prev_hash) != prev:
            report.problems.append(f"{where}: does not link to the previous entry")
        computed = entry_hash(seq, at, user, action, sid or "", reason, detail, bytes(prev_hash))
        if computed != bytes(h):
            report.problems.append(f"{where}: altered")
        try:
            public_key.verify(bytes(sig), bytes(h))
        except InvalidSignature:
            report.problems.append(f"{where}: signature invalid")
        prev = computed
    report.entries = len(rows)
    return report
