"""Taps on a feed: the recorder (remux, never encode) and the analysis tap (decode,
keep only the newest frame). Both work in their own thread behind a bounded queue;
a slow tap drops data (video: until the next keyframe) and never slows forwarding.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import av

from vteller.media.relay import Feed, MediaItem

log = logging.getLogger(__name__)


class _SharedLoop:
    """One thread serving many workers (all recorders of the process): draining each
    one's deque in turn. Fewer threads means fewer GIL hand-offs for the event loop."""

    def __init__(self, name: str, poll_s: float) -> None:
        self._name = name
        self._poll_s = poll_s
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.append(worker)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                workers = list(self._workers)
                if not workers:
                    self._thread = None
                    return
            for worker in workers:
                try:
                    done = worker.step()
                except Exception:  # noqa: BLE001 - one worker must not stop the others
                    log.exception("shared tap loop: worker failed")
                    done = True
                    worker._finished.set()
                if done:
                    with self._lock:
                        self._workers.remove(worker)
            self._wake.wait(self._poll_s)
            self._wake.clear()


class _Worker:
    """A bounded hand-off from the event loop to a worker thread.

    The loop only appends to a deque (atomic in CPython, no lock, no wake-up); the
    worker drains it in batches every ``poll_s``. Waking a thread per packet would
    cost a GIL hand-off per packet and stall the event loop. Workers with a
    ``shared`` loop run on that one thread; others get a thread each.
    """

    poll_s = 0.25
    shared: _SharedLoop | None = None
    # a worker that decodes skips from a loss to the next keyframe: the frames between
    # decode against a missing reference (a recorder keeps them: players conceal them)
    skips_damaged = False

    def __init__(self, feed: Feed, backlog: int, name: str) -> None:
        self.feed = feed
        self._video = feed.kind == "video"
        self._backlog = backlog
        self._items: deque[MediaItem] = deque()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._waiting_keyframe = self._video and feed.encoded
        self.dropped = 0
        if self.shared is not None:
            self.shared.add(self)
        else:
            threading.Thread(target=self._loop, name=name, daemon=True).start()

    def offer(self, item: MediaItem) -> None:
        """Called on the event loop for every item; never blocks."""
        if item.after_loss and self.skips_damaged and self._video and self.feed.encoded:
            self._waiting_keyframe = True  # the feed has asked for a keyframe
        if self._waiting_keyframe:
            if not item.keyframe:
                self.dropped += 1
                return
            self._waiting_keyframe = False
        if len(self._items) >= self._backlog or self._stop.is_set():
            self.dropped += 1
            if self._video and self.feed.encoded:  # cannot skip single frames of a GOP
                self._waiting_keyframe = True
                self.feed.request_keyframe()
            return
        self._items.append(item)

    def step(self) -> bool:
        """Handle what is queued; returns True once stopped and finished."""
        while self._items:
            item = self._items.popleft()
            try:
                self.handle(item)
            except Exception:  # noqa: BLE001 - a bad packet must not kill the tap
                log.exception("tap %s failed on an item", type(self).__name__)
        if self._stop.is_set() and not self._items:
            try:
                self.finish()
            finally:
                self._finished.set()
            return True
        self.idle()
        return False

    def _loop(self) -> None:
        while not self.step():
            self._stop.wait(self.poll_s)

    def idle(self) -> None:
        """Called between batches (e.g. to flush)."""

    def handle(self, item: MediaItem) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass

    def close(self, timeout: float = 10.0) -> None:
        """Stop after handling what is queued (blocking: call from a thread)."""
        self.feed.remove_tap(self)
        self._stop.set()
        if self.shared is not None:
            self.shared.wake()
        self._finished.wait(timeout)


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1)."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    return (int.from_bytes(data[6:8], "little") & 0x3FFF,
            int.from_bytes(data[8:10], "little") & 0x3FFF)


class TrackRecorder(_Worker):
    """Remuxes a feed's encoded packets into WebM (VP8, Opus) or Matroska (H.264).

    ``sink`` is a path or a binary file object; with an encrypting writer (anything
    with ``flush``), it is flushed every ``flush_s``. The muxer holds a Matroska
    cluster until it closes (by default audio in 1 s blocks, video up to 32 KB), so
    clusters are cut every ``CLUSTER_MS``: a crash loses at most flush_s + CLUSTER_MS
    + one poll (0.25 s) = 2 s of any track. No decoder or encoder touches the media.
    """

    flush_s = 1.5
    CLUSTER_MS = 250
    shared = _SharedLoop("recorders", _Worker.poll_s)

    def __init__(self, feed: Feed, sink: Path | BinaryIO, backlog: int = 300) -> None:
        if not feed.encoded:
            raise ValueError("the recorder remuxes encoded packets; feed is in transcode mode")
        self._sink = sink
        self._out: Any = None
        self._stream: Any = None
        self._last_flush = time.monotonic()
        self.written = 0
        self.failed = False
        self.digest: str | None = None
        self.file_name = ""
        super().__init__(feed, backlog, f"rec:{feed.name}")

    def _open(self, first: bytes) -> None:
        codec = self.feed.codec or ""
        fmt = "webm" if codec in ("vp8", "opus") else "matroska"
        self._out = av.open(self._sink, "w", format=fmt,
                            options={"cluster_time_limit": str(self.CLUSTER_MS)})
        if codec == "opus":
            self._stream = self._out.add_stream("libopus", rate=48000, layout="stereo")
        else:
            self._stream = self._out.add_stream("libvpx" if codec == "vp8" else "h264")
            width, height = vp8_size(first) or (640, 480)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
        self._stream.time_base = fractions.Fraction(1, 1000)

    def handle(self, item: MediaItem) -> None:
        if self.failed:
            self.dropped += 1
            return
        try:
            self._mux(item)
        except Exception as exc:  # noqa: BLE001 - the sink (storage) failed: stop here
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if not self.failed:
            log.error("recording of %s stopped: %s", self.feed.name, exc)
        self.failed = True

    def _mux(self, item: MediaItem) -> None:
        data = bytes(item.payload)
        if self._out is None:
            self._open(data)
        packet = av.Packet(data)
        packet.pts = packet.dts = item.payload.pts
        packet.time_base = item.payload.time_base
        packet.stream = self._stream
        packet.is_keyframe = item.keyframe
        self._out.mux(packet)
        self.written += 1

    def idle(self) -> None:
        if (not self.failed and time.monotonic() - self._last_flush >= self.flush_s - self.poll_s
                and hasattr(self._sink, "flush")):
            self._last_flush = time.monotonic()
            try:
                self._sink.flush()  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - retried at the next flush
                log.warning("recording flush of %s failed (%s); retrying",
                            self.feed.name, type(exc).__name__)

    def finish(self) -> None:
        """Close the file; `digest` stays None when the recording failed."""
        if self.failed:
            return
        try:
            if self._out is not None:
                self._out.close()
            if hasattr(self._sink, "close") and not isinstance(self._sink, (str, Path)):
                self.digest = self._sink.close()  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - the final segment could not be stored
            self._fail(exc)


# encoded frames the analysis tap may hold for its thread: 1 s at 30 fps. A thread kept
# from the GIL for longer than that (a loaded machine) drops frames, and encoded video
# then decodes again only from the next keyframe (up to a GOP later); with 8 (267 ms) a
# loaded CI machine's analysis saw keyframes only, about one frame a second.
ANALYSIS_BACKLOG = 30


class LatestFrameTap(_Worker):
    """Decodes one feed (only the customer camera is ever analysed) and keeps the newest
    frame. Consumers pull at their own rate; nothing queues up behind them.

    A consumer that must not miss short events (a blink lasts 0.1-0.4 s) calls
    `keep_grid`: the tap then also keeps the first frame of every `spacing_s` interval
    for up to `keep_s`,
    and `next_after` hands them over in order, so a consumer slowed down for a moment
    catches up instead of skipping what happened meanwhile."""

    poll_s = 0.03
    skips_damaged = True  # face analysis of a smeared frame would be wrong, not absent

    def __init__(self, feed: Feed, backlog: int = ANALYSIS_BACKLOG) -> None:
        self._decoder: Any = None
        self.latest: tuple[av.VideoFrame, float] | None = None
        self.decoded = 0
        self._grid: deque[tuple[av.VideoFrame, float]] = deque()
        self._spacing_s = 0.0
        self._keep_s = 0.0
        super().__init__(feed, backlog, f"analysis:{feed.name}")

    def keep_grid(self, spacing_s: float, keep_s: float) -> None:
        """Keep one frame per `spacing_s` interval for `keep_s` (0: only the newest)."""
        if (spacing_s, keep_s) == (self._spacing_s, self._keep_s):
            return  # called on every sampling round: nothing to do unless it changes
        self._spacing_s, self._keep_s = spacing_s, keep_s
        if keep_s <= 0:
            self._grid = deque()

    def handle(self, item: MediaItem) -> None:
        if not self.feed.encoded:  # transcode mode: already a frame
            self._store(item.payload, item.received_at)
            return
        if self._decoder is None:
            self._decoder = av.CodecContext.create(self.feed.codec or "vp8", "r")
        for frame in self._decoder.decode(av.Packet(bytes(item.payload))):
            self.decoded += 1
            self._store(frame, item.received_at)

    def _store(self, frame: av.VideoFrame, at: float) -> None:
        self.latest = (frame, at)
        if self._keep_s <= 0:
            return
        grid = self._grid  # replaced, never cleared, by keep_grid: no lock needed
        if not grid or at // self._spacing_s > grid[-1][1] // self._spacing_s:
            grid.append((frame, at))
            while at - grid[0][1] > self._keep_s:
                grid.popleft()

    def next_after(self, at: float) -> tuple[av.VideoFrame, float] | None:
        """The oldest kept frame received after `at` (keeping a grid), else the newest
        frame if it is newer than `at`, else None."""
        if self._keep_s > 0:
            return next((item for item in list(self._grid) if item[1] > at), None)
        latest = self.latest
        return latest if latest is not None and latest[1] > at else None

    async def frames(self, rate_hz: float) -> AsyncIterator[tuple[av.VideoFrame, float]]:
        """The newest frame at most ``rate_hz`` times a second (never the same twice)."""
        period = 1.0 / rate_hz
        last_at = -1.0
        while True:
            started = time.monotonic()
            latest = self.latest
            if latest is not None and latest[1] != last_at:
                last_at = latest[1]
                yield latest
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
