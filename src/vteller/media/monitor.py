"""A supervisor's listen-only leg of a call: the server sends the customer's and the
teller's audio and camera to the supervisor; nothing the supervisor sends is used (the
server's side of every m-line is sendonly, and no receiver is attached to a feed).

The supervisor offers four receive-only m-lines in this order: audio (customer), audio
(teller), video (customer camera), video (teller camera), Opus and the call's video
codec. The customer's screen is never sent here: its consent names the teller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from vteller.media.leg import (
    NEGOTIATION_TIMEOUT_S,
    MediaNegotiationError,
    codec_preferences,
    offered_codecs,
    rtc_configuration,
)
from vteller.media.passthrough import relay_keyframe_requests
from vteller.media.relay import Feed

log = logging.getLogger(__name__)

# (party, slot) sent on each m-line, in the offer's order
MONITOR_LAYOUT = (("customer", "audio"), ("teller", "audio"), ("customer", "video"),
                  ("teller", "video"))


def check_monitor_offer(offer_sdp: str, video_codec: str | None) -> None:
    lines = offered_codecs(offer_sdp)
    kinds = [kind for kind, _ in lines]
    want = [slot for _, slot in MONITOR_LAYOUT]
    if kinds != want:
        raise MediaNegotiationError(f"a monitor offer must have m-lines {want}, got {kinds}")
    if not all("opus" in codecs for kind, codecs in lines if kind == "audio"):
        raise MediaNegotiationError("audio must offer Opus", "no_common_codec")
    if video_codec is not None and not all(video_codec in codecs for kind, codecs in lines
                                           if kind == "video"):
        raise MediaNegotiationError(f"the call's video is {video_codec.upper()}, which this "
                                    "offer lacks", "no_common_codec")


class MonitorLeg:
    """Answers a supervisor's offer with the call's feeds, send-only."""

    def __init__(self, ice_servers: list[dict[str, Any]], feeds: Callable[[str, str], Feed],
                 encoded: bool, on_state: Callable[[MonitorLeg, str], None]) -> None:
        self._pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self._feeds = feeds
        self._encoded = encoded
        self._tracks: list[Any] = []
        self.state = "new"

        @self._pc.on("connectionstatechange")
        def _changed() -> None:
            self.state = self._pc.connectionState
            on_state(self, self.state)

    async def answer(self, offer_sdp: str, video_codec: str) -> str:
        check_monitor_offer(offer_sdp, video_codec)
        try:
            return await asyncio.wait_for(self._answer(offer_sdp, video_codec),
                                          NEGOTIATION_TIMEOUT_S)
        except TimeoutError:
            raise MediaNegotiationError("negotiation timed out") from None
        except Exception as exc:  # noqa: BLE001 - aiortc signals bad input with assert
            log.info("bad monitor sdp: %s", type(exc).__name__)
            raise MediaNegotiationError("the SDP offer could not be applied") from None

    async def _answer(self, offer_sdp: str, video_codec: str) -> str:
        await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        for (party, slot), transceiver in zip(MONITOR_LAYOUT, self._pc.getTransceivers(),
                                              strict=True):
            transceiver.setCodecPreferences(
                codec_preferences(slot, "opus" if slot == "audio" else video_codec))
            feed = self._feeds(party, slot)
            track = feed.subscribe(transceiver.sender if self._encoded else None)
            self._tracks.append(track)
            transceiver.sender.replaceTrack(track)
            if self._encoded:
                relay_keyframe_requests(transceiver.sender, feed.request_keyframe)
            transceiver.direction = "sendonly"
        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)
        return self._pc.localDescription.sdp

    async def close(self) -> None:
        for track in self._tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await self._pc.close()
