"""The one place vteller touches aiortc internals: packet forwarding, encoded
(undecoded) receive for taps, and feedback relay.

Packet forwarding: ``receive_packets`` replaces a receiver's RTP handler with one that
does what aiortc's does (bandwidth estimate, statistics, RTX unwrap, NACKs) and then
hands each packet to the feed at once; it reassembles frames only while the feed has
taps that need them. ``SenderOutlet`` sends a forwarded packet through an
RTCRtpSender as its encoder would have: the sender's SSRC, payload type, MID and
abs-send-time, its retransmission history (so the receiver's NACKs are answered) and
its sender-report counters. The sender's own loop waits on a track that never yields.
It protects each packet and hands it to the ICE connection's nominated pair itself
(`_send_protected`), as aiortc's ``_send_rtp`` and aioice's send chain would through
four awaited calls; ``check_aiortc`` reads that chain's source, and a changed one (or a
TURN pair) goes the long way. On the receiving side, ``receive_at_once`` handles each
SRTP/SRTCP datagram in the socket's callback (count, unprotect, parse, route: what the
DTLS transport's task does) instead of queueing it for that task, and lets the sockets
hand RTP over before aioice's STUN parse; a handler that has to wait is finished by a
task and later packets queue behind it (`_InOrder`). ``check_aiortc`` reads that path's
source too; DTLS and anything unexpected take the queue as before.

aiortc has no public API to receive encoded frames. Its RTCRtpReceiver reassembles
each frame in a jitter buffer and puts ``(codec, JitterFrame)`` on a private
``queue.Queue`` (``_RTCRtpReceiver__decoder_queue``) read by a decoder thread. We
swap that queue, per receiver and before the receiver starts, for one that hands
the reassembled frame to the receiver's track as an ``av.Packet`` (pts = RTP
timestamp, time base 1/clock rate). aiortc's sender already packs an ``av.Packet``
without encoding, so forwarding never decodes or re-encodes.

On the sending side aiortc answers a PLI/FIR by setting a flag only its encoder
reads; ``relay_keyframe_requests`` replaces that per-sender callback.

aiortc's RTP router knows each receiver's media SSRC but not its retransmission (RTX)
SSRC, so RTX is routed by payload type; the camera and screen m-lines share their
payload types, so every retransmission from a party was dropped and a lost packet
stalled the video until the jitter buffer overflowed (~5 s).
``route_retransmissions`` registers the RTX SSRCs the offer names.

aiortc's video jitter buffer waits for a missing packet until 512 packets have arrived
after it (~5 s at 1 Mbit/s), long after the sender dropped it from its retransmission
history (aiortc keeps 128 packets). ``give_up_on_lost_packets`` swaps in a buffer that
drops the frames waiting on a packet `RETRANSMIT_WINDOW` packets old and asks for a
keyframe at once (after an outage the video is back one round trip and a keyframe
later). It also asks again for packets still missing every `RENACK_S` while media
flows (aiortc asks only when a new gap appears, so a lost retransmission waited for
the next loss).

Bandwidth feedback: a forwarding sender has no encoder, so aiortc drops the REMB its
receiver sends. ``relay_bandwidth_feedback`` hands it to the feed instead, and
``cap_bandwidth_feedback`` keeps the REMB the source's receiver sends at or below what
the downstream receivers reported (``send_remb`` tells the source at once when a
downstream receiver reports less).

Where the native part is built (``_rtpfast.c``, see `native`), four per-packet steps run
in C, each checked at import against what it replaces and otherwise left to Python:
SRTP unprotect in the socket callback, the RTP parse (then routed as
``_handle_rtp_data`` routes), the receive-side bandwidth estimator, and `SenderOutlet`'s
serialize, history and protect (`_WrittenHistory` gives aiortc's retransmission code
the packets back).

Supported aiortc: ``>=1.14,<1.17`` (pinned in pyproject; ``check_aiortc`` verifies
the internals exist and tests exercise them).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import inspect
import logging
import os
import queue
import struct
import threading
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import aioice.ice
import aiortc
import aiortc.rtcdtlstransport
import av
import pylibsrtp
from aiortc import RTCRtpReceiver, RTCRtpSender, clock
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import depayload, is_rtx
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rate import MIN_FRAME_PERIOD_HISTORY_LENGTH, RateCounter
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from aiortc.utils import uint16_add, uint16_gt

from vteller.media import native

log = logging.getLogger(__name__)

SUPPORTED = ((1, 14), (1, 17))
ACTIVE_STAMP_S = 1.0  # a receiver's sources count as active for 10 s; stamp them this often
NTP_EPOCH_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
NTP_ONE = 1 << 32  # one second in 32.32 fixed point
RETRANSMIT_WINDOW = 128  # packets: aiortc's sender history (RTP_HISTORY_SIZE)
FAILURE_LOG_INTERVAL_S = 60.0  # a receive path failing per packet logs this often
RENACK_S = 0.12  # ask again for still-missing packets this often (about a round trip)
_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_NACK_ATTR = "_RTCRtpReceiver__nack_generator"
_STARTED_ATTR = "_RTCRtpReceiver__started"
_RTCP_SSRC_ATTR = "_RTCRtpReceiver__rtcp_ssrc"
_DECODER_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"
_RECEIVER_ATTRS = ("active_ssrc", "codecs", "decoder_error", "decoder_thread", "kind",
                   "remote_bitrate_estimator", "remote_streams", "rtcp_ssrc", "rtx_ssrc",
                   "timestamp_mapper")
_SENDER_ATTRS = ("mid", "rtp_header_extensions_map", "rtp_history", "ntp_timestamp",
                 "rtp_timestamp", "octet_count", "packet_count")


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
    if not isinstance(getattr(RtpRouter(), "ssrc_table", None), dict):
        raise AiortcInternalsChanged("RtpRouter.ssrc_table is gone")
    if not hasattr(DtlsState, "CONNECTED"):
        raise AiortcInternalsChanged("RTCDtlsTransport's State.CONNECTED is gone")
    if RTP_HISTORY_SIZE != RETRANSMIT_WINDOW:
        raise AiortcInternalsChanged(f"aiortc's RTP history is {RTP_HISTORY_SIZE} packets")
    if not _DIRECT_RECEIVE:
        raise AiortcInternalsChanged("the receive path (RTCDtlsTransport._recv_next, aioice "
                                     "Connection.data_received, StunProtocol."
                                     "datagram_received) changed")
    if not _DIRECT_SEND:
        raise AiortcInternalsChanged("the send path (RTCDtlsTransport._send_rtp, aioice "
                                     "Connection.sendto, StunProtocol.send_data) changed")


def _sends_as_expected() -> bool:
    """Whether aiortc's and aioice's send path is the one `SenderOutlet` shortcuts:
    protect, count, then the nominated pair's protocol sends the datagram."""
    try:
        sources = [inspect.getsource(f) for f in (
            aiortc.rtcdtlstransport.RTCDtlsTransport._send_rtp, aioice.ice.Connection.sendto,
            aioice.ice.StunProtocol.send_data)]
    except (OSError, TypeError, AttributeError):
        return False
    expected = (("self._tx_srtp.protect(data)", "self.__tx_bytes += len(data)",
                 "self.__tx_packets += 1"),
                ("self._nominated.get(component)",
                 "active_pair.protocol.send_data(data, active_pair.remote_addr)"),
                ("self.transport.sendto(data, addr)",))
    return all(all(e in src for e in wanted) for src, wanted in zip(sources, expected,
                                                                     strict=True))


_DIRECT_SEND = _sends_as_expected()


@functools.cache
def _time_base(clock_rate_hz: int) -> fractions.Fraction:
    return fractions.Fraction(1, clock_rate_hz)  # built once: a Fraction costs microseconds


class _PacketQueue:
    """Stands in for the receiver's decoder queue; feeds the track with av.Packets.

    ``put`` runs on the event loop (aiortc calls it from its RTP handler); ``get``
    is what aiortc's (now idle) decoder thread blocks on until the receiver stops.
    """

    def __init__(self, track_queue: asyncio.Queue[Any],
                 deliver: Callable[[av.Packet], None] | None) -> None:
        self._track_queue = track_queue
        self._deliver = deliver
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
        packet.time_base = _time_base(codec.clockRate)
        self.frames += 1
        if self._deliver is not None:
            self._deliver(packet)
        else:
            self._track_queue.put_nowait(packet)

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        self._stopped.wait()

    def put_nowait(self, item: Any) -> None:
        self.put(item)


def receive_encoded(receiver: RTCRtpReceiver,
                    deliver: Callable[[av.Packet], None] | None = None) -> _PacketQueue:
    """Make ``receiver.track.recv()`` return encoded ``av.Packet`` s, or, with
    ``deliver``, hand each to it as it is reassembled (on the event loop, in the RTP
    handler; the track then only ends). Call before it starts."""
    current = getattr(receiver, _QUEUE_ATTR, None)
    if not isinstance(current, queue.Queue) or not current.empty():
        raise AiortcInternalsChanged("RTCRtpReceiver decoder queue not found (or in use)")
    if getattr(receiver, _STARTED_ATTR, True) or receiver.track is None:
        raise AiortcInternalsChanged(
            "receive_encoded must be applied after setRemoteDescription, before media starts")
    hooked = _PacketQueue(receiver.track._queue, deliver)  # type: ignore[attr-defined]
    setattr(receiver, _QUEUE_ATTR, hooked)
    return hooked


class _GivingUpJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, except that a packet still missing when one `window`
    newer arrives is given up (the sender no longer holds it): the frames waiting on it
    are dropped and a keyframe asked. A long frame arriving whole is never cut."""

    def __init__(self, capacity: int, window: int) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self._window = window
        self.given_up = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        origin = self._origin
        if origin is not None:
            ahead = uint16_add(packet.sequence_number, -origin)
            if self._window <= ahead < self._capacity and self._lost(origin, ahead):
                self.given_up += 1
                if self.smart_remove(ahead - self._window + 1):
                    self._origin = packet.sequence_number  # emptied, as the base class does
                return True, super().add(packet)[1]
        return super().add(packet)

    def _lost(self, origin: int, ahead: int) -> bool:
        """Whether a packet missing between the oldest held one and the newest is
        `window` or more behind the newest (a frame may be long and whole: then not)."""
        for i in range(ahead - self._window + 1):
            if self._packets[(origin + i) % self._capacity] is None:
                return True
        return False


class _RenackingNackGenerator(NackGenerator):
    """aiortc's NACK bookkeeping; `add` also says "send" when packets are still missing
    and were last asked for `renack_s` ago (the NACK lists every missing packet), and
    `lost` counts the packets it stopped asking for (the sender no longer holds them)."""

    def __init__(self, renack_s: float) -> None:
        super().__init__()
        self._renack_s = renack_s
        self._asked_at = 0.0
        self.renacks = 0
        self.lost = 0  # packets given up: missing when `RETRANSMIT_WINDOW` newer arrived

    def truncate(self) -> None:
        before = len(self.missing)
        super().truncate()
        self.lost += before - len(self.missing)

    def add(self, packet: RtpPacket) -> bool:
        seq, last = packet.sequence_number, self.max_seq
        if not self.missing and last is not None and seq == (last + 1) & 0xFFFF:
            self.max_seq = seq  # the next one, nothing missing: all aiortc's would do
            return False
        missed = super().add(packet)
        now = time.monotonic()
        if missed:
            self._asked_at = now
        elif self.missing and now - self._asked_at >= self._renack_s:
            self._asked_at = now
            self.renacks += 1
            return True
        return missed


def give_up_on_lost_packets(receiver: RTCRtpReceiver, window: int = RETRANSMIT_WINDOW,
                            renack_s: float = RENACK_S) -> None:
    """Swap the video receiver's jitter buffer and NACK bookkeeping (before media
    starts)."""
    current = getattr(receiver, _JITTER_ATTR, None)
    nack = getattr(receiver, _NACK_ATTR, None)
    if not isinstance(current, JitterBuffer) or current._origin is not None:  # noqa: SLF001
        raise AiortcInternalsChanged("RTCRtpReceiver jitter buffer not found (or in use)")
    if not isinstance(nack, NackGenerator) or nack.max_seq is not None:
        raise AiortcInternalsChanged("RTCRtpReceiver NACK generator not found (or in use)")
    setattr(receiver, _JITTER_ATTR, _GivingUpJitterBuffer(current.capacity, window))
    setattr(receiver, _NACK_ATTR, _RenackingNackGenerator(renack_s))


def rtx_ssrcs(offer_sdp: str) -> list[list[int]]:
    """Per m-line of an offer, the RTX SSRCs its `ssrc-group:FID` lines name."""
    return [[int(g.items[1]) for g in m.ssrc_group if g.semantic == "FID" and len(g.items) == 2]
            for m in aiortc_sdp.SessionDescription.parse(offer_sdp).media]


def route_retransmissions(receiver: RTCRtpReceiver, ssrcs: list[int]) -> None:
    """Deliver RTX packets of these SSRCs to ``receiver`` (after setRemoteDescription)."""
    router = receiver.transport._rtp_router  # type: ignore[attr-defined]
    for ssrc in ssrcs:
        router.ssrc_table[ssrc] = receiver


def _remb(packet: Any) -> tuple[int, list[int]] | None:
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            return unpack_remb_fci(packet.fci)
        except ValueError:
            return None
    return None


def relay_bandwidth_feedback(sender: RTCRtpSender, report: Callable[[int], None]) -> None:
    """Hand the REMB (bits/s) a receiver sends about this sender's SSRC to ``report``."""
    original = sender._handle_rtcp_packet  # type: ignore[attr-defined]

    async def handle(packet: Any) -> None:
        remb = _remb(packet)
        if remb is None:
            await original(packet)
        elif sender._ssrc in remb[1]:  # type: ignore[attr-defined]
            report(remb[0])

    sender._handle_rtcp_packet = handle  # type: ignore[attr-defined]


def cap_bandwidth_feedback(receiver: RTCRtpReceiver, cap: Callable[[], int | None]) -> None:
    """The REMB this receiver's own estimator sends is lowered to ``cap()`` when less."""
    original = receiver._send_rtcp  # type: ignore[attr-defined]

    async def send(packet: Any) -> None:
        remb, limit = _remb(packet), cap()
        if remb is not None and limit is not None and limit < remb[0]:
            packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=packet.ssrc, media_ssrc=0,
                                    fci=pack_remb_fci(limit, remb[1]))
        await original(packet)

    receiver._send_rtcp = send  # type: ignore[attr-defined]


async def send_remb(receiver: RTCRtpReceiver, bitrate: int) -> bool:
    """Tell the peer sending to ``receiver`` to stay at or under ``bitrate`` (bits/s)."""
    sources = receiver.getSynchronizationSources()
    rtcp_ssrc = getattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", None)
    if not sources or rtcp_ssrc is None:
        return False
    await receiver._send_rtcp(RtcpPsfbPacket(  # type: ignore[attr-defined]
        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
        fci=pack_remb_fci(bitrate, [sources[0].source])))
    return True


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


def _private(obj: Any, owner: str, name: str) -> Any:
    try:
        return getattr(obj, f"_{owner}__{name}")
    except AttributeError:
        raise AiortcInternalsChanged(f"{owner}.__{name} is gone") from None


def receive_packets(receiver: RTCRtpReceiver, forward: Callable[[RtpPacket], Awaitable[None]],
                    wants_frames: Callable[[], bool],
                    lost: Callable[[], None] = lambda: None) -> None:
    """Hand every RTP packet this receiver gets (retransmissions unwrapped) to ``forward``
    as it arrives; reassemble frames for the track (``receive_encoded``) only while
    ``wants_frames()``; call ``lost()`` when video packets are lost beyond repair (with
    ``give_up_on_lost_packets``: missing when `RETRANSMIT_WINDOW` newer ones came).
    Apply after setRemoteDescription, before media starts.

    Mirrors aiortc 1.14-1.16's ``RTCRtpReceiver._handle_rtp_packet``; what differs is
    the forward, that reassembly (depayload and jitter buffer) is optional, and that audio
    skips the jitter buffer: an Opus packet is a frame, handed on in sequence order (late
    and repeated ones dropped) as it arrives, not after aiortc's prefetch of 4."""
    o = "RTCRtpReceiver"
    for name in _RECEIVER_ATTRS:
        _private(receiver, o, name)
    if getattr(receiver, _STARTED_ATTR, True):
        raise AiortcInternalsChanged("receive_packets must be applied before media starts")
    active, codecs = _private(receiver, o, "active_ssrc"), _private(receiver, o, "codecs")
    streams, rtx = _private(receiver, o, "remote_streams"), _private(receiver, o, "rtx_ssrc")
    estimator = _private(receiver, o, "remote_bitrate_estimator")
    fast = native.rtpfast()
    if estimator is not None and fast is not None:  # the same estimator in C
        estimator = fast.Estimator()
    elif estimator is not None:
        _quicker_min_frame_period(estimator)
        _quicker_rate_counter(estimator)
    error, mapper = _private(receiver, o, "decoder_error"), _private(receiver, o,
                                                                     "timestamp_mapper")
    video = _private(receiver, o, "kind") == "video"
    framing = False  # whether the jitter buffer has been fed without a break
    last_audio_seq = 0  # audio: the last packet handed on (while framing)
    seen: dict[int, float] = {}  # SSRC -> when `active` was last stamped (monotonic)

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        nonlocal framing, last_audio_seq
        if not receiver._enabled:
            return
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(arrival_time_ms, packet.extensions.abs_send_time,
                                 len(packet.payload) + packet.padding_size, packet.ssrc)
            rtcp_ssrc = getattr(receiver, _RTCP_SSRC_ATTR)
            if rtcp_ssrc is not None and remb is not None:
                await receiver._send_rtcp(RtcpPsfbPacket(  # type: ignore[attr-defined]
                    fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                    fci=pack_remb_fci(*remb)))
        now = time.monotonic()  # `active` (a datetime, for getSynchronizationSources)
        if now - seen.get(packet.ssrc, 0.0) >= ACTIVE_STAMP_S:  # is stamped once a second
            seen[packet.ssrc] = now
            active[packet.ssrc] = clock.current_datetime()
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original, apt = rtx.get(packet.ssrc), codec.parameters.get("apt")
            if (original is None or len(packet.payload) < 2 or not isinstance(apt, int)
                    or apt not in codecs):
                return
            packet, codec = unwrap_rtx(packet, payload_type=apt, ssrc=original), codecs[apt]
        nack = getattr(receiver, _NACK_ATTR)
        if nack is not None:
            given_up = getattr(nack, "lost", 0)
            if nack.add(packet):
                await receiver._send_rtcp_nack(  # type: ignore[attr-defined]
                    packet.ssrc, sorted(nack.missing))
            if getattr(nack, "lost", 0) != given_up:
                lost()
        await forward(packet)
        if not wants_frames():
            framing = False
            return
        if not video:  # Opus: a packet is a frame; in order, late and repeated ones dropped
            if framing and not uint16_gt(packet.sequence_number, last_audio_seq):
                return
            framing, last_audio_seq = True, packet.sequence_number
            if getattr(receiver, _DECODER_THREAD_ATTR):
                getattr(receiver, _QUEUE_ATTR).put(
                    (codec, JitterFrame(packet.payload, mapper.map(packet.timestamp))))
            return
        jitter = getattr(receiver, _JITTER_ATTR)
        if not framing:  # (re)start reassembly from this packet on
            if jitter._origin is not None:  # noqa: SLF001
                jitter.remove(jitter.capacity)
                jitter._origin = None  # noqa: SLF001
            framing = True
        try:
            packet._data = depayload(codec, packet.payload) if packet.payload else b""  # type: ignore[attr-defined]
        except ValueError:
            return
        pli, frame = jitter.add(packet)
        if error.is_set():
            error.clear()
            pli = pli or video
        if pli:
            await receiver._send_rtcp_pli(packet.ssrc)  # type: ignore[attr-defined]
        if frame is not None and getattr(receiver, _DECODER_THREAD_ATTR):
            frame.timestamp = mapper.map(frame.timestamp)
            getattr(receiver, _QUEUE_ATTR).put((codec, frame))

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


class _RtpWriter:
    """``RtpPacket.serialize`` for what `SenderOutlet` sends (MID, abs-send-time and audio
    level, the only header extensions it sets) with the one-byte extension block's
    constant part built once: aiortc builds a list of extensions, packs each and joins
    them for every packet. `for_map` gives None where the one-byte form does not apply
    (then aiortc serializes)."""

    def __init__(self, mid_element: bytes, abs_send_time_id: int, audio_level_id: int) -> None:
        self.mid_element = mid_element  # id/length byte and value, or b""
        self.abs_send_time_id, self.audio_level_id = abs_send_time_id, audio_level_id
        self._mid = mid_element
        self._abs = bytes([abs_send_time_id << 4 | 2]) if abs_send_time_id else b""
        self._level = audio_level_id << 4 if audio_level_id else None

    @classmethod
    def for_map(cls, extensions_map: Any, mid: str | None) -> _RtpWriter | None:
        ids = getattr(extensions_map, "_HeaderExtensionsMap__ids", None)
        if ids is None:
            raise AiortcInternalsChanged("HeaderExtensionsMap.__ids is gone")
        mid_id, abs_id, level_id = (ids.mid or 0), (ids.abs_send_time or 0), (ids.audio_level or 0)
        value = mid.encode("utf8") if mid is not None and mid_id else b""
        if any(x > 14 for x in (mid_id, abs_id, level_id)) or (mid_id and mid is not None
                                                               and not 1 <= len(value) <= 16):
            return None  # the two-byte form: left to aiortc
        return cls(bytes([mid_id << 4 | len(value) - 1]) + value if value else b"", abs_id,
                   level_id)

    def serialize(self, packet: RtpPacket) -> bytes:
        """``packet.serialize(map)``'s bytes (padding bytes are random there too). The
        packet carries no CSRCs and only the extensions this writer knows."""
        block = self._mid
        abs_send_time = packet.extensions.abs_send_time
        if self._abs and abs_send_time is not None:
            block += self._abs + abs_send_time.to_bytes(3, "big")
        level = packet.extensions.audio_level
        if self._level is not None and level is not None:
            block += bytes([self._level, (0x80 if level[0] else 0) | (level[1] & 0x7F)])
        padding = packet.padding_size
        if block:
            block += b"\x00" * (-len(block) % 4)
            head = _RTP_HEADER_EXT.pack(0x90 | (padding > 0) << 5,
                                        packet.marker << 7 | packet.payload_type,
                                        packet.sequence_number, packet.timestamp, packet.ssrc,
                                        0xBEDE, len(block) >> 2) + block
        else:
            head = _RTP_HEADER.pack(0x80 | (padding > 0) << 5,
                                    packet.marker << 7 | packet.payload_type,
                                    packet.sequence_number, packet.timestamp, packet.ssrc)
        if padding:
            return head + packet.payload + os.urandom(padding - 1) + bytes([padding])
        return head + packet.payload


_RTP_HEADER = struct.Struct("!BBHLL")
_RTP_HEADER_EXT = struct.Struct("!BBHLLHH")


class SenderOutlet:
    """Sends forwarded packets through an RTCRtpSender as its encoder would have (see
    the module docstring). Bind before setLocalDescription (it learns the payload type
    when the sender starts). Where the native part is built (`_native_writer`) one C
    call serializes, keeps the packet for retransmission, counts and protects it."""

    def __init__(self, sender: RTCRtpSender) -> None:
        o = "RTCRtpSender"
        for name in _SENDER_ATTRS:
            _private(sender, o, name)
        self._sender = sender
        self._history: dict[int, RtpPacket] = _private(sender, o, "rtp_history")
        self._extensions_map = _private(sender, o, "rtp_header_extensions_map")
        self._payload_type: int | None = None
        self._mid: str | None = None
        self._writer: _RtpWriter | None = None  # once the sender starts (None: aiortc's)
        self._native: Any = None  # the native writer, where built and applicable
        self._srtp: Any = None  # the SRTP session `_srtp_address` was read from
        self._srtp_address = 0
        self._octets = self._packets = 0
        original = sender.send

        async def send(parameters: Any) -> None:
            self._payload_type = parameters.codecs[0].payloadType
            self._mid = parameters.muxId
            await original(parameters)  # configures the header extension map
            self._writer = _RtpWriter.for_map(self._extensions_map, self._mid)
            self._native = _native_writer(sender, self._payload_type, self._writer)
            if self._native is not None:  # NACKs are answered from the native history
                sender._RTCRtpSender__rtp_history = _WrittenHistory(  # type: ignore[attr-defined]
                    self._native, self._extensions_map)

        sender.send = send  # type: ignore[method-assign]

    @property
    def native(self) -> bool:
        """Whether packets go through the native writer."""
        return self._native is not None

    def ready(self) -> bool:
        return (self._payload_type is not None
                and self._sender.transport._state is DtlsState.CONNECTED)  # type: ignore[attr-defined]

    def send(self, packet: RtpPacket, sequence_number: int,
             timestamp: int) -> Awaitable[None] | None:
        """Send ``packet`` renumbered: None when it went at once (the native writer on a
        plain UDP pair), else an awaitable that sends it (`Outlet.send`)."""
        native = self._native
        if native is None:
            return self._send_python(packet, sequence_number, timestamp)
        sender = self._sender
        dtls = sender.transport
        if not _DIRECT_SEND:
            pending: Awaitable[None] | None = dtls._send_rtp(native.write(  # aiortc protects
                packet.payload, sequence_number, timestamp, packet.marker,
                packet.padding_size, packet.extensions.audio_level, 0))
        else:
            pair = _nominated_pair(dtls)
            srtp = dtls._tx_srtp
            if srtp is not self._srtp:  # a new DTLS session: its srtp_t, read once
                self._srtp, self._srtp_address = srtp, _srtp_address(srtp)
            try:
                data = native.write(packet.payload, sequence_number, timestamp, packet.marker,
                                    packet.padding_size, packet.extensions.audio_level,
                                    self._srtp_address)
            except RuntimeError as exc:  # srtp_protect refused: as pylibsrtp would say
                raise pylibsrtp.Error(str(exc)) from None
            pending = _send_on(dtls, pair, data)
        # what the sender's reports (RTCP SR) say
        sender._RTCRtpSender__ntp_timestamp = native.ntp_timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count = native.octets  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count = native.packets  # type: ignore[attr-defined]
        return pending

    async def _send_python(self, packet: RtpPacket, sequence_number: int,
                           timestamp: int) -> None:
        """`send` without the native writer."""
        sender = self._sender
        out = RtpPacket(payload_type=self._payload_type or 0, marker=packet.marker,
                        sequence_number=sequence_number, timestamp=timestamp,
                        ssrc=sender._ssrc, payload=packet.payload)  # type: ignore[attr-defined]
        out.padding_size = packet.padding_size
        ntp = int((time.time() + NTP_EPOCH_S) * NTP_ONE)  # what clock.current_ntp_time says
        out.extensions.abs_send_time = (ntp >> 14) & 0x00FFFFFF
        out.extensions.mid = self._mid
        out.extensions.audio_level = packet.extensions.audio_level
        self._history[sequence_number % RTP_HISTORY_SIZE] = out
        writer = self._writer
        if writer is None:
            await sender.transport._send_rtp(  # type: ignore[attr-defined]
                out.serialize(self._extensions_map))
        else:
            await _send_protected(sender.transport, writer.serialize(out))
        self._octets += len(packet.payload)
        self._packets += 1
        # what the sender's reports (RTCP SR) say
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count = self._octets  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count = self._packets  # type: ignore[attr-defined]


def _nominated_pair(dtls: Any) -> Any:
    if dtls._state is not DtlsState.CONNECTED:
        raise ConnectionError("Cannot send encrypted RTP, not connected")
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("Cannot send data, not connected")
    return pair


def _send_on(dtls: Any, pair: Any, data: bytes) -> Awaitable[None] | None:
    """Send a protected datagram on ``pair`` and count it, as aioice and aiortc would:
    at once on a plain UDP pair (None), else the awaitable of the pair's own send (a
    TURN relay wraps each datagram)."""
    dtls._RTCDtlsTransport__tx_bytes += len(data)
    dtls._RTCDtlsTransport__tx_packets += 1
    protocol = pair.protocol
    if type(protocol) is aioice.ice.StunProtocol and protocol.transport is not None:
        protocol.transport.sendto(data, pair.remote_addr)
        return None
    return protocol.send_data(data, pair.remote_addr)  # type: ignore[no-any-return]


async def _send_protected(dtls: Any, data: bytes) -> None:
    """What ``dtls._send_rtp(data)`` does for an RTP packet, without its four awaited
    calls down to the socket (aiortc's ``_send_rtp``, aioice's ``Connection.send`` and
    ``.sendto``, ``StunProtocol.send_data``): protect, send on the nominated pair,
    count. A pair through a TURN relay (or a changed aiortc/aioice) goes the long way."""
    if not _DIRECT_SEND:
        await dtls._send_rtp(data)
        return
    pending = _send_on(dtls, _nominated_pair(dtls), dtls._tx_srtp.protect(data))
    if pending is not None:
        await pending


class _WrittenHistory(dict):  # type: ignore[type-arg]
    """The sender's retransmission history (``RTCRtpSender.__rtp_history``, which
    aiortc's ``_retransmit`` reads with ``get(seq % RTP_HISTORY_SIZE)``) where the native
    writer keeps the packets: each is parsed back into an RtpPacket when asked for."""

    def __init__(self, native: Any, extensions_map: Any) -> None:
        super().__init__()
        self._native, self._extensions_map = native, extensions_map

    def get(self, index: int, default: Any = None) -> Any:  # type: ignore[override]
        data = self._native.sent(index)
        if data is None:
            return super().get(index, default)
        return RtpPacket.parse(data, self._extensions_map)


def _native_writer(sender: RTCRtpSender, payload_type: int,
                   writer: _RtpWriter | None) -> Any:
    """A native writer (`_rtpfast.Writer`) for ``sender``'s packets, or None where the
    native part is not built, pylibsrtp is not the one it was written against, or
    ``writer`` is None (header extensions in the two-byte form: aiortc serializes)."""
    fast = native.rtpfast()
    if fast is None or not _SRTP.protect or writer is None:
        return None
    return fast.Writer(sender._ssrc, payload_type,  # type: ignore[attr-defined]
                       writer.mid_element, writer.abs_send_time_id, writer.audio_level_id,
                       _SRTP.protect)


class _SrtpFunctions(NamedTuple):
    """libsrtp's functions as pylibsrtp 1.x's cffi binding reaches them (libsrtp 2's
    ``(srtp_t, void *, int *)``), by address; zeros where that binding differs."""

    protect: int = 0
    unprotect: int = 0
    unprotect_rtcp: int = 0

    @classmethod
    def find(cls) -> _SrtpFunctions:
        try:
            from pylibsrtp._binding import ffi, lib
        except ImportError:
            return cls()
        try:
            functions = [ffi.addressof(lib, name) for name in (
                "srtp_protect", "srtp_unprotect", "srtp_unprotect_rtcp")]
            signatures = [ffi.getctype(ffi.typeof(f)) for f in functions]
            ffi.cast("uintptr_t", pylibsrtp.Session()._srtp[0])  # where it keeps its srtp_t
        except (AttributeError, TypeError, ffi.error):
            return cls()
        if not all("(struct srtp_ctx_t_ *, void *, int *)" in s for s in signatures):
            return cls()
        return cls(*(int(ffi.cast("uintptr_t", f)) for f in functions))


def _srtp_address(session: pylibsrtp.Session) -> int:
    from pylibsrtp._binding import ffi
    return int(ffi.cast("uintptr_t", session._srtp[0]))  # type: ignore[attr-defined]


_SRTP = _SrtpFunctions.find() if native.built() else _SrtpFunctions()


def _parses_as_aiortc() -> bool:
    """Whether the native RTP parse makes the RtpPacket aiortc's parse makes (the same
    attributes and values) for a packet with CSRCs, padding and the one-byte header
    extensions aiortc writes."""
    fast = native.rtpfast()
    if fast is None:
        return False
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

    uris = ("urn:ietf:params:rtp-hdrext:sdes:mid",
            "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "urn:ietf:params:rtp-hdrext:toffset", "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01")
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i + 1, uri=u) for i, u in enumerate(uris)]))
    sample = RtpPacket(payload_type=96, marker=1, sequence_number=65535, timestamp=2**32 - 1,
                       ssrc=0xDEADBEEF, payload=b"\x90\x80payload")
    sample.csrc = [1, 2**32 - 1]
    sample.padding_size = 3
    sample.extensions = HeaderExtensions(
        abs_send_time=0xABCDEF, audio_level=(True, 90), mid="1", repaired_rtp_stream_id="r0",
        rtp_stream_id="s0", transport_sequence_number=0xFFFE)  # (aiortc writes toffset
    # in 4 bytes and cannot read that back)
    data = sample.serialize(extensions_map)
    try:
        ours = fast.parse_rtp(data, _private(extensions_map, "HeaderExtensionsMap", "ids"),
                              RtpPacket, HeaderExtensions)
    except (AttributeError, TypeError, AiortcInternalsChanged):
        return False
    theirs = RtpPacket.parse(data, extensions_map)
    return (isinstance(ours, RtpPacket) and vars(ours).keys() == vars(theirs).keys()
            and all(getattr(ours, k) == v for k, v in vars(theirs).items()))


_PARSES_AS_AIORTC = _parses_as_aiortc()


def starts_keyframe(codec: str, payload: bytes) -> bool:
    """Whether an RTP payload is the first packet of a key frame."""
    if not payload:
        return False
    if codec == "vp8":  # RFC 7741 4.2: S=1 and PID=0, then the frame tag's P bit is 0
        first = payload[0]
        if not first & 0x10 or first & 0x07:
            return False
        i = 1
        if first & 0x80:  # X: extension bits follow
            if len(payload) < 2:
                return False
            x, i = payload[1], 2
            if x & 0x80:  # I: picture id, 7 or 15 bits
                i += 2 if len(payload) > i and payload[i] & 0x80 else 1
            if x & 0x40:  # L: TL0PICIDX
                i += 1
            if x & 0x30:  # T or K: TID/KEYIDX
                i += 1
        return len(payload) > i and payload[i] & 0x01 == 0
    if codec == "h264":  # RFC 6184: an IDR slice or SPS, alone, aggregated or a first fragment
        nal = payload[0] & 0x1F
        if nal == 24:  # STAP-A: 16-bit sizes, then NAL units
            i = 1
            while i + 2 < len(payload):
                if payload[i + 2] & 0x1F in (5, 7):
                    return True
                i += 2 + int.from_bytes(payload[i:i + 2], "big")
            return False
        if nal == 28:  # FU-A: the start fragment of an IDR slice
            return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == 5
        return nal in (5, 7)
    return True  # audio: every packet stands alone


def _quicker_min_frame_period(estimator: Any) -> None:
    """aiortc's delay-based estimator finds the shortest of the last 60 frame periods with
    a Python loop for every packet group; the same answer from the builtin ``min``."""
    overuse = estimator.estimator
    if not hasattr(overuse, "update_min_frame_period"):
        raise AiortcInternalsChanged("OveruseEstimator.update_min_frame_period is gone")
    history: deque[float] = deque()

    def update_min_frame_period(ts_delta: float) -> float:
        if len(history) >= MIN_FRAME_PERIOD_HISTORY_LENGTH:
            history.popleft()
        shortest = min(history, default=ts_delta)
        history.append(ts_delta)
        return min(shortest, ts_delta)

    overuse.update_min_frame_period = update_min_frame_period


class _QuickerRateCounter:
    """aiortc's ``RateCounter`` (bytes received over the last `window_size` ms, as a
    rate) with the same answers. aiortc keeps a bucket per millisecond and empties the
    expired ones one by one in Python, about 1,000 steps a second per stream, on both
    `add` and `rate`; this keeps one (ms, bytes) entry per packet and pops the expired."""

    def __init__(self, window_size: int, scale: int) -> None:
        self._window_size = window_size
        self._scale = scale
        self.reset()

    def reset(self) -> None:
        self._entries: deque[tuple[int, int]] = deque()
        self._origin_ms: int | None = None
        self._count = 0
        self._value = 0

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._entries.append((now_ms, value))
        self._count += 1
        self._value += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._count > 0 and active_window_size > 1:
                return round(self._scale * self._value / active_window_size)
        return None

    def _erase_old(self, now_ms: int) -> None:
        new_origin_ms = now_ms - self._window_size + 1
        if self._origin_ms is None or self._origin_ms >= new_origin_ms:
            return
        entries = self._entries
        while entries and entries[0][0] < new_origin_ms:
            self._count -= 1
            self._value -= entries.popleft()[1]
        self._origin_ms = new_origin_ms


def _quicker_rate_counter(estimator: Any) -> None:
    """Swap the remote bitrate estimator's incoming-rate counter for `_QuickerRateCounter`."""
    counter = getattr(estimator, "incoming_bitrate", None)
    window, scale = (getattr(counter, "_window_size", None), getattr(counter, "_scale", None))
    if not isinstance(counter, RateCounter) or not isinstance(window, int) or \
            not isinstance(scale, int):
        raise AiortcInternalsChanged("RemoteBitrateEstimator.incoming_bitrate has changed")
    estimator.incoming_bitrate = _QuickerRateCounter(window, scale)


class _Datagrams:
    """Stands in for an aioice connection's received-datagram queue (``put_nowait`` from
    the socket callback, ``get`` by the DTLS transport, its one consumer) without
    asyncio.Queue's per-call loop lookup and waiter bookkeeping. With ``direct`` set
    (`receive_at_once`), a datagram it takes is handled at once and never queued."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.direct: Callable[[bytes], bool] | None = None

    def put_nowait(self, item: Any) -> None:
        direct = self.direct
        if direct is not None and item is not None and direct(item[0]):
            return
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._items.popleft()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


@types.coroutine
def _resume(coro: Any, waited: Any) -> Any:
    """Finish, in the awaiting task, a coroutine stepped by hand until it first waited
    (on ``waited``: a future, or None for a bare yield)."""
    yield waited
    return (yield from coro.__await__())


class _InOrder:
    """Runs each coroutine given at once, in the caller's stack, as far as it goes
    without waiting. One that waits is finished by a task; those given meanwhile queue
    behind it and run in that task, in order. What one raises stops only that one; it is
    counted and logged (its type, at most every `FAILURE_LOG_INTERVAL_S`)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._backlog: deque[Any] = deque()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        self._logged_at = -FAILURE_LOG_INTERVAL_S

    def run(self, coro: Any) -> None:
        if self._task is not None:
            self._backlog.append(coro)
            return
        try:
            waited = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - one packet's failure is that packet's
            self._failed(exc)
            return
        self._task = asyncio.get_running_loop().create_task(self._finish(coro, waited))

    async def _finish(self, coro: Any, waited: Any) -> None:
        try:
            try:
                await _resume(coro, waited)
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
            while self._backlog:
                try:
                    await self._backlog.popleft()
                except Exception as exc:  # noqa: BLE001
                    self._failed(exc)
        finally:
            self._task = None
            while self._backlog:  # cancelled (the loop is closing): never started
                self._backlog.popleft().close()

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionError):  # the transport closed under it
            return
        self.failures += 1
        now = time.monotonic()
        if now - self._logged_at >= FAILURE_LOG_INTERVAL_S:  # a flood logs once a minute
            self._logged_at = now
            log.warning("%s failed: %s (%d so far)", self._what, type(exc).__name__,
                        self.failures)


def _srtp_at_once(dtls: Any, datagrams: _Datagrams) -> Callable[[bytes], bool]:
    """What aiortc's ``RTCDtlsTransport._recv_next`` does with an SRTP or SRTCP datagram
    (count, unprotect, parse and route) done in the socket's callback: no wake-up of the
    transport's task and its five awaiting frames per packet. Takes (returns True for)
    SRTP/SRTCP once the transport is connected; everything else is left to the queue.
    The first one taken also lets the connection's sockets hand SRTP over before aioice
    tries to parse it as STUN (`_skip_stun_parse`)."""
    runner = _InOrder("receiving SRTP")
    connected = DtlsState.CONNECTED
    shortcut = False
    fast = native.rtpfast() if _SRTP.unprotect else None
    session: Any = None  # the SRTP session `address` was read from (native unprotect)
    address = 0
    ids = getattr(getattr(dtls, "_rtp_header_extensions_map", None),
                  "_HeaderExtensionsMap__ids", None)  # configured in place by aiortc
    parse = fast.parse_rtp if fast and _PARSES_AS_AIORTC and ids is not None else None

    def direct(data: bytes) -> bool:
        nonlocal shortcut, session, address
        srtp = dtls._rx_srtp
        if not 127 < data[0] < 192 or srtp is None or dtls._state is not connected:
            return False
        dtls._RTCDtlsTransport__rx_bytes += len(data)
        dtls._RTCDtlsTransport__rx_packets += 1
        rtcp = is_rtcp(data)
        if fast is not None:
            if srtp is not session:  # a new DTLS session: its srtp_t, read once
                session, address = srtp, _srtp_address(srtp)
            plain = fast.unprotect(_SRTP.unprotect_rtcp if rtcp else _SRTP.unprotect,
                                   address, data)
            if plain is None:
                return True  # as aiortc: dropped
        else:
            try:
                plain = srtp.unprotect_rtcp(data) if rtcp else srtp.unprotect(data)
            except pylibsrtp.Error:
                return True  # as aiortc: dropped
        if rtcp:
            coro = dtls._handle_rtcp_data(plain)
        else:  # clock.current_ms() (ms since 1900) without its two datetimes
            arrival_time_ms = int((time.time() + NTP_EPOCH_S) * 1000)
            packet = None
            if parse is not None:
                try:
                    packet = parse(plain, ids, RtpPacket, HeaderExtensions)
                except Exception:  # noqa: BLE001 - never out of the socket's callback
                    packet = None
            if packet is None or packet is NotImplemented:  # aiortc parses and routes it
                coro = dtls._handle_rtp_data(plain, arrival_time_ms=arrival_time_ms)
            else:  # what _handle_rtp_data does after its parse
                receiver = dtls._rtp_router.route_rtp(packet)
                if receiver is None:
                    return True
                coro = receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)
        runner.run(coro)
        if not shortcut:
            shortcut = True
            for protocol in dtls.transport._connection._protocols:
                _skip_stun_parse(protocol, datagrams)
        return True

    return direct


def _skip_stun_parse(protocol: Any, datagrams: _Datagrams) -> None:
    """Give one of aioice's socket protocols a ``datagram_received`` that hands an SRTP
    datagram to ``datagrams.direct`` at once: aioice parses every datagram as STUN
    first, and an RTP one (first two bits 10, STUN's are 00) fails that with an
    exception before it reaches the connection's queue."""
    original = protocol.datagram_received

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        direct = datagrams.direct
        if not (direct is not None and data and 127 < data[0] < 192 and direct(data)):
            original(data, addr)

    protocol.datagram_received = datagram_received


def _receives_as_expected() -> bool:
    """Whether aiortc's and aioice's receive path is the one `receive_at_once`
    shortcuts: a socket's protocol hands what does not parse as STUN to the connection,
    which queues it, and the DTLS transport's task counts, unprotects and hands SRTP to
    ``_handle_rtp_data`` / ``_handle_rtcp_data``."""
    try:
        sources = [inspect.getsource(f) for f in (
            aiortc.rtcdtlstransport.RTCDtlsTransport._recv_next,
            aioice.ice.Connection.data_received, aioice.ice.StunProtocol.datagram_received,
            aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtp_data)]
    except (OSError, TypeError, AttributeError):
        return False
    expected = (("self.__rx_bytes += len(data)", "self.__rx_packets += 1",
                 "first_byte > 127 and first_byte < 192 and self._rx_srtp",
                 "arrival_time_ms = clock.current_ms()",
                 "data = self._rx_srtp.unprotect_rtcp(data)",
                 "await self._handle_rtcp_data(data)",
                 "data = self._rx_srtp.unprotect(data)",
                 "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
                 "except pylibsrtp.Error"),
                ("self._queue.put_nowait((data, component))",),
                ("message = stun.parse_message(data)",
                 "self.receiver.data_received(data, self.local_candidate.component)"),
                ("packet = RtpPacket.parse(data, self._rtp_header_extensions_map)",
                 "receiver = self._rtp_router.route_rtp(packet)",
                 "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)"))
    return all(all(e in src for e in wanted) for src, wanted in zip(sources, expected,
                                                                     strict=True))


_DIRECT_RECEIVE = _receives_as_expected()


def receive_at_once(transport: Any) -> None:
    """Swap the received-datagram queue of a DTLS transport's ICE connection (before
    it connects) for `_Datagrams`, which hands SRTP straight to the transport's
    handlers (`_srtp_at_once`) where aiortc's receive path is the expected one."""
    connection = getattr(getattr(transport, "transport", None), "_connection", None)
    current = getattr(connection, "_queue", None)
    if not isinstance(current, asyncio.Queue) or not current.empty():
        raise AiortcInternalsChanged("aioice Connection._queue not found (or in use)")
    datagrams = _Datagrams()
    if _DIRECT_RECEIVE:
        datagrams.direct = _srtp_at_once(transport, datagrams)
    connection._queue = datagrams  # type: ignore[union-attr]
