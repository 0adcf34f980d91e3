"""Outcome codes on every call (record, reports, auditors' search) and the V-CIP rule:
a video identification whose connection dropped mid-call cannot be approved."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import accept_call, end_call
from tests.test_auditor import session_for
from vteller.calls.outcome import CallOutcome, Outcome, outcome_of

S, U, D, M, R, T = (Outcome.SUCCESSFUL, Outcome.UNSUCCESSFUL, Outcome.DROPPED,
                    Outcome.MISSED, Outcome.RESCHEDULED, Outcome.TRANSFERRED)


@pytest.mark.parametrize("served,end,decision,reason,needs,expected", [
    (False, "left", None, None, False, (M, "left")),
    (False, "disconnected", None, None, True, (M, "disconnected")),
    (False, "node_stopped", None, None, False, (M, "node_stopped")),
    (True, "hangup_teller", "approve", None, True, (S, None)),
    (True, "hangup_teller", "approve", None, "four_eyes", (S, "pending_audit")),
    (True, "hangup_teller", "reject", "not_eligible", "four_eyes", (U, "not_eligible")),
    (True, "customer_disconnected", "approve", None, True, (S, None)),  # decided, then lost
    (True, "hangup_customer", "reject", "documents_missing", True, (U, "documents_missing")),
    (True, "hangup_customer", "incomplete", None, True, (U, "incomplete")),
    (True, "hangup_teller", "reschedule", None, True, (R, None)),
    (True, "hangup_teller", "reschedule", "customer_declined", False, (R, "customer_declined")),
    (True, "customer_disconnected", None, None, True, (D, "customer_disconnected")),
    (True, "transferred", None, None, True, (T, None)),
    (True, "transferred", "reject", "not_eligible", True, (U, "not_eligible")),
    (True, "teller_disconnected", None, None, False, (D, "teller_disconnected")),
    (True, "server_shutdown", None, None, False, (D, "server_shutdown")),
    (True, "hangup_customer", None, None, True, (U, "no_decision")),
    (True, "hangup_customer", None, None, False, (S, None)),  # an enquiry served
])
def test_outcome_of(served, end, decision, reason, needs, expected):
    assert outcome_of(served=served, end_reason=end, decision=decision, reason_code=reason,
                      needs_evidence=bool(needs), four_eyes=needs == "four_eyes"
                      ) == CallOutcome(*expected)


async def _close(tel, cust, decision: dict | None) -> None:
    if decision is not None:
        await tel.send({"type": "review.decide", **decision})
        await tel.recv("review.recorded")
    await end_call(tel, cust)
    await cust.close()


async def test_outcomes_recorded_reported_and_searched(server):
    tel = await server.teller("teller1")
    plan = [("c-ok", "general", {"decision": "approve"}),
            ("c-rej", "card_issuance_review",
             {"decision": "reject", "reason_code": "documents_missing"}),
            ("c-later", "general", {"decision": "reschedule"}),
            ("c-none", "card_issuance_review", None)]
    ids = {}
    for customer, business_type, decision in plan:
        cust = await server.customer(customer)
        ids[customer] = await accept_call(tel, cust, business_type=business_type)
        await _close(tel, cust, decision)
    await tel.request({"type": "teller.status", "status": "break"}, "teller.state",
                      state="break")
    cust = await server.customer("c-gone")  # waits with nobody available, then leaves
    await cust.send({"type": "queue.join"})
    ids["c-gone"] = (await cust.recv("queue.status"))["call_id"]
    await cust.send({"type": "queue.leave"})
    await cust.recv("call.ended")
    await cust.close()
    await server.manager.flush()

    store = server.components.store
    got = {c: tuple(store.run("SELECT outcome, outcome_reason FROM calls WHERE call_id=?",
                              (call_id,))[0]) for c, call_id in ids.items()}
    assert got == {"c-ok": ("successful", None),
                   "c-rej": ("unsuccessful", "documents_missing"),
                   "c-later": ("rescheduled", None),
                   "c-none": ("unsuccessful", "no_decision"),
                   "c-gone": ("missed", "left")}

    sup = await session_for(server, "sup1", "supervisor", {})
    aud = await session_for(server, "aud1", "auditor", {"permissions": []})
    try:
        report = await (await sup.get(f"{server.url}/api/reports/reviews?hours=1")).json()
        assert report["outcomes"] == [
            {"business_type": "card_issuance_review", "unsuccessful": 2, "total": 2},
            {"business_type": "general", "successful": 1, "rescheduled": 1, "missed": 1,
             "total": 3}]
        assert {"business_type": "general", "teller": "teller1", "approve": 1, "reject": 0,
                "incomplete": 0, "reschedule": 1, "total": 2, "pass_rate": 0.5} in report["rows"]
        r = await aud.get(f"{server.url}/api/audit/sessions", params={"outcome": "missed"})
        found = await r.json()
        assert [(row["session_id"], row["outcome"], row["outcome_reason"])
                for row in found["rows"]] == [(ids["c-gone"], "missed", "left")]
        r = await aud.get(f"{server.url}/api/audit/sessions", params={"outcome": "won"})
        assert r.status == 400 and "outcome must be one of" in (await r.json())["error"]["message"]
    finally:
        await sup.close()
        await aud.close()
        await tel.close()


@pytest.mark.settings(reconnect_grace_s=1.0)
async def test_a_dropped_video_ident_cannot_be_approved(server):
    server.add_staff("ident1", profile={"skills": {"video_ident": 0.9, "general": 0.9},
                                        "languages": ["en"]})
    tel = await server.teller("ident1")
    cust = await server.customer("c-vi")
    call_id = await accept_call(tel, cust, business_type="video_ident")
    for evidence in ("face_verified", "liveness_passed"):
        server.manager.add_evidence(call_id, evidence)
    await cust.close()  # the customer's connection is lost mid-call
    await tel.recv("call.peer", connection="reconnecting")
    await tel.send({"type": "review.decide", "decision": "approve"})
    err = await tel.error("media_dropped")
    assert "start afresh" in err["message"]
    await tel.recv("call.ended", reason="customer_disconnected")
    await tel.request({"type": "teller.status", "status": "available"}, "teller.state",
                      state="available")
    await server.manager.flush()
    kinds = [e["kind"] for e in await asyncio.to_thread(server.components.trail.events, call_id)]
    assert "media.dropped" in kinds and "review.decision" not in kinds
    assert server.components.store.run(
        "SELECT outcome, outcome_reason FROM calls WHERE call_id=?", (call_id,)
    ) == [("dropped", "customer_disconnected")]

    # a business type without the rule may still be approved after a drop
    cust = await server.customer("c-gen")
    call_id = await accept_call(tel, cust, business_type="general")
    await cust.close()
    await tel.recv("call.peer", connection="reconnecting")
    await tel.send({"type": "review.decide", "decision": "approve"})
    await tel.recv("review.recorded")
    await tel.close()
