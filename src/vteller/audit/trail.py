"""The session audit trail: encrypted, hash-chained events with signed checkpoints,
and a global Merkle log of closed sessions (so a deleted or swapped session shows).

Event record: seq, wall time, actor and kind in clear; the payload (JSON) encrypted
with AES-256-GCM under the session's data key (wrapped by the KEK), with every clear
field and the previous record's hash as associated data. Each record's hash covers all
its fields and its predecessor's hash; the first predecessor is
SHA-256("vteller trail v1" || session id). A checkpoint signs (session, seq, head hash,
final) with the Ed25519 key every `checkpoint_every` events and at close. Closing a
session appends an entry (session, final seq, head, incomplete, track digests) to the
global log (RFC 9162 leaf/node hashing) and signs the new tree head (size, root).

Durability: an append is committed when it returns (SQLite in WAL mode with
synchronous=FULL, or a PostgreSQL commit). The call coordinator queues appends on one ordered
writer; a client may see a state change a few milliseconds before its event is durable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vteller.audit.keys import KekProvider, KeyError_, WrappedKey, unwrap_session_key
from vteller.store import BlobStore, IntegrityError, Store, StoreError
from vteller.tls import write_private

SIGNING_KEY = "signing.key"
log = logging.getLogger(__name__)


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def genesis(session_id: str) -> bytes:
    return hashlib.sha256(b"vteller trail v1" + session_id.encode()).digest()


def record_hash(session_id: str, seq: int, at: str, actor: str, kind: str, nonce: bytes,
                payload: bytes, prev: bytes) -> bytes:
    return hashlib.sha256(b"vteller event v1" + b"".join(_lp(x) for x in (
        session_id.encode(), struct.pack(">Q", seq), at.encode(), actor.encode(), kind.encode(),
        nonce, payload, prev))).digest()


def event_aad(session_id: str, seq: int, at: str, actor: str, kind: str, prev: bytes) -> bytes:
    return b"".join(_lp(x) for x in (session_id.encode(), struct.pack(">Q", seq), at.encode(),
                                     actor.encode(), kind.encode(), prev))


def checkpoint_message(session_id: str, ordinal: int, seq: int, head: bytes, at: str,
                       final: bool) -> bytes:
    """`ordinal`: this is the session's n-th checkpoint (1, 2, ...), so a deleted or
    moved checkpoint shows as a gap."""
    return b"vteller checkpoint v2" + b"".join(_lp(x) for x in (
        session_id.encode(), struct.pack(">QQ", ordinal, seq), head, at.encode(),
        bytes([final])))


def manifest_message(manifest: bytes) -> bytes:
    """What signs an evidence bundle's manifest (domain-separated from the rest)."""
    return b"vteller bundle manifest v2" + _lp(manifest)


def log_head_message(size: int, root: bytes, at: str) -> bytes:
    return b"vteller log v1" + struct.pack(">Q", size) + _lp(root) + _lp(at.encode())


def load_or_create_signing_key(directory: Path) -> Ed25519PrivateKey:
    path = directory / SIGNING_KEY
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return key
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _sha256_file(fh: Any) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def _valid(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message)
        return True
    except InvalidSignature:
        return False


@dataclass
class _Open:
    key: bytes
    head: bytes
    seq: int
    since_checkpoint: int = 0
    checkpoints: int = 0  # signed so far
    checkpoint_seq: int = -1  # the event the last one covers


class AuditTrail:
    """Appends and seals session trails. Methods are blocking: call them from the
    coordinator's ordered writer (a worker thread), never on the event loop. A lock
    keeps writers from other threads (reference enrollment) from interleaving."""

    def __init__(self, store: Store, kek: KekProvider, signer: Ed25519PrivateKey,
                 checkpoint_every: int = 50, owner: str | None = None) -> None:
        self._store = store
        self.owner = owner  # the node whose sessions these are (none: a CLI tool)
        self._kek = kek
        self._signer = signer
        self._every = checkpoint_every
        self._open: dict[str, _Open] = {}
        self._lock = threading.RLock()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._signer.public_key()

    def sign_manifest(self, manifest: bytes) -> bytes:
        return self._signer.sign(manifest_message(manifest))

    # sessions -----------------------------------------------------------------
    def open_session(self, session_id: str, data_key: bytes, wrapped: WrappedKey) -> None:
        with self._lock:
            self._open_session(session_id, data_key, wrapped)

    def _open_session(self, session_id: str, data_key: bytes, wrapped: WrappedKey) -> None:
        with self._store.atomic():
            self._store.put_session_key(session_id, wrapped.kek_id, wrapped.blob)
            if self.owner is not None:
                self._store.own_session(session_id, self.owner)
        self._open[session_id] = _Open(data_key, genesis(session_id), 0)

    def append(self, session_id: str, actor: str, kind: str, data: dict[str, Any]) -> int:
        with self._lock:
            return self._append(session_id, self._open[session_id], actor, kind, data)

    def _append(self, session_id: str, s: _Open, actor: str, kind: str,
                data: dict[str, Any]) -> int:
        seq, at = s.seq + 1, f"{time.time():.6f}"
        nonce = os.urandom(12)
        payload = AESGCM(s.key).encrypt(nonce, json.dumps(data, sort_keys=True).encode(),
                                        event_aad(session_id, seq, at, actor, kind, s.head))
        h = record_hash(session_id, seq, at, actor, kind, nonce, payload, s.head)
        self._store.append_event(session_id, seq, at, actor, kind, nonce, payload, s.head, h)
        s.seq, s.head = seq, h
        s.since_checkpoint += 1
        if s.since_checkpoint >= self._every:
            self._checkpoint(session_id, s, final=False)
        return seq

    def _checkpoint(self, session_id: str, s: _Open, final: bool) -> None:
        at = f"{time.time():.6f}"
        if s.checkpoint_seq != s.seq:  # else the final one replaces a periodic one
            s.checkpoints += 1
            s.checkpoint_seq = s.seq
        sig = self._signer.sign(checkpoint_message(session_id, s.checkpoints, s.seq, s.head,
                                                   at, final))
        self._store.put_checkpoint(session_id, s.seq, s.head, at, final, sig)
        s.since_checkpoint = 0

    def close_session(self, session_id: str, tracks: dict[str, str],
                      incomplete: bool = False) -> None:
        """Bind track digests, sign the final checkpoint, enter the global log."""
        with self._lock:
            self._close_session(session_id, tracks, incomplete)

    def _close_session(self, session_id: str, tracks: dict[str, str],
                       incomplete: bool = False) -> None:
        s = self._open[session_id]
        saved = dataclasses.replace(s)  # a failed transaction leaves the session as it was
        try:
            self._close_in_transaction(session_id, s, tracks, incomplete)
        except BaseException:
            self._open[session_id] = saved
            raise
        self._open.pop(session_id, None)

    def _close_in_transaction(self, session_id: str, s: _Open, tracks: dict[str, str],
                              incomplete: bool) -> None:
        # the final checkpoint, log entry and tree head together, by the head's holder
        with self._store.session_closing(session_id, s.seq, s.head):
            for name, digest in sorted(tracks.items()):
                self._append(session_id, s, "system", "recording.closed",
                             {"track": name, "digest": digest})
            self._checkpoint(session_id, s, final=True)
            entry = json.dumps({"session": session_id, "seq": s.seq, "head": s.head.hex(),
                                "incomplete": incomplete, "tracks": tracks},
                               sort_keys=True).encode()
            self._store.append_log_entry(session_id, entry, self._sign_head)
            if incomplete:  # the auditors' search flag, stored like every other flag
                self._store.flag_call(session_id, "incomplete")
            self._store.release_session(session_id)

    def tombstone(self, session_id: str, reason: str) -> None:
        """Record in the global log that a session was purged (retention), bound to its
        last logged head, and sign the new tree head."""
        with self._lock, self._store.atomic():
            logged = self._store.log_entries_of(session_id)
            last = json.loads(logged[-1]) if logged else {}
            entry = json.dumps({"tombstone": session_id, "purged_at": time.time(),
                                "reason": reason, "head": last.get("head")},
                               sort_keys=True).encode()
            self._store.append_log_entry(session_id, entry, self._sign_head)

    def _sign_head(self, size: int, root: bytes) -> tuple[str, bytes]:
        at = f"{time.time():.6f}"
        return at, self._signer.sign(log_head_message(size, root, at))

    def is_open(self, session_id: str) -> bool:
        return session_id in self._open

    # crash recovery -------------------------------------------------------------
    def sessions_to_seal(self, live: frozenset[str] = frozenset()) -> list[str]:
        """Sessions left open by a crash: not open here, and not owned by a node in
        `live` (a neighbour's open session is its own business). Decided from signed
        state: a session counts as closed when any of its checkpoints carries a valid
        signature *as final*, or it is in the global log, whatever its stored `final`
        column says (that column only narrows the search). An altered closed session is
        left alone, with a warning: verify reports it; sealing it would bury the
        evidence."""
        return self._unsealed(self._store.sessions_without_final_checkpoint(), live)

    def _unsealed(self, candidates: list[str], live: frozenset[str]) -> list[str]:
        out = []
        for session_id in candidates:
            if session_id in self._open or self._store.session_owner(session_id) in live:
                continue
            if self._signed_final(session_id) or self._store.in_global_log(session_id):
                log.warning("audit: a closed session's checkpoint record was altered; "
                            "not sealing it (run `vteller audit verify`)")
                continue
            out.append(session_id)
        return out

    def _signed_final(self, session_id: str) -> bool:
        """Does any stored checkpoint carry a valid signature as the final one? Its
        ordinal is tried up to its seq (at most one checkpoint per event), since rows
        in front of it may have been deleted."""
        public = self._signer.public_key()
        for seq, head, at, _final, sig in self._store.checkpoints(session_id):
            if type(seq) is int and type(at) is str and type(head) is bytes \
                    and type(sig) is bytes and seq > 0 and any(
                        _valid(public, sig, checkpoint_message(session_id, n, seq, head, at,
                                                               True))
                        for n in range(1, seq + 1)):
                return True
        return False

    def seal_open_sessions(self, blobs: BlobStore,
                           live: frozenset[str] = frozenset()) -> list[str]:
        """After a crash (at start): sessions with events but no final checkpoint, and
        no live owner, are sealed as incomplete; their track files are bound by the
        digest of what is stored. A full scan: run it at start, not periodically."""
        return self._seal_all(self.sessions_to_seal(live), blobs,
                              "server stopped without closing the session")

    def seal_sessions_of(self, node_id: str, blobs: BlobStore) -> tuple[list[str], int]:
        """Seal the open sessions a dead (evicted) node owned. Returns (sealed, left):
        `left` counts those still open (storage down, or the dead node's last write
        raced this one: a later sweep tries again)."""
        owned = self._store.sessions_owned_by(node_id)
        todo = self._unsealed(owned, frozenset())
        for session_id in set(owned) - set(todo):  # closed after all: not ours to seal
            if self._signed_final(session_id) or self._store.in_global_log(session_id):
                self._store.release_session(session_id)
        sealed = self._seal_all(todo, blobs, f"its node ({node_id}) stopped without "
                                "closing the session")
        return sealed, len(todo) - len(sealed)

    def _seal_all(self, session_ids: list[str], blobs: BlobStore, reason: str) -> list[str]:
        sealed = []
        for session_id in session_ids:
            try:
                key = unwrap_session_key(self._store, self._kek, session_id)
            except (TypeError, ValueError, KeyError_):
                key = None
            if key is None:
                log.warning("audit: an open session has no usable data key; not sealing it "
                            "(run `vteller audit verify`)")
                continue
            with self._lock:
                last, head = self._store.last_event(session_id) or (0, genesis(session_id))
                s = _Open(key, head, last)
                s.checkpoints = self._store.checkpoint_count(session_id)
                try:
                    self._seal(session_id, s, blobs, reason)
                except IntegrityError:  # its owner (or another survivor) wrote meanwhile
                    self._open.pop(session_id, None)
                    log.warning("audit: a session changed while being sealed; retried later")
                    continue
                except StoreError:
                    self._open.pop(session_id, None)
                    log.warning("audit: storage unavailable; an open session stays open "
                                "until the next attempt")
                    continue
            sealed.append(session_id)
        return sealed

    def seal_incomplete(self, session_id: str, blobs: BlobStore, reason: str) -> None:
        """Close a session of this process whose recording failed (e.g. the object store
        went away): bind what is stored. Raises StoreError while the store is still
        unreachable; the session then stays open (sealed later, or at the next start)."""
        with self._lock:
            self._seal(session_id, self._open[session_id], blobs, reason)

    def _seal(self, session_id: str, s: _Open, blobs: BlobStore, reason: str) -> None:
        tracks = {}
        for name in blobs.list(session_id):  # first: may fail while storage is down
            with blobs.open_read(name) as fh:
                tracks[name.split("/", 1)[1]] = _sha256_file(fh)
        saved = dataclasses.replace(s)  # a failed transaction leaves the session as it was
        self._open[session_id] = s
        try:
            with self._store.session_closing(session_id, s.seq, s.head):  # one step
                self._append(session_id, s, "system", "session.sealed_incomplete",
                             {"reason": reason})
                self.close_session(session_id, tracks, incomplete=True)
        except BaseException:
            self._open[session_id] = saved
            raise

    # reading ----------------------------------------------------------------------
    def events(self, session_id: str) -> list[dict[str, Any]]:
        """Decrypted events (for tests and the auditor console; verify first)."""
        key = unwrap_session_key(self._store, self._kek, session_id)
        if key is None:
            raise LookupError("no data key for this session (purged, or never opened)")
        out = []
        for seq, at, actor, kind, nonce, payload, prev, _h in self._store.events(session_id):
            data = json.loads(AESGCM(key).decrypt(bytes(nonce), bytes(payload), event_aad(
                session_id, seq, at, actor, kind, bytes(prev))))
            out.append({"seq": seq, "at": float(at), "actor": actor, "kind": kind, **data})
        return out
