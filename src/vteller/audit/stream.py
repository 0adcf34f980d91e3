"""Chunked streaming AEAD (AES-256-GCM segments): see FORMAT.md beside this file."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"VTSTRM01"
VERSION = 1
TAG = 16
DEFAULT_SEGMENT = 64 * 1024
MAX_SEGMENT = 16 * 1024 * 1024


class StreamError(Exception):
    """The stream cannot be trusted from ``segment`` on; ``kind`` says why."""

    def __init__(self, kind: str, message: str, segment: int | None = None,
                 offset: int | None = None) -> None:
        where = f" (segment {segment}, byte {offset})" if segment is not None else ""
        super().__init__(message + where)
        self.kind = kind  # "format", "tampered", "truncated"
        self.segment = segment
        self.offset = offset


def _file_key(data_key: bytes, salt: bytes, key_id: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=b"vteller stream v1" + key_id.encode())
    return AESGCM(hkdf.derive(data_key))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class StreamWriter:
    """File-like writer (write/flush/close) that encrypts as it goes. No seek: a
    recording is written front to back, never rewritten."""

    def __init__(self, sink: BinaryIO, data_key: bytes, key_id: str,
                 segment_max: int = DEFAULT_SEGMENT, fsync: bool = True) -> None:
        if not 1024 <= segment_max <= MAX_SEGMENT:
            raise ValueError("segment_max out of range")
        kid = key_id.encode()
        self._sink = sink
        self._fsync = fsync
        salt, prefix = os.urandom(16), os.urandom(7)
        self.header = (MAGIC + struct.pack(">BIB", VERSION, segment_max, len(kid)) + kid
                       + salt + prefix)
        self._aad = hashlib.sha256(self.header).digest()
        self._aead = _file_key(data_key, salt, key_id)
        self._prefix = prefix
        self._segment_max = segment_max
        self._buffer = bytearray()
        self._index = 0
        self._hash = hashlib.sha256()
        self.closed = False
        self._emit_raw(self.header)

    def _emit_raw(self, data: bytes) -> None:
        self._sink.write(data)
        self._hash.update(data)

    def _emit_segment(self, plaintext: bytes | memoryview, last: bool) -> None:
        ct = self._aead.encrypt(_nonce(self._prefix, self._index, last), plaintext, self._aad)
        self._emit_raw(struct.pack(">I", len(ct)))
        self._emit_raw(ct)
        self._index += 1

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("write to a closed stream")
        view, size = memoryview(data), self._segment_max
        if self._buffer:  # top up the partial segment first
            take = min(len(view), size - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == size and len(view):
                self._emit_segment(bytes(self._buffer), last=False)
                self._buffer.clear()
        while len(view) > size:  # whole segments straight from the caller's buffer
            self._emit_segment(view[:size], last=False)
            view = view[size:]
        self._buffer += view  # keep > 0 bytes back for a possible final segment
        return len(data)

    def flush(self) -> None:
        """Seal what is buffered as a segment and make it durable."""
        if self.closed:
            return
        if self._buffer:
            self._emit_segment(bytes(self._buffer), last=False)
            self._buffer.clear()
        self._sink.flush()
        self._sync()

    def _sync(self) -> None:
        """fsync a file sink (object-store sinks are durable once flushed)."""
        if not self._fsync:
            return
        try:
            fd = self._sink.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            return
        os.fsync(fd)

    def close(self) -> str:
        """Write the final segment; returns the SHA-256 (hex) of the whole file."""
        if not self.closed:
            self._emit_segment(bytes(self._buffer), last=True)
            self._buffer.clear()
            self.closed = True
            self._sink.flush()
            self._sync()
        return self._hash.hexdigest()

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def writable(self) -> bool:
        return True


@dataclass
class StreamInfo:
    key_id: str
    segment_max: int
    header_len: int


def read_header(source: BinaryIO) -> tuple[StreamInfo, bytes, bytes, bytes]:
    """(info, header bytes, salt, nonce prefix); raises StreamError(kind="format")."""
    fixed = source.read(len(MAGIC) + 6)
    if len(fixed) < len(MAGIC) + 6 or fixed[:8] != MAGIC:
        raise StreamError("format", "not a vteller encrypted stream")
    version, segment_max, kid_len = struct.unpack(">BIB", fixed[8:14])
    if version != VERSION:
        raise StreamError("format", f"unsupported stream version {version}")
    if not 1024 <= segment_max <= MAX_SEGMENT:
        raise StreamError("tampered", "header segment size out of range", 0, 8)
    rest = source.read(kid_len + 16 + 7)
    if len(rest) < kid_len + 23:
        raise StreamError("truncated", "header is cut short", 0, len(fixed) + len(rest))
    try:
        key_id = rest[:kid_len].decode()
    except UnicodeDecodeError:
        raise StreamError("tampered", "header key id is not UTF-8", 0, 14) from None
    header = fixed + rest
    return (StreamInfo(key_id, segment_max, len(header)), header, rest[kid_len:kid_len + 16],
            rest[kid_len + 16:])


def decrypt(source: BinaryIO, data_key_for: callable) -> Iterator[bytes]:  # type: ignore[valid-type]
    """Yield plaintext segments in order. ``data_key_for(key_id)`` returns the data key.

    Raises StreamError at the first segment that fails; everything yielded before is
    authentic. A missing final segment raises StreamError(kind="truncated").
    """
    info, header, salt, prefix = read_header(source)
    aead = _file_key(data_key_for(info.key_id), salt, info.key_id)
    aad = hashlib.sha256(header).digest()
    offset, index = info.header_len, 0
    limit = info.segment_max + TAG
    while True:
        raw_len = source.read(4)
        if not raw_len:
            raise StreamError("truncated", "stream ends without its final segment", index, offset)
        if len(raw_len) < 4:
            raise StreamError("truncated", "segment length cut short", index, offset)
        (length,) = struct.unpack(">I", raw_len)
        if not TAG <= length <= limit:
            raise StreamError("tampered", f"segment length {length} out of range", index, offset)
        ct = source.read(length)
        if len(ct) < length:
            raise StreamError("truncated", "segment cut short", index, offset)
        for last in (False, True):
            try:
                plaintext = aead.decrypt(_nonce(prefix, index, last), ct, aad)
                break
            except InvalidTag:
                continue
        else:
            raise StreamError("tampered", "segment failed authentication", index, offset)
        yield plaintext
        offset += 4 + length
        index += 1
        if last:
            if source.read(1):
                raise StreamError("tampered", "data after the final segment", index, offset)
            return
