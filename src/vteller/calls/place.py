"""Place and network rules (V-CIP): with the customer's consent the page reports its
location, recorded in the trail (encrypted, like every event) and shown in replay; a
business type may allow only configured regions, and approval is refused while the
customer's place is unknown or outside them. Tellers may be offered a business type
only from its configured networks.

A facet of `CallManager` (one class, one file per concern)."""

from __future__ import annotations

import structlog

from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, WAITING, Call
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m

log = structlog.get_logger("vteller.calls")
MAX_REPORTS_PER_CALL = 20


class PlaceFacet:
    def _on_location_report(self, party: Party, msg: m.LocationReport) -> None:
        call = self._call_of(party)
        if call is None or call.state not in (*WAITING, *IN_CALL):
            raise ProtocolError(ErrorCode.WRONG_STATE, "no call to report a location for")
        if call.location_reports >= MAX_REPORTS_PER_CALL:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "enough locations for this call")
        call.location_reports += 1
        bt = self._settings.review.business_type(call.business_type)
        call.located = True
        call.region = bt.region_of(msg.lat, msg.lon) if bt else None
        self._event(call, "customer", "location.reported", lat=msg.lat, lon=msg.lon,
                    accuracy_m=msg.accuracy_m, region=call.region)
        self._send_location_state(call)

    def _send_location_state(self, call: Call) -> None:
        teller = self.parties.get(call.teller_key or "")
        bt = self._settings.review.business_type(call.business_type)
        required = bool(bt and bt.allowed_regions)
        if teller is None or call.state not in IN_CALL or not (required or call.located):
            return
        if not call.located:
            state = "not_shared"
        elif required:
            state = "allowed" if call.region else "outside"
        else:
            state = "shared"
        teller.send(m.LocationState(call_id=call.call_id, state=state, region=call.region,
                                    required=required))

    def _ask_location(self, call: Call) -> None:
        """At the start of a call of a type that needs the place."""
        bt = self._settings.review.business_type(call.business_type)
        if bt and bt.allowed_regions:
            customer = self.parties.get(call.customer_key)
            if customer is not None and not call.located:
                customer.send(m.LocationAsk(call_id=call.call_id))
        self._send_location_state(call)

    def _place_refusal(self, call: Call) -> str | None:
        """Why an approval is refused for the customer's place, or None."""
        bt = self._settings.review.business_type(call.business_type)
        if not bt or not bt.allowed_regions:
            return None
        if not call.located:
            return "the customer has not shared a location"
        if call.region is None:
            return "the customer's location is outside the allowed regions"
        return None

    def _teller_may_serve(self, teller: Party, call: Call) -> bool:
        bt = self._settings.review.business_type(call.business_type)
        address = teller.conn.address if teller.conn is not None else ""
        return bt is None or bt.teller_may_serve(address)
