"""Verify a session: chain, checkpoint signatures, global-log inclusion, every track.

Needs the checkpoint public key; the key-encryption key only to decrypt payloads and
tracks (without it those checks are reported as skipped, the rest still runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vteller.audit import merkle
from vteller.audit.keys import KekProvider, KeyError_, WrappedKey
from vteller.audit.stream import StreamError, decrypt
from vteller.audit.trail import (
    _sha256_file,
    checkpoint_message,
    event_aad,
    genesis,
    log_head_message,
    record_hash,
)
from vteller.store import BlobStore, SqliteStore


@dataclass
class Report:
    session_id: str
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    incomplete: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")


def verify_session(store: SqliteStore, session_id: str, public_key: Ed25519PublicKey,
                   kek: KekProvider | None, blobs: BlobStore,
                   progress: Callable[[str, int, int], None] | None = None) -> Report:
    r = Report(session_id)
    key = None
    if kek is not None:
        row = store.session_key(session_id)
        if row is None:
            r.fail("session key", "missing")
        else:
            try:
                key = kek.unwrap(WrappedKey(*row), session_id)
            except KeyError_ as exc:
                r.fail("session key", str(exc))

    # 1. the chain
    rows = store.run("SELECT seq, at, actor, kind, nonce, payload, prev_hash, hash FROM "
                     "audit_events WHERE session_id=? ORDER BY seq", (session_id,))
    if not rows:
        r.fail("events", "no events for this session")
    prev, heads, tracks_in_chain = genesis(session_id), {}, {}
    for i, (seq, at, actor, kind, nonce, payload, prev_hash, h) in enumerate(rows, 1):
        where = f"event {seq}"
        if seq != i:
            r.fail(where, f"sequence gap or reorder (expected {i})")
        if bytes(prev_hash) != prev:
            r.fail(where, "does not link to the previous event (chain broken)")
        computed = record_hash(session_id, seq, at, actor, kind, bytes(nonce), bytes(payload),
                               bytes(prev_hash))
        if computed != bytes(h):
            r.fail(where, "record altered (hash mismatch)")
        if key is not None:
            try:
                data = json.loads(AESGCM(key).decrypt(bytes(nonce), bytes(payload), event_aad(
                    session_id, seq, at, actor, kind, bytes(prev_hash))))
                if kind == "recording.closed":
                    tracks_in_chain[data["track"]] = data["digest"]
                if kind == "session.sealed_incomplete":
                    r.incomplete = True
            except (InvalidTag, ValueError):
                r.fail(where, "payload altered (decryption failed)")
        prev = computed
        heads[seq] = computed
        if progress and i % 500 == 0:
            progress("events", i, len(rows))
    r.checked.append(f"chain: {len(rows)} events")
    last = len(rows)

    # 2. checkpoints
    final = None
    cps = store.run("SELECT seq, head, at, final, signature FROM audit_checkpoints "
                    "WHERE session_id=? ORDER BY seq", (session_id,))
    for seq, head, at, fin, sig in cps:
        where = f"checkpoint at event {seq}"
        try:
            public_key.verify(bytes(sig), checkpoint_message(session_id, seq, bytes(head), at,
                                                             bool(fin)))
        except InvalidSignature:
            r.fail(where, "signature invalid")
            continue
        if heads.get(seq) != bytes(head):
            r.fail(where, "does not match the event chain (events altered or deleted)")
        if fin:
            final = (seq, bytes(head))
    if final is None:
        r.fail("checkpoints", "no signed final checkpoint (session not closed or truncated)")
    elif final[0] != last:
        r.fail("checkpoints", f"final checkpoint covers {final[0]} events, the trail has {last}"
               " (events deleted or appended)")
    r.checked.append(f"checkpoints: {len(cps)}")

    # 3. the global log
    entries = store.run("SELECT idx, session_id, entry FROM audit_log ORDER BY idx")
    head_row = store.run("SELECT size, root, at, signature FROM audit_log_heads "
                         "ORDER BY size DESC LIMIT 1")
    mine = [(i, bytes(e)) for i, (_, sid, e) in enumerate(entries)
            if sid == session_id and b'"tombstone"' not in bytes(e)]
    if not head_row:
        r.fail("global log", "no signed tree head")
    elif not mine:
        r.fail("global log", "session not in the global log (deleted or never closed)")
    else:
        size, root, at, sig = head_row[0]
        try:
            public_key.verify(bytes(sig), log_head_message(size, bytes(root), at))
        except InvalidSignature:
            r.fail("global log", "tree head signature invalid")
        leaves = [merkle.leaf_hash(bytes(e)) for _, _, e in entries[:size]]
        index, entry = mine[-1]
        proof = merkle.inclusion_proof(index, leaves)
        if index >= size or not merkle.verify_inclusion(index, size, merkle.leaf_hash(entry),
                                                        proof, bytes(root)):
            r.fail("global log", "inclusion proof does not match the signed tree head "
                   "(log altered)")
        try:
            logged = json.loads(entry)
        except ValueError:
            logged = {"seq": None, "head": None, "tracks": None}
            r.fail("global log", "entry unreadable (altered)")
        if final is not None and (logged["seq"] != final[0] or logged["head"] != final[1].hex()):
            r.fail("global log", "entry does not match the session's final checkpoint")
        if key is not None and logged["tracks"] != tracks_in_chain:
            r.fail("global log", "track digests differ from the trail")
        r.checked.append(f"global log: entry {index} of {size}")

    # 4. tracks
    files = {k.split("/", 1)[1] for k in blobs.list(session_id)}
    for name in sorted(files - set(tracks_in_chain)):
        if key is not None:
            r.fail(f"track {name}", "file not recorded in the trail")
    for n, (name, digest) in enumerate(sorted(tracks_in_chain.items()), 1):
        blob = f"{session_id}/{name}"
        if not blobs.exists(blob):
            r.fail(f"track {name}", "file missing")
            continue
        with blobs.open_read(blob) as fh:
            digest_ok = _sha256_file(fh) == digest
        if not digest_ok:
            r.fail(f"track {name}", "file differs from the digest in the trail")
        if key is not None:
            try:
                with blobs.open_read(blob) as fh:
                    for _ in decrypt(fh, lambda _kid: key):
                        pass
            except StreamError as exc:
                if not (exc.kind == "truncated" and r.incomplete):
                    r.fail(f"track {name}", str(exc))
        if progress:
            progress("tracks", n, len(tracks_in_chain))
    r.checked.append(f"tracks: {len(tracks_in_chain)}")
    if key is None:
        r.checked.append("payloads and track contents: skipped (no key-encryption key)")
    return r
