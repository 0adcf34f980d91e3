"""The second factor inside a call: the teller asks, the bank sends a one-time code to
the customer's registered phone (webhook `otp.send`), the customer types it in the
call, the server checks it; evidence `tan_verified`.

A facet of `CallManager` (one class, one file per concern)."""

from __future__ import annotations

import asyncio
import time

import structlog

from vteller.bank.otp import CodeCheck, OneTimeCode
from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, Call
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m

log = structlog.get_logger("vteller.calls")
SEND_ATTEMPTS = 3
SEND_BACKOFF_S = 0.5  # then doubled: the customer is waiting in the call


class SecondFactorFacet:
    def _on_otp_request(self, party: Party, msg: m.OtpRequest) -> None:
        call = self._live_call(party)
        config = self._settings.bank
        if self._bank is None:
            raise ProtocolError(ErrorCode.NOT_ALLOWED,
                                "no bank backend is configured to send one-time codes")
        if "tan_verified" in call.evidence:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the second factor is verified already")
        if call.otp_codes >= config.otp_codes_per_call:
            raise ProtocolError(ErrorCode.RATE_LIMITED,
                                f"at most {config.otp_codes_per_call} codes per call")
        call.otp_codes += 1
        code, call.otp = OneTimeCode.issue(config.otp_digits, config.otp_ttl_s,
                                           config.otp_attempts, time.time())
        self._event(call, "teller", "otp.requested", number=call.otp_codes)
        self._background(self._send_otp(call, code, call.otp))

    async def _send_otp(self, call: Call, code: str, otp: OneTimeCode) -> None:
        assert self._bank is not None
        payload = {"call_id": call.call_id, "customer_id": call.customer_id, "code": code,
                   "expires_at": otp.expires_at}
        event_id = f"otp:{call.call_id}:{call.otp_codes}"
        delay = SEND_BACKOFF_S
        for attempt in range(1, SEND_ATTEMPTS + 1):
            result = await self._bank.post(event_id, "otp.send", payload)
            if result.ok:
                break
            log.warning("otp_send_failed", attempt=attempt, error=result.error)
            if attempt < SEND_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        if call.otp is not otp or call.state not in IN_CALL:
            return  # a newer code, or the call ended meanwhile
        if not result.ok:
            call.otp = None
            self._event(call, "system", "otp.delivery_failed", error=result.error)
            self._tell_otp(call, m.OtpState(call_id=call.call_id, state="delivery_failed"),
                           customer=False)
            return
        self._event(call, "system", "otp.sent")
        self._tell_otp(call, m.OtpState(
            call_id=call.call_id, state="sent", digits=self._settings.bank.otp_digits,
            expires_in_s=round(otp.expires_at - time.time()), attempts_left=otp.attempts_left))

    def _on_otp_submit(self, party: Party, msg: m.OtpSubmit) -> None:
        call = self._live_call(party)
        if call.otp is None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no one-time code is waiting")
        result = call.otp.check(msg.code, time.time())
        self._event(call, "customer", "otp.entered", result=result.value)
        state = m.OtpState(call_id=call.call_id, state=result.value,
                           attempts_left=call.otp.attempts_left)
        if result != CodeCheck.WRONG:
            call.otp = None
        self._tell_otp(call, state)
        if result == CodeCheck.VERIFIED:
            self.add_evidence(call.call_id, "tan_verified", actor="customer")

    def _tell_otp(self, call: Call, state: m.OtpState, customer: bool = True) -> None:
        for key in (call.teller_key, call.customer_key if customer else None):
            party = self.parties.get(key or "")
            if party is not None:
                party.send(state)
