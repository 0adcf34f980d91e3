"""The access log: who searched, opened, replayed, exported or held which session,
when and why. Its own hash chain, every entry signed with the checkpoint key, so a
deleted, changed or reordered entry is detected (`verify`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vteller.store import Store

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
    def __init__(self, store: Store, signer: Ed25519PrivateKey) -> None:
        self._store = store
        self._signer = signer
        raw = signer.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
        self._pseudonym_key = HKDF(hashes.SHA256(), 32, None,
                                   b"vteller access-log pseudonyms v1").derive(raw)

    def pseudonym(self, customer_id: str) -> str:
        """How a customer id is written into the (append-only, never purged) access log:
        a keyed hash. Whoever holds the server's keys can check a given id against it;
        nobody can read an id out of it once the customer's sessions are purged."""
        return "cref:" + hmac.new(self._pseudonym_key, customer_id.encode(),
                                  hashlib.sha256).hexdigest()[:24]

    def record(self, user: str, action: str, session_id: str | None, reason: str,
               **detail: Any) -> int:
        """Append one entry (blocking; durable when it returns)."""
        text = json.dumps(detail, sort_keys=True)

        def make(seq: int, prev: bytes) -> tuple[Any, ...]:
            prev = prev or GENESIS
            at = f"{time.time():.6f}"
            h = entry_hash(seq, at, user, action, session_id or "", reason, text, prev)
            return (seq, at, user, action, session_id, reason, text, prev, h,
                    self._signer.sign(h))

        return self._store.append_access(make)

    def entries(self, limit: int = 200, session_id: str | None = None) -> list[dict[str, Any]]:
        rows = self._store.access_entries(limit, session_id)
        return [{"seq": r[0], "at": float(r[1]), "user": r[2], "action": r[3],
                 "session_id": r[4], "reason": r[5], "detail": json.loads(r[6])} for r in rows]


def verify(store: Store, public_key: Ed25519PublicKey,
           last: int | None = None) -> AccessReport:
    """The whole chain, or (`last`) only its newest entries: each is signed on its own,
    so a window verifies standalone, anchored on the stored hash of the entry before
    it. The console checks the window it shows; `vteller audit verify-access` the rest."""
    report = AccessReport()
    rows = store.access_rows(last)
    if last is None:
        prev, expected = GENESIS, 1
    else:
        anchor = rows.pop(0) if len(rows) > last else None
        prev = bytes(anchor[8]) if anchor else GENESIS
        expected = anchor[0] + 1 if anchor else 1
    for i, (seq, at, user, action, sid, reason, detail, prev_hash, h, sig) in enumerate(
            rows, expected):
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
