"""Transfer: the teller hands the customer to another queue (business type) or to a
named available teller. The call ends for this teller (wrap-up, outcome
`transferred`); the customer is queued again at once under a new call whose first
event names this one (`continued_from`), with the original time in line, so aging puts
them ahead of later arrivals. A named teller is offered the call directly.

A facet of `CallManager` (one class, one file per concern)."""

from __future__ import annotations

import time

from vteller.calls.party import Party
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.routing import TellerState, clock


class TransferFacet:
    def _on_call_transfer(self, party: Party, msg: m.CallTransfer) -> None:
        call = self._live_call(party)
        if msg.business_type is None and msg.teller is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "name a queue or a teller")
        business_type = msg.business_type or call.business_type
        if self._settings.review.business_type(business_type) is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "no such queue: " + business_type)
        target = None
        if msg.teller is not None:
            target = self.parties.get(f"staff:{msg.teller}")
            if msg.teller == party.principal:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "that is you")
            if target is None or target.role != "teller" or target.conn is None or \
                    self.router.teller(target.principal).state != TellerState.AVAILABLE:
                raise ProtocolError(ErrorCode.WRONG_STATE, "that teller is not available now")
        customer = self.parties.get(call.customer_key)
        if customer is None or customer.conn is None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the customer is not connected")
        # the original time in line, in the routing clock
        waited_since = clock.now() - (time.time() - call.queued_at)
        self._event(call, "teller", "transferred", to_business_type=business_type,
                    to_teller=msg.teller, note=msg.note)
        self._end_call(call, "transferred")
        customer.survey_call = None  # rated after the call that serves them
        new = self._enqueue(customer, business_type, call.language, enqueued_at=waited_since,
                            continued_from=call.call_id, dispatch=target is None)
        if target is not None:
            if self._offer(new, target):
                self._event(new, "teller", "transfer.offered", teller=target.principal,
                            by=party.principal)
            else:
                self._dispatch()
