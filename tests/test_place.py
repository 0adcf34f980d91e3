"""Place and network rules (V-CIP), over the wire: the customer's location (with
consent) is recorded and gates approval for business types limited to regions;
tellers are offered a business type only from its configured networks."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import accept_call
from vteller.review.policy import Region

INDIA = {"id": "in", "south": 6.5, "west": 68.0, "north": 35.7, "east": 97.5}
TYPES = [{"id": "general", "title": "General enquiry"},
         {"id": "card_issuance_review", "title": "Account opening (V-CIP)",
          "allowed_regions": [INDIA]},
         {"id": "info_change", "title": "Branch-only change",
          "teller_networks": ["10.99.0.0/16"]},
         {"id": "password_reset", "title": "Loopback-only reset",
          "teller_networks": ["127.0.0.0/8", "::1/128"]}]
PROFILE = {"skills": {t["id"]: 0.9 for t in TYPES}, "languages": ["en"]}


@pytest.mark.parametrize("lat,lon,inside", [
    (28.6, 77.2, True), (6.5, 68.0, True), (35.8, 77.0, False), (51.5, -0.1, False)])
def test_region_box(lat, lon, inside):
    assert Region(**INDIA).contains(lat, lon) is inside


def test_region_across_the_antimeridian():
    fiji = Region(id="fj", south=-21.0, west=176.0, north=-12.0, east=-178.0)
    assert fiji.contains(-18.1, 178.4) and fiji.contains(-16.0, -179.5)
    assert not fiji.contains(-18.0, 170.0)


@pytest.mark.settings(review={"business_types": TYPES})
async def test_location_gates_approval_for_a_region_limited_type(server):
    server.add_staff("vcip", profile=PROFILE)
    tel = await server.teller("vcip")
    cust = await server.customer("c-in")
    call_id = await accept_call(tel, cust, business_type="card_issuance_review")
    await cust.recv("location.ask")
    state = await tel.recv("location.state")
    assert (state["state"], state["required"]) == ("not_shared", True)
    await tel.send({"type": "review.decide", "decision": "approve"})
    assert "not shared" in (await tel.error("location_not_allowed"))["message"]
    await cust.send({"type": "location.report", "lat": 51.5, "lon": -0.1, "accuracy_m": 30})
    assert (await tel.recv("location.state"))["state"] == "outside"
    await tel.send({"type": "review.decide", "decision": "approve"})
    assert "outside" in (await tel.error("location_not_allowed"))["message"]
    await cust.send({"type": "location.report", "lat": 123, "lon": 0, "accuracy_m": 5})
    await cust.error("invalid_message")
    await tel.send({"type": "location.report", "lat": 28.6, "lon": 77.2, "accuracy_m": 5})
    await tel.error("forbidden")  # only the customer's phone reports its place
    await cust.send({"type": "location.report", "lat": 28.6, "lon": 77.2, "accuracy_m": 12})
    state = await tel.recv("location.state")
    assert (state["state"], state["region"]) == ("allowed", "in")
    assert "lat" not in state  # coordinates are for the trail, not the console
    await tel.send({"type": "review.decide", "decision": "approve"})
    await tel.recv("review.recorded")
    await server.manager.flush()
    reported = [(e["lat"], e["lon"], e["region"])
                for e in server.components.trail.events(call_id)
                if e["kind"] == "location.reported"]
    assert reported == [(51.5, -0.1, None), (28.6, 77.2, "in")]
    await tel.close()
    await cust.close()


@pytest.mark.settings(review={"business_types": TYPES})
async def test_tellers_are_offered_a_type_only_from_its_networks(server):
    server.add_staff("remote", profile=PROFILE)
    tel = await server.teller("remote")  # connects from 127.0.0.1
    cust = await server.customer("c-branch")
    await cust.send({"type": "queue.join", "business_type": "info_change"})
    call_id = (await cust.recv("queue.status"))["call_id"]
    await asyncio.sleep(1.5)  # dispatch runs on every change and every second
    assert not [m for m in tel.inbox if m["type"] == "offer.incoming"]
    assert server.manager.router.teller("remote").state.value == "available"
    sup = None
    try:
        server.add_staff("sup1", "supervisor", {})
        from tests.helpers import SignalClient

        sup = await SignalClient.open(server.ws_url, cookies=await server.login("sup1"))
        await sup.send({"type": "hello"})
        await sup.recv("welcome")
        await sup.send({"type": "supervisor.assign", "call_id": call_id, "username": "remote"})
        assert "networks" in (await sup.error("not_allowed"))["message"]
    finally:
        if sup is not None:
            await sup.close()
    # a type whose networks include this one is offered as usual
    other = await server.customer("c-loop")
    await accept_call(tel, other, business_type="password_reset")
    await server.manager.flush()
    skipped = [e for e in server.components.trail.events(call_id)
               if e["kind"] == "offer.skipped"]
    assert skipped and skipped[0]["teller"] == "remote"
    assert skipped[0]["reason"] == "teller_network"
    for c in (tel, cust, other):
        await c.close()
