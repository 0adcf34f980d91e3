"""The one place vteller touches aiortc internals: encoded (undecoded) receive and
keyframe-request relay.

aiortc has no public API to receive encoded frames. Its RTCRtpReceiver reassembles
each frame in a jitter buffer and puts ``(codec, JitterFrame)`` on a private
``queue.Queue`` (``_RTCRtpReceiver__decoder_queue``) read by a decoder thread. We
swap that queue, per receiver and before the receiver starts, for one that hands
the reassembled frame to the receiver's track as an ``av.Packet`` (pts = RTP
timestamp, time base 1/clock rate). aiortc's sender already packs an ``av.Packet``
without encoding, so forwarding never decodes or re-encodes.

On the sending side aiortc answers a PLI/FIR by setting a flag only its encoder
reads; ``relay_keyframe_requests`` replaces that per-sender callback.

Supported aiortc: ``>=1.14,<1.17`` (pinned in pyproject; ``check_aiortc`` verifies
the internals exist and tests exercise them).
"""

from __future__ import annotations

import asyncio
import fractions
import queue
import threading
from collections.abc import Callable
from typing import Any

import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender

SUPPORTED = ((1, 14), (1, 17))
_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_STARTED_ATTR = "_RTCRtpReceiver__started"


class AiortcInternalsChanged(RuntimeError):
    """The aiortc in use does not have the internals this module relies on."""


def check_aiortc() -> None:
    version = tuple(int(p) for p in aiortc.__version__.split(".")[:2])
    if not SUPPORTED[0] <= version < SUPPORTED[1]:
        raise AiortcInternalsChanged(
            f"aiortc {aiortc.__version__} is outside the supported range "
            f"{SUPPORTED[0]}..<{SUPPORTED[1]}")
    if not hasattr(RTCRtpSender, "_send_keyframe"):
        raise AiortcInternalsChanged("RTCRtpSender._send_keyframe is gone")


class _PacketQueue:
    """Stands in for the receiver's decoder queue; feeds the track with av.Packets.

    ``put`` runs on the event loop (aiortc calls it from its RTP handler); ``get``
    is what aiortc's (now idle) decoder thread blocks on until the receiver stops.
    """

    def __init__(self, track_queue: asyncio.Queue[Any]) -> None:
        self._track_queue = track_queue
        self._stopped = threading.Event()
        self.frames = 0

    def put(self, item: Any) -> None:
        if item is None:
            self._stopped.set()
            self._track_queue.put_nowait(None)
            return
        codec, frame = item
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = fractions.Fraction(1, codec.clockRate)
        self.frames += 1
        self._track_queue.put_nowait(packet)

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        self._stopped.wait()

    def put_nowait(self, item: Any) -> None:
        self.put(item)


def receive_encoded(receiver: RTCRtpReceiver) -> _PacketQueue:
    """Make ``receiver.track.recv()`` return encoded ``av.Packet`` s. Call before it starts."""
    current = getattr(receiver, _QUEUE_ATTR, None)
    if not isinstance(current, queue.Queue) or not current.empty():
        raise AiortcInternalsChanged("RTCRtpReceiver decoder queue not found (or in use)")
    if getattr(receiver, _STARTED_ATTR, True) or receiver.track is None:
        raise AiortcInternalsChanged(
            "receive_encoded must be applied after setRemoteDescription, before media starts")
    hooked = _PacketQueue(receiver.track._queue)  # type: ignore[attr-defined]
    setattr(receiver, _QUEUE_ATTR, hooked)
    return hooked


def relay_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Route this sender's incoming PLI/FIR to ``request`` (the source of its packets)."""
    sender._send_keyframe = request  # type: ignore[method-assign]


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI to the peer that sends to ``receiver`` (public API for the SSRC)."""
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    await receiver._send_rtcp_pli(sources[0].source)  # type: ignore[attr-defined]
    return True


def is_keyframe(codec: str, data: bytes | memoryview) -> bool:
    """Whether an encoded frame starts a decodable sequence."""
    if not len(data):
        return False
    if codec == "vp8":  # RFC 6386 9.1: frame tag bit 0 is 0 for key frames
        return data[0] & 0x01 == 0
    if codec == "h264":  # Annex B stream with an IDR slice (type 5) or SPS (7)
        data = bytes(data)
        i = 0
        while (i := data.find(b"\x00\x00\x01", i)) != -1 and i + 3 < len(data):
            if data[i + 3] & 0x1F in (5, 7):
                return True
            i += 3
        return False
    return True  # audio: every packet stands alone
