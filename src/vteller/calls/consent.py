"""Remote assistance on a call: screen-share consent (server-enforced gate) and
allowlisted navigation pushes.

A facet of `CallManager` (one class, one file per concern, as LiveKit splits a
participant); it uses the manager's state and helpers.
"""

from __future__ import annotations

import re
import time
from typing import Any

from vteller.assist import ConsentState
from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, Call
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m

LINK = re.compile(r"(?i)(\w+://|www\.|\b[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}\b|@)")


class ConsentFacet:
    def _live_call(self, party: Party) -> Call:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in a call")
        return call

    def _consent_to(self, call: Call, target: ConsentState, actor: str, **data: Any) -> None:
        call.consent.to(target, time.monotonic())
        if target == ConsentState.ACTIVE:
            self._persist(self._store.add_call_flag, call.call_id, "consent_used")
        call.screen_gate.set(call.consent.sharing)  # media follows the server's state only
        recorded = self._event(call, actor, f"consent.{target.value}", cycle=call.consent.cycle,
                               purpose=call.consent.purpose, **data)
        teller = self.parties.get(call.teller_key or "")
        expiry = call.consent.expiry(self._settings.assist.request_timeout_s,
                                     self._settings.assist.start_timeout_s)
        msg = m.AssistStateMsg(
            state=target.value, purpose=call.consent.purpose,  # type: ignore[arg-type]
            teller=teller.display_name if teller else "",
            expires_in_s=round(expiry - time.monotonic()) if expiry else None)
        self._when_recorded(recorded, *((self.parties.get(k), msg)
                                        for k in (call.customer_key, call.teller_key) if k))

    def _on_assist_request(self, party: Party, msg: m.AssistRequest) -> None:
        call = self._live_call(party)
        if call.consent.state in (ConsentState.REQUESTED, ConsentState.GRANTED,
                                  ConsentState.ACTIVE):
            raise ProtocolError(ErrorCode.WRONG_STATE, f"consent is {call.consent.state.value}")
        purposes = self._settings.assist.purposes
        if purposes and msg.purpose not in purposes:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "choose one of the configured purposes: " + "; ".join(purposes))
        if LINK.search(msg.purpose):  # shown to the customer: no place to plant a link
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "the purpose must not contain links or web addresses")
        call.consent.purpose = msg.purpose
        self._consent_to(call, ConsentState.REQUESTED, "teller")

    def _on_assist_respond(self, party: Party, msg: m.AssistRespond) -> None:
        call = self._live_call(party)
        if call.consent.state != ConsentState.REQUESTED:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no pending screen-share request")
        self._consent_to(call, ConsentState.GRANTED if msg.allow else ConsentState.DENIED,
                         "customer")

    def _on_assist_started(self, party: Party, msg: m.AssistStarted) -> None:
        call = self._live_call(party)
        self._consent_to(call, ConsentState.ACTIVE, "customer")

    def _on_assist_stop(self, party: Party, msg: m.AssistStop) -> None:
        call = self._live_call(party)
        target = ConsentState.REVOKED if party.role == "customer" else ConsentState.STOPPED
        self._consent_to(call, target, party.role)

    def _on_nav_push(self, party: Party, msg: m.NavPush) -> None:
        call = self._live_call(party)
        destination = self._settings.assist.destination(msg.destination)
        if destination is None:
            self._event(call, "teller", "nav.refused", destination=msg.destination[:64])
            raise ProtocolError(ErrorCode.NOT_ALLOWED,
                                "only the configured app destinations can be pushed")
        recorded = self._event(call, "teller", "nav.pushed", destination=destination.id)
        self._when_recorded(recorded, (self.parties.get(call.customer_key),
                                       m.NavPrompt(**destination.model_dump())))

    def _on_nav_opened(self, party: Party, msg: m.NavOpened) -> None:
        call = self._live_call(party)
        if self._settings.assist.destination(msg.destination) is None:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "unknown destination")
        self._event(call, "customer", "nav.opened", destination=msg.destination)

    def _check_assist(self, call: Call) -> None:
        """Tick: expire stale consent; record screen frames that arrived without consent."""
        expiry = call.consent.expiry(self._settings.assist.request_timeout_s,
                                     self._settings.assist.start_timeout_s)
        if expiry is not None and time.monotonic() >= expiry:
            self._consent_to(call, ConsentState.EXPIRED, "system")
        feed = call.feeds.get("customer.screen")
        if feed is not None and feed.gated_out > call.screen_dropped_reported:
            self._event(call, "customer", "screen.dropped_without_consent",
                        frames=feed.gated_out - call.screen_dropped_reported)
            call.screen_dropped_reported = feed.gated_out
