"""Stored audit records as typed values, parsed strictly.

Verification reads the same records from two places: the database (`verify_session`)
and an evidence bundle's JSON (`verify_bundle`). Both go through the parsers here, so
a field that is missing, of the wrong type, or not in its one canonical form is
reported as a FAILED line naming the record and field, never a crash, and never read
leniently (a `final` of 2 is not "true": it is malformed).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

HASH_BYTES = 32
SIGNATURE_BYTES = 64
NONCE_BYTES = 12


class Reporter(Protocol):
    def fail(self, where: str, what: str) -> None: ...


class Malformed(ValueError):
    """A field is not in its canonical form."""


Convert = Callable[[Any], Any]


def integer(v: Any) -> int:
    if type(v) is not int or v < 0:  # bool is not an int here
        raise Malformed("not a non-negative integer")
    return v


def text(v: Any) -> str:
    if type(v) is not str:
        raise Malformed("not text")
    return v


def blob(size: int | None = None) -> Convert:
    def convert(v: Any) -> bytes:
        if type(v) is not bytes:
            raise Malformed("not bytes")
        if size is not None and len(v) != size:
            raise Malformed(f"not {size} bytes")
        return v
    return convert


def db_flag(v: Any) -> bool:
    """A stored boolean: exactly 0 or 1."""
    if type(v) is not int or v not in (0, 1):
        raise Malformed("not 0 or 1")
    return bool(v)


def json_flag(v: Any) -> bool:
    if type(v) is not bool:
        raise Malformed("not true or false")
    return v


def hex_bytes(size: int | None = None) -> Convert:
    """Lower-case hex text (the one canonical spelling)."""
    def convert(v: Any) -> bytes:
        if type(v) is not str:
            raise Malformed("not hex text")
        try:
            raw = bytes.fromhex(v)
        except ValueError:
            raise Malformed("not hex") from None
        if raw.hex() != v:
            raise Malformed("not canonical hex")
        return blob(size)(raw)
    return convert


def b64_bytes(size: int | None = None) -> Convert:
    """Standard padded base64 (the one canonical spelling)."""
    def convert(v: Any) -> bytes:
        if type(v) is not str:
            raise Malformed("not base64 text")
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("not base64") from None
        if base64.b64encode(raw).decode() != v:
            raise Malformed("not canonical base64")
        return blob(size)(raw)
    return convert


def parse(r: Reporter, where: str, values: Mapping[str, Any],
          spec: Mapping[str, Convert], exact: bool = False) -> dict[str, Any] | None:
    """Convert every field of `values` named in `spec`; each bad field is one failure.
    `exact`: fields not in `spec` are failures too. None when anything failed."""
    out: dict[str, Any] = {}
    ok = True
    if not isinstance(values, Mapping):
        r.fail(where, "not a record")
        return None
    for name, convert in spec.items():
        if name not in values:
            r.fail(where, f"field {name} missing")
            ok = False
            continue
        try:
            out[name] = convert(values[name])
        except Malformed as exc:
            r.fail(where, f"field {name} malformed ({exc})")
            ok = False
    if exact:
        for name in sorted(set(values) - set(spec)):
            r.fail(where, f"unexpected field {name!r}")
            ok = False
    return out if ok else None


# ---- the records --------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    seq: int
    at: str
    actor: str
    kind: str
    nonce: bytes
    payload: bytes
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head: bytes
    at: str
    final: bool
    signature: bytes


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes
    at: str
    signature: bytes


@dataclass(frozen=True)
class LogEntry:
    """A closed session's entry in the global log."""

    session: str
    seq: int
    head: bytes
    incomplete: bool
    tracks: dict[str, str]


EVENT_COLUMNS = ("seq", "at", "actor", "kind", "nonce", "payload", "prev_hash", "hash")
CHECKPOINT_COLUMNS = ("seq", "head", "at", "final", "signature")
HEAD_COLUMNS = ("size", "root", "at", "signature")

# How each field is stored in the database ...
DB_EVENT = {"seq": integer, "at": text, "actor": text, "kind": text,
            "nonce": blob(NONCE_BYTES), "payload": blob(), "prev_hash": blob(HASH_BYTES),
            "hash": blob(HASH_BYTES)}
DB_CHECKPOINT = {"seq": integer, "head": blob(HASH_BYTES), "at": text, "final": db_flag,
                 "signature": blob(SIGNATURE_BYTES)}
DB_HEAD = {"size": integer, "root": blob(HASH_BYTES), "at": text,
           "signature": blob(SIGNATURE_BYTES)}
# ... and in a bundle's JSON.
JSON_EVENT = {"seq": integer, "at": text, "actor": text, "kind": text,
              "nonce": b64_bytes(NONCE_BYTES), "payload": b64_bytes(),
              "prev_hash": hex_bytes(HASH_BYTES), "hash": hex_bytes(HASH_BYTES)}
JSON_CHECKPOINT = {"seq": integer, "head": hex_bytes(HASH_BYTES), "at": text,
                   "final": json_flag, "signature": b64_bytes(SIGNATURE_BYTES)}
JSON_HEAD = {"size": integer, "root": hex_bytes(HASH_BYTES), "at": text,
             "signature": b64_bytes(SIGNATURE_BYTES)}


def events(r: Reporter, rows: list[Mapping[str, Any]], spec: Mapping[str, Convert],
           label: str = "event") -> list[Event]:
    out = []
    for i, row in enumerate(rows, 1):
        seq = row.get("seq") if isinstance(row, Mapping) else None
        fields = parse(r, f"{label} {seq if type(seq) is int else f'#{i}'}", row, spec)
        if fields is not None:
            out.append(Event(**fields))
    return out


def checkpoints(r: Reporter, rows: list[Mapping[str, Any]], spec: Mapping[str, Convert],
                label: str = "checkpoint") -> list[Checkpoint]:
    out = []
    for i, row in enumerate(rows, 1):
        seq = row.get("seq") if isinstance(row, Mapping) else None
        fields = parse(r, f"{label} at event {seq if type(seq) is int else f'#{i}'}", row, spec)
        if fields is not None:
            out.append(Checkpoint(**fields))
    return out


def tree_head(r: Reporter, row: Mapping[str, Any], spec: Mapping[str, Convert],
              where: str = "global log tree head") -> TreeHead | None:
    fields = parse(r, where, row, spec)
    return TreeHead(**fields) if fields is not None else None


SESSION_ENTRY = {"session": text, "seq": integer, "head": hex_bytes(HASH_BYTES),
                 "incomplete": json_flag, "tracks": lambda v: v}


def decode_entry(raw: bytes) -> Any:
    """The entry's JSON, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def is_tombstone(raw: bytes) -> bool:
    data = decode_entry(raw)
    return isinstance(data, dict) and "tombstone" in data


def log_entry(r: Reporter, raw: bytes, where: str = "global log entry") -> LogEntry | None:
    """A session entry: exactly its five fields, each canonical."""
    data = decode_entry(raw)
    if not isinstance(data, dict):
        r.fail(where, "unreadable (altered)")
        return None
    fields = parse(r, where, data, SESSION_ENTRY, exact=True)
    if fields is None:
        return None
    tracks = fields["tracks"]
    if not isinstance(tracks, dict) or not all(
            type(k) is str and type(v) is str and len(v) == 2 * HASH_BYTES
            and _is_hex(v) for k, v in tracks.items()):
        r.fail(where, "field tracks malformed (not a map of track names to SHA-256 hex)")
        return None
    return LogEntry(**fields)


def _is_hex(v: str) -> bool:
    try:
        return bytes.fromhex(v).hex() == v
    except ValueError:
        return False
