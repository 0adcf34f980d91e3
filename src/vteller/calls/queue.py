"""The queue side of a call: joining and leaving, teller states and wrap-up, offers
with their ring timers, supervisor actions, and the feedback pushed every tick
(positions, estimated waits, the dashboard).

A facet of `CallManager` (one class, one file per concern, as LiveKit splits a
participant); it uses the manager's state and helpers.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Any

import structlog

from vteller.audit import new_data_key
from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, WAITING, Call, CallState, new_call_id
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.routing import (
    Request,
    TellerState,
    TellerStatus,
    clock,
    decide,
    staffing,
)
from vteller.routing.appointments import Appointment
from vteller.routing.redis_store import RoutingUnavailable

log = structlog.get_logger("vteller.calls")


class QueueFacet:
    async def _on_queue_join(self, party: Party, msg: m.QueueJoin) -> None:
        self._may_join(party)
        appointment = await self._appointment_now(party, msg.business_type)
        self._may_join(party)  # again: the lookup awaited
        hours = self.policy.opening_hours
        if hours is not None and not hours.is_open(time.time()) and appointment is None:
            raise ProtocolError(ErrorCode.CLOSED, "the video channel is closed now; see the "
                                "opening hours")
        self._enqueue(party, msg.business_type, msg.language, appointment=appointment)

    def _may_join(self, party: Party) -> None:
        if self.draining:
            raise ProtocolError(ErrorCode.SERVICE_UNAVAILABLE,
                                "this server is restarting; reconnect in a moment")
        if self._call_of(party) is not None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "already queued or in a call")

    def service_hours(self) -> dict[str, Any] | None:
        """For a customer's welcome: open now, the next opening, the hours."""
        hours = self.policy.opening_hours
        if hours is None:
            return None
        now = time.time()
        return {"open": hours.is_open(now), "next_open_at": hours.next_opening(now),
                **hours.describe()}

    def _enqueue(self, party: Party, business_type: str, language: str,
                 enqueued_at: float | None = None, continued_from: str | None = None,
                 dispatch: bool = True, appointment: Appointment | None = None) -> Call:
        """A new call waiting in the queue. `enqueued_at` and `continued_from`: a request
        a stopped node left waiting, or a transferred call, queued with its original
        time. `appointment`: the customer came to this booking (its teller first)."""
        call = Call(new_call_id(), party.key, business_type, language,
                    encoded_media=self._settings.media_forwarding == "encoded")
        request = Request(call.call_id, business_type, language, party.segments,
                          enqueued_at=clock.now() if enqueued_at is None else enqueued_at,
                          node=self._node)
        if appointment is not None:
            wall = time.time()
            held_s = appointment.hold_until(self._settings.appointments, wall) - wall
            request.booked_teller, request.booked_until = appointment.teller, clock.now() + held_s
            call.appointment_at = appointment.starts_at
        if enqueued_at is not None:
            call.queued_at = time.time() - max(0.0, clock.now() - enqueued_at)
        try:
            self.router.enqueue(request)  # first: a routing store that is down changes nothing
        except RoutingUnavailable:
            self._unsure.add(call.call_id)  # a write that timed out may still land: undo it
            raise
        self.calls[call.call_id] = call
        party.call_id = call.call_id
        call.data_key = new_data_key()  # one per session: events and recordings
        self._audit(self._trail.open_session, call.call_id, call.data_key,
                    self._kek.wrap(call.data_key, call.call_id))
        extra = {} if continued_from is None else {"continued_from": continued_from}
        self._event(call, "customer", "queued", customer=party.principal,
                    business_type=business_type, language=language,
                    priority_class=request.pclass.value, **extra)
        if appointment is not None:
            self._event(call, "customer", "appointment.kept",
                        appointment_id=appointment.appointment_id, teller=appointment.teller,
                        starts_at=appointment.starts_at)
            self._persist(self._store.akeep_appointment, appointment.appointment_id,
                          call.call_id)
            self._metrics.appointments.labels(event="kept").inc()
        self._persist(self._store.record_call, call.call_id, party.principal, call.state.value,
                      call.queued_at, business_type, language, request.pclass.value)
        log.info("queued", call_id=call.call_id, business_type=call.business_type)
        self._background(self._load_history(call))
        if dispatch:
            self._dispatch()
        self._push_queue_status(force=True)
        if dispatch and self._bus is not None and call.state == CallState.QUEUED:
            self._bus.nudge()  # another node's teller may take it
        return call

    def _on_queue_leave(self, party: Party, msg: m.QueueLeave) -> None:
        call = self._call_of(party)
        if call is None or call.state not in WAITING:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not waiting in the queue")
        self._abandon(call, "left")

    def _on_teller_status(self, party: Party, msg: m.TellerStatus) -> None:
        status = self.router.teller(party.principal)
        target = TellerState(msg.status)
        if status.state == TellerState.OFFERED:
            self._cancel_arrivals_of(party)  # held for a customer still on the way
            if self.router.teller(party.principal).state == TellerState.OFFERED:
                raise ProtocolError(ErrorCode.WRONG_STATE,
                                    "answer the offer first (accept or reject)")
        self._cancel_wrap_timer(party.principal)
        self._set_teller(party, target, msg.reason)

    def _set_teller(self, party: Party, target: TellerState, reason: str | None) -> None:
        call = self._call_of(party)
        self.router.set_state(party.principal, target, reason)
        if call is not None and call.state == CallState.WRAP_UP:
            self._close_wrap_up(party, call)
        status = self.router.teller(party.principal)
        party.send(m.TellerState(state=status.state.value, reason=status.reason))
        self._dispatch()

    def _on_teller_wrap_up_extend(self, party: Party, msg: m.WrapUpExtend) -> None:
        if self.router.teller(party.principal).state != TellerState.WRAP_UP:
            raise ProtocolError(ErrorCode.WRONG_STATE, "not in wrap-up")
        self._start_wrap_timer(party, msg.seconds, extend=True)

    def _start_wrap_timer(self, teller: Party, seconds: float, extend: bool = False) -> None:
        old = self._wrap_timers.pop(teller.principal, None)
        remaining = 0.0
        if old is not None:
            old.cancel()
            remaining = max(0.0, getattr(old, "deadline", 0.0) - time.monotonic())
        delay = remaining + seconds if extend else seconds
        task = asyncio.create_task(self._wrap_up_expired(teller, delay))
        task.deadline = time.monotonic() + delay  # type: ignore[attr-defined]
        self._wrap_timers[teller.principal] = task
        teller.send(m.TellerState(state="wrap_up", wrap_up_s=round(delay)))

    async def _wrap_up_expired(self, teller: Party, delay: float) -> None:
        await asyncio.sleep(delay)
        self._wrap_timers.pop(teller.principal, None)
        if self.router.teller(teller.principal).state == TellerState.WRAP_UP:
            self._set_teller(teller, TellerState.AVAILABLE, None)

    def _cancel_wrap_timer(self, username: str) -> None:
        task = self._wrap_timers.pop(username, None)
        if task is not None:
            task.cancel()

    def _on_supervisor_assign(self, party: Party, msg: m.SupervisorAssign) -> None:
        """Offer a waiting customer to a chosen available teller, whatever the router
        would pick (a customer it declined before, a skill it does not list)."""
        call = self.calls.get(msg.call_id)
        request = self.router.request(msg.call_id)
        remote = call is None and request is not None and self._is_remote(request)
        if request is None or not remote and (call is None or call.state != CallState.QUEUED):
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such waiting customer")
        teller = self.parties.get(f"staff:{msg.username}")
        if teller is None or teller.role != "teller" or teller.conn is None:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such teller logged in here (a "
                                "supervisor assigns the tellers of the node it is on)")
        if self.router.teller(teller.principal).state != TellerState.AVAILABLE:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the teller is not available")
        if remote:  # the customer is on another node: it moves to this teller's
            if not self._claim_remote(request, teller, assigned_by=party.principal):
                raise ProtocolError(ErrorCode.WRONG_STATE, "taken meanwhile")
            log.info("supervisor_assigned_remote", call_id=msg.call_id)
            return
        assert call is not None
        if not self._teller_may_serve(teller, call):
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "this business type may be served "
                                "only from its configured networks")
        if not self._offer(call, teller):
            raise ProtocolError(ErrorCode.WRONG_STATE, "taken meanwhile")
        self._event(call, "supervisor", "supervisor.assigned", supervisor=party.principal,
                    teller=teller.principal)

    def _on_supervisor_set_teller(self, party: Party, msg: m.SupervisorSetTeller) -> None:
        teller = self.parties.get(f"staff:{msg.username}")
        if teller is None or teller.role != "teller":
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such teller logged in")
        status = self.router.teller(teller.principal)
        if status.state == TellerState.BUSY:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the teller is in a call")
        if status.state == TellerState.OFFERED:
            self._offer_failed(teller, "supervisor", decline=False)
        target = TellerState(msg.status)
        if self.router.teller(teller.principal).state == target:
            self.router.set_reason(teller.principal, msg.reason)
        else:
            self._set_teller(teller, target, msg.reason)
        log.info("supervisor_set_teller", status=msg.status)

    def _offered_call(self, party: Party, call_id: str) -> Call:
        call = self.calls.get(call_id)
        status = self.router.teller(party.principal)
        if (call is None or call.state != CallState.OFFERED or call.teller_key != party.key
                or status.state != TellerState.OFFERED):
            raise ProtocolError(ErrorCode.WRONG_STATE, "no such offer (expired or withdrawn)")
        return call

    def _on_offer_accept(self, party: Party, msg: m.OfferAccept) -> None:
        call = self._offered_call(party, msg.call_id)
        self._cancel_ring(call.call_id)
        request = self.router.remove(call.call_id)
        call.to(CallState.CONNECTING)
        call.accepted_at = time.time()
        if self._settings.record_calls and call.encoded_media:
            call.start_recording(self._blobs, call.data_key)
        self.router.set_state(party.principal, TellerState.BUSY)
        party.call_id = call.call_id
        customer = self.parties[call.customer_key]
        party.send(m.TellerState(state="busy"))
        party.send(m.CallStarted(call_id=call.call_id, peer=customer.info()))
        customer.send(m.CallStarted(call_id=call.call_id, peer=party.info()))
        party.send(self._context(call))
        self._send_script_state(call)
        self._ask_location(call)
        self._event(call, "teller", "accepted", teller=party.principal)
        customer.send(m.QueueStatus(call_id=call.call_id, state="connecting"))
        self._metrics.answer_s.observe(call.accepted_at - call.queued_at)
        if request is not None:
            self.stats.answered(time.monotonic(), request.pclass.value,
                                call.accepted_at - call.queued_at)
        self._persist(self._store.update_call, call.call_id, teller=party.principal,
                      state=call.state.value, answered_at=call.accepted_at)
        log.info("accepted", call_id=call.call_id, wait_s=round(call.accepted_at - call.queued_at, 3))

    def _on_offer_reject(self, party: Party, msg: m.OfferReject) -> None:
        self._offered_call(party, msg.call_id)
        self._offer_failed(party, "rejected", decline=True)
        self.router.set_state(party.principal, TellerState.AVAILABLE)
        party.send(m.TellerState(state="available"))
        self._dispatch()

    async def _take_over(self) -> None:
        """At start: requests in the shared queue with no call here were left by a node
        that stopped (this one before a restart, or the active node a standby replaced).
        Each is held for its customer to resume here (`adopt`) for the reconnect grace
        period; its old session is sealed by the node sweeper, its record says why."""
        try:
            left = [r for r in self.router.waiting() if r.call_id not in self.calls]
        except RoutingUnavailable:
            log.warning("take_over_skipped", reason="routing store unreachable")
            return
        until = (time.monotonic() + self._settings.reconnect_grace_s
                 + 2 * self._settings.node_lease_s)
        for request in left:
            row = await self._store.get_call(request.call_id)
            self.router.remove(request.call_id)
            if row is not None:
                self._orphans[row["customer_id"]] = (request, until)
                self._persist(self._store.update_call, request.call_id, state="abandoned",
                              end_reason="node_stopped", ended_at=time.time(),
                              outcome="missed", outcome_reason="node_stopped")
        if left:
            log.warning("took_over_waiting_requests", count=len(left))

    def _drop_orphans(self) -> None:
        now = time.monotonic()
        for customer, (request, until) in list(self._orphans.items()):
            if until < now:
                del self._orphans[customer]
                log.info("orphan_dropped", call_id=request.call_id)

    def _undo_unsure(self) -> None:
        """Remove requests whose enqueue timed out (the customer was told to try again)."""
        for call_id in list(self._unsure):
            self.router.remove(call_id)
            self._unsure.discard(call_id)

    def _dispatch(self) -> None:
        if self.draining:  # the node that took over offers from now on
            return
        among = self._local_tellers()  # a shared queue: this node's tellers only
        if among is not None and not among:
            return
        while (match := self.router.next_match(clock.now(), among)) is not None:
            request, status = match
            teller = self.parties.get(f"staff:{status.username}")
            if teller is None or teller.conn is None:
                self.router.set_state(status.username, TellerState.OFFLINE)
                continue
            if self._is_remote(request):
                self._claim_remote(request, teller)
                continue
            call = self.calls.get(request.call_id)
            if call is None or call.state != CallState.QUEUED:
                # left while the shared store was unreachable: not waiting any more
                self.router.remove(request.call_id)
                log.warning("stale_request_removed", call_id=request.call_id)
                continue
            self._offer(call, teller)

    def _offer(self, call: Call, teller: Party) -> bool:
        """Offer a waiting request to an available teller and start the ring timer;
        False if another decision took the request or the teller first."""
        if self.router.offer(call.call_id, teller.principal) is None:
            return False
        if not self._teller_may_serve(teller, call):  # never offered: as if declined
            self.router.requeue(call.call_id, teller.principal, clock.now())
            self.router.set_state(teller.principal, TellerState.AVAILABLE)
            self._event(call, "system", "offer.skipped", teller=teller.principal,
                        reason="teller_network")
            return False
        call.to(CallState.OFFERED)
        call.teller_key = teller.key
        customer = self.parties[call.customer_key]
        teller.send(m.TellerState(state="offered"))
        teller.send(m.OfferIncoming(
            call_id=call.call_id, customer=customer.info(), business_type=call.business_type,
            language=call.language, ring_timeout_s=self._settings.ring_timeout_s,
            appointment_at=call.appointment_at))
        self._ring[call.call_id] = asyncio.create_task(self._ring_timeout(call.call_id, teller))
        self._event(call, "system", "offered", teller=teller.principal)
        customer.send(m.QueueStatus(call_id=call.call_id, state="offered",
                                    green_channel=customer.elderly))
        customer.last_status = None
        return True

    def _push_queue_status(self, force: bool = False) -> None:
        """Position and estimated wait to every waiting customer (only when changed).

        EWT = position x recent average handle time / staffed eligible tellers, where
        staffed means available, offered, busy or in wrap-up (not on break or offline).
        """
        now = clock.now()
        aht = self.stats.aht()
        # one read of the queue and the tellers (each a round trip to a shared store)
        requests = {r.call_id: r for r in self.router.waiting()}
        tellers = list(self.router.tellers())
        self._metrics.waiting.set(len(requests))
        staffed_in: dict[tuple[str, str], int] = {}
        for call_id, position in decide.positions(self.policy, requests.values(), now).items():
            call = self.calls.get(call_id)
            customer = self.parties.get(call.customer_key) if call else None
            request = requests[call_id]
            if customer is None:
                continue  # not this process's customer (or left meanwhile)
            pool = (request.business_type, request.language)
            if request.declined_by:
                staffed = decide.staffed_for(self.policy, tellers, request, now)
            else:
                if pool not in staffed_in:
                    staffed_in[pool] = decide.staffed_for(self.policy, tellers, request, now)
                staffed = staffed_in[pool]
            servable = staffed > 0
            ewt = round(position * aht / staffed) if servable else None
            status = (position, ewt, servable)
            if force or status != customer.last_status:
                customer.last_status = status
                customer.send(m.QueueStatus(
                    call_id=call_id, state="queued", position=position, ewt_s=ewt,
                    green_channel=request.pclass.value == "green", servable=servable))

    def dashboard(self) -> m.Dashboard:
        now = clock.now()
        queue: dict[str, int] = {c: 0 for c in ("green", "priority", "vip", "standard")}
        longest = 0.0
        requests = list(self.router.waiting())  # one read each of a shared store
        statuses = sorted(self.router.tellers(), key=lambda t: t.username)
        for request in requests:
            queue[request.pclass.value] += 1
            longest = max(longest, now - request.enqueued_at)
        tellers = []
        for status in statuses:
            party = self.parties.get(f"staff:{status.username}")
            call = self._call_of(party) if party else None
            customer = self.parties.get(call.customer_key) if call else None
            tellers.append({
                "username": status.username,
                "display_name": party.display_name if party else status.username,
                "state": status.state.value, "reason": status.reason,
                "in_state_s": round(now - status.since),
                "serving": customer.display_name if customer and call and call.state in IN_CALL
                else None,
                "call_id": call.call_id if call and call.state in IN_CALL else None,
            })
        waiting = [{"call_id": r.call_id, "class": r.pclass.value,
                    "waited_s": round(now - r.enqueued_at), "business_type": r.business_type,
                    "language": r.language, "booked_teller": r.booked_teller or None,
                    "staffed": decide.staffed_for(self.policy, statuses, r, now)}
                   for r in heapq.nsmallest(50, requests, key=lambda r: r.enqueued_at)]
        service = self.stats.summary(time.monotonic())  # statistics keep process time
        return m.Dashboard(queue=queue, longest_wait_s=round(longest, 1), tellers=tellers,
                           waiting=waiting, service=service,
                           staffing=self._staffing(statuses), nodes=self.cluster_view())

    def _staffing(self, statuses: list[TellerStatus]) -> dict[str, Any]:
        p = self.policy
        offered = self.stats.offered(time.monotonic(), p.forecast_interval_s)
        aht = self.stats.aht()
        need = staffing.tellers_needed(offered, p.forecast_interval_s, aht,
                                       p.service_level_target, p.service_level_threshold_s,
                                       p.shrinkage)
        return {"interval_s": p.forecast_interval_s, "offered": offered, "aht_s": round(aht),
                "aht_measured": self.stats.aht_measured,
                "traffic_erlangs": round(need.traffic, 2), "tellers_needed": need.tellers,
                "scheduled_needed": need.scheduled,
                "expected_service_level": round(need.service_level, 3),
                "staffed_now": sum(1 for t in statuses if t.state in decide.STAFFED)}

    def _push_dashboard(self) -> None:
        supervisors = [p for p in self.parties.values() if p.role == "supervisor" and p.conn]
        if supervisors:
            board = self.dashboard()
            for sup in supervisors:
                sup.send(board)

    async def _ring_timeout(self, call_id: str, teller: Party) -> None:
        await asyncio.sleep(self._settings.ring_timeout_s)
        self._ring.pop(call_id, None)
        call = self.calls.get(call_id)
        if call is None or call.state != CallState.OFFERED or call.teller_key != teller.key:
            return
        self._offer_failed(teller, "no_answer", decline=True)
        self.router.set_state(teller.principal, TellerState.BREAK, "missed_offer")  # not ready until the teller says so
        teller.send(m.TellerState(state="break", reason="missed_offer"))
        self._dispatch()

    def _cancel_ring(self, call_id: str) -> None:
        task = self._ring.pop(call_id, None)
        if task is not None:
            task.cancel()

    def _offer_failed(self, teller: Party, reason: str, decline: bool) -> None:
        """Put the offered request back in its place; the teller leaves `offered`."""
        for call in self.calls.values():
            if call.state == CallState.OFFERED and call.teller_key == teller.key:
                self._cancel_ring(call.call_id)
                call.to(CallState.QUEUED)
                call.teller_key = None
                self.router.requeue(call.call_id, teller.principal if decline else None,
                                    clock.now())
                self._event(call, "teller", "offer.failed", teller=teller.principal,
                            reason=reason)
                teller.send(m.OfferRevoked(call_id=call.call_id, reason=reason))
        if self.router.teller(teller.principal).state == TellerState.OFFERED and not decline:
            self.router.set_state(teller.principal, TellerState.AVAILABLE)

    def _abandon(self, call: Call, reason: str) -> None:
        if call.state == CallState.OFFERED and call.teller_key:
            teller = self.parties.get(call.teller_key)
            self._cancel_ring(call.call_id)
            if teller is not None:
                teller.send(m.OfferRevoked(call_id=call.call_id, reason="customer_left"))
                self.router.set_state(teller.principal, TellerState.AVAILABLE)
                teller.send(m.TellerState(state="available"))
        request = self.router.remove(call.call_id)
        if request is not None:
            self.stats.abandoned(time.monotonic(), request.pclass.value,
                                 clock.now() - request.enqueued_at)
        call.to(CallState.ABANDONED)
        call.end_reason = reason
        customer = self.parties.get(call.customer_key)
        if customer is not None:
            customer.call_id = None
            customer.send(m.CallEnded(call_id=call.call_id, reason=reason))
        self._finish(call)
        self._dispatch()
        self._push_queue_status(force=True)
