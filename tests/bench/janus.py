"""Janus VideoRoom (Debian's `janus` package) carrying the same calls as vteller, for the
side-by-side in `tests/bench/media_relay.py --janus`:

    uv run python -m tests.bench.janus [--calls 4] [--seconds 20]

Each call is a room with two publishers (customer and teller, each sending the same
pre-encoded 640x480 30 fps VP8 and Opus as the vteller benchmark) and two subscribers
(each receives the other's feed, undecoded): four peer connections per call against
vteller's two. Janus is started here from a generated configuration (HTTP API on
loopback, VideoRoom only, ICE on this host's own interface) and driven over its HTTP
API with aiortc peers in two client processes at nice 10, like the vteller scenario.
Measured: Janus's CPU seconds per call-minute (from /proc) and frames delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from tests.bench.media_relay import Clients, cpu_seconds
from tests.media_sources import audio_source, video_source
from vteller.media.leg import rtc_configuration
from vteller.media.passthrough import receive_encoded

JANUS = "/usr/bin/janus"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
PLUGINS_OFF = ("audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip",
               "streaming", "textroom", "videocall", "voicemail")
TRANSPORTS_OFF = ("websockets", "mqtt", "nanomsg", "pfunix", "rabbitmq")


def why_not() -> str | None:
    if not Path(JANUS).exists():
        return "Debian's janus is not installed (apt-get install janus)"
    return None


def own_interface() -> str:
    """The first interface with a global IPv4 address (aiortc skips loopback)."""
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "scope", "global"],
                           capture_output=True, text=True, check=True).stdout
    return shown.split()[1]


class JanusServer:
    """A Janus process on a generated configuration; `url` is its HTTP API."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-janus-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/janus"
        off = ",".join(f"libjanus_{p}.so" for p in PLUGINS_OFF)
        transports_off = ",".join(f"libjanus_{t}.so" for t in TRANSPORTS_OFF)
        (self.dir / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{self.dir}"
  plugins_folder = "{LIBDIR / 'plugins'}"
  transports_folder = "{LIBDIR / 'transports'}"
  events_folder = "{LIBDIR / 'events'}"
  loggers_folder = "{LIBDIR / 'loggers'}"
  debug_level = 2
  admin_secret = "{secrets.token_hex(8)}"
}}
plugins: {{ disable = "{off}" }}
transports: {{ disable = "{transports_off}" }}
events: {{ broadcast = false }}
media: {{ rtp_port_range = "40000-50000" }}
nat: {{ ice_enforce_list = "{own_interface()}" }}
""")
        (self.dir / "janus.transport.http.jcfg").write_text(f"""general: {{
  base_path = "/janus"
  http = true
  port = {self.port}
  ip = "127.0.0.1"
  https = false
}}
admin: {{ admin_http = false }}
""")
        (self.dir / "janus.plugin.videoroom.jcfg").write_text("general: {}\n")
        self.proc = subprocess.Popen(
            [JANUS, "-F", str(self.dir), "-N", "-L", str(self.dir / "janus.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    async def ready(self, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as s:
            while True:
                try:
                    async with s.get(f"{self.url}/info") as r:  # released: no warning
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "janus.log").read_text()[-2000:]
                    raise RuntimeError(f"janus did not start: {log}")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Session:
    """One Janus session over the HTTP API: requests, and events by long poll."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.id = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._poll: asyncio.Task[None] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": secrets.token_hex(6)}
        r = await self.http.post(f"{self.url}{path}", json=body)
        reply = await r.json()
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {reply['error']}")
        return reply

    async def create(self) -> None:
        self.id = (await self.post("", {"janus": "create"}))["data"]["id"]
        self._poll = asyncio.create_task(self._long_poll())

    async def _long_poll(self) -> None:
        while True:
            r = await self.http.get(f"{self.url}/{self.id}?maxev=10")
            got = await r.json()
            for event in got if isinstance(got, list) else [got]:
                if event.get("janus") != "keepalive":
                    await self.events.put(event)

    async def attach(self) -> int:
        reply = await self.post(f"/{self.id}", {"janus": "attach",
                                                "plugin": "janus.plugin.videoroom"})
        return int(reply["data"]["id"])

    async def message(self, handle: int, body: dict[str, Any],
                      jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        """A plugin request; waits for its asynchronous event when Janus only acks it."""
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = {**jsep, "trickle": False}
        reply = await self.post(f"/{self.id}/{handle}", msg)
        if reply.get("janus") != "ack":
            return reply
        while True:
            event = await asyncio.wait_for(self.events.get(), 30)
            if event.get("sender") == handle and event.get("janus") == "event":
                return event

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
        await self.post(f"/{self.id}", {"janus": "destroy"})


class Publisher:
    """Sends the pre-encoded clip and Opus (send-only); frame 0 waits for `go`."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(rtc_configuration([]))
        self.video, self.audio = video_source(), audio_source()
        self.video.hold = asyncio.Event()
        self.pc.addTransceiver(self.audio, direction="sendonly")
        self.pc.addTransceiver(self.video, direction="sendonly")


class Subscriber:
    """Receives a feed undecoded; counts video frames and notes when each arrived."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(rtc_configuration([]))
        self.frames = 0
        self.arrivals: list[tuple[float, int]] = []  # (monotonic, pts from frame 0)
        self._readers: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "video":
                self._readers.append(asyncio.create_task(self._count(track)))

    async def _count(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                packet = await track.recv()
                self.frames += 1
                self.arrivals.append((time.monotonic(), packet.pts))
        except MediaStreamError:
            pass


class JanusCall:
    """A room, two publishers, two subscribers (each party sees the other)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.session = Session(http, url)
        self.publishers = [Publisher(), Publisher()]
        self.subscribers = [Subscriber(), Subscriber()]

    async def start(self, room: int) -> None:
        s = self.session
        await s.create()
        admin = await s.attach()
        await s.message(admin, {"request": "create", "room": room, "publishers": 2,
                                "videocodec": "vp8", "audiocodec": "opus", "bitrate": 0})
        feeds = []
        for i, pub in enumerate(self.publishers):
            handle = await s.attach()
            await pub.pc.setLocalDescription(await pub.pc.createOffer())
            event = await s.message(handle, {
                "request": "joinandconfigure", "room": room, "ptype": "publisher",
                "display": f"party{i}", "audio": True, "video": True},
                {"type": "offer", "sdp": pub.pc.localDescription.sdp})
            await pub.pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"],
                                                                    "answer"))
            feeds.append(event["plugindata"]["data"]["id"])
        await self._connected([p.pc for p in self.publishers])  # a feed exists once it flows
        for sub, feed in zip(self.subscribers, reversed(feeds), strict=True):
            handle = await s.attach()
            event = await s.message(handle, {"request": "join", "room": room,
                                             "ptype": "subscriber",
                                             "streams": [{"feed": feed}]})
            await sub.pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"],
                                                                    "offer"))
            for t in sub.pc.getTransceivers():
                if t.kind == "video" and t.receiver.track is not None:
                    receive_encoded(t.receiver)
            await sub.pc.setLocalDescription(await sub.pc.createAnswer())
            await s.message(handle, {"request": "start"},
                            {"type": "answer", "sdp": sub.pc.localDescription.sdp})
        await self._connected([s.pc for s in self.subscribers])

    @staticmethod
    async def _connected(pcs: list[RTCPeerConnection], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(pc.connectionState == "connected" for pc in pcs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"janus peers: {[pc.connectionState for pc in pcs]}")
            await asyncio.sleep(0.05)

    def go(self) -> None:
        for pub in self.publishers:
            pub.video.hold.set()

    def stop_sending(self) -> None:
        for pub in self.publishers:
            pub.video.stopped = True

    def counts(self) -> tuple[int, int]:
        return (sum(p.video.sent for p in self.publishers),
                sum(s.frames for s in self.subscribers))

    def latencies(self) -> list[float]:
        """Send-to-arrival time of each frame (each subscriber sees the other publisher;
        frame 0 is the first either sends, as in vteller's scenario)."""
        out = []
        for sub, pub in zip(self.subscribers, reversed(self.publishers), strict=True):
            for arrived, pts in sub.arrivals:
                index = round(pts / 3000)
                if 0 <= index < len(pub.video.sent_at):
                    out.append(arrived - pub.video.sent_at[index])
        return out

    async def close(self) -> None:
        for p in (*self.publishers, *self.subscribers):
            await p.pc.close()
        await self.session.close()


def client_worker(url: str, ids: list[int], ready: Any, go: Any, stop: Any, out: Any) -> None:
    """One client process for `Clients`: its share of the Janus calls (nice 10)."""
    import uvloop

    os.nice(10)

    async def run() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            calls = [JanusCall(http, url) for _ in ids]
            try:
                await asyncio.gather(*(c.start(1000 + i) for i, c in zip(ids, calls)))
                ready.put(len(calls))
                while not go.is_set():
                    await asyncio.sleep(0.01)
                for c in calls:
                    c.go()
                t0, own0 = time.monotonic(), cpu_seconds(os.getpid())
                while not stop.is_set():
                    await asyncio.sleep(0.01)
                share = (cpu_seconds(os.getpid()) - own0) / (time.monotonic() - t0)
                for c in calls:
                    c.stop_sending()
                await asyncio.sleep(1.5)  # in-flight frames land
                sent = sum(c.counts()[0] for c in calls)
                got = sum(c.counts()[1] for c in calls)
                out.put((sent, got, share, [lat for c in calls for lat in c.latencies()]))
            except Exception as exc:  # noqa: BLE001 - report to the coordinator
                ready.put(repr(exc))
                out.put(repr(exc))
            finally:
                for c in calls:
                    try:
                        await c.close()
                    except Exception:  # noqa: BLE001, S110 - best effort at the end
                        pass

    uvloop.run(run())


async def scenario(calls: int, seconds: float, processes: int = 2) -> dict[str, float]:
    """Janus carrying `calls` calls for `seconds`: CPU per call-minute and delivery."""
    server = JanusServer()
    clients = Clients(client_worker, [list(range(calls))[k::processes]
                                      for k in range(processes)], server.url)
    try:
        await server.ready()
        await clients.start(ready_timeout=120)
        await asyncio.sleep(3)  # warm-up
        cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = cpu_seconds(server.proc.pid), time.monotonic()
        results = await clients.finish()
    finally:
        clients.kill()
        server.stop()
    sent, got = sum(r[0] for r in results), sum(r[1] for r in results)
    latencies = sorted(lat for r in results for lat in r[3])
    return {"calls": calls, "cpu_s_per_call_min": (cpu1 - cpu0) / (calls * (t1 - t0) / 60),
            "server_core_share": (cpu1 - cpu0) / (t1 - t0),
            "client_core_share": sum(r[2] for r in results),
            "delivered": got / sent if sent else 0.0,
            "lat_p50_ms": 1000 * statistics.quantiles(latencies, n=100)[49],
            "lat_p95_ms": 1000 * statistics.quantiles(latencies, n=100)[94]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    reason = why_not()
    if reason:
        raise SystemExit(f"janus bench skipped: {reason}")
    print(asyncio.run(scenario(a.calls, a.seconds)))
