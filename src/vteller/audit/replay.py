"""Replay support: decrypt a recorded track in memory and make it seekable.

Recordings are muxed linearly (no seek while recording), so a WebM file has no cues
and starts at the RTP clock's arbitrary timestamp. For replay the server decrypts the
track into memory, remuxes it (no decoding) with timestamps from zero and cues so
browsers can seek, and serves byte ranges of that. Nothing decrypted touches disk.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

import av

from vteller.audit.stream import decrypt


def decrypt_to_memory(source: BinaryIO, data_key_for: Callable[[str], bytes]) -> bytes:
    return b"".join(decrypt(source, data_key_for))


def seekable_webm(plaintext: bytes) -> tuple[bytes, float]:
    """(remuxed WebM/Matroska with cues and timestamps from 0, original start in s)."""
    src = av.open(io.BytesIO(plaintext), "r")
    stream = src.streams[0]
    fmt = "webm" if stream.codec_context.name in ("vp8", "opus", "vp9") else "matroska"
    out_buf = io.BytesIO()
    out = av.open(out_buf, "w", format=fmt)
    out_stream = out.add_stream_from_template(stream)
    first = None
    for packet in src.demux(stream):
        if packet.dts is None:
            continue
        if first is None:
            first = packet.pts if packet.pts is not None else packet.dts
        packet.pts = (packet.pts or first) - first
        packet.dts = packet.dts - first
        packet.stream = out_stream
        out.mux(packet)
    out.close()
    src.close()
    start = float(first * stream.time_base) if first is not None and stream.time_base else 0.0
    return out_buf.getvalue(), start
