"""Pairing v1: FIFO queue, offers, reject, ring timeout, leave, reconnect and grace."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import accept_call
from tests.helpers import SignalClient


async def test_fifo_positions_and_order(server):
    a = await server.customer("c-a")
    b = await server.customer("c-b")
    await a.request({"type": "queue.join"}, "queue.status", state="queued", position=1)
    await b.request({"type": "queue.join"}, "queue.status", state="queued", position=2)
    teller = await server.teller()
    offer = await teller.recv("offer.incoming")
    assert offer["customer"]["display_name"] == "Ada Customer"
    assert server.manager.calls[offer["call_id"]].customer_key == "customer:c-a"
    await a.recv("queue.status", state="offered")
    await b.recv("queue.status", state="queued", position=1)
    for s in (a, b, teller):
        await s.close()


async def test_reject_keeps_place_and_is_not_reoffered_to_same_teller(server):
    a = await server.customer("c-a")
    await a.request({"type": "queue.join"}, "queue.status", state="queued")
    t1 = await server.teller("teller1")
    offer = await t1.recv("offer.incoming")
    await t1.send({"type": "offer.reject", "call_id": offer["call_id"]})
    await t1.recv("offer.revoked", reason="rejected")
    await t1.recv("teller.state", state="available")
    await a.recv("queue.status", state="queued", position=1)
    t2 = await server.teller("teller2")
    again = await t2.recv("offer.incoming")
    assert again["call_id"] == offer["call_id"]
    await asyncio.sleep(0.2)
    assert not [m for m in t1.inbox if m["type"] == "offer.incoming"]
    for s in (a, t1, t2):
        await s.close()


@pytest.mark.settings(ring_timeout_s=0.5)
async def test_ring_timeout_sets_teller_not_ready_and_requeues(server):
    t1 = await server.teller("teller1")
    a = await server.customer("c-a")
    await a.send({"type": "queue.join"})
    offer = await t1.recv("offer.incoming")
    await t1.recv("offer.revoked", reason="no_answer", timeout=3)
    await t1.recv("teller.state", state="break", reason="missed_offer")
    await a.recv("queue.status", state="queued", position=1)
    await t1.send({"type": "offer.accept", "call_id": offer["call_id"]})
    await t1.error("wrong_state")
    for s in (a, t1):
        await s.close()


async def test_leave_while_offered_revokes_offer(server):
    t1 = await server.teller("teller1")
    a = await server.customer("c-a")
    await a.send({"type": "queue.join"})
    offer = await t1.recv("offer.incoming")
    await a.send({"type": "queue.leave"})
    ended = await a.recv("call.ended")
    assert ended["reason"] == "left"
    await t1.recv("offer.revoked", reason="customer_left")
    await t1.recv("teller.state", state="available")
    await server.manager.flush()
    record = await server.components.store.get_call(offer["call_id"])
    assert record["state"] == "abandoned" and record["end_reason"] == "left"
    for s in (a, t1):
        await s.close()


async def test_accept_and_abandon_race_leaves_consistent_state(server):
    """Both messages in flight at once: exactly one wins; nobody is stuck."""
    t1 = await server.teller("teller1")
    a = await server.customer("c-a")
    await a.send({"type": "queue.join"})
    offer = await t1.recv("offer.incoming")
    await asyncio.gather(t1.send({"type": "offer.accept", "call_id": offer["call_id"]}),
                         a.send({"type": "queue.leave"}))
    await asyncio.sleep(0.3)
    call = server.manager.calls.get(offer["call_id"])
    status = server.manager.router.teller("teller1").state
    if call is None:  # abandon won
        assert status == "available"
        await t1.error("wrong_state")
    else:  # accept won; the leave was refused
        assert call.state == "connecting" and status == "busy"
        await a.error("wrong_state")
    for s in (a, t1):
        await s.close()


async def test_customer_resumes_queue_place_with_resume_token(server):
    a = await server.customer("c-a")
    b = await server.customer("c-b")
    await a.request({"type": "queue.join"}, "queue.status", state="queued", position=1)
    await b.request({"type": "queue.join"}, "queue.status", state="queued", position=2)
    # find the resume token a received in its welcome (already consumed by recv): re-hello
    await a.close()
    a2 = await SignalClient.open(server.ws_url)
    await a2.send({"type": "hello", "token": server.customer_token("c-a")})
    welcome = await a2.recv("welcome")
    assert welcome["resumed"] and welcome["state"]["call"]["position"] == 1
    welcome_resume = welcome["resume"]
    await a2.close()
    # the resume token alone (no customer token) re-attaches within the grace period
    a3 = await SignalClient.open(server.ws_url)
    await a3.send({"type": "hello", "resume": welcome_resume})
    w3 = await a3.recv("welcome")
    assert w3["resumed"] and w3["state"]["call"]["state"] == "queued"
    # a used resume token is single-use
    a4 = await SignalClient.open(server.ws_url)
    await a4.send({"type": "hello", "resume": welcome_resume})
    await a4.error("resume_failed")
    for s in (a3, a4, b):
        await s.close()


@pytest.mark.settings(reconnect_grace_s=0.3)
async def test_grace_expiry_abandons_waiting_customer(server):
    a = await server.customer("c-a")
    b = await server.customer("c-b")
    await a.request({"type": "queue.join"}, "queue.status", state="queued")
    await b.request({"type": "queue.join"}, "queue.status", state="queued", position=2)
    await a.close()
    await b.recv("queue.status", state="queued", position=1, timeout=3)
    await server.manager.flush()
    assert "customer:c-a" not in server.manager.parties
    await b.close()


@pytest.mark.settings(reconnect_grace_s=0.3)
async def test_teller_lost_during_call_ends_it_after_grace(server):
    t1 = await server.teller("teller1")
    a = await server.customer("c-a")
    await accept_call(t1, a)
    await t1.close()
    await a.recv("call.peer", connection="reconnecting")
    ended = await a.recv("call.ended", timeout=3)
    assert ended["reason"] == "teller_disconnected"
    await a.close()


async def test_new_connection_supersedes_old_one(server):
    a = await server.customer("c-a")
    a2 = await server.customer("c-a")
    err = await a.error("wrong_state")
    assert "taken over" in err["message"]
    await a.closed.wait()
    await a2.request({"type": "ping"}, "pong")
    await a2.close()
    await a.close()


async def test_teller_state_transitions_over_the_wire(server):
    t1 = await server.teller("teller1", available=False)
    await t1.request({"type": "teller.status", "status": "break", "reason": "lunch"},
                     "teller.state", state="break", reason="lunch")
    await t1.request({"type": "teller.status", "status": "available"}, "teller.state",
                     state="available")
    await t1.request({"type": "teller.status", "status": "offline"}, "teller.state",
                     state="offline")
    await t1.close()
