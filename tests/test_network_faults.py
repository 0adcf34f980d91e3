"""Calls over bad networks, in network namespaces the tests make (iproute2): the
customer's media lives in a namespace of its own (`tests/netns_peer.py`), the server
and the teller on this host. Real aiortc peers, a real coturn. Loss, delay and outages
come from a user-space wire between two TUN devices (`tests/netem_link.py`): this
kernel has no `tc netem`.

- through a clean emulated link every frame decodes (the harness; lossy and delayed
  links are measured against issue 15's targets in `tests/bench/network.py`);
- a 3 s outage of that link: the same call goes on and video comes back;
- a customer who can reach only a TURN server: coturn with short-lived credentials the
  server hands out (`[turn]`, the TURN REST scheme), and the call flows through it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import pytest

from tests.helpers import Party, SignalClient
from tests.netns import EmulatedLink, Link, link, namespaces, run, why_not
from vteller.media.passthrough import is_keyframe

ROOT = Path(__file__).parent.parent
TURN_SECRET = "a-test-turn-secret-of-32-characters-or-more"

pytestmark = [pytest.mark.timeout(180)]


@pytest.fixture
def _namespaces_allowed() -> None:
    reason = why_not()
    if reason:
        pytest.skip(reason)


async def _customer_in(ns: str, server: Any, customer_id: str, seconds: float,
                       *switch: str) -> asyncio.subprocess.Process:
    errors = Path(server.settings.data_dir) / f"{customer_id}.stderr"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.netns_peer", server.ws_url,
        server.customer_token(customer_id), ns, str(seconds), *switch,
        stdout=asyncio.subprocess.PIPE, stderr=errors.open("w"), cwd=ROOT)
    proc.errors = errors  # type: ignore[attr-defined]
    return proc


async def _line(proc: asyncio.subprocess.Process, timeout: float = 60) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not raw:
        code = await proc.wait()
        raise AssertionError(f"the customer process ended ({code}): "
                             f"{proc.errors.read_text()[-1500:]}")  # type: ignore[attr-defined]
    return json.loads(raw)


async def _teller_in_call(server: Any) -> tuple[SignalClient, Party]:
    teller = await server.teller("teller1")
    offer = await teller.recv("offer.incoming", timeout=30)
    await teller.send({"type": "offer.accept", "call_id": offer["call_id"]})
    await teller.recv("call.started")
    party = Party("teller", encoded=True)
    await party.negotiate(teller)
    return teller, party


def _decoded(packets: list[tuple[float, Any]]) -> tuple[int, list[float]]:
    """(frames that decode, their arrival times) of VP8 packets received undecoded."""
    ctx = av.CodecContext.create("vp8", "r")
    good, times = 0, []
    for arrived, packet in packets:
        try:
            frames = ctx.decode(av.Packet(bytes(packet)))
        except av.error.FFmpegError:
            continue
        good += len(frames)
        times += [arrived] * len(frames)
    return good, times


async def _video_through_link(server: Any, customer_id: str, seconds: int,
                              loss: float | None = None, delay_s: float = 0.0,
                              ) -> tuple[int, int, list[float], dict[str, int]]:
    """A call from a customer in a namespace behind an emulated link (with `loss` and
    one-way `delay_s` when given): (video frames sent, frames that decode at the
    teller, the gaps between them, the link's packet counts)."""
    with namespaces(1) as (ns,):
        lk = EmulatedLink(ns, 1)
        if loss is not None:
            lk.set(loss, delay_s)
        customer = await _customer_in(ns, server, customer_id, seconds=seconds)
        teller, party = await _teller_in_call(server)
        try:
            assert (await _line(customer))["event"] == "connected"
            done = await _line(customer)
            await asyncio.sleep(1.0)  # frames in flight
            sent = done["video_sent"]
            good, times = _decoded(party.packets["video"])
        finally:
            await customer.wait()
            await party.close()
            counts = lk.close()
    return sent, good, [b - a for a, b in zip(times, times[1:], strict=False)], counts


@pytest.mark.settings(ice_blocked_networks=[])
async def test_video_crosses_the_emulated_link_whole(server, _namespaces_allowed):
    """The harness itself: through a clean emulated link every frame decodes at the
    teller (the lossy and delayed links are measured in `tests/bench/network.py`)."""
    sent, good, gaps, counts = await _video_through_link(server, "c-clean", seconds=6)
    assert good >= 0.98 * sent, (good, sent)
    assert max(gaps) < 0.5
    assert counts["forwarded"] > sent and counts["dropped"] == 0


@pytest.mark.settings(ice_blocked_networks=[])
async def test_3_percent_loss_and_100_ms_rtt_keep_the_video_whole(server, _namespaces_allowed):
    """Issue 15's target: >= 95% of the frames decodable at the teller and no gap over
    1 s, through 3% loss and 100 ms RTT on the customer's link (retransmissions reach
    the server, lost ones are asked for again)."""
    sent, good, gaps, counts = await _video_through_link(server, "c-lossy", seconds=8,
                                                         loss=0.03, delay_s=0.05)
    print(f"3% loss, 100 ms RTT: {good}/{sent} decodable, longest gap "
          f"{1000 * max(gaps):.0f} ms")
    assert good >= 0.95 * sent, (good, sent)
    assert max(gaps) <= 1.0
    assert counts["dropped"] > 0  # the link did lose packets


class _Stamped(dict):
    """A call's legs that note when each is replaced (monotonic seconds)."""

    def __init__(self, legs: dict[str, Any]) -> None:
        super().__init__(legs)
        self.stamps: list[tuple[str, float]] = []

    def __setitem__(self, side: str, leg: Any) -> None:
        self.stamps.append((side, time.monotonic()))
        super().__setitem__(side, leg)


@pytest.mark.settings(ice_blocked_networks=[])
async def test_a_customer_moving_networks_keeps_the_call(server, _namespaces_allowed):
    """A phone moving from Wi-Fi to mobile data: mid-call the customer's first network
    goes down and a second one is its only way out. It offers a fresh leg on the same
    signaling (aiortc has no ICE restart; the server replaces the leg): the same call,
    no re-queue, video from the new address continuing the old timeline."""
    with namespaces(1) as (ns,):
        wifi = EmulatedLink(ns, 1)
        mobile = link(ns, 3)  # a second way out, from its own address
        customer = await _customer_in(ns, server, "c-moving", 10, "3", wifi.ns_ip)
        teller, party = await _teller_in_call(server)
        try:
            assert (await _line(customer))["event"] == "connected"
            call = next(iter(server.manager.calls.values()))
            call.legs = _Stamped(call.legs)  # when the server takes the new leg
            switched = await _line(customer)
            assert switched["event"] == "switched"
            # the moment the server held the new leg, before its answer went out and so
            # before any of its media (the line above is read later, maybe after it)
            ((side, moved),) = call.legs.stamps
            assert side == "customer"
            assert mobile.inner_ip in switched["addresses"]
            assert wifi.ns_ip not in switched["addresses"]
            done = await _line(customer)
            await asyncio.sleep(1.0)  # frames in flight
            after = [(t, p) for t, p in party.packets["video"] if t > moved]
            good, times = _decoded(after)
            _, every = _decoded(party.packets["video"])
            gap = max(b - a for a, b in zip(every, every[1:], strict=False))
            print(f"moved networks: {good}/{done['video_sent_last_leg']} frames decodable at "
                  f"the teller from the new leg; video paused {1000 * gap:.0f} ms")
            assert good >= 0.95 * done["video_sent_last_leg"], (good, done)
            assert len(server.manager.calls) == 1 and call.state.value == "active"
            assert not any(m["type"] in ("call.ended", "offer.incoming") for m in teller.inbox)
            pts = [p.pts for _, p in party.packets["video"]]
            assert pts == sorted(pts)  # one timeline across the two legs
        finally:
            await customer.wait()
            await party.close()
            wifi.close()


@pytest.mark.settings(ice_blocked_networks=[])
async def test_video_returns_within_a_second_after_a_3_s_outage(server, _namespaces_allowed):
    with namespaces(1) as (ns,):
        lk = EmulatedLink(ns, 1)
        customer = await _customer_in(ns, server, "c-outage", seconds=12)
        teller, party = await _teller_in_call(server)
        try:
            assert (await _line(customer))["event"] == "connected"
            await asyncio.sleep(3)
            lk.down()  # the link is dead both ways
            await asyncio.sleep(3)
            lk.up()
            back = time.monotonic()
            deadline = back + 5
            while True:
                after = [(t, p) for t, p in party.packets["video"] if t > back]
                if any(is_keyframe("vp8", bytes(p)) for _, p in after):
                    break
                assert time.monotonic() < deadline, "video did not come back"
                await asyncio.sleep(0.02)
            first_key = min(t for t, p in after if is_keyframe("vp8", bytes(p)))
            first_any = min(t for t, _ in after)
            print(f"3 s outage: frames again {1000 * (first_any - back):.0f} ms and a "
                  f"decodable keyframe {1000 * (first_key - back):.0f} ms after the link "
                  "returned")
            # frames at once (the server gives up the frames the outage cut and asks for a
            # keyframe); the clip is pre-encoded, so its next keyframe may be a GOP (1 s) on
            assert first_any - back <= 1.0
            assert first_key - back <= 2.0
            done = await _line(customer)
            assert "failed" not in done["states"]
            assert not any(m["type"] == "call.ended" for m in teller.inbox)  # same call
        finally:
            await customer.wait()
            await party.close()
            lk.close()


def _start_coturn(ns: str, listen: Link, relay: Link, folder: Path) -> subprocess.Popen[bytes]:
    if not shutil.which("turnserver"):
        pytest.skip("no turnserver (apt-get install coturn)")
    log = open(folder / "coturn.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
         "--listening-ip", listen.outer_ip, "--listening-port", "3478",
         "--relay-ip", relay.inner_ip, "--min-port", "49160", "--max-port", "49200",
         "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}", "--realm", "vteller.test",
         "--fingerprint", "--no-software-attribute", "--verbose", "--simple-log", "--log-file", "stdout",
         "--pidfile", str(folder / "turnserver.pid")],
        stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    assert proc.poll() is None, (folder / "coturn.log").read_text()
    return proc


@pytest.mark.settings(ice_blocked_networks=[], turn={
    "urls": ["turn:10.199.3.1:3478?transport=udp"], "secret": TURN_SECRET})
async def test_a_customer_that_reaches_only_turn_gets_through_coturn(server, tmp_path,
                                                                   _namespaces_allowed):
    """Namespace T holds coturn, between the customer's namespace C and this host; C has
    no route anywhere else and T does not forward, so media can only be relayed."""
    with namespaces(2) as (turn_ns, cust_ns):
        to_host = link(turn_ns, 2)  # host 10.199.2.1 <-> T 10.199.2.2 (relay address)
        to_customer = link(cust_ns, 3, outer_ns=turn_ns)  # T 10.199.3.1 <-> C 10.199.3.2
        # coturn reaches every address of this host (the server's candidates) through its
        # link; T does not forward, so the customer still reaches nothing but coturn
        run("ip", "route", "add", "default", "via", to_host.outer_ip, ns=turn_ns)
        port = int(server.url.rsplit(":", 1)[1])
        ours = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                              capture_output=True, text=True).stdout.split()
        host_addresses = {w.split("/")[0] for w in ours if w.count(".") == 3 and "/" in w}
        for address in sorted(host_addresses):  # none of this host's addresses answer
            if address.startswith("10.199.3."):
                continue
            probe = subprocess.run(
                ["ip", "netns", "exec", cust_ns, sys.executable, "-c",
                 "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])),"
                 " timeout=1)", address, str(port)], capture_output=True, text=True)
            assert probe.returncode != 0 and ("unreachable" in probe.stderr
                                              or "refused" in probe.stderr), probe.stderr
        probe = subprocess.run(
            ["ip", "netns", "exec", cust_ns, sys.executable, "-c",
             "import socket; socket.create_connection(('10.199.3.1', 9), timeout=1)"],
            capture_output=True, text=True)
        assert "refused" in probe.stderr  # coturn's host answers (nothing listens on 9)
        coturn = _start_coturn(turn_ns, to_customer, to_host, tmp_path)
        try:
            customer = await _customer_in(cust_ns, server, "c-turn-only", seconds=5)
            teller, party = await _teller_in_call(server)
            assert (await _line(customer))["event"] == "connected"
            done = await _line(customer)
            assert "relay" in done["candidates"]
            assert party.received["video"] >= 60, party.received  # 5 s at 30 fps, relayed
            log = (tmp_path / "coturn.log").read_text()
            assert "ALLOCATE" in log.upper() or "allocation" in log.lower(), log[-2000:]
            await customer.wait()
            await party.close()
        finally:
            coturn.terminate()
            coturn.wait(10)


def test_turn_credentials_are_short_lived_and_name_nobody():
    """The TURN REST scheme: `<expiry>:<opaque id>`, password HMAC-SHA1 of the username
    under the shared secret (what coturn checks; the coturn test above uses them)."""
    import base64
    import hashlib
    import hmac

    from vteller.media.turn import TurnConfig

    config = TurnConfig(urls=["turn:turn.example:3478"], secret=TURN_SECRET, ttl_s=600)
    got = config.ice_server("customer:c-1001", now=1_000_000.0)
    assert got is not None
    expiry, who = got["username"].split(":")
    assert int(expiry) == 1_000_600 and "c-1001" not in got["username"] and len(who) == 16
    want = base64.b64encode(hmac.new(TURN_SECRET.encode(), got["username"].encode(),
                                     hashlib.sha1).digest()).decode()
    assert got["credential"] == want and got["urls"] == ["turn:turn.example:3478"]
    other = config.ice_server("customer:c-1002", now=1_000_000.0)
    assert other is not None and other["username"] != got["username"]
    assert TurnConfig().ice_server("x") is None
    for bad in ({"urls": ["turn:x:3478"]}, {"secret": TURN_SECRET},
                {"urls": ["http://x"], "secret": TURN_SECRET},
                {"urls": ["turn:x:3478"], "secret": "short"}):
        with pytest.raises(ValueError):
            TurnConfig(**bad)
