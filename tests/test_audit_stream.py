"""Encrypted streams and keys: any change, truncation or reordering is detected and
located; wrong keys give clear errors; rotation keeps old data readable."""

from __future__ import annotations

import base64
import io
import os
import stat
import struct

import pytest

from vteller.audit import (
    EnvKek,
    KeyUnavailable,
    LocalKeyring,
    StreamError,
    StreamWriter,
    WrappedKey,
    WrongKey,
    decrypt,
    new_data_key,
)
from vteller.audit.stream import read_header

KEY = new_data_key()
PLAIN = os.urandom(10_000)


def encrypted(segment_max: int = 2048) -> bytes:
    buf = io.BytesIO()
    w = StreamWriter(buf, KEY, "call-abc", segment_max=segment_max, fsync=False)
    for i in range(0, len(PLAIN), 1500):  # writes that straddle segments
        w.write(PLAIN[i:i + 1500])
        if i == 4500:
            w.flush()  # a short segment mid-stream, as the recorder's 2 s flush makes
    w.close()
    return buf.getvalue()


def read(data: bytes) -> bytes:
    return b"".join(decrypt(io.BytesIO(data), lambda kid: KEY))


def segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length incl. the 4-byte length) of each segment."""
    info, *_ = read_header(io.BytesIO(data))
    out, off = [], info.header_len
    while off < len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        out.append((off, 4 + n))
        off += 4 + n
    return out


def test_round_trip_and_digest():
    buf = io.BytesIO()
    w = StreamWriter(buf, KEY, "call-abc", fsync=False)
    w.write(PLAIN)
    digest = w.close()
    import hashlib

    assert hashlib.sha256(buf.getvalue()).hexdigest() == digest
    assert read(buf.getvalue()) == PLAIN
    assert read(encrypted()) == PLAIN
    assert PLAIN[:64] not in encrypted()


def test_every_single_byte_flip_is_detected_and_located():
    data = encrypted()
    segs = segments(data)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(StreamError) as info:
            read(bytes(bad))
        if pos >= segs[0][0]:  # inside a segment: that segment is named
            expected = next(i for i, (o, n) in enumerate(segs) if o <= pos < o + n)
            assert info.value.segment == expected, (pos, info.value)


def test_truncation_at_any_point_is_detected_and_prefix_survives():
    data = encrypted()
    segs = segments(data)
    for cut in [o for o, _ in segs] + [len(data) - 1, len(data) - 17, segs[1][0] + 3]:
        stream = decrypt(io.BytesIO(data[:cut]), lambda kid: KEY)
        got = b""
        with pytest.raises(StreamError) as info:
            for chunk in stream:
                got += chunk
        assert info.value.kind == "truncated"
        assert PLAIN.startswith(got)  # what was before the cut is intact


def test_reordered_dropped_or_duplicated_segments_are_detected():
    data = encrypted()
    segs = segments(data)
    head = data[:segs[0][0]]
    parts = [data[o:o + n] for o, n in segs]
    for order in ([1, 0, *range(2, len(parts))],  # swap
                  [0, *range(2, len(parts))],  # drop one
                  [0, 1, 1, *range(2, len(parts))]):  # duplicate
        with pytest.raises(StreamError) as info:
            read(head + b"".join(parts[i] for i in order))
        assert info.value.kind == "tampered"
    with pytest.raises(StreamError):
        read(data + parts[-1])  # appended after the final segment


def test_wrong_key_and_not_a_stream():
    with pytest.raises(StreamError) as info:
        b"".join(decrypt(io.BytesIO(encrypted()), lambda kid: new_data_key()))
    assert info.value.segment == 0 and info.value.kind == "tampered"
    with pytest.raises(StreamError) as info:
        read(b"RIFF....not ours")
    assert info.value.kind == "format"


def test_keyring_wrap_rotate_and_errors(tmp_path):
    ring = LocalKeyring(tmp_path / "kek")
    for f in (tmp_path / "kek").glob("kek-*.key"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    dk = new_data_key()
    old = ring.wrap(dk, "call-1")
    new_id = ring.rotate()
    assert ring.current_id == new_id != old.kek_id
    assert LocalKeyring(tmp_path / "kek").unwrap(old, "call-1") == dk  # old stays readable
    assert ring.wrap(dk, "call-2").kek_id == new_id
    with pytest.raises(WrongKey) as info:
        ring.unwrap(old, "call-OTHER")  # bound to its session
    assert dk.hex() not in str(info.value)
    flipped = WrappedKey(old.kek_id, old.blob[:-1] + bytes([old.blob[-1] ^ 1]))
    with pytest.raises(WrongKey):
        ring.unwrap(flipped, "call-1")
    with pytest.raises(KeyUnavailable):
        LocalKeyring(tmp_path / "other").unwrap(old, "call-1")  # a different key ring


def test_env_kek(monkeypatch):
    monkeypatch.setenv("VTELLER_KEK", base64.b64encode(os.urandom(32)).decode())
    kek = EnvKek()
    dk = new_data_key()
    assert kek.unwrap(kek.wrap(dk, "c"), "c") == dk
    monkeypatch.setenv("VTELLER_KEK", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(WrongKey):
        EnvKek().unwrap(kek.wrap(dk, "c"), "c")
    monkeypatch.setenv("VTELLER_KEK", "short")
    with pytest.raises(Exception, match="VTELLER_KEK"):
        EnvKek()
