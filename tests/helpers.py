"""Test helpers: a signaling client and a real aiortc party (no mocks)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import ssl
import sys
import threading
import time
import traceback
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av import VideoFrame

from vteller.media.leg import rtc_configuration


class SignalClient:
    """A WebSocket signaling client that buffers messages by type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self.ws = ws
        self.session = session
        self.inbox: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, url: str, cookies: dict[str, str] | None = None,
                   origin: str | None = None) -> SignalClient:
        session = aiohttp.ClientSession(cookies=cookies or {},
                                        connector=aiohttp.TCPConnector(ssl=insecure_ssl()))
        headers = {"Origin": origin} if origin else {}
        ws = await session.ws_connect(url, headers=headers)
        return cls(ws, session)

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.inbox.append(json.loads(frame.data))
                self._new.set()
        self.closed.set()
        self._new.set()

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, mtype: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first buffered or future message of `mtype` whose fields match."""
        return await self.recv_any((mtype, match), timeout=timeout)

    async def recv_any(self, *wanted: tuple[str, dict[str, Any]], timeout: float = 10.0
                       ) -> dict[str, Any]:
        """The first buffered or future message matching any (type, fields) of `wanted`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.inbox):
                if any(msg.get("type") == t and all(msg.get(k) == v for k, v in f.items())
                       for t, f in wanted):
                    return self.inbox.pop(i)
            if self.closed.is_set():
                raise ConnectionError(f"closed while waiting for {wanted}; inbox={self.inbox}")
            self._new.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"none of {wanted}; inbox={self.inbox}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    async def error(self, code: str, timeout: float = 5.0) -> dict[str, Any]:
        return await self.recv("error", timeout, code=code)

    async def request(self, msg: dict[str, Any], reply: str, **match: Any) -> dict[str, Any]:
        await self.send(msg)
        return await self.recv(reply, **match)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await self.session.close()


class LoopWatch:
    """Where the event loop's thread was while the loop stalled: a heartbeat task beats
    every 20 ms; a thread samples the loop thread's stack every 50 ms once the beat is
    over `limit_s` late, and full garbage collections over 50 ms are timed. `report()`
    names the stalls, the code seen in them and the collections (for assertion
    messages: a loop stall in a test process that runs server and clients is a flake's
    cause worth naming)."""

    def __init__(self, limit_s: float = 0.25) -> None:
        self.limit_s = limit_s
        self.stalls: list[float] = []
        self.frames: collections.Counter[str] = collections.Counter()
        self.collections: list[float] = []
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._gc_start = 0.0

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif time.perf_counter() - self._gc_start > 0.05:
            self.collections.append(round(time.perf_counter() - self._gc_start, 3))

    def _watch(self, loop_thread: int) -> None:
        stalled_since = None
        while not self._stop.wait(0.05):
            late = time.monotonic() - self._beat
            if late <= self.limit_s:
                if stalled_since is not None:
                    self.stalls.append(round(time.monotonic() - stalled_since, 2))
                stalled_since = None
                continue
            stalled_since = stalled_since or self._beat
            frame = sys._current_frames().get(loop_thread)
            if frame is not None:
                stack = traceback.extract_stack(frame)[-4:]
                self.frames[" < ".join(f"{f.name} ({f.filename.rsplit('/', 2)[-1]}:{f.lineno})"
                                       for f in reversed(stack))] += 1

    async def _heart(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> LoopWatch:
        self._beat = time.monotonic()
        self._task = asyncio.create_task(self._heart())
        gc.callbacks.append(self._gc)
        self._thread = threading.Thread(target=self._watch, args=(threading.get_ident(),),
                                        daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._gc)
        self._task.cancel()

    def report(self) -> str:
        seen = "; ".join(f"{n}x {where}" for where, n in self.frames.most_common(5))
        return (f"loop stalls over {self.limit_s} s: {self.stalls}; "
                f"full collections over 50 ms: {self.collections}; seen in stalls: {seen}")


def insecure_ssl() -> ssl.SSLContext:
    """Tests talk to the dev certificate on loopback."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PatternVideo(VideoStreamTrack):
    """Synthetic camera: 640x480 frames whose top-left pixel block encodes a counter."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.sent = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = np.full((self.height, self.width, 3), (self.sent * 7) % 255, np.uint8)
        img[: self.height // 2, : self.width // 2] = (40, 160, 220)
        frame = VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


class Party:
    """A real aiortc client: customer (audio, camera, screen) or teller (audio, camera)."""

    def __init__(self, role: str, encoded: bool = False, video_codec: str | None = None,
                 video: Any = None, ice_servers: list[dict[str, Any]] | None = None) -> None:
        """encoded: send a pre-encoded clip and receive packets undecoded (cheap, exact).
        video: the camera track to send (e.g. tests.face_frames.FaceCam)."""
        from aiortc import RTCRtpSender

        from tests.media_sources import audio_source, video_source

        self.role = role
        self.encoded = encoded
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers or []))
        self.video: Any = video or (video_source() if encoded else PatternVideo())
        self.audio: Any = audio_source() if encoded else AudioStreamTrack()
        self.packets: dict[str, list[tuple[float, Any]]] = {"audio": [], "video": [], "screen": []}
        self.received: dict[str, int] = {"audio": 0, "video": 0, "screen": 0}
        self.first_frame_at: dict[str, float] = {}
        self.last_frame: dict[str, Any] = {}
        self.remote_tracks: list[Any] = []
        self.screen: PatternVideo | None = None
        self._readers: list[asyncio.Task[None]] = []
        self.pc.addTransceiver(self.audio, direction="sendrecv")
        self.pc.addTransceiver(self.video, direction="sendrecv")
        if role == "customer":
            self.screen = PatternVideo(320, 240)
            self.pc.addTransceiver(self.screen, direction="sendonly")
        else:
            self.pc.addTransceiver("video", direction="recvonly")  # the customer's screen
        if video_codec is not None:
            caps = [c for c in RTCRtpSender.getCapabilities("video").codecs
                    if c.mimeType.lower() in (f"video/{video_codec}", "video/rtx")]
            for t in self.pc.getTransceivers()[1:]:
                t.setCodecPreferences(caps)

        @self.pc.on("track")
        def _on_track(track: Any) -> None:
            self.remote_tracks.append(track)
            index = len(self.remote_tracks) - 1
            self._readers.append(asyncio.create_task(
                self._count(track, "screen" if index == 2 else track.kind)))

    async def _count(self, track: Any, slot: str) -> None:
        try:
            while True:
                frame = await track.recv()
                self.received[slot] += 1
                if self.encoded:
                    self.packets[slot].append((time.monotonic(), frame))
                self.last_frame[slot] = frame
                self.first_frame_at.setdefault(slot, time.monotonic())
        except MediaStreamError:
            pass

    async def negotiate(self, sig: SignalClient) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await sig.request({"type": "webrtc.offer", "sdp": self.pc.localDescription.sdp},
                                   "webrtc.answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        if self.encoded:  # before the connection task runs (it needs the loop)
            from vteller.media.passthrough import receive_encoded

            for t in self.pc.getTransceivers():
                if t.receiver.track is not None:
                    receive_encoded(t.receiver)

    async def wait_frames(self, kind: str, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.received[kind] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.role} got {self.received} frames, wanted {count} {kind}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await self.pc.close()

