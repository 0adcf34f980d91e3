"""Bounded fan-out of one inbound track to outbound tracks and taps.

A ``Feed`` is one party's media of one kind (``customer.video``, ``teller.audio``,
``customer.screen``...). What flows is a ``MediaItem``: an encoded ``av.Packet``
(encoded mode, the default) or a decoded frame (``transcode`` mode, the benchmark
baseline). The source may be replaced (the party reconnected) without subscribers
noticing: timestamps are rebased so they continue monotonically.

Every subscriber has a small queue. Audio drops the oldest packet when full. Encoded
video cannot drop single frames (later frames reference them): a full queue is
cleared, the subscriber waits for the next keyframe, and a keyframe is requested
from the source. Keyframe requests are coalesced and rate-limited per feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from vteller.media.passthrough import is_keyframe, request_keyframe

VIDEO_QUEUE = 8  # ~260 ms at 30 fps
AUDIO_QUEUE = 25  # 500 ms of 20 ms Opus packets
KEYFRAME_MIN_INTERVAL_S = 0.5
STEP = {"video": 3000, "audio": 960}  # one frame at 90 kHz / 30 fps; 20 ms at 48 kHz


@dataclass(frozen=True, slots=True)
class MediaItem:
    payload: Any  # av.Packet (encoded) or av.VideoFrame/AudioFrame (transcode)
    keyframe: bool
    received_at: float


class Tap(Protocol):
    """Receives every item of a feed; must never block (drop instead)."""

    def offer(self, item: MediaItem) -> None: ...


class Gate(Protocol):
    def is_open(self) -> bool: ...


class FeedTrack(MediaStreamTrack):
    """An outbound track fed by a Feed; handed to an RTCRtpSender."""

    def __init__(self, feed: Feed, kind: str, maxsize: int, keyframe_gated: bool) -> None:
        super().__init__()
        self.kind = kind
        self._feed = feed
        self._queue: asyncio.Queue[MediaItem | None] = asyncio.Queue(maxsize)
        self._keyframe_gated = keyframe_gated
        self.waiting_keyframe = keyframe_gated
        self.dropped = 0

    def push(self, item: MediaItem) -> None:
        if self.waiting_keyframe:
            if not item.keyframe:
                self.dropped += 1
                return
            self.waiting_keyframe = False
        if self._queue.full():
            if self._keyframe_gated:
                self.dropped += self._queue.qsize()
                while not self._queue.empty():
                    self._queue.get_nowait()
                if not item.keyframe:
                    self.dropped += 1
                    self.waiting_keyframe = True
                    self._feed.request_keyframe()
                    return
            else:
                self._queue.get_nowait()
                self.dropped += 1
        self._queue.put_nowait(item)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            raise MediaStreamError
        return item.payload

    def stop(self) -> None:
        if self.readyState == "live":
            self._feed.unsubscribe(self)
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        super().stop()


class Feed:
    """One party's inbound media of one kind, fanned out to subscribers and taps."""

    def __init__(self, name: str, kind: str, encoded: bool, gate: Gate | None = None) -> None:
        self.name = name
        self.kind = kind
        self.encoded = encoded
        self.codec: str | None = None  # "vp8", "h264", "opus" once negotiated
        self.gate = gate
        self._maxsize = AUDIO_QUEUE if kind == "audio" else VIDEO_QUEUE
        self._subscribers: set[FeedTrack] = set()
        self._taps: list[Tap] = []
        self._pump: asyncio.Task[None] | None = None
        self._receiver: RTCRtpReceiver | None = None
        self._last_keyframe_request = 0.0
        self._pending_keyframe: asyncio.Handle | None = None
        self._offset = 0
        self._last_pts: int | None = None
        self.frames_in = 0
        self.gated_out = 0
        self.keyframe_requests = 0

    # subscribers and taps -------------------------------------------------
    def subscribe(self) -> FeedTrack:
        gated = self.encoded and self.kind == "video"
        track = FeedTrack(self, self.kind, self._maxsize, keyframe_gated=gated)
        self._subscribers.add(track)
        if gated:
            self.request_keyframe()  # a new receiver starts quickly
        return track

    def unsubscribe(self, track: FeedTrack) -> None:
        self._subscribers.discard(track)

    def add_tap(self, tap: Tap) -> None:
        self._taps.append(tap)
        if self.encoded and self.kind == "video":
            self.request_keyframe()

    def remove_tap(self, tap: Tap) -> None:
        with contextlib.suppress(ValueError):
            self._taps.remove(tap)

    # source ---------------------------------------------------------------
    def attach(self, source: MediaStreamTrack, receiver: RTCRtpReceiver | None = None) -> None:
        """Start reading ``source``, replacing any previous source."""
        self.detach()
        self._receiver = receiver
        self._pump = asyncio.create_task(self._run(source), name=f"feed:{self.name}")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    def request_keyframe(self) -> None:
        """Ask the source for a keyframe (PLI), at most every KEYFRAME_MIN_INTERVAL_S."""
        if not (self.encoded and self.kind == "video") or self._pending_keyframe is not None:
            return
        wait = self._last_keyframe_request + KEYFRAME_MIN_INTERVAL_S - time.monotonic()
        loop = asyncio.get_running_loop()
        self._pending_keyframe = loop.call_later(max(0.0, wait), self._send_keyframe_request)

    def _send_keyframe_request(self) -> None:
        self._pending_keyframe = None
        self._last_keyframe_request = time.monotonic()
        if self._receiver is not None:
            self.keyframe_requests += 1
            asyncio.create_task(request_keyframe(self._receiver))

    async def _run(self, source: MediaStreamTrack) -> None:
        first = True
        with contextlib.suppress(MediaStreamError):
            while True:
                payload = await source.recv()
                now = time.monotonic()
                self.frames_in += 1
                if first:  # a new source continues the old timeline
                    if self._last_pts is not None:
                        self._offset = self._last_pts + STEP[self.kind] - payload.pts
                    first = False
                payload.pts += self._offset
                self._last_pts = payload.pts
                if self.gate is not None and not self.gate.is_open():
                    self.gated_out += 1
                    continue
                keyframe = (is_keyframe(self.codec or "", memoryview(payload))
                            if self.encoded and self.kind == "video" else True)
                item = MediaItem(payload, keyframe, now)
                for sub in tuple(self._subscribers):
                    sub.push(item)
                for tap in tuple(self._taps):
                    tap.offer(item)

    def close(self) -> None:
        self.detach()
        if self._pending_keyframe is not None:
            self._pending_keyframe.cancel()
        for sub in tuple(self._subscribers):
            sub.stop()


class MediaGate:
    """A gate a feed consults for every item. Closed by default."""

    def __init__(self, on_change: Callable[[bool], None] | None = None) -> None:
        self._open = False
        self._on_change = on_change

    def is_open(self) -> bool:
        return self._open

    def set(self, open_: bool) -> None:
        if open_ != self._open:
            self._open = open_
            if self._on_change:
                self._on_change(open_)
