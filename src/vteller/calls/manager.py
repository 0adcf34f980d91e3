"""CallManager: parties, calls, the queue and media legs, coordinated.

Every state change is synchronous code on the event loop, so each step is atomic
(an accept and an abandon cannot interleave). Only SDP negotiation awaits, and it
re-checks the call afterwards. Store writes and audit appends go through one ordered
journal. The manager is one class in facets, one file each: `parties` (connections,
resume), `queue` (offers, teller states, supervisor, feedback), `consent` (screen
share, navigation), `decisions` (review), `identity_bridge`, `second_factor` (one-time
codes), `disclosure` (sales scripts), `place` (location, teller
networks), `id_document` (pictures of the ID), `transfer`, `placement` (several
active nodes on one queue), `host` (media legs, the end of a call); this file holds the
state, the dispatch table and the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import BaseModel

from vteller.audit import KekProvider
from vteller.audit.trail import AuditTrail
from vteller.bank import BankWebhook
from vteller.calls.appointments import AppointmentFacet
from vteller.calls.consent import ConsentFacet
from vteller.calls.decisions import ReviewFacet
from vteller.calls.disclosure import DisclosureFacet
from vteller.calls.host import HostFacet
from vteller.calls.id_document import IdDocumentFacet
from vteller.calls.identity_bridge import IdentityFacet
from vteller.calls.journal import Journal
from vteller.calls.monitoring import MonitorFacet
from vteller.calls.parties import PartiesFacet
from vteller.calls.party import Party
from vteller.calls.place import PlaceFacet
from vteller.calls.placement import Arrival, PlacementFacet
from vteller.calls.queue import QueueFacet
from vteller.calls.second_factor import SecondFactorFacet
from vteller.calls.session import IN_CALL, WAITING, Call, CallState
from vteller.calls.transfer import TransferFacet
from vteller.cluster.bus import Handoff, NodeBus
from vteller.config import Settings
from vteller.identity import IdentityService
from vteller.observability import Metrics
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.routing import IllegalTransition, Router, ServiceStats
from vteller.routing.redis_store import RoutingUnavailable
from vteller.routing.store import RoutingStore
from vteller.store import BlobStore, Store

log = structlog.get_logger("vteller.calls")
TICK_S = 1.0


Handler = Callable[[Party, Any], Any]  # (sender, message) -> None or an awaitable


class CallManager(PartiesFacet, QueueFacet, PlacementFacet, ConsentFacet, ReviewFacet,
                  IdentityFacet, SecondFactorFacet, DisclosureFacet, PlaceFacet,
                  IdDocumentFacet, TransferFacet, AppointmentFacet, MonitorFacet, HostFacet):
    def __init__(self, settings: Settings, store: Store, metrics: Metrics,
                 kek: KekProvider, trail: AuditTrail, blobs: BlobStore,
                 identity: IdentityService | None = None,
                 router: RoutingStore | None = None, node: str = "local",
                 bank: BankWebhook | None = None, bus: NodeBus | None = None) -> None:
        self._bank = bank
        self._bus = bus  # several active nodes on one queue (VTELLER_SHARE_QUEUE)
        # requests of other nodes' customers taken for this node's tellers, by call id
        self._arriving: dict[str, Arrival] = {}
        self._settings = settings
        self._node = node
        self._blocked_ice = settings.blocked_ice_networks()
        self._identity = identity
        self._blobs = blobs
        self._kek = kek
        self._trail = trail
        self._store = store
        self._metrics = metrics
        self.policy = settings.routing
        self.router: RoutingStore = router or Router(self.policy)
        self.stats = ServiceStats(self.policy.service_level_threshold_s,
                                  self.policy.default_handle_time_s)
        self._wrap_timers: dict[str, asyncio.Task[None]] = {}
        self.parties: dict[str, Party] = {}
        self.calls: dict[str, Call] = {}
        self._by_resume: dict[str, str] = {}
        self._ring: dict[str, asyncio.Task[None]] = {}
        self._unsure: set[str] = set()  # enqueued while the routing store timed out
        # customer -> (request a stopped node left waiting, monotonic deadline to resume)
        self._orphans: dict[str, tuple[Any, float]] = {}
        self.draining = False
        self._shut = False
        # the nodes sharing the database, for the dashboard (set by the app)
        self.cluster_view: Callable[[], list[dict[str, Any]]] = list
        self._cleanups: set[asyncio.Future[Any]] = set()
        self._journal = Journal()
        self._ticker: asyncio.Task[None] | None = None
        self._handlers: dict[str, Handler] = {
            "queue.join": self._on_queue_join,
            "queue.leave": self._on_queue_leave,
            "teller.status": self._on_teller_status,
            "teller.wrap_up_extend": self._on_teller_wrap_up_extend,
            "supervisor.set_teller": self._on_supervisor_set_teller,
            "supervisor.assign": self._on_supervisor_assign,
            "offer.accept": self._on_offer_accept,
            "offer.reject": self._on_offer_reject,
            "webrtc.offer": self._on_webrtc_offer,
            "call.media_state": self._on_call_media_state,
            "call.hangup": self._on_call_hangup,
            "assist.request": self._on_assist_request,
            "assist.respond": self._on_assist_respond,
            "assist.started": self._on_assist_started,
            "assist.stop": self._on_assist_stop,
            "nav.push": self._on_nav_push,
            "nav.opened": self._on_nav_opened,
            "review.decide": self._on_review_decide,
            "wrap_up.record": self._on_wrap_up_record,
            "identity.verify": self._on_identity_verify,
            "identity.liveness": self._on_identity_liveness,
            "identity.judge": self._on_identity_judge,
            "identity.spoken_check": self._on_identity_spoken_check,
            "identity.attest": self._on_identity_attest,
            "otp.request": self._on_otp_request,
            "otp.submit": self._on_otp_submit,
            "script.read": self._on_script_read,
            "script.confirm": self._on_script_confirm,
            "script.question": self._on_script_question,
            "location.report": self._on_location_report,
            "id.capture": self._on_id_capture,
            "survey.submit": self._on_survey_submit,
            "call.transfer": self._on_call_transfer,
            "appointment.find": self._on_appointment_find,
            "appointment.book": self._on_appointment_book,
            "appointment.cancel": self._on_appointment_cancel,
            "monitor.start": self._on_monitor_start,
            "monitor.stop": self._on_monitor_stop,
        }

    def start(self) -> None:
        """Start the journal and the routing tick (on the running event loop)."""
        self._journal.start()
        if self._bus is not None:
            self._bus.start(self)
        else:  # a shared queue has no left-over requests: each names its live node
            self._background(self._take_over())
        self._ticker = asyncio.create_task(self._tick_loop(), name="routing-tick")

    def load(self) -> dict[str, int]:
        """What this node carries (reported with its lease)."""
        calls = list(self.calls.values())
        return {"in_call": sum(c.state in IN_CALL for c in calls),
                "waiting": sum(c.state in WAITING for c in calls),
                "connections": sum(p.conn is not None for p in self.parties.values())}

    def handles(self) -> frozenset[str]:
        """The message types this coordinator dispatches (hello and ping are the
        gateway's)."""
        return frozenset(self._handlers)

    # ------------------------------------------------------------ connections


    # ------------------------------------------------------------ dispatch
    async def handle(self, party: Party, msg: BaseModel) -> None:
        handler = self._handlers[msg.type]  # type: ignore[attr-defined]
        try:
            result = handler(party, msg)
            if asyncio.iscoroutine(result):
                await result
        except IllegalTransition as exc:
            raise ProtocolError(ErrorCode.WRONG_STATE, str(exc)) from None

    def _call_of(self, party: Party) -> Call | None:
        return self.calls.get(party.call_id) if party.call_id else None

    def _other(self, party: Party, call: Call) -> Party | None:
        key = call.teller_key if party.role == "customer" else call.customer_key
        return self.parties.get(key) if key else None

    # customer ------------------------------------------------------------


    # teller ----------------------------------------------------------------


    # supervisor --------------------------------------------------------------


    # assist: screen-share consent and navigation ---------------------------------


    # review ------------------------------------------------------------------------


    def _event(self, call: Call, actor: str, kind: str, **data: Any) -> asyncio.Future[None]:
        """A session event: appended (encrypted, chained, durable) in order by the writer."""
        return self._audit(self._trail.append, call.call_id, actor, kind, data)

    # identity ------------------------------------------------------------------


    # both ------------------------------------------------------------------


    # ------------------------------------------------------------ internals


    async def _tick_loop(self) -> None:
        """Once a second: re-dispatch (elderly widening, aging), customer feedback,
        supervisor dashboards."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                for call in list(self.calls.values()):
                    if call.state in IN_CALL:
                        self._check_assist(call)
                self._undo_unsure()
                self._drop_orphans()
                self._dispatch()
                self._push_queue_status()
                self._push_dashboard()
            except RoutingUnavailable:
                log.warning("tick_skipped", reason="routing store unreachable")
            except Exception:
                log.exception("tick_failed")


    def _background(self, coro: Any) -> asyncio.Future[Any]:
        """Run cleanup work without blocking a state change; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def shutdown_cleanups(self, timeout: float = 10) -> None:
        """Wait for background cleanup (closing legs, finishing recordings)."""
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=timeout)

    # ------------------------------------------------------------ the journal
    def _persist(self, op: Any, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        """Queue a store write (an async store method); writes and audit appends keep
        their order."""
        return self._journal.write(op, *args, **kwargs)

    def _audit(self, fn: Any, *args: Any) -> asyncio.Future[None]:
        """Queue a blocking audit-trail operation (worker thread, in order)."""
        return self._journal.write(fn, *args)

    def _when_recorded(self, event: asyncio.Future[None], *sends: tuple[Party | None, Any]) -> None:
        """Acknowledge only after the event is durable (audit requirement)."""
        def deliver(fut: asyncio.Future[None]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                log.error("event_not_recorded_ack_withheld")
                for party, _ in sends:  # a typed answer instead of silence
                    if party is not None:
                        party.send(m.Error(code=ErrorCode.STORAGE_UNAVAILABLE,
                                           message="the server could not record this "
                                           "(storage unavailable); it was not acknowledged"))
                return
            for party, message in sends:
                if party is not None:
                    party.send(message)
        event.add_done_callback(deliver)

    async def flush(self) -> None:
        await self._journal.flush()

    async def drain(self, limit_s: float) -> None:
        """SIGTERM: take no new calls; with a shared queue, hand it to the node that
        takes over (waiting customers and idle tellers are asked to reconnect: the load
        balancer sends them there, and they keep their place and state); let calls in
        progress finish, for at most `limit_s`. `shutdown` then ends what is left."""
        self.draining = True
        if self.router.shared:  # the node taking over gets the queue
            for call in [c for c in self.calls.values() if c.state == CallState.OFFERED]:
                teller = self.parties.get(call.teller_key or "")
                if teller is not None:  # back in the line first, so it is taken over
                    self._offer_failed(teller, "server_restarting", decline=False)
            for call_id in list(self._arriving):
                self._arrival_failed(call_id, True, "draining")
            self.router.release()
            for party in list(self.parties.values()):
                call = self._call_of(party)
                if call is None or call.state == CallState.QUEUED:
                    if call is not None and self._bus is not None:
                        self._leave_request(party, call)
                    self._hand_over(party, call)
        deadline = asyncio.get_running_loop().time() + limit_s
        while any(c.state in IN_CALL for c in self.calls.values()):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("drain_limit_reached")
                break
            await asyncio.sleep(0.25)

    def _leave_request(self, party: Party, call: Call) -> None:
        """Draining with active peers: the waiting request leaves the queue with a
        hand-off record, so the node the customer resumes on queues it at its place."""
        assert self._bus is not None
        try:
            request = self.router.remove(call.call_id)
            if request is not None:
                self._bus.hand_off(party.key, Handoff(call.call_id, self._node,
                                                      request=request),
                                   self._settings.reconnect_grace_s)
        except Exception:  # the customer then resumes from the database record
            log.warning("hand_off_not_recorded", call_id=call.call_id)

    def _hand_over(self, party: Party, call: Call | None, reason: str = "server_restarting"
                   ) -> None:
        """Let another node take this party (and its waiting request): forget it here
        without the side effects of a disconnect, close its session with a `handed_over`
        event, and ask the client to reconnect (`reason` "moved": to the node that
        hosts its call)."""
        conn, party.conn = party.conn, None
        if party.grace is not None:
            party.grace.cancel()
        self.parties.pop(party.key, None)
        self._by_resume.pop(party.resume_hash, None)
        if self._bus is not None:
            self._bus.clear_home(party.key)
        if party.role == "teller":
            self._cancel_wrap_timer(party.principal)
        if call is not None:
            self._cancel_ring(call.call_id)
            self._event(call, "system", "handed_over", reason=reason)
            self.calls.pop(call.call_id, None)
            self._background(self._close_session(call))
            moved = reason == "moved"  # continued on the next node
            self._persist(self._store.update_call, call.call_id, state="abandoned",
                          end_reason="handed_over", ended_at=time.time(),
                          outcome="transferred" if moved else "missed",
                          outcome_reason="moved" if moved else "handed_over")
        if conn is not None:
            conn.close(1012, "moved: reconnect to the node named" if reason == "moved"
                       else "server restarting: reconnect")

    async def shutdown(self) -> None:
        """End every call and seal every session trail (a kill -9 instead leaves them
        open; the next start seals them as incomplete), then close every connection.
        Runs once (the app's shutdown signal, then its cleanup)."""
        if self._shut:
            return
        self._shut = True
        self.draining = True  # nothing is offered any more
        for call_id in list(self._arriving):  # customers on their way: back in the line
            with contextlib.suppress(Exception):
                self._arrival_failed(call_id, True, "server_shutdown")
        for call in list(self.calls.values()):
            if call.state in WAITING:
                self._abandon(call, "server_shutdown")
                continue
            if call.state in IN_CALL:
                self._end_call(call, "server_shutdown")
            if call.state == CallState.WRAP_UP:
                teller = self.parties.get(call.teller_key or "")
                if teller is not None:
                    self._close_wrap_up(teller, call)
                else:
                    call.to(CallState.CLOSED)
                    self._finish(call)
        if self._ticker is not None:
            self._ticker.cancel()
        if self._bus is not None:
            await asyncio.to_thread(self._bus.stop)
        for task in [*self._ring.values(), *self._wrap_timers.values(),
                     *(p.grace for p in self.parties.values() if p.grace)]:
            task.cancel()
        await self.shutdown_cleanups()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), 5)
        self._journal.stop()
        for party in list(self.parties.values()):  # told; the server need not wait for them
            if party.conn is not None:
                party.conn.close(1001, "server stopping")
