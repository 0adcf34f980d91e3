"""Transfer over the wire: a teller hands the customer to another queue or a named
teller; the first call ends for them (outcome `transferred`), the customer waits again
with their original time in line and is served by the next teller, whose call names
the first one."""

from __future__ import annotations

from tests.conftest import accept_call
from vteller.calls.session import CallState

CARDS = {"skills": {"card_issuance_review": 0.9}, "languages": ["en"]}
GENERAL = {"skills": {"general": 0.9, "card_issuance_review": 0.5}, "languages": ["en"]}


def _outcome(server, call_id: str):  # type: ignore[no-untyped-def]
    return tuple(server.components.store.run(
        "SELECT outcome, outcome_reason FROM calls WHERE call_id=?", (call_id,))[0])


async def test_transfer_to_another_queue_keeps_the_place(server):
    server.add_staff("front", profile={"skills": {"general": 0.9}, "languages": ["en"]})
    server.add_staff("cards", profile=CARDS)
    front = await server.teller("front")
    cust = await server.customer("c-t")
    first = await accept_call(front, cust)
    queued_at = server.manager.calls[first].queued_at
    cards = await server.teller("cards")
    later = await server.customer("c-later")  # arrives after the transferred customer
    await later.send({"type": "queue.join", "business_type": "card_issuance_review"})
    offer = await cards.recv("offer.incoming")
    await cards.send({"type": "offer.reject", "call_id": offer["call_id"]})  # free again
    await cards.recv("offer.revoked")
    await cards.request({"type": "teller.status", "status": "available"}, "teller.state",
                        state="available")

    await cust.send({"type": "call.transfer", "business_type": "card_issuance_review"})
    await cust.error("forbidden")  # only the teller transfers
    await front.send({"type": "call.transfer", "business_type": "no_such_queue"})
    await front.error("invalid_message")
    await front.send({"type": "call.transfer", "business_type": "card_issuance_review",
                      "note": "wants a replacement card"})
    assert (await front.recv("call.ended"))["reason"] == "transferred"
    await front.recv("teller.state", state="wrap_up")
    assert (await cust.recv("call.ended"))["reason"] == "transferred"
    # the transferred customer is served first, ahead of the one who came later
    offer = await cards.recv("offer.incoming")
    second = offer["call_id"]
    assert second != first and offer["business_type"] == "card_issuance_review"
    assert abs(server.manager.calls[second].queued_at - queued_at) < 1.0  # original time
    await cards.send({"type": "offer.accept", "call_id": second})
    await cust.recv("call.started")
    await cust.send({"type": "survey.submit", "call_id": first, "score": 5})
    await cust.error("wrong_state")  # rated after the call that serves them

    await front.request({"type": "teller.status", "status": "available"}, "teller.state",
                        state="available")
    await server.manager.flush()
    assert _outcome(server, first) == ("transferred", None)
    first_events = server.components.trail.events(first)
    moved = next(e for e in first_events if e["kind"] == "transferred")
    assert (moved["to_business_type"], moved["note"]) == ("card_issuance_review",
                                                          "wants a replacement card")
    queued = next(e for e in server.components.trail.events(second) if e["kind"] == "queued")
    assert queued["continued_from"] == first
    for c in (front, cards, cust, later):
        await c.close()


async def test_transfer_to_a_named_teller(server):
    for name in ("one", "best", "named"):
        server.add_staff(name, profile=GENERAL)
    one = await server.teller("one")
    cust = await server.customer("c-n")
    call_id = await accept_call(one, cust)
    named = await server.teller("named")
    await one.send({"type": "call.transfer", "teller": "nobody"})
    await one.error("wrong_state")
    await one.send({"type": "call.transfer", "teller": "one"})
    await one.error("invalid_message")
    best = await server.teller("best")  # as able as `named`: routing could pick either
    await one.send({"type": "call.transfer", "teller": "named"})
    offer = await named.recv("offer.incoming")
    assert offer["business_type"] == "general"
    await named.send({"type": "offer.accept", "call_id": offer["call_id"]})
    await named.recv("call.started")
    await cust.recv("call.started")
    assert not [m for m in best.inbox if m["type"] == "offer.incoming"]
    assert server.manager.calls[offer["call_id"]].state == CallState.CONNECTING
    assert call_id != offer["call_id"]
    for c in (one, named, best, cust):
        await c.close()
