"""The call host: media negotiation and legs, media state, hang-up, and the end of a
call (recorders closed, wrap-up, the session's trail sealed).

A facet of `CallManager` (one class, one file per concern, as LiveKit splits a
participant); it uses the manager's state and helpers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from vteller.assist import ConsentState
from vteller.calls.outcome import outcome_of
from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, WAITING, Call, CallState
from vteller.media import MediaLeg, MediaNegotiationError, check_offer
from vteller.media.leg import filter_candidates
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.routing import (
    TellerState,
)
from vteller.store import StoreError

log = structlog.get_logger("vteller.calls")


class HostFacet:
    def _on_call_media_state(self, party: Party, msg: m.MediaState) -> None:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in a call")
        party.media = {"audio": msg.audio, "video": msg.video}
        self._tell_peer(party, "connected")

    def _on_survey_submit(self, party: Party, msg: m.SurveySubmit) -> None:
        """The customer's rating of the call just served (once per call)."""
        if party.survey_call != msg.call_id:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no call of yours to rate")
        party.survey_call = None
        stored = self._persist(self._store.add_survey, msg.call_id, msg.score,
                               msg.comment.strip(), time.time())
        self._when_recorded(stored, (party, m.SurveyRecorded(call_id=msg.call_id)))

    def _on_call_hangup(self, party: Party, msg: m.Hangup) -> None:
        call = self._call_of(party)
        if call is not None and call.state in IN_CALL:
            self._end_call(call, f"hangup_{party.role}")
        elif call is not None and party.role == "customer" and call.state in WAITING:
            self._abandon(call, "left")
        else:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in a call")

    async def _on_webrtc_offer(self, party: Party, msg: m.WebrtcOffer) -> None:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no call to negotiate media for")
        side = party.role
        try:  # synchronous: the first leg fixes the call's video codec before any await
            call.video_codec = check_offer(side, msg.sdp, call.video_codec)
        except MediaNegotiationError as exc:
            raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
        offer = msg.sdp
        if side == "customer":  # never probe where a customer points (the bank's network)
            offer, dropped = filter_candidates(offer, self._blocked_ice)
            if dropped:
                log.info("ice_candidates_dropped", count=dropped)
        leg = MediaLeg(side, self._settings.ice_servers, call.feed, call.encoded_media,
                       on_state=lambda leg, state: self._leg_state(call, leg, state),
                       min_bitrate_bps=self._settings.media_min_bitrate_bps)
        try:
            sdp = await leg.answer(offer, call.video_codec)
        except MediaNegotiationError as exc:
            await leg.close()
            raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
        if call.state not in IN_CALL or party.call_id != call.call_id:
            await leg.close()
            raise ProtocolError(ErrorCode.WRONG_STATE, "the call ended during negotiation")
        old = call.legs.get(side)
        call.legs[side] = leg
        party.send(m.WebrtcAnswer(sdp=sdp))
        if old is not None:
            await old.close()

    def _leg_state(self, call: Call, leg: MediaLeg, state: str) -> None:
        if call.legs.get(leg.party) is not leg:
            return
        log.info("media_leg", call_id=call.call_id, party=leg.party, state=state)
        if state in ("connected", "failed", "closed") and self._trail.is_open(call.call_id):
            self._event(call, leg.party, f"media.{state}")
        if state in ("disconnected", "failed") and call.state == CallState.ACTIVE:
            self._media_dropped(call, leg.party, f"media_{state}")
        if (state == "connected" and call.state == CallState.CONNECTING
                and all(call.legs.get(p) and call.legs[p].state == "connected"
                        for p in ("customer", "teller"))):
            call.to(CallState.ACTIVE)
            self._persist(self._store.update_call, call.call_id, state=call.state.value)
            customer = self.parties.get(call.customer_key)
            if customer:
                customer.send(m.QueueStatus(call_id=call.call_id, state="active"))
            bt = self._settings.review.business_type(call.business_type)
            if (self._identity is not None and self._settings.identity.auto_verify
                    and bt is not None and "face_verified" in bt.required_evidence):
                self._background(self._auto_verify(call))

    def _end_call(self, call: Call, reason: str) -> None:
        self._stop_monitors(call, "call_ended")
        if call.consent.state in (ConsentState.REQUESTED, ConsentState.GRANTED,
                                  ConsentState.ACTIVE):
            self._consent_to(call, ConsentState.STOPPED, "system", reason="call_ended")
        self._check_assist(call)
        call.to(CallState.WRAP_UP)
        call.end_reason = reason
        self._event(call, "system", "ended", reason=reason)
        if call.identity is not None:
            call.recorder_tasks.append(self._background(self._close_identity(call)))
        for leg in call.legs.values():
            self._background(leg.close())
        for feed in call.feeds.values():
            feed.close()
        call.legs.clear()
        call.recorder_tasks += [self._background(self._close_recorder(call.call_id, r))
                                for r in call.recorders]
        customer = self.parties.get(call.customer_key)
        if customer is not None:
            customer.call_id = None
            customer.survey_call = call.call_id
            customer.send(m.CallEnded(call_id=call.call_id, reason=reason))
        teller = self.parties.get(call.teller_key or "")
        if teller is not None:
            self.router.set_state(teller.principal, TellerState.WRAP_UP)
            teller.send(m.CallEnded(call_id=call.call_id, reason=reason))
            self._start_wrap_timer(teller, self.policy.wrap_up_s)
        self._persist(self._store.update_call, call.call_id, state=call.state.value, end_reason=reason,
                      ended_at=time.time())
        log.info("call_ended", call_id=call.call_id, reason=reason)

    def _close_wrap_up(self, teller: Party, call: Call) -> None:
        call.to(CallState.CLOSED)
        teller.call_id = None
        self._cancel_wrap_timer(teller.principal)
        if call.accepted_at is not None:
            self.stats.handled(time.monotonic(), time.time() - call.accepted_at)
        self._finish(call)

    def _finish(self, call: Call) -> None:
        bt = self._settings.review.business_type(call.business_type)
        result = outcome_of(served=call.accepted_at is not None, end_reason=call.end_reason,
                            decision=call.decision, reason_code=call.reason_code,
                            needs_evidence=bool(bt and bt.required_evidence),
                            four_eyes=bool(bt and bt.four_eyes))
        self._event(call, "system", call.state.value, reason=call.end_reason,
                    outcome=result.outcome.value, outcome_reason=result.reason)
        self._background(self._close_session(call))
        self._metrics.calls.labels(outcome=call.state.value).inc()
        self._persist(self._store.update_call, call.call_id, state=call.state.value,
                      end_reason=call.end_reason, outcome=result.outcome.value,
                      outcome_reason=result.reason,
                      **({"ended_at": time.time()} if call.state == CallState.ABANDONED else {}))
        self.calls.pop(call.call_id, None)

    async def _close_recorder(self, call_id: str, recorder: Any) -> None:
        await asyncio.to_thread(recorder.close)
        track = recorder.feed.name.split(":", 1)[1]
        await self._store.add_recording(call_id, track, recorder.digest or "", recorder.written)

    async def _close_session(self, call: Call) -> None:
        """After the recorders finished: bind their digests and seal the trail."""
        if call.recorder_tasks:
            await asyncio.gather(*call.recorder_tasks, return_exceptions=True)
        failed = [r.file_name for r in call.recorders if r.digest is None and r.written]
        if failed:  # e.g. the object store went away: bind what was stored, when it can be
            self._event(call, "system", "recording.failed", tracks=failed)
            self._background(self._seal_when_stored(call.call_id))
        else:
            tracks = {r.file_name: r.digest for r in call.recorders if r.digest}
            tracks.update({name: d for name, d in call.evidence_blobs.items() if d})
            self._audit(self._trail.close_session, call.call_id, tracks)
        call.data_key = b""

    async def _seal_when_stored(self, call_id: str, retry_s: float = 5.0,
                                attempts: int = 60) -> None:
        """Seal a session whose recording failed as incomplete once the blob store
        answers again (else the next start seals it)."""
        for _ in range(attempts):
            try:
                await self._audit(self._trail.seal_incomplete, call_id, self._blobs,
                                  "recording failed: the blob store was unavailable")
                return
            except StoreError:
                await asyncio.sleep(retry_s)
        log.error("session_left_open", call_id=call_id)
