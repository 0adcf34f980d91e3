"""The signaling WebSocket endpoint: authenticate, validate, check role, dispatch."""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from vteller.auth import AuthError, CustomerTokenVerifier, StaffAuth
from vteller.calls import CallManager, Party
from vteller.config import Settings
from vteller.gateway.connection import TokenBucket, WsConnection
from vteller.observability import Metrics
from vteller.protocol import CLIENT_MESSAGES, ErrorCode, ProtocolError, parse_client_message
from vteller.protocol import messages as m
from vteller.routing import segments_for

log = structlog.get_logger("vteller.gateway")
HARD_FRAME_LIMIT = 1024 * 1024  # above this aiohttp closes (1009); below it we answer too_large
SESSION_COOKIE = "vteller_session"


def _summary(exc: ValidationError) -> str:
    """Which fields are wrong, without echoing client values back."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"][1:] or err["loc"]) or "message"
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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        # Browsers always send Origin; refusing foreign ones stops cross-site WebSocket
        # hijacking of the staff cookie. Non-browser clients carry no victim's cookie.
        if origin is not None and origin not in self._origins:
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(heartbeat=self._settings.heartbeat_s,
                                   max_msg_size=HARD_FRAME_LIMIT)
        await ws.prepare(request)
        conn = WsConnection(ws)
        session = _Session(self, request, conn)
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
        except (json.JSONDecodeError, RecursionError):
            return self.error(ErrorCode.BAD_JSON, "message is not valid JSON")
        if not isinstance(data, dict):
            return self.error(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
        mtype = data.get("type")
        raw_id = data.get("id")
        re = raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None
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

    async def hello(self, msg: m.Hello) -> None:
        ep, manager = self.ep, self.ep._manager
        resumed = False
        if msg.resume:
            party, resume = manager.resume(msg.resume, self.conn)
            resumed = True
        elif msg.token:
            claims = ep._customers.verify(msg.token)
            segments = segments_for(claims.segments, claims.birth_year,
                                    ep._settings.routing.elderly_age)
            party, resume, resumed = manager.connect(
                f"customer:{claims.sub}", "customer", claims.sub, claims.name, self.conn,
                segments=segments)
        else:
            user = await ep._staff.user_for_session(self.request.cookies.get(SESSION_COOKIE))
            if user is None:
                raise AuthError("unauthenticated", "customers send a token; staff log in first")
            party, resume, resumed = manager.connect(
                f"staff:{user.username}", user.role, user.username, user.display_name,
                self.conn, profile=user.profile)
        self.party = party
        ep._metrics.connections.labels(role=party.role).inc()
        self.conn.send(m.Welcome(
            role=party.role,  # type: ignore[arg-type]
            display_name=party.display_name, resume=resume, resumed=resumed,
            heartbeat_s=ep._settings.heartbeat_s, grace_s=ep._settings.reconnect_grace_s,
            ice_servers=ep._settings.ice_servers, state=manager.snapshot(party),
            elderly=party.elderly))
        log.info("connected", role=party.role, resumed=resumed)

