"""A customer whose media lives in a network namespace (run by the network tests):

    python -m tests.netns_peer WSS_URL TOKEN NAMESPACE SECONDS [SWITCH_AFTER_S DROP_IP]

Signaling connects from this host's namespace first (the WebSocket keeps its socket);
then the process enters NAMESPACE, so every ICE socket aiortc opens is there. Once both
legs of the call are up it sends the pre-encoded clip for SECONDS and prints one JSON
line: frames sent, the ICE candidate types it gathered, and its connection states.

With SWITCH_AFTER_S, it moves networks that long after connecting, as a phone moving
from Wi-Fi to mobile data: the interface holding DROP_IP goes down and the peer offers a
fresh connection on the same signaling (`webrtc.offer` again, the same call), printing
`{"event": "switched", "addresses": ...}` when it is connected again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from tests.helpers import Party, SignalClient
from tests.media_sources import opus_clip, vp8_clip
from tests.netns import enter


def drop_interface(ip: str) -> None:
    """Take down the interface holding `ip`, and its address (in this namespace)."""
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                           check=True).stdout
    dev = next(line.split()[1] for line in shown.splitlines()  # "inet IP/len" or "inet IP peer"
               if f"inet {ip}/" in line or f"inet {ip} " in line)
    subprocess.run(["ip", "addr", "flush", "dev", dev], check=True)  # the address is gone
    subprocess.run(["ip", "link", "set", "dev", dev, "down"], check=True)


async def connected(party: Party, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while party.pc.connectionState != "connected":
        assert time.monotonic() < deadline, f"not connected: {party.pc.connectionState}"
        await asyncio.sleep(0.05)


async def main(url: str, token: str, ns: str, seconds: float, switch_after: float | None = None,
               drop_ip: str | None = None) -> None:
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
    sent = 0
    if switch_after is not None and drop_ip is not None:
        await asyncio.sleep(switch_after)
        sent += party.video.sent
        drop_interface(drop_ip)
        await party.close()
        party = Party("customer", encoded=True, ice_servers=welcome["ice_servers"])
        await party.negotiate(sig)  # the same call: a fresh leg from the new address
        await connected(party)
        gatherer = party.pc.getTransceivers()[0].sender.transport.transport.iceGatherer
        print(json.dumps({"event": "switched", "addresses": sorted(
            {c.ip for c in gatherer.getLocalCandidates()})}), flush=True)
        seconds -= switch_after
    await asyncio.sleep(seconds)
    gatherer = party.pc.getTransceivers()[0].sender.transport.transport.iceGatherer
    kinds = sorted({c.type for c in gatherer.getLocalCandidates()})
    print(json.dumps({"event": "done", "video_sent": sent + party.video.sent,
                      "video_sent_last_leg": party.video.sent, "candidates": kinds,
                      "states": states}), flush=True)
    await party.close()
    await sig.close()


if __name__ == "__main__":
    switch = (float(sys.argv[5]), sys.argv[6]) if len(sys.argv) > 6 else (None, None)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), *switch))
