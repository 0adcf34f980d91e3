"""Listen-only monitoring: a supervisor hears (and sees) a call in progress through a
send-only leg of its own (`media/monitor.py`); the supervisor is never heard. Starting
and stopping are in the call's trail before the supervisor gets the answer; the teller
is told who listens when `monitoring_tells_teller` (the bank's policy); the customer's
screen is never sent. A supervisor's monitors end with the call, on `monitor.stop`, or
when the supervisor's connection drops.

A facet of `CallManager`."""

from __future__ import annotations

import structlog

from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, Call
from vteller.media.leg import MediaNegotiationError
from vteller.media.monitor import MonitorLeg
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m

log = structlog.get_logger("vteller.calls")


class MonitorFacet:
    async def _on_monitor_start(self, party: Party, msg: m.MonitorStart) -> None:
        if not self._settings.monitoring:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "monitoring is switched off")
        call = self._monitorable(msg.call_id, party)
        leg = MonitorLeg(self._settings.ice_servers, call.feed, call.encoded_media,
                         on_state=lambda leg, state: self._monitor_leg_state(call, party, leg,
                                                                             state))
        try:
            sdp = await leg.answer(msg.sdp, call.video_codec or "vp8")
        except MediaNegotiationError as exc:
            await leg.close()
            raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
        try:
            call = self._monitorable(msg.call_id, party)  # again: the answer awaited
        except ProtocolError:
            await leg.close()
            raise
        call.monitors[party.principal] = (party.key, leg)
        try:  # in the trail before the supervisor can connect
            await self._event(call, "supervisor", "monitor.started", supervisor=party.principal)
        except Exception:  # noqa: BLE001 - the journal's store or trail failed
            call.monitors.pop(party.principal, None)
            await leg.close()
            raise ProtocolError(ErrorCode.STORAGE_UNAVAILABLE, "the start of monitoring could "
                                "not be recorded; it did not start") from None
        if call.monitors.get(party.principal, (None, None))[1] is not leg:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the call ended meanwhile")
        party.send(m.MonitorAnswer(call_id=call.call_id, sdp=sdp))
        self._tell_listeners(call)
        log.info("monitor_started", call_id=call.call_id)

    def _monitorable(self, call_id: str, party: Party) -> Call:
        call = self.calls.get(call_id)
        if call is None or call.state not in IN_CALL:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such call in progress on this "
                                "server")
        if party.principal in call.monitors:
            raise ProtocolError(ErrorCode.WRONG_STATE, "already listening to this call")
        return call

    def _on_monitor_stop(self, party: Party, msg: m.MonitorStop) -> None:
        call = self.calls.get(msg.call_id)
        if call is None or party.principal not in call.monitors:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not listening to this call")
        self._stop_monitor(call, party.principal, "stopped")

    def _stop_monitor(self, call: Call, principal: str, reason: str) -> None:
        key, leg = call.monitors.pop(principal)
        self._background(leg.close())
        self._event(call, "supervisor", "monitor.stopped", supervisor=principal, reason=reason)
        supervisor = self.parties.get(key)
        if supervisor is not None:
            supervisor.send(m.MonitorEnded(call_id=call.call_id, reason=reason))  # type: ignore[arg-type]
        self._tell_listeners(call)

    def _stop_monitors(self, call: Call, reason: str) -> None:
        for principal in list(call.monitors):
            self._stop_monitor(call, principal, reason)

    def _stop_monitoring_by(self, party: Party, reason: str) -> None:
        for call in list(self.calls.values()):
            if party.principal in call.monitors:
                self._stop_monitor(call, party.principal, reason)

    def _monitor_leg_state(self, call: Call, party: Party, leg: MonitorLeg, state: str) -> None:
        if state == "failed" and call.monitors.get(party.principal, (None, None))[1] is leg:
            self._stop_monitor(call, party.principal, "media_failed")

    def _tell_listeners(self, call: Call) -> None:
        if not self._settings.monitoring_tells_teller:
            return
        teller = self.parties.get(call.teller_key or "")
        if teller is None:
            return
        names = sorted(self.parties[key].display_name if key in self.parties else principal
                       for principal, (key, _) in call.monitors.items())
        teller.send(m.MonitorState(call_id=call.call_id, listeners=names))
