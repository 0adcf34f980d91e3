"""Verify a session: chain, checkpoint signatures, global-log inclusion, every track.

Needs the checkpoint public key; the key-encryption key only to decrypt payloads and
tracks (without it those checks are reported as skipped, the rest still runs). Every
stored field is parsed strictly (`audit.records`): a malformed one is a FAILED line
naming its place, never an exception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vteller.audit import merkle, records
from vteller.audit.keys import KekProvider, KeyError_, unwrap_session_key
from vteller.audit.records import Checkpoint, Event, LogEntry, TreeHead
from vteller.audit.stream import StreamError, decrypt
from vteller.audit.trail import (
    checkpoint_message,
    event_aad,
    genesis,
    log_head_message,
    record_hash,
)
from vteller.store import BlobStore, Store, StoreError


@dataclass
class Report:
    session_id: str
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    # what `checked` says, as figures for pages to word in their language: events,
    # checkpoints, log_entry and log_size, tracks, contents_skipped (1 without a key)
    counts: dict[str, int] = field(default_factory=dict)
    incomplete: bool = False
    public_key_sha256: str = ""  # bundles: the key the signatures were checked with

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")


@dataclass
class Chain:
    """What the event chain check learned."""

    heads: dict[int, bytes] = field(default_factory=dict)
    tracks: dict[str, str] = field(default_factory=dict)  # from recording.closed (needs key)
    events: list[dict[str, object]] = field(default_factory=list)  # decrypted (needs key)
    sealed_incomplete: bool = False  # a session.sealed_incomplete event (needs key)
    last: int = 0


def check_chain(r: Report, session_id: str, rows: list[Event], key: bytes | None,
                progress: Callable[[str, int, int], None] | None = None,
                count: int | None = None) -> Chain:
    """Sequence, links and record hashes; with the data key, every payload too.
    `count`: how many records were stored (rows that failed to parse are missing)."""
    chain = Chain()
    stored = len(rows) if count is None else count
    if not stored:
        r.fail("events", "no events for this session")
    prev = genesis(session_id)
    for i, e in enumerate(rows, 1):
        where = f"event {e.seq}"
        if e.seq != i:
            r.fail(where, f"sequence gap or reorder (expected {i})")
        if e.prev_hash != prev:
            r.fail(where, "does not link to the previous event (chain broken)")
        computed = record_hash(session_id, e.seq, e.at, e.actor, e.kind, e.nonce, e.payload,
                               e.prev_hash)
        if computed != e.hash:
            r.fail(where, "record altered (hash mismatch)")
        if key is not None:
            try:
                data = json.loads(AESGCM(key).decrypt(e.nonce, e.payload, event_aad(
                    session_id, e.seq, e.at, e.actor, e.kind, e.prev_hash)))
            except (InvalidTag, ValueError):
                r.fail(where, "payload altered (decryption failed)")
            else:
                if not isinstance(data, dict):
                    r.fail(where, "payload is not a record")
                    data = {}
                chain.events.append({"seq": e.seq, "at": e.at, "actor": e.actor,
                                     "kind": e.kind, **data})
                if e.kind == "recording.closed":
                    chain.tracks[str(data.get("track"))] = str(data.get("digest"))
                if e.kind == "session.sealed_incomplete":
                    chain.sealed_incomplete = True
        prev = computed
        chain.heads[e.seq] = computed
        if progress and i % 500 == 0:
            progress("events", i, len(rows))
    r.checked.append(f"chain: {stored} events")
    r.counts["events"] = stored
    chain.last = stored
    return chain


def check_checkpoints(r: Report, session_id: str, cps: list[Checkpoint], chain: Chain,
                      public_key: Ed25519PublicKey) -> tuple[int, bytes] | None:
    """Signatures and heads; returns the final checkpoint's (seq, head)."""
    final = None
    for ordinal, cp in enumerate(cps, 1):
        where = f"checkpoint at event {cp.seq}"
        try:
            public_key.verify(cp.signature, checkpoint_message(
                session_id, ordinal, cp.seq, cp.head, cp.at, cp.final))
        except InvalidSignature:
            r.fail(where, "signature invalid (altered, or a checkpoint before it deleted)")
            continue
        if chain.heads.get(cp.seq) != cp.head:
            r.fail(where, "does not match the event chain (events altered or deleted)")
        if cp.final:
            if final is not None:
                r.fail(where, "a second final checkpoint (session reopened)")
            final = (cp.seq, cp.head)
    if final is None:
        r.fail("checkpoints", "no signed final checkpoint (session not closed or truncated)")
    elif final[0] != chain.last:
        r.fail("checkpoints", f"final checkpoint covers {final[0]} events, the trail has "
               f"{chain.last} (events deleted or appended)")
    r.checked.append(f"checkpoints: {len(cps)}")
    r.counts["checkpoints"] = len(cps)
    return final


def check_log_entry(r: Report, session_id: str, entry: bytes, index: int, proof: list[bytes],
                    head: TreeHead | None, final: tuple[int, bytes] | None,
                    public_key: Ed25519PublicKey) -> LogEntry | None:
    """The session's global-log entry: included under the signed tree head and matching
    the final checkpoint. Returns the parsed entry (None when malformed)."""
    if head is not None:
        try:
            public_key.verify(head.signature, log_head_message(head.size, head.root, head.at))
        except InvalidSignature:
            r.fail("global log", "tree head signature invalid")
        if index >= head.size or not merkle.verify_inclusion(
                index, head.size, merkle.leaf_hash(entry), proof, head.root):
            r.fail("global log", "inclusion proof does not match the signed tree head "
                   "(log altered)")
    logged = records.log_entry(r, entry, "global log entry")
    if logged is not None and final is not None and (
            logged.session != session_id or logged.seq != final[0] or logged.head != final[1]):
        r.fail("global log", "entry does not match the session's final checkpoint")
    if head is not None:
        r.checked.append(f"global log: entry {index} of {head.size}")
        r.counts.update(log_entry=index, log_size=head.size)
    return logged


def check_outcome(r: Report, chain: Chain, logged: LogEntry | None,
                  key: bytes | None) -> dict[str, str]:
    """The log entry against the decrypted trail; returns the tracks to check."""
    if logged is None:
        r.incomplete = chain.sealed_incomplete
        return chain.tracks
    if key is None:
        r.incomplete = logged.incomplete
        return logged.tracks
    r.incomplete = chain.sealed_incomplete
    if logged.tracks != chain.tracks:
        r.fail("global log", "track digests differ from the trail")
    if logged.incomplete != chain.sealed_incomplete:
        r.fail("global log", "incomplete flag differs from the trail")
    return chain.tracks


class HashingReader:
    """Reads through `fh`, hashing every byte; `finish` hashes the rest and returns
    the SHA-256 (hex) of the whole file."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._hash.update(data)
        return data

    def finish(self) -> str:
        while chunk := self._fh.read(1 << 20):
            self._hash.update(chunk)
        return self._hash.hexdigest()


def _rows(raw: list[tuple[object, ...]], columns: tuple[str, ...]) -> list[dict[str, object]]:
    return [dict(zip(columns, row, strict=True)) for row in raw]


def read_global_log(r: Report, store: Store, session_id: str
                    ) -> tuple[list[bytes], TreeHead | None, tuple[int, bytes] | None]:
    """The whole log (leaf hashes), its latest signed head and this session's (position,
    entry), read in one snapshot. Positions must be 1..n: the log is read by position."""
    with store.snapshot():
        raw = store.log_entries()
        head_row = store.latest_head()
    leaves: list[bytes] = []
    mine = None
    for pos, (idx, sid, entry) in enumerate(raw, 1):
        if idx != pos:
            r.fail("global log", f"entry at position {pos} has index {idx!r} "
                   "(positions altered or entries deleted)")
        if type(entry) is not bytes:
            r.fail(f"global log entry {pos}", "field entry malformed (not bytes)")
            entry = b""
        leaves.append(merkle.leaf_hash(entry))
        if sid == session_id and not records.is_tombstone(entry):
            mine = (pos - 1, entry)
    head = None
    if head_row is not None:
        head = records.tree_head(r, _rows([head_row], records.HEAD_COLUMNS)[0], records.DB_HEAD)
        if head is not None and head.size != len(leaves):
            r.fail("global log", f"the latest signed tree head covers {head.size} entries, "
                   f"the log holds {len(leaves)} (entries added without signing, or deleted)")
    else:
        r.fail("global log", "no signed tree head")
    return leaves, head, mine


def verify_session(store: Store, session_id: str, public_key: Ed25519PublicKey,
                   kek: KekProvider | None, blobs: BlobStore,
                   progress: Callable[[str, int, int], None] | None = None) -> Report:
    r = Report(session_id)
    key = None
    if kek is not None:
        try:
            key = unwrap_session_key(store, kek, session_id)
            if key is None:
                r.fail("session key", "missing")
        except KeyError_ as exc:
            r.fail("session key", str(exc))

    # 1. the chain, 2. checkpoints
    raw_events = store.events(session_id)
    events = records.events(r, _rows(raw_events, records.EVENT_COLUMNS), records.DB_EVENT)
    chain = check_chain(r, session_id, events, key, progress, count=len(raw_events))
    raw_cps = store.checkpoints(session_id)
    cps = records.checkpoints(r, _rows(raw_cps, records.CHECKPOINT_COLUMNS),
                              records.DB_CHECKPOINT)
    final = check_checkpoints(r, session_id, cps, chain, public_key)

    # 3. the global log
    leaves, head, mine = read_global_log(r, store, session_id)
    logged = None
    if mine is None:
        r.fail("global log", "session not in the global log (deleted or never closed)")
    else:
        index, entry = mine
        logged = check_log_entry(r, session_id, entry, index,
                                 merkle.inclusion_proof(index, leaves), head, final,
                                 public_key)
    tracks = check_outcome(r, chain, logged, key)

    # 4. tracks
    files = {k.split("/", 1)[1] for k in blobs.list(session_id)}
    for name in sorted(files - set(tracks)):
        r.fail(f"track {name}", "file not recorded in the trail")
    for n, (name, digest) in enumerate(sorted(tracks.items()), 1):
        blob = f"{session_id}/{name}"
        try:
            present = blobs.exists(blob)
        except ValueError:  # a name the blob store refuses
            r.fail(f"track {name}", "name malformed")
            continue
        if not present:
            r.fail(f"track {name}", "file missing")
            continue
        try:
            with blobs.open_read(blob) as fh:
                reader = HashingReader(fh)  # one pass: digest and decryption together
                problem = None
                if key is not None:
                    try:
                        for _ in decrypt(reader, lambda _kid: key):
                            pass
                    except StreamError as exc:
                        if not (exc.kind == "truncated" and r.incomplete):
                            problem = str(exc)
                digest_ok = reader.finish() == digest
        except StoreError as exc:
            r.fail(f"track {name}", f"unreadable ({exc})")
            continue
        if not digest_ok:
            r.fail(f"track {name}", "file differs from the digest in the trail")
        if problem is not None:
            r.fail(f"track {name}", problem)
        if progress:
            progress("tracks", n, len(tracks))
    r.checked.append(f"tracks: {len(tracks)}")
    r.counts["tracks"] = len(tracks)
    if key is None:
        r.checked.append("payloads and track contents: skipped (no key-encryption key)")
        r.counts["contents_skipped"] = 1
    return r
