"""Fan-out of one party's inbound media of one kind to the receiving parties and taps.

A ``Feed`` is one party's media of one kind (``customer.video``, ``teller.audio``,
``customer.screen``...). In encoded mode (the default) every RTP packet is forwarded to
each receiving party as it arrives (``on_rtp``, ``forward.Forwarder``): nothing is
reassembled, decoded or queued on that path. Taps (recorder, analysis) need frames:
the source's receiver reassembles them only while the feed has taps, and hands each to
``on_frame`` in its RTP handler; they reach the taps as ``MediaItem`` s carrying an
encoded ``av.Packet``. In ``transcode`` mode (the
benchmark baseline) the items are decoded frames, re-encoded per subscriber.

The source may be replaced (the party reconnected) without receivers noticing:
forwarded sequence numbers and timestamps continue (video from the new source's first
keyframe), and tap timestamps are rebased so they continue monotonically. Keyframe
requests are coalesced and rate-limited per feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from vteller.media.forward import Forwarder
from vteller.media.passthrough import (
    SenderOutlet,
    is_keyframe,
    request_keyframe,
    send_remb,
    starts_keyframe,
)

log = logging.getLogger(__name__)

VIDEO_QUEUE = 8  # ~260 ms at 30 fps (transcode mode)
AUDIO_QUEUE = 25  # 500 ms of 20 ms Opus packets
KEYFRAME_MIN_INTERVAL_S = 0.5
BANDWIDTH_FRESH_S = 5.0  # a downstream REMB counts this long (receivers send one a second)
STEP = {"video": 3000, "audio": 960}  # one frame at 90 kHz / 30 fps; 20 ms at 48 kHz


@dataclass(frozen=True, slots=True)
class MediaItem:
    payload: Any  # av.Packet (encoded) or av.VideoFrame/AudioFrame (transcode)
    keyframe: bool
    received_at: float
    # encoded video: packets before this frame were lost beyond repair, so until the next
    # keyframe its frames decode against a missing reference (a smeared picture)
    after_loss: bool = False


class Tap(Protocol):
    """Receives every item of a feed; must never block (drop instead)."""

    def offer(self, item: MediaItem) -> None: ...


class Gate(Protocol):
    def is_open(self) -> bool: ...


class FeedTrack(MediaStreamTrack):
    """An outbound track handed to an RTCRtpSender. In transcode mode the feed pushes
    decoded frames into its small queue (the oldest is dropped when full); in encoded
    mode it never yields (packets go through the sender's ``Forwarder``) and ends
    when stopped."""

    def __init__(self, feed: Feed, kind: str, maxsize: int) -> None:
        super().__init__()
        self.kind = kind
        self._feed = feed
        self._queue: asyncio.Queue[MediaItem | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def push(self, item: MediaItem) -> None:
        if self._queue.full():
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
        self._forwarders: dict[FeedTrack, Forwarder] = {}
        self._taps: list[Tap] = []
        self._pump: asyncio.Task[None] | None = None
        self._receiver: RTCRtpReceiver | None = None
        self._last_keyframe_request = 0.0
        self._pending_keyframe: asyncio.Handle | None = None
        self._offset = 0
        self._rebase = False  # the next frame is a new source's first
        self._last_pts: int | None = None
        self.frames_in = 0  # encoded mode: frame ends (marker bit) for video
        self.gated_out = 0  # frames held back by the gate
        self.keyframe_requests = 0
        self._taps_lost = False  # loss since the last item the taps got (encoded video)
        # bandwidth the downstream receivers reported (REMB): subscriber -> (bits/s, when)
        self._bandwidth: dict[object, tuple[int, float]] = {}
        self.bandwidth_reports = 0

    # subscribers and taps -------------------------------------------------
    def subscribe(self, sender: RTCRtpSender | None = None) -> FeedTrack:
        """A track for ``sender``; in encoded mode the feed's packets are forwarded
        through ``sender`` (bind before setLocalDescription)."""
        track = FeedTrack(self, self.kind, self._maxsize)
        self._subscribers.add(track)
        if self.encoded:
            if sender is None:
                raise ValueError("an encoded feed forwards packets through a sender")
            self._forwarders[track] = Forwarder(SenderOutlet(sender), self.kind)
            self.request_keyframe()  # a new receiver starts quickly
        return track

    def unsubscribe(self, track: FeedTrack) -> None:
        self._subscribers.discard(track)
        self._forwarders.pop(track, None)
        self._bandwidth.pop(track, None)

    # bandwidth feedback ---------------------------------------------------
    def report_bandwidth(self, subscriber: object, bitrate: int) -> None:
        """A downstream receiver's estimate (REMB) for what this feed sends it; the
        source is told at once when the lowest falls (a rise waits for the source's own
        receiver, whose REMB `bandwidth_cap` caps)."""
        before = self.bandwidth_cap()
        self.bandwidth_reports += 1
        self._bandwidth[subscriber] = (bitrate, time.monotonic())
        cap = self.bandwidth_cap()
        if cap is not None and (before is None or cap < before) and self._receiver is not None:
            asyncio.create_task(send_remb(self._receiver, cap))

    def bandwidth_cap(self) -> int | None:
        """The lowest fresh downstream estimate (bits/s), None without one."""
        now = time.monotonic()
        fresh = [b for b, at in self._bandwidth.values() if now - at < BANDWIDTH_FRESH_S]
        return min(fresh) if fresh else None

    def wants_frames(self) -> bool:
        """Whether the source's receiver must reassemble frames (for taps)."""
        return bool(self._taps) or not self.encoded

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
        self._rebase = True
        for forwarder in self._forwarders.values():
            forwarder.pause()  # the new source's numbering starts a new segment
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

    async def on_rtp(self, source: RTCRtpReceiver, packet: RtpPacket) -> None:
        """One packet from ``source``'s party (encoded mode): forwarded at once. Packets
        from a replaced source (an old leg still closing) are ignored."""
        if source is not self._receiver:
            return
        video = self.kind == "video"
        frame_end = bool(packet.marker) or not video
        if self.gate is not None and not self.gate.is_open():
            self.gated_out += frame_end
            for forwarder in self._forwarders.values():
                forwarder.pause()
            return
        self.frames_in += frame_end
        if not self._forwarders:
            return
        now = time.monotonic()
        keyframe = video and any(f.waiting for f in self._forwarders.values()) and \
            starts_keyframe(self.codec or "", packet.payload)
        for track, forwarder in tuple(self._forwarders.items()):
            try:
                if not await forwarder.forward(packet, keyframe, now):
                    self.request_keyframe()
            except Exception:  # one receiver's fault must not stop the source's leg
                log.exception("forwarding %s failed; that receiver is dropped", self.name)
                self._forwarders.pop(track, None)

    def on_loss(self) -> None:
        """Source packets were lost beyond repair: each receiver resumes at the next
        keyframe, asked for now (its stream then has no gap to wait on); the taps' next
        item says so (`MediaItem.after_loss`)."""
        if self.kind != "video":
            return
        if self._taps:
            self._taps_lost = True
        for forwarder in self._forwarders.values():
            forwarder.pause()
        if self._forwarders or self._taps:
            self.request_keyframe()

    def on_frame(self, source: RTCRtpReceiver, payload: Any) -> None:
        """One frame reassembled from ``source``'s packets (encoded mode), handed over in
        its RTP handler: no queue and no task wake-up per frame. A replaced source's
        frames are ignored."""
        if source is not self._receiver:
            return
        try:
            self._take(payload, time.monotonic())
        except Exception:  # noqa: BLE001 - the source's leg (and forwarding) must go on
            log.exception("feed %s could not take a frame", self.name)

    async def _run(self, source: MediaStreamTrack) -> None:
        """Reads ``source`` (transcode mode's frames; in encoded mode frames come through
        `on_frame` and the track only says when the source ends)."""
        with contextlib.suppress(MediaStreamError):
            while True:
                payload = await source.recv()
                self._take(payload, time.monotonic())

    def _take(self, payload: Any, now: float) -> None:
        """One frame (or audio packet) from the current source, to subscribers and taps."""
        if not self.encoded:
            self.frames_in += 1
        if self._rebase:  # a new source continues the old timeline
            if self._last_pts is not None:
                self._offset = self._last_pts + STEP[self.kind] - payload.pts
            self._rebase = False
        payload.pts += self._offset
        self._last_pts = payload.pts
        if self.gate is not None and not self.gate.is_open():
            if not self.encoded:  # encoded: counted as packets arrive
                self.gated_out += 1
            return
        keyframe = (is_keyframe(self.codec or "", memoryview(payload))
                    if self.encoded and self.kind == "video" else True)
        after_loss, self._taps_lost = self._taps_lost, False
        item = MediaItem(payload, keyframe, now, after_loss)
        if not self.encoded:
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
