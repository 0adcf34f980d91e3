"""The teller's wrap-up disposition: a code from the bank's list and notes, once per
call, only in wrap-up and only by its teller; the code in the call's record, code and
notes in the trail."""

from __future__ import annotations

import pytest

from tests.conftest import accept_call

pytestmark = pytest.mark.timeout(60)


async def test_disposition_recorded_once_in_wrap_up(server):
    teller = await server.teller("teller1")
    customer = await server.customer("c-wrap")
    call_id = await accept_call(teller, customer)
    context = await teller.recv("call.context")
    assert "resolved" in context["dispositions"] and "complaint" in context["dispositions"]

    # during the call: not yet
    await teller.send({"type": "wrap_up.record", "disposition": "resolved"})
    assert (await teller.error("wrong_state"))["re"] == "wrap_up.record"
    await customer.send({"type": "call.hangup"})
    await teller.recv("teller.state", state="wrap_up")

    # the customer may not; a code outside the list is refused
    await customer.send({"type": "wrap_up.record", "disposition": "resolved"})
    await customer.error("forbidden")
    await teller.send({"type": "wrap_up.record", "disposition": "made_up_code"})
    await teller.error("not_allowed")

    recorded = await teller.request({"type": "wrap_up.record", "disposition": "follow_up",
                                     "notes": "send the card form by post"}, "wrap_up.recorded")
    assert recorded == {"type": "wrap_up.recorded", "call_id": call_id,
                        "disposition": "follow_up"}
    await teller.send({"type": "wrap_up.record", "disposition": "resolved"})
    await teller.error("wrong_state")  # once

    await teller.request({"type": "teller.status", "status": "available"}, "teller.state",
                         state="available")
    await server.manager.flush()
    row = await server.components.store.get_call(call_id)
    assert row["disposition"] == "follow_up"
    events = [e for e in server.components.trail.events(call_id)
              if e["kind"] == "wrap_up.disposition"]
    assert [(e["disposition"], e["notes"]) for e in events] == [
        ("follow_up", "send the card form by post")]
