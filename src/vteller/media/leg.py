"""One aiortc peer connection between the server and one party of a call.

The party offers; the server answers. m-line layout is part of the contract:
customer ``audio, video(camera), video(screen)``; teller ``audio, video``. The
screen transceiver is received but never forwarded here (the consent gate decides
that later); its frames are drained and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from vteller.media.relay import Feed, FeedTrack, drain

log = logging.getLogger(__name__)

LEG_LAYOUT: dict[str, tuple[str, ...]] = {
    "customer": ("audio", "video", "video"),
    "teller": ("audio", "video"),
}
NEGOTIATION_TIMEOUT_S = 10.0


class MediaNegotiationError(Exception):
    """The party's offer cannot be answered (malformed SDP or wrong m-lines)."""


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """ICE servers always explicit (aiortc would otherwise contact a public STUN server).

    max-bundle: with aiortc's default (balanced) a second video transceiver (the
    screen share) keeps a stale transport after BUNDLE negotiation and never flows.
    """
    return RTCConfiguration(iceServers=[RTCIceServer(**s) for s in ice_servers],
                            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class MediaLeg:
    """Answers one party's offer, feeds its camera/mic into Feeds, sends the peer's."""

    def __init__(
        self,
        party: str,
        ice_servers: list[dict[str, Any]],
        inbound: dict[str, Feed],
        outbound: dict[str, Feed],
        on_state: Callable[[MediaLeg, str], None],
    ) -> None:
        self.party = party
        self._pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self._inbound = inbound
        self._outbound = outbound
        self._on_state = on_state
        self._tracks: list[FeedTrack] = []
        self._drains: list[asyncio.Task[None]] = []
        self.screen_frames_dropped = [0]
        self.state = "new"

        @self._pc.on("connectionstatechange")
        def _changed() -> None:
            self.state = self._pc.connectionState
            self._on_state(self, self.state)

    async def answer(self, offer_sdp: str) -> str:
        try:
            return await asyncio.wait_for(self._answer(offer_sdp), NEGOTIATION_TIMEOUT_S)
        except MediaNegotiationError:
            raise
        except asyncio.TimeoutError:
            raise MediaNegotiationError("negotiation timed out") from None
        except Exception as exc:  # noqa: BLE001 - aiortc's parser signals bad input with assert
            log.info("bad sdp from %s: %s", self.party, type(exc).__name__)
            raise MediaNegotiationError("the SDP offer could not be parsed or applied") from None

    async def _answer(self, offer_sdp: str) -> str:
        if "m=" not in offer_sdp or not offer_sdp.startswith("v=0"):
            raise MediaNegotiationError("the SDP offer is not a session description")
        await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        transceivers = self._pc.getTransceivers()
        kinds = tuple(t.kind for t in transceivers)
        if kinds != LEG_LAYOUT[self.party]:
            raise MediaNegotiationError(
                f"{self.party} offer must have m-lines {list(LEG_LAYOUT[self.party])},"
                f" got {list(kinds)}"
            )
        audio, camera, *screen = transceivers
        for transceiver, key in ((audio, "audio"), (camera, "video")):
            track = self._outbound[key].subscribe()
            self._tracks.append(track)
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendrecv"
            self._inbound[key].attach(transceiver.receiver.track)
        for transceiver in screen:
            transceiver.direction = "recvonly"
            self._drains.append(
                asyncio.create_task(drain(transceiver.receiver.track, self.screen_frames_dropped))
            )
        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)
        return self._pc.localDescription.sdp

    async def close(self) -> None:
        for task in self._drains:
            task.cancel()
        for track in self._tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await self._pc.close()
