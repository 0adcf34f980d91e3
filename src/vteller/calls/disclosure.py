"""Scripted disclosure for sales (China's dual recording): the business type's
statements in order; the teller reads each and asks, the customer confirms it on
screen. Each step is an event (a marker in replay) naming the digest of the exact
wording confirmed; approval is refused until every statement is confirmed.

A facet of `CallManager` (one class, one file per concern)."""

from __future__ import annotations

import hashlib

from vteller.calls.party import Party
from vteller.calls.session import Call
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.review.policy import ScriptStep


class DisclosureFacet:
    def _script(self, call: Call) -> list[ScriptStep]:
        bt = self._settings.review.business_type(call.business_type)
        return list(bt.script) if bt else []

    def unconfirmed_steps(self, call: Call) -> list[str]:
        return [s.id for s in self._script(call) if call.script.get(s.id) != "confirmed"]

    def _script_step(self, party: Party, step_id: str) -> tuple[Call, ScriptStep, int]:
        call = self._live_call(party)
        steps = self._script(call)
        index = next((i for i, s in enumerate(steps) if s.id == step_id), None)
        if index is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "no such statement in this "
                                "business type's script")
        return call, steps[index], index

    def _on_script_read(self, party: Party, msg: m.ScriptRead) -> None:
        call, step, index = self._script_step(party, msg.step)
        steps = self._script(call)
        earlier = [s.id for s in steps[:index] if call.script.get(s.id) != "confirmed"]
        if earlier:
            raise ProtocolError(ErrorCode.WRONG_STATE, "confirm the earlier statements "
                                "first: " + ", ".join(earlier))
        if call.script.get(step.id) == "confirmed":
            raise ProtocolError(ErrorCode.WRONG_STATE, "already confirmed")
        call.script[step.id] = "read"
        self._event(call, "teller", "script.read", step=step.id, step_title=step.title)
        customer = self.parties.get(call.customer_key)
        if customer is not None:
            customer.send(m.ScriptStepMsg(call_id=call.call_id, step=step.id, title=step.title,
                                          text=step.text, index=index + 1, total=len(steps)))
        self._send_script_state(call)

    def _on_script_confirm(self, party: Party, msg: m.ScriptConfirm) -> None:
        call, step, _ = self._script_step(party, msg.step)
        if call.script.get(step.id) not in ("read", "question"):
            raise ProtocolError(ErrorCode.WRONG_STATE, "this statement is not being asked")
        call.script[step.id] = "confirmed"
        self._event(call, "customer", "script.confirmed", step=step.id, step_title=step.title,
                    text_sha256=hashlib.sha256(step.text.encode()).hexdigest())
        self._send_script_state(call)
        if not self.unconfirmed_steps(call):
            self.add_evidence(call.call_id, "disclosure_confirmed")

    def _on_script_question(self, party: Party, msg: m.ScriptQuestion) -> None:
        call, step, _ = self._script_step(party, msg.step)
        if call.script.get(step.id) != "read":
            raise ProtocolError(ErrorCode.WRONG_STATE, "this statement is not being asked")
        call.script[step.id] = "question"
        self._event(call, "customer", "script.question", step=step.id, step_title=step.title)
        self._send_script_state(call)

    def _send_script_state(self, call: Call) -> None:
        teller = self.parties.get(call.teller_key or "")
        steps = self._script(call)
        if teller is not None and steps:
            teller.send(m.ScriptState(call_id=call.call_id, steps=[
                {"id": s.id, "title": s.title, "text": s.text,
                 "state": call.script.get(s.id, "open")} for s in steps]))
