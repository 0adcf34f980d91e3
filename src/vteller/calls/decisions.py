"""Business review on a call: the context the teller sees, evidence earned, and the
teller's decision (gated on required evidence).

A facet of `CallManager` (one class, one file per concern, as LiveKit splits a
participant); it uses the manager's state and helpers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from vteller.audit.keys import seal_field
from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, Call, CallState
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m


class ReviewFacet:
    def _context(self, call: Call) -> m.CallContext:
        review = self._settings.review
        bt = review.business_type(call.business_type)
        return m.CallContext(
            call_id=call.call_id,
            business_type={"id": call.business_type, "title": bt.title if bt else call.business_type,
                           "required_evidence": sorted(bt.required_evidence) if bt else [],
                           "alternatives": {k: sorted(v) for k, v in bt.alternatives.items()}
                           if bt else {}},
            evidence=sorted(call.evidence),
            destinations=[{"id": d.id, "title": d.title} for d in self._settings.assist.destinations],
            reason_codes=review.reason_codes, dispositions=review.dispositions,
            transfer_types=[{"id": b.id, "title": b.title} for b in review.business_types],
            history=call.history)

    async def _load_history(self, call: Call) -> None:
        """The customer's earlier calls, read while they wait (for the teller's context)."""
        call.history = await asyncio.to_thread(self._store.calls_of_customer,
                                               call.customer_id, call.queued_at - 0.001)
        teller = self.parties.get(call.teller_key or "")
        if teller is not None and call.state in IN_CALL and call.history:
            teller.send(self._context(call))  # accepted before the read finished

    def add_evidence(self, call_id: str, evidence: str, actor: str = "system",
                     **data: Any) -> None:
        """Capabilities (identity) record evidence on a live call; it becomes an event."""
        call = self.calls[call_id]
        call.evidence.add(evidence)
        self._event(call, actor, "evidence", evidence=evidence, **data)
        teller = self.parties.get(call.teller_key or "")
        if teller:
            teller.send(self._context(call))

    def _media_dropped(self, call: Call, party: str, cause: str) -> None:
        """A party's connection or media was lost while in the call (recorded once)."""
        if call.media_dropped is None and call.state in IN_CALL:
            call.media_dropped = f"{party}_{cause}"
            self._event(call, party, "media.dropped", cause=cause)

    def _on_review_decide(self, party: Party, msg: m.ReviewDecide) -> None:
        call = self._call_of(party)
        if call is None or call.state not in (*IN_CALL, CallState.WRAP_UP):
            raise ProtocolError(ErrorCode.WRONG_STATE, "no call to decide on")
        if call.decision is not None:
            raise ProtocolError(ErrorCode.WRONG_STATE, f"already decided: {call.decision}")
        review = self._settings.review
        bt = review.business_type(call.business_type)
        if msg.decision == "approve":
            if bt is not None and bt.restart_on_drop and call.media_dropped:
                self._event(call, "teller", "review.refused", reason="media_dropped")
                raise ProtocolError(ErrorCode.MEDIA_DROPPED,
                                    "cannot approve: the connection dropped during this session "
                                    f"({call.media_dropped}); the customer must start afresh")
            place = self._place_refusal(call)
            if place is not None:
                self._event(call, "teller", "review.refused", reason="location")
                raise ProtocolError(ErrorCode.LOCATION_NOT_ALLOWED, "cannot approve: " + place)
            unconfirmed = self.unconfirmed_steps(call)
            if unconfirmed:
                self._event(call, "teller", "review.refused", script=unconfirmed)
                raise ProtocolError(ErrorCode.SCRIPT_INCOMPLETE,
                                    "cannot approve: the customer has not confirmed "
                                    + ", ".join(unconfirmed))
            missing = bt.missing(call.evidence) if bt else []
            if missing:
                self._event(call, "teller", "review.refused", missing=missing)
                raise ProtocolError(ErrorCode.EVIDENCE_MISSING,
                                    "cannot approve: missing evidence " + ", ".join(missing))
        if msg.decision == "reject" and msg.reason_code not in review.reason_codes:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "reject needs a reason_code from: " + ", ".join(review.reason_codes))
        call.decision = msg.decision
        call.reason_code = msg.reason_code
        self._event(call, "teller", "review.decision", decision=msg.decision,
                    reason_code=msg.reason_code, notes=msg.notes)
        notes = seal_field(call.data_key, f"{call.call_id}|notes", msg.notes) \
            if msg.notes and call.data_key else ""  # the trail holds them too, encrypted
        now = time.time()
        self._persist(self._store.add_decision, call.call_id, call.business_type,
                      party.principal, msg.decision, msg.reason_code, notes, now)
        four_eyes = bool(bt and bt.four_eyes and msg.decision == "approve")
        if four_eyes:
            self._event(call, "system", "review.pending_audit")
        payload = {"call_id": call.call_id, "customer_id": call.customer_id,
                   "business_type": call.business_type, "decision": msg.decision,
                   "reason_code": msg.reason_code, "teller": party.principal,
                   "decided_at": now, "four_eyes": None}
        stored = self._persist(self._store.record_final_decision, f"decision:{call.call_id}",
                               payload, now, four_eyes, self._settings.bank.enabled)
        self._when_recorded(stored, (party, m.ReviewRecorded(
            call_id=call.call_id, decision=msg.decision, reason_code=msg.reason_code,
            pending_audit=four_eyes)))

    def _on_wrap_up_record(self, party: Party, msg: m.WrapUpRecord) -> None:
        """The teller's disposition of the call it just had (in wrap-up, once): the code
        goes to the call's record, code and notes into its trail (encrypted)."""
        call = self._call_of(party)
        if call is None or call.state != CallState.WRAP_UP:
            raise ProtocolError(ErrorCode.WRONG_STATE, "a disposition is recorded in wrap-up, "
                                "after the call")
        if msg.disposition not in self._settings.review.dispositions:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "not one of this bank's disposition "
                                "codes")
        if call.disposition is not None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "this call's disposition is recorded "
                                "already")
        call.disposition = msg.disposition
        event = self._event(call, "teller", "wrap_up.disposition",
                            disposition=msg.disposition, notes=msg.notes)
        self._persist(self._store.update_call, call.call_id, disposition=msg.disposition)
        self._when_recorded(event, (party, m.WrapUpRecorded(call_id=call.call_id,
                                                            disposition=msg.disposition)))
