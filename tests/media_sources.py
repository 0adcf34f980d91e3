"""Pre-encoded media for test peers: exact bytes to compare, no client-side encoding cost."""

from __future__ import annotations

import asyncio
import fractions
import functools
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from vteller.media.passthrough import is_keyframe


@functools.lru_cache(maxsize=4)
def vp8_clip(frames: int = 90, gop: int = 30, width: int = 640, height: int = 480) -> list[bytes]:
    """Distinct VP8 frames (moving gradient + counter block), a keyframe every `gop`."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.gop_size = gop
    enc.bit_rate = 800_000
    enc.options = {"deadline": "realtime", "cpu-used": "8", "keyint_min": str(gop)}
    y, x = np.mgrid[0:height, 0:width].astype(np.uint16)
    out: list[bytes] = []
    for i in range(frames):
        img = np.stack([(x + i * 4) % 256, (y + i * 2) % 256, (x + y + i) % 256], -1)
        img = img.astype(np.uint8)
        img[:40, :40 + (i % gop) * 8] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        if i % gop == 0:
            frame.pict_type = av.video.frame.PictureType.I
        out += [bytes(p) for p in enc.encode(frame)]
    out += [bytes(p) for p in enc.encode(None)]
    assert is_keyframe("vp8", out[0])
    return out


@functools.lru_cache(maxsize=2)
def opus_clip(packets: int = 50) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"
    out: list[bytes] = []
    t = np.arange(960 * packets)
    pcm = (np.sin(2 * np.pi * 440 * t / 48000) * 4000).astype(np.int16)
    for i in range(packets):
        chunk = np.repeat(pcm[i * 960:(i + 1) * 960], 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in enc.encode(frame)]
    return out


class PacketSource(MediaStreamTrack):
    """Sends a pre-encoded clip in a loop at its real rate; aiortc packs it, never encodes."""

    def __init__(self, kind: str, clip: list[bytes], fps: float, clock: int) -> None:
        super().__init__()
        self.kind = kind
        self._clip = clip
        self._period = 1.0 / fps
        self._step = int(clock / fps)
        self._time_base = fractions.Fraction(1, clock)
        self._start: float | None = None
        self.hold: asyncio.Event | None = None  # set it to release frame 0
        self.stopped = False
        self.sent = 0
        self.sent_at: list[float] = []

    async def recv(self) -> av.Packet:
        if self._start is None:
            if self.hold is not None:
                await self.hold.wait()
            self._start = time.monotonic()
        while self.stopped:
            await asyncio.sleep(1)
        due = self._start + self.sent * self._period
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        packet = av.Packet(self._clip[self.sent % len(self._clip)])
        packet.pts = self.sent * self._step
        packet.time_base = self._time_base
        self.sent += 1
        self.sent_at.append(time.monotonic())
        return packet


def video_source() -> PacketSource:
    return PacketSource("video", vp8_clip(), 30, 90000)


def audio_source() -> PacketSource:
    return PacketSource("audio", opus_clip(), 50, 48000)
