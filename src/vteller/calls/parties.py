"""Parties and their connections: connect, resume, revoke, the reconnect grace
period, and what a (re)connecting client needs to redraw.

A facet of `CallManager` (one class, one file per concern, as LiveKit splits a
participant); it uses the manager's state and helpers.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any

import structlog

from vteller.calls.party import Connection, Party
from vteller.calls.session import IN_CALL, WAITING, CallState
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.routing import (
    TellerProfile,
    TellerState,
    clock,
)
from vteller.routing.redis_store import RoutingUnavailable

log = structlog.get_logger("vteller.calls")


def _hash(token: str) -> str:
    """Resume secrets are kept only as SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


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
        return party, self._attach(party, conn), resumed

    def resumable(self, token: str) -> Party:
        """The party a resume secret belongs to (nothing is attached yet)."""
        key = self._by_resume.get(_hash(token))
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
        token = secrets.token_urlsafe(32)
        party.resume_hash = _hash(token)
        self._by_resume[party.resume_hash] = party.key
        self._tell_peer(party, "connected")
        return token

    def disconnected(self, party: Party, conn: Connection) -> None:
        if party.conn is not conn:
            return  # superseded connection
        party.conn = None
        if party.role == "teller":
            try:
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
