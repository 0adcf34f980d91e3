"""A customer whose media lives in a network namespace (run by the network tests):

    python -m tests.netns_peer WSS_URL TOKEN NAMESPACE SECONDS

Signaling connects from this host's namespace first (the WebSocket keeps its socket);
then the process enters NAMESPACE, so every ICE socket aiortc opens is there. Once both
legs of the call are up it sends the pre-encoded clip for SECONDS and prints one JSON
line: frames sent, the ICE candidate types it gathered, and its connection states."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tests.helpers import Party, SignalClient
from tests.media_sources import opus_clip, vp8_clip
from tests.netns import enter


async def main(url: str, token: str, ns: str, seconds: float) -> None:
    vp8_clip(), opus_clip()  # encoded now, not while the signaling must answer pings
    sig = await SignalClient.open(url)
    welcome = await sig.request({"type": "hello", "token": token}, "welcome")
    await sig.send({"type": "queue.join"})
    await sig.recv("call.started", timeout=30)
    enter(ns)
    party = Party("customer", encoded=True, ice_servers=welcome["ice_servers"])
    party.video.hold = asyncio.Event()  # frame 0 leaves once both legs are up
    states: list[str] = []
    party.pc.on("connectionstatechange", lambda: states.append(party.pc.connectionState))
    await party.negotiate(sig)
    deadline = time.monotonic() + 30
    while party.pc.connectionState != "connected":
        assert time.monotonic() < deadline, f"not connected: {states}"
        await asyncio.sleep(0.05)
    await sig.recv("queue.status", state="active", timeout=30)  # the teller's leg too
    party.video.hold.set()
    print(json.dumps({"event": "connected"}), flush=True)
    await asyncio.sleep(seconds)
    gatherer = party.pc.getTransceivers()[0].sender.transport.transport.iceGatherer
    kinds = sorted({c.type for c in gatherer.getLocalCandidates()})
    print(json.dumps({"event": "done", "video_sent": party.video.sent, "candidates": kinds,
                      "states": states}), flush=True)
    await party.close()
    await sig.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
