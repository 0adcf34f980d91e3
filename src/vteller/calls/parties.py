"""Parties and their connections: connect, resume, revoke, the reconnect grace
period, and what a (re)connecting client needs to redraw.

A facet of `CallManager` (one class, one file per concern, as LiveKit splits a
participant); it uses the manager's state and helpers.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import structlog

from vteller.calls.handover import Handover
from vteller.calls.party import Connection, Party, resume_hash
from vteller.calls.session import IN_CALL, WAITING, CallState
from vteller.cluster.bus import Handoff
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.routing import (
    TellerProfile,
    TellerState,
    clock,
)
from vteller.routing.redis_store import RoutingUnavailable

log = structlog.get_logger("vteller.calls")



class PartiesFacet:
    def connect(
        self, key: str, role: str, principal: str, display_name: str, conn: Connection,
        segments: frozenset[str] = frozenset(), profile: dict[str, Any] | None = None,
    ) -> tuple[Party, str, bool]:
        """Attach an authenticated connection. Returns (party, resume token, resumed)."""
        party = self.parties.get(key)
        resumed = party is not None
        if party is None:
            party = Party(key, role, principal, display_name, segments=segments)
            self.parties[key] = party
        if role == "teller":
            self.router.set_profile(principal, TellerProfile.from_dict(profile or {}))
            self._settle_teller(party)
        return party, self._attach(party, conn), resumed

    def _settle_teller(self, party: Party) -> None:
        """A teller whose shared state names a call no node holds any more (its node
        stopped): offered goes back to available; busy goes to wrap-up, timed here."""
        if any(c.teller_key == party.key for c in self.calls.values()):
            return
        state = self.router.teller(party.principal).state
        if state == TellerState.OFFERED:
            self.router.set_state(party.principal, TellerState.AVAILABLE)
        elif state in (TellerState.BUSY, TellerState.WRAP_UP):
            if state == TellerState.BUSY:
                self.router.set_state(party.principal, TellerState.WRAP_UP)
            if party.principal not in self._wrap_timers:
                self._start_wrap_timer(party, self.policy.wrap_up_s)
        else:
            return
        log.warning("teller_state_settled", was=state.value,
                    note="its call was on a node that stopped")

    async def adopt(self, token: str, conn: Connection) -> tuple[Party, str]:
        """Resume a customer whose node stopped (its secret is in the shared database):
        the party is made here, and a request it left waiting is queued again with its
        original enqueue time, so it keeps its place and its waited time."""
        taken = await asyncio.to_thread(self._store.take_resume, resume_hash(token), self._node)
        row = Handover.open(token, taken[1]) if taken is not None else None
        if taken is None or row is None or row.role != "customer":
            raise ProtocolError(ErrorCode.RESUME_FAILED, "nothing to resume (expired or unknown)")
        party = self.parties.get(row.party_key)
        if party is None:
            party = Party(row.party_key, row.role, row.principal, row.display_name,
                          segments=row.segments)
            self.parties[party.key] = party
        left = self._orphans.pop(row.principal, None)
        handoff = None if self._bus is None else \
            await asyncio.to_thread(self._bus.take_handoff, row.party_key)
        unfinished = None
        # was it offered or in a call on a node that died? (a draining node still alive
        # finishes its calls: not ours to end)
        if left is None and handoff is None and party.call_id is None:
            alive = self._node_alive(taken[0])
            if alive is None:
                nodes = await asyncio.to_thread(self._store.nodes)
                alive = any(n.node_id == taken[0] and not (n.expired or n.evicted)
                            for n in nodes)
            if not alive:
                unfinished = await asyncio.to_thread(  # a shared queue: waiting ones too
                    self._store.unfinished_call_of, row.principal, self._bus is not None)
        resume = self._attach(party, conn)
        # after the welcome (sent when this returns): the call it had, continued
        asyncio.get_running_loop().call_soon(self._continue_adopted, party, left, unfinished,
                                             handoff)
        log.info("party_adopted", from_node=taken[0])
        return party, resume

    def _continue_adopted(self, party: Party, left: Any, unfinished: dict[str, Any] | None,
                          handoff: Handoff | None = None) -> None:
        if party.call_id is not None or self.parties.get(party.key) is not party:
            return
        try:
            if handoff is not None:  # sent here by a node that is alive (moved, drained)
                self._continue_handoff(party, handoff)
            elif left is not None:  # it was waiting: same place, same waited time
                request = left[0]
                self._enqueue(party, request.business_type, request.language,
                              enqueued_at=request.enqueued_at, continued_from=request.call_id)
            elif unfinished is not None and unfinished["call_id"] not in self.calls:
                if self._bus is not None:  # its request may still be in the shared queue
                    self.router.remove(unfinished["call_id"])
                served = unfinished["state"] in ("connecting", "active")
                self._persist(self._store.update_call, unfinished["call_id"], state="failed",
                              end_reason="node_stopped", ended_at=time.time(),
                              outcome="dropped" if served else "missed",
                              outcome_reason="node_stopped")
                if unfinished["state"] != "queued":
                    party.send(m.CallEnded(call_id=unfinished["call_id"], reason="node_stopped"))
                if self._settings.requeue_after_node_failure:  # at its original place
                    self._enqueue(party, unfinished["business_type"], unfinished["language"],
                                  enqueued_at=float(unfinished["queued_at"]),
                                  continued_from=unfinished["call_id"])
        except RoutingUnavailable:
            party.send(m.Error(code=ErrorCode.SERVICE_UNAVAILABLE,
                               message="the queue is unreachable; join again in a moment"))

    def resumes_here(self, token: str) -> bool:
        """Is this resume secret one of this node's parties?"""
        return resume_hash(token) in self._by_resume

    def resumable(self, token: str) -> Party:
        """The party a resume secret belongs to (nothing is attached yet)."""
        key = self._by_resume.get(resume_hash(token))
        party = self.parties.get(key) if key else None
        if party is None:
            raise ProtocolError(ErrorCode.RESUME_FAILED, "nothing to resume (expired or unknown)")
        return party

    def resume(self, token: str, conn: Connection) -> tuple[Party, str]:
        party = self.resumable(token)
        return party, self._attach(party, conn)

    def revoke(self, party: Party) -> None:
        """The party's credentials are gone (staff logged out or disabled): close its
        connection and end its session now, as if its grace period had run out."""
        if self.parties.get(party.key) is not party:
            return
        if party.conn is not None:
            party.conn.send(m.Error(code=ErrorCode.UNAUTHENTICATED,
                                    message="your session has ended; log in again"))
            party.conn.close(4401, "session revoked")
            self.disconnected(party, party.conn)
        if party.grace is not None:
            party.grace.cancel()
            party.grace = None
        self._expire(party)

    def _attach(self, party: Party, conn: Connection) -> str:
        if party.conn is not None and party.conn is not conn:
            party.conn.send(m.Error(code=ErrorCode.WRONG_STATE,
                                    message="this session was taken over by a new connection"))
            party.conn.close(4001, "superseded")
        if party.grace is not None:
            party.grace.cancel()
            party.grace = None
        party.conn = conn
        self._by_resume.pop(party.resume_hash, None)
        replaces = party.resume_hash
        token = secrets.token_urlsafe(32)
        party.resume_hash = resume_hash(token)
        self._by_resume[party.resume_hash] = party.key
        if self._bus is not None:  # a reconnect landing on another node is sent here
            self._bus.set_home(party.key)
        if party.role == "customer":  # another node may take the customer over
            sealed = Handover(party.key, party.role, party.principal, party.display_name,
                              party.segments).seal(token)
            self._persist(self._store.put_resume, party.resume_hash, self._node, sealed,
                          replaces)
        self._tell_peer(party, "connected")
        return token

    def disconnected(self, party: Party, conn: Connection) -> None:
        if party.conn is not conn:
            return  # superseded connection
        party.conn = None
        if party.role == "supervisor":  # nobody to hear it: a monitor ends with its page
            self._stop_monitoring_by(party, "disconnected")
        call = self.calls.get(party.call_id) if party.call_id else None
        if call is not None:
            self._media_dropped(call, party.role, "connection_lost")
        if party.role == "teller":
            try:
                self._cancel_arrivals_of(party)
                if self.router.teller(party.principal).state == TellerState.OFFERED:
                    self._offer_failed(party, "teller_disconnected", decline=False)
                if self.router.teller(party.principal).state in (TellerState.AVAILABLE,
                                                                 TellerState.BREAK):
                    self.router.set_state(party.principal, TellerState.OFFLINE)
            except RoutingUnavailable:  # the grace period still runs; dispatch checks again
                log.warning("teller_disconnect_not_routed")
        self._tell_peer(party, "reconnecting")
        party.grace = asyncio.create_task(self._grace(party), name=f"grace:{party.key}")

    async def _grace(self, party: Party) -> None:
        await asyncio.sleep(self._settings.reconnect_grace_s)
        party.grace = None
        if party.conn is None:
            self._expire(party)

    def _expire(self, party: Party) -> None:
        call = self.calls.get(party.call_id) if party.call_id else None
        if call is not None:
            if call.state in WAITING:
                self._abandon(call, "disconnected")
            elif call.state in IN_CALL:
                self._end_call(call, f"{party.role}_disconnected")
            if party.role == "teller" and call.state == CallState.WRAP_UP:
                self._close_wrap_up(party, call)
        self.parties.pop(party.key, None)
        self._by_resume.pop(party.resume_hash, None)
        if self._bus is not None:
            self._bus.clear_home(party.key)
        if party.role == "customer" and party.resume_hash:
            self._persist(self._store.drop_resume, party.resume_hash)
        if party.role == "teller":
            self._cancel_wrap_timer(party.principal)
            self.router.forget_teller(party.principal)
        log.info("session_expired", role=party.role)

    def snapshot(self, party: Party) -> dict[str, Any]:
        """Current state for `welcome` (what a resuming client needs to redraw)."""
        state: dict[str, Any] = {}
        call = self.calls.get(party.call_id) if party.call_id else None
        if party.role == "teller":
            status = self.router.teller(party.principal)
            state["teller_state"] = status.state.value
            state["reason"] = status.reason
        if call is not None:
            other = self._other(party, call)
            state["call"] = {
                "call_id": call.call_id,
                "state": call.state.value,
                "position": self.router.position(call.call_id, clock.now()),
                "peer": other.info().model_dump() if other else None,
            }
        return state

    def _tell_peer(self, party: Party, connection: str) -> None:
        call = self._call_of(party)
        if call is None or call.state not in IN_CALL:
            return
        other = self._other(party, call)
        if other is not None:
            other.send(m.PeerState(call_id=call.call_id, connection=connection,  # type: ignore[arg-type]
                                   audio=party.media["audio"], video=party.media["video"]))
