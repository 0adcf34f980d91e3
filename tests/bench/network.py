"""Video through the server over a bad customer link, against the same link clean, in one
run (needs root for network namespaces and /dev/net/tun; ~2 min):

    uv run python -m tests.bench.network [--seconds 15]

The customer's media lives in a namespace of its own behind a user-space link emulator
(`tests/netem_link.py`: this kernel has no `tc netem`); the server (`vteller serve
--dev`) and the teller run on this host; pre-encoded 640x480 VP8 at 30 fps with a
keyframe every second. Per link: the share of the customer's frames that decode at the
teller and the longest gap between decoded frames; then a 3 s outage and the time from
the link's return to the next decodable frame. Issue 15's targets: >= 95% decodable
and no gap over 1 s at 3% loss and 100 ms RTT; video back within 1 s of an outage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import av

from tests.helpers import Party, SignalClient, insecure_ssl
from tests.netns import EmulatedLink, namespaces, why_not
from tests.serve_process import ServeProcess, start_serve
from vteller.media.passthrough import is_keyframe

ROOT = Path(__file__).parent.parent.parent
LINKS = (("clean", 0.0, 0.0), ("100 ms RTT", 0.0, 0.05), ("3% loss", 0.03, 0.0),
         ("3% loss + 100 ms RTT", 0.03, 0.05))


def decoded(packets: list[tuple[float, Any]]) -> list[float]:
    """Arrival times of the VP8 frames (received undecoded) that decode."""
    ctx = av.CodecContext.create("vp8", "r")
    times: list[float] = []
    for arrived, packet in packets:
        try:
            times += [arrived] * len(ctx.decode(av.Packet(bytes(packet))))
        except av.error.FFmpegError:
            continue
    return times


async def _token(url: str, name: str) -> str:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        r = await s.post(f"{url}/api/dev/customer-token", json={"name": name})
        return (await r.json())["token"]


async def _login(url: str, password: str) -> dict[str, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        r = await s.post(f"{url}/api/login", json={"username": "teller1", "password": password})
        r.raise_for_status()
        return {"__Host-vteller_session": r.cookies["__Host-vteller_session"].value}


async def one_call(server: ServeProcess, ns: str, seconds: float,
                   during: Any = None) -> tuple[int, list[float], Party]:
    """A call with the customer in `ns`: (frames it sent, decoded arrival times at the
    teller, the teller's peer). `during(party)` runs once the media is connected."""
    ws = server.url.replace("https", "wss") + "/ws"
    teller = await SignalClient.open(ws, cookies=await _login(server.url,
                                                              server.passwords["teller1"]))
    await teller.request({"type": "hello"}, "welcome")
    await teller.request({"type": "teller.status", "status": "available"}, "teller.state",
                         state="available")
    customer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.netns_peer", ws, await _token(server.url, "Net Bench"),
        ns, str(seconds), stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    assert customer.stdout is not None
    offer = await teller.recv("offer.incoming", timeout=30)
    await teller.send({"type": "offer.accept", "call_id": offer["call_id"]})
    await teller.recv("call.started")
    party = Party("teller", encoded=True)
    try:
        await party.negotiate(teller)
        assert json.loads(await customer.stdout.readline())["event"] == "connected"
        if during is not None:
            await during(party)
        done = json.loads(await customer.stdout.readline())
        await asyncio.sleep(1.0)  # frames in flight
        await teller.send({"type": "call.hangup"})
        await teller.recv("teller.state", state="wrap_up")
        await teller.request({"type": "teller.status", "status": "offline"}, "teller.state")
        return done["video_sent"], decoded(party.packets["video"]), party
    finally:
        await customer.wait()
        await party.close()
        await teller.close()


async def main(seconds: float, links: bool = True) -> None:
    reason = why_not()
    if reason:
        print(f"network bench skipped: {reason}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-network-"))
    server = start_serve(tmp, "--dev", env={"VTELLER_LOG_LEVEL": "warning"})
    print(f"network: {seconds:.0f} s calls, customer media behind an emulated link")
    try:
        with namespaces(1) as (ns,):
            link = EmulatedLink(ns, 1)
            for name, loss, delay in LINKS if links else ():
                link.set(loss, delay)
                sent, times, _ = await one_call(server, ns, seconds)
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)] or [seconds]
                print(f"  {name:22s} decodable at the teller {len(times):4d}/{sent} "
                      f"({100 * len(times) / sent:5.1f}%)  longest gap "
                      f"{1000 * max(gaps):5.0f} ms", flush=True)
            link.set(0.0, 0.0)
            back: list[float] = []

            async def outage(party: Party) -> None:
                await asyncio.sleep(3)
                link.down()
                await asyncio.sleep(3)
                link.up()
                back.append(time.monotonic())

            _, times, party = await one_call(server, ns, seconds, during=outage)
            after = [t for t in times if t > back[0]]
            keys = [t for t, p in party.packets["video"] if t > back[0]
                    and is_keyframe("vp8", bytes(p))]
            arrived = [t for t, _ in party.packets["video"] if t > back[0]]
            print(f"  3 s outage: first frame {1000 * (arrived[0] - back[0]) if arrived else float('nan'):.0f} ms, first decodable frame "
                  f"{1000 * (after[0] - back[0]) if after else float('nan'):.0f} ms, first "
                  f"keyframe {1000 * (keys[0] - back[0]) if keys else float('nan'):.0f} ms "
                  "after the link returned (target <= 1000 ms)", flush=True)
            link.close()
    finally:
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--outage-only", action="store_true", help="only the outage call")
    args = ap.parse_args()
    asyncio.run(main(args.seconds, links=not args.outage_only))
