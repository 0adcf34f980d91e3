"""Bounded fan-out of one inbound track to any number of outbound tracks.

A ``Feed`` belongs to one party and media kind (e.g. customer camera). Its source
can be replaced (the party reconnected with a new peer connection) without the
subscribers noticing. Each subscriber has a small queue; when it is full the
oldest frame is dropped, so a slow consumer never grows memory or latency.

v1 forwards decoded frames (the sender re-encodes); the encoded-frame path of
DESIGN.md replaces what flows through here, not the shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_QUEUE = 4  # ~130 ms at 30 fps
AUDIO_QUEUE = 25  # 500 ms of 20 ms Opus frames


class FeedTrack(MediaStreamTrack):
    """An outbound track fed by a Feed; handed to an RTCRtpSender."""

    def __init__(self, feed: Feed, kind: str, maxsize: int) -> None:
        super().__init__()
        self.kind = kind
        self._feed = feed
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.delivered = 0
        self.dropped = 0

    def push(self, frame: Any) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        self.delivered += 1
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            self._feed.unsubscribe(self)
            with contextlib.suppress(asyncio.QueueFull):
                while self._queue.full():
                    self._queue.get_nowait()
                self._queue.put_nowait(None)
        super().stop()


class Feed:
    """One party's inbound media of one kind, fanned out to subscribers."""

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self._maxsize = AUDIO_QUEUE if kind == "audio" else VIDEO_QUEUE
        self._subscribers: set[FeedTrack] = set()
        self._pump: asyncio.Task[None] | None = None
        self.frames_in = 0
        self.first_frame_at: float | None = None

    def subscribe(self) -> FeedTrack:
        track = FeedTrack(self, self.kind, self._maxsize)
        self._subscribers.add(track)
        return track

    def unsubscribe(self, track: FeedTrack) -> None:
        self._subscribers.discard(track)

    def attach(self, source: MediaStreamTrack) -> None:
        """Start reading ``source``, replacing any previous source."""
        self.detach()
        self._pump = asyncio.create_task(self._run(source), name=f"feed:{self.name}")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def _run(self, source: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await source.recv()
                self.frames_in += 1
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                for sub in tuple(self._subscribers):
                    sub.push(frame)

    def close(self) -> None:
        self.detach()
        for sub in tuple(self._subscribers):
            sub.stop()


async def drain(source: MediaStreamTrack, counter: list[int]) -> None:
    """Consume and discard a track nobody may see (keeps aiortc's queue empty)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await source.recv()
            counter[0] += 1
