"""The customer's end screen survey, over the wire: one rating per served call, kept
with the call, reported per business type; refused for calls not served or not theirs.
And the customer's earlier calls in the teller's context."""

from __future__ import annotations

import aiohttp

from tests.conftest import accept_call
from tests.helpers import insecure_ssl


async def test_one_rating_per_served_call_reported(server):
    tel = await server.teller("teller1")
    ratings = [("c-1", 5, "very helpful"), ("c-2", 2, ""), ("c-3", 4, "")]
    for customer, score, comment in ratings:
        cust = await server.customer(customer)
        call_id = await accept_call(tel, cust)
        await cust.send({"type": "survey.submit", "call_id": call_id, "score": score})
        await cust.error("wrong_state")  # not over yet
        await cust.send({"type": "call.hangup"})
        ended = await cust.recv("call.ended")
        await cust.send({"type": "survey.submit", "call_id": call_id, "score": 9})
        await cust.error("invalid_message")
        await cust.send({"type": "survey.submit", "call_id": ended["call_id"], "score": score,
                         "comment": comment})
        assert (await cust.recv("survey.recorded"))["call_id"] == call_id
        await cust.send({"type": "survey.submit", "call_id": call_id, "score": 1})
        await cust.error("wrong_state")  # once
        await tel.request({"type": "teller.status", "status": "available"}, "teller.state",
                          state="available")
        await cust.close()
    other = await server.customer("c-9")
    await other.send({"type": "survey.submit", "call_id": call_id, "score": 1})
    await other.error("wrong_state")  # someone else's call
    await tel.send({"type": "survey.submit", "call_id": call_id, "score": 5})
    await tel.error("forbidden")  # tellers do not rate themselves
    await server.manager.flush()
    assert sorted(tuple(r) for r in server.components.store.run(
        "SELECT score, comment FROM surveys")) == [(2, ""), (4, ""), (5, "very helpful")]
    server.add_staff("sup1", "supervisor", {})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                     cookies=await server.login("sup1")) as s:
        report = await (await s.get(f"{server.url}/api/reports/reviews?hours=1")).json()
    assert report["surveys"] == [{"business_type": "general", "responses": 3,
                                  "average": 3.67, "low": 1}]
    await other.close()
    await tel.close()


async def test_the_teller_sees_the_customers_earlier_calls(server):
    tel = await server.teller("teller1")
    cust = await server.customer("c-h")
    first = await accept_call(tel, cust)
    context = await tel.recv("call.context")
    assert context["history"] == []  # first call
    await tel.send({"type": "review.decide", "decision": "reschedule"})
    await tel.recv("review.recorded")
    await cust.send({"type": "call.hangup"})
    await cust.recv("call.ended")
    await tel.request({"type": "teller.status", "status": "available"}, "teller.state",
                      state="available")
    await server.manager.flush()
    await cust.send({"type": "queue.join", "business_type": "card_issuance_review"})
    offer = await tel.recv("offer.incoming")
    await tel.send({"type": "offer.accept", "call_id": offer["call_id"]})
    context = await tel.recv("call.context", call_id=offer["call_id"])
    if not context["history"]:  # accepted before the read finished: sent again with it
        context = await tel.recv("call.context", call_id=offer["call_id"])
    assert [(h["business_type"], h["outcome"]) for h in context["history"]] == [
        ("general", "rescheduled")]
    assert first != offer["call_id"]
    await tel.close()
    await cust.close()
