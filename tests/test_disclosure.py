"""Scripted disclosure for sales (dual recording), over the wire: statements in order,
the teller reads and asks, the customer confirms each on screen; every step is an
event naming the exact wording; approval is refused until all are confirmed."""

from __future__ import annotations

import hashlib

from tests.conftest import accept_call
from vteller.review.policy import ReviewPolicy

SCRIPT = ReviewPolicy().business_type("wealth_product_sale").script  # the shipped script


async def test_statements_in_order_then_approval(server):
    server.add_staff("seller", profile={"skills": {"wealth_product_sale": 0.9},
                                        "languages": ["en"]})
    tel = await server.teller("seller")
    cust = await server.customer("c-sale")
    call_id = await accept_call(tel, cust, business_type="wealth_product_sale")
    state = await tel.recv("script.state")
    assert [(s["id"], s["state"]) for s in state["steps"]] == [
        ("product", "open"), ("risks", "open"), ("key_facts", "open")]
    server.manager.add_evidence(call_id, "face_verified")

    await tel.send({"type": "review.decide", "decision": "approve"})
    err = await tel.error("script_incomplete")
    assert "product, risks, key_facts" in err["message"]
    await tel.send({"type": "script.read", "step": "risks"})
    assert "product" in (await tel.error("wrong_state"))["message"]  # in order
    await tel.send({"type": "script.read", "step": "nonsense"})
    await tel.error("invalid_message")
    await cust.send({"type": "script.confirm", "step": "product"})
    await cust.error("wrong_state")  # not asked yet
    await cust.send({"type": "script.read", "step": "product"})
    await cust.error("forbidden")  # the teller reads

    for index, step in enumerate(SCRIPT, start=1):
        await tel.send({"type": "script.read", "step": step.id})
        shown = await cust.recv("script.step")
        assert (shown["step"], shown["text"], shown["index"], shown["total"]) == (
            step.id, step.text, index, 3)
        if step.id == "risks":  # a question first: the teller answers, then asks again
            await cust.send({"type": "script.question", "step": "risks"})
            # product read, product confirmed, risks read, risks question
            states = [await tel.recv("script.state") for _ in range(4)]
            assert [(st["steps"][0]["state"], st["steps"][1]["state"]) for st in states] == [
                ("read", "open"), ("confirmed", "open"), ("confirmed", "read"),
                ("confirmed", "question")]
        await cust.send({"type": "script.confirm", "step": step.id})
        await cust.send({"type": "script.confirm", "step": step.id})
        await cust.error("wrong_state")  # once
    await tel.send({"type": "review.decide", "decision": "approve"})
    assert (await tel.recv("review.recorded"))["decision"] == "approve"

    await server.manager.flush()
    events = server.components.trail.events(call_id)
    steps = [(e["kind"], e["step"]) for e in events if e["kind"].startswith("script.")]
    assert steps == [("script.read", "product"), ("script.confirmed", "product"),
                     ("script.read", "risks"), ("script.question", "risks"),
                     ("script.confirmed", "risks"), ("script.read", "key_facts"),
                     ("script.confirmed", "key_facts")]
    confirmed = [e for e in events if e["kind"] == "script.confirmed"]
    assert [e["text_sha256"] for e in confirmed] == [
        hashlib.sha256(s.text.encode()).hexdigest() for s in SCRIPT]
    assert "disclosure_confirmed" in [e.get("evidence") for e in events]
    await tel.close()
    await cust.close()


async def test_a_type_without_a_script_has_none(server):
    tel = await server.teller("teller1")
    cust = await server.customer("c-1")
    await accept_call(tel, cust)
    await tel.send({"type": "script.read", "step": "product"})
    await tel.error("invalid_message")
    await tel.send({"type": "review.decide", "decision": "approve"})
    await tel.recv("review.recorded")
    assert not [m for m in tel.inbox if m["type"] == "script.state"]
    await tel.close()
    await cust.close()
