"""Integration: real aiortc customer and teller call each other through the server."""

from __future__ import annotations

import asyncio
import time

from tests.helpers import Party


async def start_call(server):  # type: ignore[no-untyped-def]
    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-42", name="Grace Customer")
    await cust_sig.request({"type": "queue.join"}, "queue.status", state="offered")
    offer = await teller_sig.recv("offer.incoming")
    assert offer["customer"] == {"display_name": "Grace Customer", "role": "customer"}
    accepted_at = time.monotonic()
    await teller_sig.send({"type": "offer.accept", "call_id": offer["call_id"]})
    await teller_sig.recv("call.started")
    await cust_sig.recv("call.started")
    customer, teller = Party("customer"), Party("teller")
    await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
    return cust_sig, teller_sig, customer, teller, offer["call_id"], accepted_at


async def test_two_way_call_flows_through_server(server):
    cust_sig, teller_sig, customer, teller, call_id, accepted_at = await start_call(server)
    try:
        await asyncio.gather(
            customer.wait_frames("video", 10), teller.wait_frames("video", 10),
            customer.wait_frames("audio", 10), teller.wait_frames("audio", 10))
        first = {f"{p.role}.{k}": round(t - accepted_at, 3)
                 for p in (customer, teller) for k, t in p.first_frame_at.items()}
        print(f"\naccept -> first frame (s): {first}")
        await cust_sig.recv("queue.status", state="active")
        # the customer's screen reaches the server but, with the gate closed, not the teller
        call = server.manager.calls[call_id]
        for _ in range(100):
            if call.feeds["customer.screen"].gated_out > 10:
                break
            await asyncio.sleep(0.05)
        assert call.feeds["customer.screen"].gated_out > 10
        assert teller.received["screen"] == 0
        # the media really went through the server's feeds
        assert call.feeds["customer.video"].frames_in > 0
        assert call.feeds["teller.video"].frames_in > 0

        await cust_sig.send({"type": "call.hangup"})
        ended = await teller_sig.recv("call.ended")
        assert ended["reason"] == "hangup_customer"
        await cust_sig.recv("call.ended")
        await teller_sig.recv("teller.state", state="wrap_up")
        await teller_sig.request({"type": "teller.status", "status": "available"},
                                 "teller.state", state="available")
        await server.manager.flush()
        record = await server.components.store.get_call(call_id)
        assert record["state"] == "closed" and record["end_reason"] == "hangup_customer"
        assert record["teller"] == "teller1" and record["answered_at"] is not None
    finally:
        await customer.close()
        await teller.close()
        await cust_sig.close()
        await teller_sig.close()


async def test_customer_reconnects_and_resumes_same_call(server):
    cust_sig, teller_sig, customer, teller, call_id, _ = await start_call(server)
    try:
        await teller.wait_frames("video", 5)
        # drop the signaling connection and the media (like a page reload)
        await cust_sig.close()
        await customer.close()
        await teller_sig.recv("call.peer", connection="reconnecting")
        # reconnect with a fresh token (same customer) and renegotiate media
        new_sig = await server.customer("c-42", name="Grace Customer")
        await teller_sig.recv("call.peer", connection="connected")
        assert server.manager.calls[call_id].state in ("connecting", "active")
        new_customer = Party("customer")
        await new_customer.negotiate(new_sig)
        before = teller.received["video"]
        await new_customer.wait_frames("video", 5)
        await teller.wait_frames("video", before + 10)
        await new_sig.send({"type": "call.hangup"})
        await teller_sig.recv("call.ended")
        await new_customer.close()
        await new_sig.close()
    finally:
        await teller.close()
        await teller_sig.close()
