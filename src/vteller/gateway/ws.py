"""The signaling WebSocket endpoint: authenticate, validate, check role, dispatch."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from vteller.auth import AuthError, CustomerTokenVerifier, StaffAuth
from vteller.auth.staff import hash_token
from vteller.calls import CallManager, Party
from vteller.config import Settings
from vteller.gateway.connection import TokenBucket, WsConnection
from vteller.observability import Metrics
from vteller.protocol import CLIENT_MESSAGES, ErrorCode, ProtocolError, parse_client_message
from vteller.protocol import messages as m
from vteller.routing import segments_for
from vteller.routing.redis_store import RoutingUnavailable
from vteller.store import StoreError

log = structlog.get_logger("vteller.gateway")
MSG_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # the protocol's MsgId: safe to echo
HARD_FRAME_LIMIT = 1024 * 1024  # above this aiohttp closes (1009); below it we answer too_large
SESSION_COOKIE = "__Host-vteller_session"


def _summary(exc: ValidationError) -> str:
    """Which fields are wrong, without echoing client values back."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"][1:] or err["loc"]) or "message"
        loc = loc[:64].encode("utf-8", "replace").decode()  # a key may be a lone surrogate
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class SignalingEndpoint:
    def __init__(
        self, settings: Settings, manager: CallManager, staff: StaffAuth,
        customers: CustomerTokenVerifier, metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._manager = manager
        self._staff = staff
        self._customers = customers
        self._metrics = metrics
        self._origins = settings.effective_origins()
        self._staff_sessions: dict[str, set[_Session]] = {}  # cookie hash -> connections
        self._unauthenticated: dict[str, int] = {}  # address -> connections before hello

    def ice_servers(self, party_key: str) -> list[dict[str, Any]]:
        """The configured ICE servers, and short-lived TURN credentials of this party's
        own (fresh on every welcome, a resume included)."""
        turn = self._settings.turn.ice_server(party_key)
        return [*self._settings.ice_servers, *([turn] if turn else [])]

    def _authenticated(self, address: str) -> None:
        left = self._unauthenticated.get(address, 1) - 1
        if left > 0:
            self._unauthenticated[address] = left
        else:
            self._unauthenticated.pop(address, None)

    def revoke_staff_session(self, token_hash: str) -> None:
        """Logout: close the connections that this staff session opened, now."""
        for session in list(self._staff_sessions.get(token_hash, ())):
            session.revoked()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        # Browsers always send Origin; refusing foreign ones stops cross-site WebSocket
        # hijacking of the staff cookie. Non-browser clients carry no victim's cookie.
        if origin is not None and origin not in self._origins:
            raise web.HTTPForbidden(text="origin not allowed")
        address = request.remote or "?"
        if self._unauthenticated.get(address, 0) >= self._settings.max_unauthenticated_per_address:
            self._metrics.errors.labels(code="rate_limited").inc()
            raise web.HTTPTooManyRequests(text="too many connections from this address",
                                          headers={"Retry-After": "10"})
        ws = web.WebSocketResponse(heartbeat=self._settings.heartbeat_s,
                                   max_msg_size=HARD_FRAME_LIMIT)
        await ws.prepare(request)
        conn = WsConnection(ws, request.remote or "")
        session = _Session(self, request, conn)
        self._unauthenticated[address] = self._unauthenticated.get(address, 0) + 1
        session.on_authenticated = lambda: self._authenticated(address)
        deadline = asyncio.get_running_loop().call_later(
            self._settings.hello_timeout_s, session.hello_deadline)
        try:
            async for frame in ws:
                await conn.writable()
                if frame.type == WSMsgType.TEXT:
                    await session.on_text(frame.data)
                elif frame.type == WSMsgType.BINARY:
                    session.error(ErrorCode.INVALID_MESSAGE, "binary frames are not supported")
                elif frame.type == WSMsgType.ERROR:
                    break
                if conn.closed:
                    break
        finally:
            deadline.cancel()
            if session.on_authenticated is not None:  # never said hello
                self._authenticated(address)
            session.stop()
            if session.party is not None:
                self._metrics.connections.labels(role=session.party.role).dec()
                self._manager.disconnected(session.party, conn)
            await conn.drain_and_stop()
            if not ws.closed:
                await ws.close()
        return ws


class _Session:
    """State of one connection: who it is and its rate limit."""

    def __init__(self, ep: SignalingEndpoint, request: web.Request, conn: WsConnection) -> None:
        self.ep = ep
        self.request = request
        self.conn = conn
        self.party: Party | None = None
        self.bucket = TokenBucket(ep._settings.messages_per_second, ep._settings.message_burst)
        self.overflows = 0
        self.staff_token_hash: str | None = None  # staff: the login session it rests on
        self._watch: asyncio.Task[None] | None = None
        self.on_authenticated: Callable[[], None] | None = None

    def hello_deadline(self) -> None:
        if self.party is None and not self.conn.closed:
            self.error(ErrorCode.UNAUTHENTICATED, "no hello in time")
            self.conn.close(4408, "no hello in time")

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.staff_token_hash is not None:
            bound = self.ep._staff_sessions.get(self.staff_token_hash, set())
            bound.discard(self)
            if not bound:
                self.ep._staff_sessions.pop(self.staff_token_hash, None)

    def _bind_staff(self, token: str) -> None:
        self.staff_token_hash = hash_token(token)
        self.ep._staff_sessions.setdefault(self.staff_token_hash, set()).add(self)
        self._watch = asyncio.create_task(self._watch_staff(token), name="staff-session-watch")

    async def _watch_staff(self, token: str) -> None:
        """Re-check the login session periodically (disabled by the CLI in another
        process, expired, deleted): when it is gone, so is this connection."""
        while not self.conn.closed:
            await asyncio.sleep(self.ep._settings.staff_recheck_s)
            try:
                user = await self.ep._staff.user_for_session(token)
            except Exception:  # noqa: BLE001 - storage trouble is not a revocation
                log.warning("staff_recheck_failed")
                continue
            if user is None or self.party is None or user.username != self.party.principal \
                    or user.role != self.party.role:
                self.revoked()
                return

    def revoked(self) -> None:
        if self.party is not None and self.party.conn is self.conn:  # not a newer tab's
            self.ep._manager.revoke(self.party)
        self.conn.close(4401, "session revoked")

    def error(self, code: ErrorCode, message: str, re: str | None = None,
              fatal: bool = False) -> None:
        self.ep._metrics.errors.labels(code=code.value).inc()
        self.conn.send(m.Error(code=code.value, message=message, re=re))
        if fatal:  # failed authentication: the connection is useless, close it
            self.conn.close(4401, code.value)

    async def on_text(self, text: str) -> None:
        if len(text) > self.ep._settings.max_message_bytes or (
            len(text.encode()) > self.ep._settings.max_message_bytes
        ):
            return self.error(ErrorCode.TOO_LARGE,
                              f"message exceeds {self.ep._settings.max_message_bytes} bytes")
        if not self.bucket.take():
            self.overflows += 1
            if self.overflows > 10 * self.ep._settings.message_burst:
                self.conn.close(4029, "rate limit exceeded persistently")
            return self.error(ErrorCode.RATE_LIMITED, "too many messages; slow down")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # incl. integers beyond Python's digit limit
            return self.error(ErrorCode.BAD_JSON, "message is not valid JSON")
        if not isinstance(data, dict):
            return self.error(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
        mtype = data.get("type")
        raw_id = data.get("id")
        re = raw_id if isinstance(raw_id, str) and MSG_ID.fullmatch(raw_id) else None
        if not isinstance(mtype, str) or mtype not in CLIENT_MESSAGES:
            return self.error(ErrorCode.UNKNOWN_TYPE, "unknown message type", re)
        re = re or mtype
        try:
            msg = parse_client_message(data)
        except ValidationError as exc:
            return self.error(ErrorCode.INVALID_MESSAGE, _summary(exc), re)
        try:
            await self.dispatch(msg)
        except ProtocolError as exc:
            self.error(exc.code, exc.message, re)
        except AuthError as exc:
            self.error(ErrorCode(exc.code), exc.message, re, fatal=True)
        except RoutingUnavailable:
            log.warning("routing_unavailable", type=mtype)
            self.error(ErrorCode.SERVICE_UNAVAILABLE, "the queue cannot be reached just now; "
                       "please try again in a moment", re)
        except StoreError:  # a read the handler needed (a write goes through the journal)
            log.warning("storage_unavailable", type=mtype)
            self.error(ErrorCode.STORAGE_UNAVAILABLE, "the database cannot be reached just "
                       "now; nothing was changed, please try again", re)
        except Exception:
            log.exception("handler_failed", type=mtype)
            self.error(ErrorCode.INTERNAL, "internal error; the request was not applied", re)

    async def dispatch(self, msg: Any) -> None:
        if msg.type == "ping":
            self.conn.send(m.Pong(t=time.time()))
            return
        if msg.type == "hello":
            if self.party is not None:
                raise ProtocolError(ErrorCode.WRONG_STATE, "already authenticated")
            await self.hello(msg)
            return
        if self.party is None:
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "send hello first")
        if self.party.role not in m.ROLES_FOR[msg.type]:
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                f"role {self.party.role} may not send {msg.type}")
        await self.ep._manager.handle(self.party, msg)

    def _send_home(self, url: str) -> None:
        """This party is held by another node (the load balancer sent the reconnect
        here): reconnect there."""
        self.conn.send(m.NodeMove(url=url))
        self.conn.close(1012, "reconnect to the node named")
        log.info("sent_home")

    async def hello(self, msg: m.Hello) -> None:
        ep, manager = self.ep, self.ep._manager
        if manager.draining:  # the node that takes over will answer the reconnect
            self.conn.send(m.Error(code=ErrorCode.SERVICE_UNAVAILABLE, re="hello",
                                   message="this server is restarting; reconnecting"))
            self.conn.close(1012, "server restarting: reconnect")
            return
        resumed = False
        cookie = self.request.cookies.get(SESSION_COOKIE)
        if msg.resume and not manager.resumes_here(msg.resume):
            key = await manager.party_of_resume(msg.resume)
            if key is not None and (home := await manager.home_elsewhere(key)):
                self._send_home(home)
                return
            party, resume = await manager.adopt(msg.resume, self.conn)  # its node stopped
            resumed = True
        elif msg.resume:
            party = manager.resumable(msg.resume)
            if party.role != "customer":  # staff: the login session must still be valid
                user = await ep._staff.user_for_session(cookie)
                if user is None or user.username != party.principal or user.role != party.role:
                    raise ProtocolError(ErrorCode.RESUME_FAILED,
                                        "log in again to resume this session")
                self._bind_staff(cookie)  # type: ignore[arg-type]
            party, resume = manager.resume(msg.resume, self.conn)
            resumed = True
        elif msg.token:
            claims = await ep._customers.admit(msg.token)
            segments = segments_for(claims.segments, claims.birth_year,
                                    ep._settings.routing.elderly_age)
            party, resume, resumed = manager.connect(
                f"customer:{claims.sub}", "customer", claims.sub, claims.name, self.conn,
                segments=segments)
        else:
            user = await ep._staff.user_for_session(cookie)
            if user is None:
                raise AuthError("unauthenticated", "customers send a token; staff log in first")
            if home := await manager.home_elsewhere(f"staff:{user.username}"):
                self._send_home(home)
                return
            self._bind_staff(cookie)  # type: ignore[arg-type]
            party, resume, resumed = manager.connect(
                f"staff:{user.username}", user.role, user.username, user.display_name,
                self.conn, profile=user.profile)
        self.party = party
        if self.on_authenticated is not None:
            self.on_authenticated()
            self.on_authenticated = None
        ep._metrics.connections.labels(role=party.role).inc()
        self.conn.send(m.Welcome(
            role=party.role,  # type: ignore[arg-type]
            display_name=party.display_name, resume=resume, resumed=resumed,
            heartbeat_s=ep._settings.heartbeat_s, grace_s=ep._settings.reconnect_grace_s,
            ice_servers=ep.ice_servers(party.key), state=manager.snapshot(party),
            elderly=party.elderly,
            service=manager.service_hours() if party.role == "customer" else None))
        log.info("connected", role=party.role, resumed=resumed)

