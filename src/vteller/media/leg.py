"""One aiortc peer connection between the server and one party of a call.

The party offers; the server answers. Both parties offer three m-lines in this
order: ``audio``, ``video`` (camera), ``video`` (screen share: the customer sends
it, the teller receives it). Audio is Opus; video is one codec for the whole call
(VP8 preferred, H.264 accepted), so packets can be forwarded without transcoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

from vteller.media.passthrough import (
    cap_bandwidth_feedback,
    give_up_on_lost_packets,
    receive_at_once,
    receive_encoded,
    receive_packets,
    relay_bandwidth_feedback,
    relay_keyframe_requests,
    route_retransmissions,
    rtx_ssrcs,
)
from vteller.media.relay import Feed

log = logging.getLogger(__name__)

SLOTS = ("audio", "video", "screen")
SLOT_KIND = {"audio": "audio", "video": "video", "screen": "video"}
# which slots a party sends to the server / receives from it
SENDS = {"customer": ("audio", "video", "screen"), "teller": ("audio", "video")}
RECEIVES = {"customer": ("audio", "video"), "teller": ("audio", "video", "screen")}
VIDEO_CODECS = ("vp8", "h264")
NEGOTIATION_TIMEOUT_S = 10.0
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class MediaNegotiationError(Exception):
    """The party's offer cannot be answered. ``code`` is the wire error code."""

    def __init__(self, message: str, code: str = "bad_sdp") -> None:
        super().__init__(message)
        self.code = code


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """ICE servers always explicit (aiortc would otherwise contact a public STUN server).

    max-bundle: with aiortc's default (balanced) a second video transceiver (the
    screen share) keeps a stale transport after BUNDLE negotiation and never flows.
    """
    return RTCConfiguration(iceServers=[RTCIceServer(**s) for s in ice_servers],
                            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def offered_codecs(offer_sdp: str) -> list[tuple[str, set[str]]]:
    """(kind, codec names) per m-line of an offer; raises MediaNegotiationError."""
    if not isinstance(offer_sdp, str) or not offer_sdp.startswith("v=0") or "m=" not in offer_sdp:
        raise MediaNegotiationError("the SDP offer is not a session description")
    try:
        parsed = aiortc_sdp.SessionDescription.parse(offer_sdp)
    except Exception:  # noqa: BLE001 - aiortc's parser signals bad input with assert
        raise MediaNegotiationError("the SDP offer could not be parsed") from None
    for m in parsed.media:  # without these the leg would wait in `connecting` for ever
        if m.dtls is None or not m.dtls.fingerprints:
            raise MediaNegotiationError("the SDP offer has no DTLS fingerprint")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise MediaNegotiationError("the SDP offer has no ICE credentials")
    return [(m.kind, {c.mimeType.split("/")[1].lower() for c in m.rtp.codecs})
            for m in parsed.media]


def filter_candidates(offer_sdp: str, blocked: Sequence[IPNetwork]) -> tuple[str, int]:
    """Drop ICE candidates whose address lies in a blocked network (or is a hostname,
    e.g. mDNS `.local`, which could resolve into one), so the server never sends STUN
    probes where a client points it. Returns (offer, how many were dropped)."""
    if not blocked:
        return offer_sdp, 0
    kept, dropped = [], 0
    for line in offer_sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            fields = line.split()
            try:
                address = ipaddress.ip_address(fields[4])
                bad = any(address in net for net in blocked)
            except (IndexError, ValueError):
                bad = True
            if bad:
                dropped += 1
                continue
        kept.append(line)
    return "\r\n".join(kept), dropped


def check_offer(party: str, offer_sdp: str, video_codec: str | None) -> str:
    """Validate layout and codecs; returns the call's video codec (chosen if None)."""
    lines = offered_codecs(offer_sdp)
    kinds = tuple(kind for kind, _ in lines)
    want = tuple(SLOT_KIND[s] for s in SLOTS)
    if kinds != want:
        raise MediaNegotiationError(
            f"{party} offer must have m-lines {list(want)} (audio, camera, screen), "
            f"got {list(kinds)}")
    if "opus" not in lines[0][1]:
        raise MediaNegotiationError("audio must offer Opus", "no_common_codec")
    video_sets = [codecs for kind, codecs in lines if kind == "video"]
    if video_codec is None:
        video_codec = next((c for c in VIDEO_CODECS if all(c in s for s in video_sets)), None)
        if video_codec is None:
            raise MediaNegotiationError("video must offer VP8 or H.264", "no_common_codec")
    elif not all(video_codec in s for s in video_sets):
        raise MediaNegotiationError(
            f"the other party's video is {video_codec.upper()}, which this offer lacks",
            "no_common_codec")
    return video_codec


def codec_preferences(kind: str, codec: str) -> list[Any]:
    """The codec and its RTX, to set on a transceiver (one codec per call and kind)."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in caps if c.mimeType.lower() in (f"{kind}/{codec}", f"{kind}/rtx")]


class MediaLeg:
    """Answers one party's offer and wires its transceivers to the call's feeds."""

    def __init__(
        self,
        party: str,
        ice_servers: list[dict[str, Any]],
        feeds: Callable[[str, str], Feed],
        encoded: bool,
        on_state: Callable[[MediaLeg, str], None],
        min_bitrate_bps: int = 0,
    ) -> None:
        self.party = party
        self._min_bitrate = min_bitrate_bps  # what a receiver's REMB may lower the source to
        self._pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self._feeds = feeds  # (party, slot) -> Feed
        self._encoded = encoded
        self._on_state = on_state
        self._tracks: list[Any] = []
        self.state = "new"

        @self._pc.on("connectionstatechange")
        def _changed() -> None:
            self.state = self._pc.connectionState
            self._on_state(self, self.state)

    async def answer(self, offer_sdp: str, video_codec: str) -> str:
        try:
            return await asyncio.wait_for(self._answer(offer_sdp, video_codec),
                                          NEGOTIATION_TIMEOUT_S)
        except MediaNegotiationError:
            raise
        except TimeoutError:
            raise MediaNegotiationError("negotiation timed out") from None
        except Exception as exc:  # noqa: BLE001 - aiortc signals bad input with assert
            log.info("bad sdp from %s: %s", self.party, type(exc).__name__)
            raise MediaNegotiationError("the SDP offer could not be applied") from None

    async def _answer(self, offer_sdp: str, video_codec: str) -> str:
        await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        other = "teller" if self.party == "customer" else "customer"
        retransmissions = rtx_ssrcs(offer_sdp)
        if self._encoded:  # max-bundle: one transport for every m-line
            receive_at_once(self._pc.getTransceivers()[0].receiver.transport)
        for index, (slot, transceiver) in enumerate(zip(SLOTS, self._pc.getTransceivers(),
                                                        strict=True)):
            kind = SLOT_KIND[slot]
            transceiver.setCodecPreferences(
                codec_preferences(kind, "opus" if kind == "audio" else video_codec))
            sends, receives = slot in SENDS[self.party], slot in RECEIVES[self.party]
            if receives:
                feed = self._feeds(other, slot)
                track = feed.subscribe(transceiver.sender if self._encoded else None)
                self._tracks.append(track)
                transceiver.sender.replaceTrack(track)
                if self._encoded:
                    relay_keyframe_requests(transceiver.sender, feed.request_keyframe)
                    if kind == "video":  # this party's bandwidth reaches the source
                        relay_bandwidth_feedback(transceiver.sender, functools.partial(
                            self._report_bandwidth, feed, track))
            if sends:
                feed = self._feeds(self.party, slot)
                route_retransmissions(transceiver.receiver, retransmissions[index])
                if kind == "video":
                    give_up_on_lost_packets(transceiver.receiver)
                    if self._encoded:
                        cap_bandwidth_feedback(transceiver.receiver, feed.bandwidth_cap)
                feed.codec = "opus" if kind == "audio" else video_codec
                if self._encoded:
                    receive_encoded(transceiver.receiver,
                                    functools.partial(feed.on_frame, transceiver.receiver))
                    receive_packets(transceiver.receiver,
                                    functools.partial(feed.on_rtp, transceiver.receiver),
                                    feed.wants_frames, feed.on_loss)
                feed.attach(transceiver.receiver.track, transceiver.receiver)
            transceiver.direction = ("sendrecv" if sends and receives
                                     else "recvonly" if sends else "sendonly")
        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)
        return self._pc.localDescription.sdp

    def _report_bandwidth(self, feed: Feed, track: Any, bitrate: int) -> None:
        feed.report_bandwidth(track, max(bitrate, self._min_bitrate))

    async def close(self) -> None:
        for track in self._tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await self._pc.close()
