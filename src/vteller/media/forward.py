"""Packet-level forwarding of one feed to one receiving party.

Each inbound RTP packet is sent on as it arrives, never held for its frame: only its
SSRC, payload type, sequence number and timestamp change (``Outlet`` stamps the
outbound SSRC, payload type and header extensions; ``Rewriter`` maps the numbers).
The outbound stream stays continuous when the source changes (a party reconnected on
a fresh leg), pauses (the screen-share gate closed) or the receiver joins mid-stream:
video then resumes at the source's next keyframe, with sequence numbers following on
and the timestamp advanced by the wall-clock time that passed.

``Rewriter`` gives the native one (``_rtpfast.c``, see `native`) or ``PyRewriter``: the
same rules, tested against each other.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from aiortc.rtp import RtpPacket

from vteller.media import native

CLOCK_RATE_HZ = {"audio": 48_000, "video": 90_000}
MIN_STEP_S = 0.02  # a resumed stream's timestamp moves on at least one audio packet
_SEQ_MOD, _TS_MOD = 1 << 16, 1 << 32
_HALF = 1 << 15
_SLIDE = 1 << 14  # the segment start follows the stream once this far behind


class Outlet(Protocol):
    """Where a forwarder's packets go (an RTCRtpSender, through ``passthrough``)."""

    def ready(self) -> bool: ...

    def send(self, packet: RtpPacket, sequence_number: int,
             timestamp: int) -> Awaitable[None] | None:
        """Send ``packet`` renumbered: None when it went at once, else an awaitable
        that finishes sending it (raises ConnectionError where the leg is closed)."""


class PyRewriter:
    """Maps one source's (SSRC, sequence number, timestamp) onto one continuous
    outbound stream. ``map`` returns None for a packet that is not sent: video before
    the segment's first keyframe, or a packet older than the segment's start."""

    def __init__(self, clock_rate_hz: int, needs_keyframe: bool) -> None:
        self._clock = clock_rate_hz
        self._needs_keyframe = needs_keyframe
        self._ssrc: int | None = None
        self._base = 0  # the inbound sequence number the segment started at (slides)
        self._seq_offset = 0
        self._ts_offset = 0
        self._last: tuple[int, int, float] | None = None  # newest out (seq, ts, at)
        self.waiting = True  # the next packet from any source starts a new segment

    def pause(self) -> None:
        """The next packet starts a new segment (video: at a keyframe)."""
        self.waiting = True

    def map(self, ssrc: int, seq: int, ts: int, starts_keyframe: bool,
            now: float) -> tuple[int, int] | None:
        if self.waiting or ssrc != self._ssrc:
            if self._needs_keyframe and not starts_keyframe:
                self.waiting = True
                return None
            self._start(ssrc, seq, ts, now)
        ahead = (seq - self._base) % _SEQ_MOD
        if ahead >= _HALF:
            return None  # sent before this segment began
        if ahead >= _SLIDE:
            self._base = (self._base + _SLIDE // 2) % _SEQ_MOD
        out_seq = (seq + self._seq_offset) % _SEQ_MOD
        out_ts = (ts + self._ts_offset) % _TS_MOD
        if self._last is None or 0 < (out_seq - self._last[0]) % _SEQ_MOD < _HALF:
            self._last = (out_seq, out_ts, now)
        return out_seq, out_ts

    def _start(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        if self._last is not None:
            last_seq, last_ts, at = self._last
            self._seq_offset = (last_seq + 1 - seq) % _SEQ_MOD
            step = round(max(now - at, MIN_STEP_S) * self._clock)
            self._ts_offset = (last_ts + step - ts) % _TS_MOD
        self._ssrc, self._base, self.waiting = ssrc, seq, False


def Rewriter(clock_rate_hz: int, needs_keyframe: bool) -> PyRewriter:
    """The native rewriter where built and used (`native`), else `PyRewriter`."""
    fast = native.rtpfast()
    if fast is None:
        return PyRewriter(clock_rate_hz, needs_keyframe)
    return fast.Rewriter(clock_rate_hz, needs_keyframe)  # type: ignore[no-any-return]


class Forwarder:
    """One feed to one receiving party: rewrites and sends each packet."""

    def __init__(self, outlet: Outlet, kind: str) -> None:
        self._outlet = outlet
        self.rewriter = Rewriter(CLOCK_RATE_HZ[kind], needs_keyframe=kind == "video")
        self.forwarded = 0
        self.skipped = 0  # not sent: waiting for a keyframe, before the segment, not ready

    @property
    def waiting(self) -> bool:
        return self.rewriter.waiting

    def pause(self) -> None:
        self.rewriter.pause()

    async def forward(self, packet: RtpPacket, starts_keyframe: bool, now: float) -> bool:
        """Send ``packet`` on; False while this receiver waits for a keyframe."""
        if not self._outlet.ready():  # not connected (yet): resume at a keyframe later
            self.rewriter.pause()
            self.skipped += 1
            return True
        mapped = self.rewriter.map(packet.ssrc, packet.sequence_number, packet.timestamp,
                                   starts_keyframe, now)
        if mapped is None:
            self.skipped += 1
            return not self.rewriter.waiting
        try:
            pending = self._outlet.send(packet, *mapped)
            if pending is not None:
                await pending
        except ConnectionError:  # the leg closed under us
            self.rewriter.pause()
            self.skipped += 1
            return True
        self.forwarded += 1
        return True
