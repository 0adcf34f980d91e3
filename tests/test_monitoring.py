"""Listen-only monitoring with real aiortc peers: a supervisor hears both parties and
sees both cameras through its own leg, is never heard, and is in the call's trail;
the teller is told (bank policy); monitors end on stop, with the call, and when the
supervisor's connection drops; everyone else is refused."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.conftest import accept_call
from tests.helpers import Party, SignalClient
from vteller.media.leg import rtc_configuration

pytestmark = pytest.mark.timeout(90)


class Listener:
    """The supervisor's side: four receive-only m-lines, frames counted per m-line."""

    SLOTS = ("customer.audio", "teller.audio", "customer.video", "teller.video")

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(rtc_configuration([]))  # max-bundle, as the server
        for kind in ("audio", "audio", "video", "video"):
            self.pc.addTransceiver(kind, direction="recvonly")
        self.received = dict.fromkeys(self.SLOTS, 0)
        self._readers: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def _on_track(track) -> None:  # type: ignore[no-untyped-def]
            index = [t.receiver.track for t in self.pc.getTransceivers()].index(track)
            self._readers.append(asyncio.create_task(self._count(track, self.SLOTS[index])))

    async def _count(self, track, slot: str) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                await track.recv()
                self.received[slot] += 1
        except MediaStreamError:
            pass

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answered(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def wait(self, minimum: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while min(self.received.values()) < minimum:
            if time.monotonic() > deadline:
                raise TimeoutError(f"monitor got {self.received}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await self.pc.close()


async def supervisor(server, name: str = "sup1") -> SignalClient:  # type: ignore[no-untyped-def]
    server.add_staff(name, role="supervisor")
    sig = await SignalClient.open(server.ws_url, cookies=await server.login(name))
    await sig.request({"type": "hello"}, "welcome")
    return sig


async def test_a_supervisor_listens_audited_and_the_teller_is_told(server):
    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-monitored")
    call_id = await accept_call(teller_sig, cust_sig)
    customer, teller = Party("customer"), Party("teller")
    await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
    await teller.wait_frames("video", 10)

    sup = await supervisor(server)
    board = await sup.recv("dashboard")
    row = next(t for t in board["tellers"] if t["username"] == "teller1")
    assert row["call_id"] == call_id  # what the supervisor listens to

    listener = Listener()
    answer = await sup.request({"type": "monitor.start", "call_id": call_id,
                                "sdp": await listener.offer()}, "monitor.answer")
    await listener.answered(answer["sdp"])
    told = await teller_sig.recv("monitor.state")
    assert told == {"type": "monitor.state", "call_id": call_id, "listeners": ["Sup1"]}
    await listener.wait(10)  # both voices and both cameras reach the supervisor
    assert not any(m["type"].startswith("monitor") for m in cust_sig.inbox)  # bank policy

    await sup.send({"type": "monitor.start", "call_id": call_id, "sdp": await listener.offer()})
    await sup.error("wrong_state")  # once per supervisor and call
    ended = await sup.request({"type": "monitor.stop", "call_id": call_id}, "monitor.ended")
    assert ended["reason"] == "stopped"
    assert (await teller_sig.recv("monitor.state"))["listeners"] == []
    before = dict(listener.received)
    await asyncio.sleep(1.0)
    assert listener.received["customer.video"] - before["customer.video"] <= 5  # stopped

    # again, then the call ends: the monitor with it
    again = Listener()
    answer = await sup.request({"type": "monitor.start", "call_id": call_id,
                                "sdp": await again.offer()}, "monitor.answer")
    await again.answered(answer["sdp"])
    await cust_sig.send({"type": "call.hangup"})
    assert (await sup.recv("monitor.ended"))["reason"] == "call_ended"
    await teller_sig.recv("teller.state", state="wrap_up")
    await teller_sig.request({"type": "teller.status", "status": "available"}, "teller.state",
                             state="available")
    await server.manager.flush()
    events = server.components.trail.events(call_id)
    kinds = [(e["actor"], e["kind"], e.get("supervisor"), e.get("reason")) for e in events
             if e["kind"].startswith("monitor.")]
    assert kinds == [("supervisor", "monitor.started", "sup1", None),
                     ("supervisor", "monitor.stopped", "sup1", "stopped"),
                     ("supervisor", "monitor.started", "sup1", None),
                     ("supervisor", "monitor.stopped", "sup1", "call_ended")]
    for c in (listener, again, customer, teller, cust_sig, teller_sig, sup):
        await c.close()


async def test_monitoring_refusals_and_a_dropped_supervisor(server):
    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-refusals")
    call_id = await accept_call(teller_sig, cust_sig)
    customer, teller = Party("customer"), Party("teller")
    await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
    listener = Listener()
    offer = await listener.offer()

    await teller_sig.send({"type": "monitor.start", "call_id": call_id, "sdp": offer})
    await teller_sig.error("forbidden")
    await cust_sig.send({"type": "monitor.start", "call_id": call_id, "sdp": offer})
    await cust_sig.error("forbidden")
    sup = await supervisor(server)
    await sup.send({"type": "monitor.start", "call_id": "no-such-call-1", "sdp": offer})
    await sup.error("wrong_state")
    await sup.send({"type": "monitor.start", "call_id": call_id, "sdp": teller.pc.localDescription.sdp})
    assert "m-lines" in (await sup.error("bad_sdp"))["message"]  # a party's layout, not a monitor's
    await sup.send({"type": "monitor.stop", "call_id": call_id})
    await sup.error("wrong_state")

    answer = await sup.request({"type": "monitor.start", "call_id": call_id, "sdp": offer},
                               "monitor.answer")
    await listener.answered(answer["sdp"])
    await teller_sig.recv("monitor.state")
    await sup.close()  # the supervisor's page goes away: the monitor ends at once
    assert (await teller_sig.recv("monitor.state"))["listeners"] == []
    await server.manager.flush()
    stopped = [e for e in server.components.trail.events(call_id)
               if e["kind"] == "monitor.stopped"]
    assert [e["reason"] for e in stopped] == ["disconnected"]
    for c in (listener, customer, teller, cust_sig, teller_sig):
        await c.close()


@pytest.mark.settings(monitoring=False)
async def test_monitoring_can_be_switched_off(server):
    sup = await supervisor(server)
    await sup.send({"type": "monitor.start", "call_id": "any-call-123", "sdp": "v=0\r\nm=audio"})
    assert "switched off" in (await sup.error("not_allowed"))["message"]
    await sup.close()
