"""Screen-share consent enforced on the server, navigation push, business review."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from tests.conftest import accept_call, end_call
from tests.helpers import Party, insecure_ssl
from vteller.assist import Consent, ConsentState
from vteller.assist.consent import TRANSITIONS
from vteller.routing import IllegalTransition


@pytest.mark.parametrize("src,dst", list(itertools.product(ConsentState, ConsentState)))
def test_consent_transition(src, dst):
    c = Consent(state=src)
    if dst in TRANSITIONS[src]:
        c.to(dst, 1.0)
        assert c.state == dst and c.sharing == (dst == ConsentState.ACTIVE)
    else:
        with pytest.raises(IllegalTransition):
            c.to(dst, 1.0)


def test_consent_is_never_remembered():
    c = Consent()
    for end in (ConsentState.STOPPED, ConsentState.REVOKED):
        c.to(ConsentState.REQUESTED, 0)
        c.to(ConsentState.GRANTED, 0)
        c.to(ConsentState.ACTIVE, 0)
        c.to(end, 0)
        with pytest.raises(IllegalTransition):
            c.to(ConsentState.ACTIVE, 0)  # a new share needs a new request
    assert c.cycle == 2


@pytest.fixture
async def live_call(server):
    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-1", name="Ada Customer")
    call_id = await accept_call(teller_sig, cust_sig)
    # the customer's client sends screen frames all the time, consent or not
    customer, teller = Party("customer", encoded=True), Party("teller", encoded=True)
    await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
    await teller.wait_frames("video", 10)
    yield server.manager.calls[call_id], cust_sig, teller_sig, customer, teller
    for c in (customer, teller, cust_sig, teller_sig):
        await c.close()


async def events(server, call_id):  # type: ignore[no-untyped-def]
    await server.manager.flush()
    return await asyncio.to_thread(server.components.trail.events, call_id)


async def test_screen_reaches_teller_only_while_consent_active(server, live_call):
    call, cust, tel, customer, teller = live_call
    await asyncio.sleep(1.5)
    assert teller.received["screen"] == 0  # sent without consent: dropped at the server
    await tel.send({"type": "assist.request", "purpose": "help you activate your card"})
    shown = await cust.recv("assist.state", state="requested")
    assert shown["teller"] == "Teller1" and shown["purpose"] == "help you activate your card"
    assert 0 < shown["expires_in_s"] <= 60
    await cust.send({"type": "assist.respond", "allow": True})
    await tel.recv("assist.state", state="granted")
    await asyncio.sleep(0.5)
    assert teller.received["screen"] == 0  # granted is not yet sharing
    await cust.send({"type": "assist.started"})
    await tel.recv("assist.state", state="active")
    await teller.wait_frames("screen", 15)
    await cust.send({"type": "assist.stop"})  # customer revokes mid-share
    await tel.recv("assist.state", state="revoked")
    await asyncio.sleep(0.3)
    stopped_at = teller.received["screen"]
    await asyncio.sleep(1.0)
    assert teller.received["screen"] == stopped_at
    # consent is not remembered: a new request, denied this time
    await tel.send({"type": "assist.request", "purpose": "check your settings"})
    await cust.recv("assist.state", state="requested")
    await cust.send({"type": "assist.respond", "allow": False})
    await tel.recv("assist.state", state="denied")
    await cust.send({"type": "assist.started"})
    await cust.error("wrong_state")
    await asyncio.sleep(1.2)
    assert teller.received["screen"] == stopped_at
    kinds = [(e["actor"], e["kind"]) for e in await events(server, call.call_id)]
    assert ("customer", "screen.dropped_without_consent") in kinds
    consent = [k for k in kinds if k[1].startswith("consent.")]
    assert consent == [("teller", "consent.requested"), ("customer", "consent.granted"),
                       ("customer", "consent.active"), ("customer", "consent.revoked"),
                       ("teller", "consent.requested"), ("customer", "consent.denied")]


async def test_teller_ends_share_and_roles_are_enforced(server, live_call):
    call, cust, tel, customer, teller = live_call
    await cust.send({"type": "assist.request", "purpose": "x" * 10})
    await cust.error("forbidden")
    await tel.send({"type": "assist.respond", "allow": True})
    await tel.error("forbidden")
    await cust.send({"type": "assist.started"})
    await cust.error("wrong_state")  # no consent given
    await tel.send({"type": "assist.request", "purpose": "guide you"})
    await tel.send({"type": "assist.request", "purpose": "guide you"})
    await tel.error("wrong_state")  # one request at a time
    await cust.send({"type": "assist.respond", "allow": True})
    await cust.send({"type": "assist.started"})
    await teller.wait_frames("screen", 5)
    await tel.send({"type": "assist.stop"})
    await cust.recv("assist.state", state="stopped")
    assert not call.screen_gate.is_open()


@pytest.mark.settings(assist={"request_timeout_s": 0.5, "start_timeout_s": 0.5})
async def test_consent_request_and_grant_expire(server, live_call):
    call, cust, tel, *_ = live_call
    await tel.send({"type": "assist.request", "purpose": "guide you"})
    await cust.recv("assist.state", state="expired", timeout=4)
    await cust.send({"type": "assist.respond", "allow": True})
    await cust.error("wrong_state")  # too late
    await tel.send({"type": "assist.request", "purpose": "guide you"})
    await cust.recv("assist.state", state="requested")
    await cust.send({"type": "assist.respond", "allow": True})
    await tel.recv("assist.state", state="expired", timeout=4)  # granted, never started


async def test_navigation_push_allowlist(server, live_call):
    call, cust, tel, *_ = live_call
    await tel.send({"type": "nav.push", "destination": "cards.activate"})
    prompt = await cust.recv("nav.prompt")
    assert prompt == {"type": "nav.prompt", "id": "cards.activate", "title": "Activate a card",
                      "link": "bankapp://cards/activate"}
    await cust.send({"type": "nav.opened", "destination": "cards.activate"})
    for bad in ("https://evil.example/phish", "javascript:alert(1)", "cards.delete"):
        await tel.send({"type": "nav.push", "destination": bad})
        await tel.error("not_allowed")
    await asyncio.sleep(0.2)
    assert not [m for m in cust.inbox if m["type"] == "nav.prompt"]
    kinds = [e["kind"] for e in await events(server, call.call_id)]
    assert kinds.count("nav.pushed") == 1 and kinds.count("nav.refused") == 3
    assert "nav.opened" in kinds


async def test_review_approve_needs_evidence(server):
    tel = await server.teller("teller1")
    cust = await server.customer("c-9")
    call_id = await accept_call(tel, cust, business_type="card_issuance_review")
    context = await tel.recv("call.context")
    assert context["business_type"]["required_evidence"] == ["face_verified", "liveness_passed"]
    await tel.send({"type": "review.decide", "decision": "approve"})
    err = await tel.error("evidence_missing")
    assert "face_verified" in err["message"] and "liveness_passed" in err["message"]
    server.manager.add_evidence(call_id, "face_verified", distance=0.41)  # as identity will
    await tel.recv("call.context")
    await tel.send({"type": "review.decide", "decision": "approve"})
    assert "liveness_passed" in (await tel.error("evidence_missing"))["message"]
    server.manager.add_evidence(call_id, "liveness_passed")
    await tel.send({"type": "review.decide", "decision": "approve", "notes": "all good"})
    assert (await tel.recv("review.recorded"))["decision"] == "approve"
    await tel.send({"type": "review.decide", "decision": "reject", "reason_code": "not_eligible"})
    await tel.error("wrong_state")  # decided once
    kinds = [e["kind"] for e in await events(server, call_id)]
    assert kinds.count("review.refused") == 2 and kinds.count("review.decision") == 1
    await tel.close()
    await cust.close()


async def test_reject_needs_reason_and_report(server):
    tel = await server.teller("teller1")
    for i, (decision, reason) in enumerate([("reject", None), ("reject", "documents_missing"),
                                            ("incomplete", None)]):
        cust = await server.customer(f"c-{i}")
        await accept_call(tel, cust)
        await tel.send({"type": "review.decide", "decision": decision, "reason_code": reason})
        if reason is None and decision == "reject":
            assert "reason_code" in (await tel.error("invalid_message"))["message"]
            await tel.send({"type": "review.decide", "decision": "approve"})  # general: no evidence
        await tel.recv("review.recorded")
        await end_call(tel, cust)
        await cust.close()
    await server.manager.flush()
    server.add_staff("sup1", "supervisor")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                     cookie_jar=jar) as s:
        for user, status in (("teller1", 403), ("sup1", 200)):
            jar.clear()
            jar.update_cookies(await server.login(user))
            r = await s.get(f"{server.url}/api/reports/reviews?hours=1")
            assert r.status == status
        rows = (await r.json())["rows"]
    assert rows == [{"business_type": "general", "teller": "teller1", "approve": 1, "reject": 1,
                     "incomplete": 1, "reschedule": 0, "total": 3, "pass_rate": 1 / 3}]
    await tel.close()


async def test_acknowledgement_follows_the_durable_event(server, live_call):
    call, cust, tel, *_ = live_call
    await tel.send({"type": "assist.request", "purpose": "guide you"})
    await cust.recv("assist.state", state="requested")
    # no flush: by the time anyone is told, the event is already in the trail on disk
    kinds = [e["kind"] for e in server.components.trail.events(call.call_id)]
    assert "consent.requested" in kinds
