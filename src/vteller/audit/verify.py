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
    public_key_sha256: str = ""  # bundles: the key the signatures were checked with

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")


Row = tuple[int, str, str, str, bytes, bytes, bytes, bytes]  # seq, at, actor, kind, nonce,
#                                                          payload, prev_hash, hash


@dataclass
class Chain:
    """What the event chain check learned."""

    heads: dict[int, bytes] = field(default_factory=dict)
    tracks: dict[str, str] = field(default_factory=dict)  # from recording.closed (needs key)
    events: list[dict[str, object]] = field(default_factory=list)  # decrypted (needs key)
    last: int = 0


def check_chain(r: Report, session_id: str, rows: list[Row], key: bytes | None,
                progress: Callable[[str, int, int], None] | None = None) -> Chain:
    """Sequence, links and record hashes; with the data key, every payload too."""
    chain = Chain()
    if not rows:
        r.fail("events", "no events for this session")
    prev = genesis(session_id)
    for i, (seq, at, actor, kind, nonce, payload, prev_hash, h) in enumerate(rows, 1):
        where = f"event {seq}"
        if seq != i:
            r.fail(where, f"sequence gap or reorder (expected {i})")
        if prev_hash != prev:
            r.fail(where, "does not link to the previous event (chain broken)")
        computed = record_hash(session_id, seq, at, actor, kind, nonce, payload, prev_hash)
        if computed != h:
            r.fail(where, "record altered (hash mismatch)")
        if key is not None:
            try:
                data = json.loads(AESGCM(key).decrypt(nonce, payload, event_aad(
                    session_id, seq, at, actor, kind, prev_hash)))
                chain.events.append({"seq": seq, "at": at, "actor": actor, "kind": kind, **data})
                if kind == "recording.closed":
                    chain.tracks[data["track"]] = data["digest"]
                if kind == "session.sealed_incomplete":
                    r.incomplete = True
            except (InvalidTag, ValueError):
                r.fail(where, "payload altered (decryption failed)")
        prev = computed
        chain.heads[seq] = computed
        if progress and i % 500 == 0:
            progress("events", i, len(rows))
    r.checked.append(f"chain: {len(rows)} events")
    chain.last = len(rows)
    return chain


def check_checkpoints(r: Report, session_id: str,
                      cps: list[tuple[int, bytes, str, bool, bytes]], chain: Chain,
                      public_key: Ed25519PublicKey) -> tuple[int, bytes] | None:
    """Signatures and heads of (seq, head, at, final, signature); returns the final one."""
    final = None
    for seq, head, at, fin, sig in cps:
        where = f"checkpoint at event {seq}"
        try:
            public_key.verify(sig, checkpoint_message(session_id, seq, head, at, fin))
        except InvalidSignature:
            r.fail(where, "signature invalid")
            continue
        if chain.heads.get(seq) != head:
            r.fail(where, "does not match the event chain (events altered or deleted)")
        if fin:
            final = (seq, head)
    if final is None:
        r.fail("checkpoints", "no signed final checkpoint (session not closed or truncated)")
    elif final[0] != chain.last:
        r.fail("checkpoints", f"final checkpoint covers {final[0]} events, the trail has "
               f"{chain.last} (events deleted or appended)")
    r.checked.append(f"checkpoints: {len(cps)}")
    return final


def check_log_entry(r: Report, session_id: str, entry: bytes, index: int, proof: list[bytes],
                    signed_head: tuple[int, bytes, str, bytes],
                    final: tuple[int, bytes] | None,
                    public_key: Ed25519PublicKey) -> dict[str, object]:
    """The session's global-log entry: included under the signed tree head (size, root,
    at, signature) and matching the final checkpoint. Returns the entry."""
    size, root, at, sig = signed_head
    try:
        public_key.verify(sig, log_head_message(size, root, at))
    except InvalidSignature:
        r.fail("global log", "tree head signature invalid")
    if index >= size or not merkle.verify_inclusion(index, size, merkle.leaf_hash(entry),
                                                    proof, root):
        r.fail("global log", "inclusion proof does not match the signed tree head "
               "(log altered)")
    try:
        logged = json.loads(entry)
    except ValueError:
        logged = {"seq": None, "head": None, "tracks": None}
        r.fail("global log", "entry unreadable (altered)")
    if final is not None and (logged.get("session", session_id) != session_id
                              or logged["seq"] != final[0] or logged["head"] != final[1].hex()):
        r.fail("global log", "entry does not match the session's final checkpoint")
    r.checked.append(f"global log: entry {index} of {size}")
    return logged


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

    # 1. the chain, 2. checkpoints
    rows = [(seq, at, actor, kind, bytes(n), bytes(p), bytes(ph), bytes(h)) for
            seq, at, actor, kind, n, p, ph, h in store.run(
                "SELECT seq, at, actor, kind, nonce, payload, prev_hash, hash FROM "
                "audit_events WHERE session_id=? ORDER BY seq", (session_id,))]
    chain = check_chain(r, session_id, rows, key, progress)
    tracks_in_chain = chain.tracks
    cps = [(seq, bytes(head), at, bool(fin), bytes(sig)) for seq, head, at, fin, sig in
           store.run("SELECT seq, head, at, final, signature FROM audit_checkpoints "
                     "WHERE session_id=? ORDER BY seq", (session_id,))]
    final = check_checkpoints(r, session_id, cps, chain, public_key)

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
        leaves = [merkle.leaf_hash(bytes(e)) for _, _, e in entries[:size]]
        index, entry = mine[-1]
        logged = check_log_entry(r, session_id, entry, index,
                                 merkle.inclusion_proof(index, leaves),
                                 (size, bytes(root), at, bytes(sig)), final, public_key)
        if key is not None and logged["tracks"] != tracks_in_chain:
            r.fail("global log", "track digests differ from the trail")

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
