"""Several active nodes on one queue (`VTELLER_SHARE_QUEUE`): a facet of `CallManager`.

Each node offers waiting requests to the tellers connected to it, and the call is
hosted where its teller is. When the best request for one of this node's tellers
belongs to a customer on another node, this node takes request and teller together
(the routing store's atomic `offer`), asks the customer's node to send the customer
here (`Move`), and waits for the customer to resume here (`move_timeout_s`). The
customer's node leaves a hand-off record and tells its client to reconnect to this
node's address (`node.move`); the customer resumes here with its resume secret, and
the request continues under a new call id at its original place (the old session is
closed with a `handed_over` event and the new one names it, as after a failover).
The ring starts when the customer is here, so the teller never accepts a customer
who is still on the way.

If the customer's node answers `Gone` (no such customer, or not connected just now)
or nothing within the timeout, the request goes back to the queue and the teller to
`available`. A request whose node is dead is removed: its customer resumes on a
survivor from the database and keeps its place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from vteller.calls.handover import Handover
from vteller.calls.party import Party, resume_hash
from vteller.calls.session import CallState
from vteller.cluster.bus import BusUnavailable, Gone, Handoff, Move, Nudge
from vteller.protocol import messages as m
from vteller.routing import Request, TellerState, clock
from vteller.routing.redis_store import RoutingUnavailable

log = structlog.get_logger("vteller.calls")


@dataclass
class Arrival:
    """A customer asked to come to this node for one of its tellers."""

    request: Request
    teller_key: str
    timer: asyncio.TimerHandle
    assigned_by: str | None = None  # a supervisor chose the teller


class PlacementFacet:
    # ------------------------------------------------------------ offering node
    def _local_tellers(self) -> frozenset[str] | None:
        """The tellers this node may offer to: its own (shared queue), or any."""
        if self._bus is None:
            return None
        return frozenset(p.principal for p in self.parties.values()
                         if p.role == "teller" and p.conn is not None)

    def _is_remote(self, request: Request) -> bool:
        return self._bus is not None and bool(request.node) and request.node != self._node

    def _claim_remote(self, request: Request, teller: Party, assigned_by: str | None = None
                      ) -> bool:
        """Take a request of another node's customer for this node's teller and ask for
        the customer; False if it was not taken (gone, or taken first elsewhere)."""
        assert self._bus is not None
        if not self._bus.alive(request.node):  # its customer resumes elsewhere, from the db
            self.router.remove(request.call_id)
            log.warning("request_of_dead_node_removed", call_id=request.call_id)
            return False
        if self.router.offer(request.call_id, teller.principal) is None:
            return False
        timer = asyncio.get_running_loop().call_later(
            self._settings.move_timeout_s, self._arrival_failed, request.call_id, True,
            "move_timeout")
        self._arriving[request.call_id] = Arrival(request, teller.key, timer, assigned_by)
        try:
            self._bus.move(Move(request.call_id, self._node, str(self._settings.node_url)))
        except BusUnavailable:
            self._arrival_failed(request.call_id, True, "bus_unavailable")
            return False
        log.info("customer_asked_to_move", call_id=request.call_id)
        return True

    def on_gone(self, gone: Gone) -> None:
        """The customer's node cannot send the customer (requeue) or has no such
        customer (the request is removed)."""
        self._arrival_failed(gone.call_id, gone.requeue, "gone")

    def _arrival_failed(self, call_id: str, requeue: bool, why: str) -> None:
        arrival = self._arriving.pop(call_id, None)
        if arrival is None:
            return
        arrival.timer.cancel()
        try:
            if requeue:
                try:
                    self.router.requeue(call_id, None, clock.now())
                except KeyError:  # the customer resumed on a third node, which took it
                    pass
            else:
                self.router.remove(call_id)
            self._release_teller(arrival.teller_key)
            log.info("customer_did_not_move", call_id=call_id, why=why, requeued=requeue)
            self._dispatch()
        except RoutingUnavailable:
            log.warning("arrival_not_settled", call_id=call_id)

    def _release_teller(self, teller_key: str) -> None:
        """A teller held for a customer who did not come: ready again (or offline)."""
        teller = self.parties.get(teller_key)
        username = teller_key.removeprefix("staff:")
        if self.router.teller(username).state != TellerState.OFFERED:
            return
        connected = teller is not None and teller.conn is not None
        self.router.set_state(username, TellerState.AVAILABLE if connected
                              else TellerState.OFFLINE)

    def _cancel_arrivals_of(self, teller: Party) -> None:
        """The teller changes state (or leaves) while its customer is on the way."""
        for call_id, arrival in list(self._arriving.items()):
            if arrival.teller_key == teller.key:
                self._arrival_failed(call_id, True, "teller_changed")

    def _arrive(self, party: Party, arrival: Arrival) -> None:
        """The customer resumed here: queue it (original place, new call id) and offer
        it to the teller that waited for it."""
        old = arrival.request
        self.router.remove(old.call_id)
        self._release_teller(arrival.teller_key)
        call = self._enqueue(party, old.business_type, old.language,
                             enqueued_at=old.enqueued_at, continued_from=old.call_id,
                             dispatch=False)
        teller = self.parties.get(arrival.teller_key)
        if (teller is not None and teller.conn is not None
                and self.router.teller(teller.principal).state == TellerState.AVAILABLE
                and self._offer(call, teller)):
            if arrival.assigned_by is not None:
                self._event(call, "supervisor", "supervisor.assigned",
                            supervisor=arrival.assigned_by, teller=teller.principal)
            log.info("customer_moved_here", call_id=call.call_id, continues=old.call_id)
            return
        self._dispatch()

    def _continue_handoff(self, party: Party, handoff: Handoff) -> None:
        """A customer another node sent away resumed here."""
        arrival = self._arriving.pop(handoff.call_id, None) \
            if handoff.to_node == self._node else None
        if arrival is not None:
            arrival.timer.cancel()
            self._arrive(party, arrival)
            return
        # a drained node's waiting customer, or one that missed the node it was sent to:
        # queued again at its place (the node that waited for it finds the request gone)
        request = handoff.request or self.router.remove(handoff.call_id)
        if request is not None:
            self._enqueue(party, request.business_type, request.language,
                          enqueued_at=request.enqueued_at, continued_from=handoff.call_id)

    # ------------------------------------------------------------ reconnects
    async def home_elsewhere(self, party_key: str) -> str | None:
        """The address of another live node that holds this party (a reconnect the load
        balancer sent here instead), or None."""
        if self._bus is None or party_key in self.parties:
            return None
        return await asyncio.to_thread(self._bus.home_url, party_key)

    async def party_of_resume(self, token: str) -> str | None:
        """The party key a customer's resume secret belongs to (opened with the secret)."""
        if self._bus is None:
            return None
        row = await asyncio.to_thread(self._store.peek_resume, resume_hash(token))
        opened = Handover.open(token, row[1]) if row is not None else None
        return opened.party_key if opened is not None else None

    def _node_alive(self, node: str) -> bool | None:
        """With a shared queue, whether a node still holds its parties; else None."""
        return None if self._bus is None else self._bus.alive(node)

    # ------------------------------------------------------------ customer's node
    def on_move(self, move: Move) -> None:
        """Another node took this node's customer's request for its teller: send the
        customer there (or say why not)."""
        assert self._bus is not None
        call = self.calls.get(move.call_id)
        if call is None:
            try:
                request = self.router.request(move.call_id)
            except RoutingUnavailable:
                return  # the other node's timeout puts it back
            if request is not None and request.node == self._node:  # left meanwhile
                self._answer_gone(move, requeue=False)
            return
        customer = self.parties.get(call.customer_key)
        if call.state != CallState.QUEUED or customer is None or customer.conn is None \
                or self.draining:
            self._answer_gone(move, requeue=True)  # reconnecting here: try again later
            return
        try:
            self._bus.hand_off(customer.key, Handoff(call.call_id, self._node,
                                                     to_node=move.to_node),
                               self._settings.reconnect_grace_s + self._settings.move_timeout_s)
        except BusUnavailable:
            return
        customer.send(m.NodeMove(url=move.url))
        self._hand_over(customer, call, reason="moved")

    def _answer_gone(self, move: Move, requeue: bool) -> None:
        assert self._bus is not None
        try:
            self._bus.gone(Gone(move.call_id, move.to_node, requeue))
        except BusUnavailable:
            pass  # the other node's timeout does the same

    def on_nudge(self, nudge: Nudge) -> None:
        try:
            self._dispatch()
        except RoutingUnavailable:
            pass  # the tick tries again
