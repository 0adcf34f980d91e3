"""The auditors' REST edge: search, open (verify first), replay, export, legal hold,
access log. Auditor role only; opening, replay and export need a stated reason, and
every action is written to the access log before anything is returned."""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from pydantic import BaseModel, Field

from vteller.audit.access import AccessLog
from vteller.audit.access import verify as verify_access
from vteller.audit.bundle import export_bundle
from vteller.audit.keys import KekProvider, WrappedKey
from vteller.audit.replay import decrypt_to_memory, seekable_webm
from vteller.audit.retention import verify_tombstone
from vteller.audit.trail import AuditTrail
from vteller.audit.verify import verify_session
from vteller.auth import StaffAuth
from vteller.gateway.ws import SESSION_COOKIE
from vteller.store import BlobStore, SqliteStore, StaffUser

log = structlog.get_logger("vteller.audit_api")
GRANT_TTL_S = 3600
PAGE_SIZE = 25
REVIEW_ACCESS = "review_access"
FLAGS = ("identity_mismatch", "liveness_failed", "consent_used", "incomplete")
CACHE_ITEMS = 8  # remuxed tracks kept in memory for range requests


class ReasonBody(BaseModel):
    reason: str = Field(min_length=5, max_length=500)


class HoldBody(ReasonBody):
    hold: bool


class ExportBody(ReasonBody):
    recipient_public_key: str | None = Field(None, max_length=2000,
                                             description="X25519 public key, PEM")


@dataclass(frozen=True)
class Grant:
    user: str
    session_id: str
    reason: str
    expires: float


Handler = Callable[[web.Request, StaffUser], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class AuditApi:
    def __init__(self, store: SqliteStore, staff: StaffAuth, trail: AuditTrail,
                 kek: KekProvider, blobs: BlobStore, access: AccessLog) -> None:
        self._store, self._staff, self._trail = store, staff, trail
        self._kek, self._blobs, self._access = kek, blobs, access
        self._grants: dict[str, Grant] = {}
        self._replayed: set[tuple[Grant, str]] = set()
        self._media: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def routes(self, app: web.Application) -> None:
        r, a = app.router, self._auditors_only
        r.add_get("/api/audit/sessions", a(self.search))
        r.add_post("/api/audit/sessions/{sid}/open", a(self.open))
        r.add_get("/api/audit/sessions/{sid}/media/{name}", a(self.media))
        r.add_post("/api/audit/sessions/{sid}/export", a(self.export))
        r.add_post("/api/audit/sessions/{sid}/hold", a(self.hold))
        r.add_get("/api/audit/access-log", a(self.access_log))

    # ------------------------------------------------------------------ helpers
    def _auditors_only(self, handler: Handler) -> Callable[[web.Request],
                                                            Awaitable[web.StreamResponse]]:
        """Every route: a logged-in staff member with the auditor role, or 401/403."""
        async def checked(request: web.Request) -> web.StreamResponse:
            user = await self._staff.user_for_session(request.cookies.get(SESSION_COOKIE))
            if user is None:
                return _error(401, "unauthenticated", "not logged in")
            if user.role != "auditor":
                return _error(403, "forbidden", "auditors only")
            return await handler(request, user)
        return checked

    async def _record(self, user: str, action: str, session_id: str | None, reason: str,
                      **detail: Any) -> None:
        await asyncio.to_thread(self._access.record, user, action, session_id, reason, **detail)

    async def _body(self, request: web.Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(await request.json())
        except ValueError:
            return None

    def _grant(self, request: web.Request, user: StaffUser) -> Grant | None:
        token = request.query.get("grant", "")
        grant = self._grants.get(hashlib.sha256(token.encode()).hexdigest())
        if (grant is None or grant.expires < time.time() or grant.user != user.username
                or grant.session_id != request.match_info["sid"]):
            return None
        return grant

    def _data_key(self, session_id: str) -> bytes | None:
        row = self._store.session_key(session_id)
        return self._kek.unwrap(WrappedKey(*row), session_id) if row else None

    # ------------------------------------------------------------------ search
    async def search(self, request: web.Request, user: StaffUser) -> web.Response:
        q = request.query
        where, args = ["1=1"], []
        try:
            if q.get("from"):
                where.append("c.queued_at >= ?")
                args.append(float(q["from"]))
            if q.get("to"):
                where.append("c.queued_at < ?")
                args.append(float(q["to"]))
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            return _error(400, "invalid_request", "from/to are epoch seconds, page a number")
        for param, column in (("teller", "c.teller"), ("customer", "c.customer_id"),
                              ("business_type", "c.business_type"),
                              ("decision", "d.decision")):
            if q.get(param):
                where.append(f"{column} = ?")
                args.append(q[param][:128])
        flag = q.get("flag")
        if flag:
            if flag not in FLAGS:
                return _error(400, "invalid_request", "flag must be one of " + ", ".join(FLAGS))
            if flag == "incomplete":
                where.append("c.call_id IN (SELECT session_id FROM audit_log WHERE "
                             "json_extract(entry, '$.incomplete') = 1)")
            else:
                where.append("instr(',' || c.flags || ',', ?) > 0")
                args.append(f",{flag},")
        sql = (" FROM calls c LEFT JOIN decisions d USING (call_id) WHERE "
               + " AND ".join(where))
        total = (await asyncio.to_thread(self._store.run, "SELECT COUNT(*)" + sql,
                                         tuple(args)))[0][0]
        rows = await asyncio.to_thread(
            self._store.run,
            "SELECT c.call_id, c.customer_id, c.teller, c.business_type, c.state, c.end_reason,"
            " c.queued_at, c.ended_at, c.flags, d.decision, "
            "(SELECT 1 FROM legal_holds h WHERE h.session_id = c.call_id),"
            "(SELECT 1 FROM purged_sessions p WHERE p.session_id = c.call_id)"
            + sql + " ORDER BY c.queued_at DESC LIMIT ? OFFSET ?",
            (*args, PAGE_SIZE, (page - 1) * PAGE_SIZE))
        await self._record(user.username, "search", None, q.get("reason", ""),
                           query={k: v[:128] for k, v in q.items()}, results=total)
        keys = ("session_id", "customer_id", "teller", "business_type", "state", "end_reason",
                "queued_at", "ended_at", "flags", "decision", "legal_hold", "purged")
        return web.json_response({
            "page": page, "page_size": PAGE_SIZE, "total": total,
            "rows": [{**dict(zip(keys, r)), "flags": [f for f in r[8].split(",") if f],
                      "legal_hold": bool(r[10]), "purged": bool(r[11])} for r in rows]})

    # ------------------------------------------------------------------ open
    async def open(self, request: web.Request, user: StaffUser) -> web.Response:
        body = await self._body(request, ReasonBody)
        if body is None:
            return _error(400, "invalid_request", "state a reason (5-500 characters)")
        sid = request.match_info["sid"][:64]
        known = await asyncio.to_thread(
            self._store.run, "SELECT 1 FROM audit_events WHERE session_id=? LIMIT 1", (sid,))
        if not known:
            return _error(404, "not_found", "no such session")
        await self._record(user.username, "open", sid, body.reason)
        purged = await asyncio.to_thread(
            self._store.run, "SELECT at, reason FROM purged_sessions WHERE session_id=?", (sid,))
        hold = await asyncio.to_thread(
            self._store.run, "SELECT set_by, reason, at FROM legal_holds WHERE session_id=?",
            (sid,))
        result: dict[str, Any] = {
            "session_id": sid,
            "legal_hold": {"set_by": hold[0][0], "reason": hold[0][1], "at": hold[0][2]}
            if hold else None}
        if purged:
            ok, what = await asyncio.to_thread(verify_tombstone, self._store, sid,
                                               self._trail.public_key)
            result.update(purged=True, verification={
                "ok": ok, "problems": [] if ok else [what], "checked": [what],
                "incomplete": False}, events=[], tracks=[])
            return web.json_response(result)
        report = await asyncio.to_thread(verify_session, self._store, sid,
                                         self._trail.public_key, self._kek, self._blobs)
        result["verification"] = {"ok": report.ok, "problems": report.problems,
                                  "checked": report.checked, "incomplete": report.incomplete}
        try:
            events = await asyncio.to_thread(self._trail.events, sid)
        except Exception:  # noqa: BLE001 - tampered payloads: the report already says so
            events = []
        token = secrets.token_urlsafe(24)
        self._grants = {k: g for k, g in self._grants.items() if g.expires > time.time()}
        self._replayed = {(g, n) for g, n in self._replayed if g.expires > time.time()}
        self._grants[hashlib.sha256(token.encode()).hexdigest()] = Grant(
            user.username, sid, body.reason, time.time() + GRANT_TTL_S)
        starts = _track_starts(events)
        tracks = []
        for key in self._blobs.list(sid):
            name = key.split("/", 1)[1]
            party, slot = (name.split(".")[:2] + [""])[:2]
            tracks.append({"name": name, "party": party, "slot": slot,
                           "kind": "audio" if slot == "audio" else
                           "image" if name.startswith("evidence.") else "video",
                           "starts_at": starts.get("customer.screen") if slot == "screen"
                           else starts.get(party)})
        result.update(purged=False, grant=token, grant_expires_in_s=GRANT_TTL_S,
                      events=events, tracks=tracks)
        return web.json_response(result)

    # ------------------------------------------------------------------ replay
    async def media(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        grant = self._grant(request, user)
        if grant is None:
            return _error(403, "forbidden", "open the session with a reason first")
        sid, name = grant.session_id, request.match_info["name"]
        if not self._blobs.exists(f"{sid}/{name}") or "/" in name:
            return _error(404, "not_found", "no such track")
        if (grant, name) not in self._replayed:  # once per opening and track, not per range
            await self._record(user.username, "replay", sid, grant.reason, track=name)
            self._replayed.add((grant, name))
        data = await self._load(sid, name)
        content_type = ("image/jpeg" if name.endswith(".jpg.vtenc") else
                        "audio/webm" if ".audio." in name else "video/webm")
        return _ranged(request, data, content_type)

    async def _load(self, sid: str, name: str) -> bytes:
        key = (sid, name)
        if key in self._media:
            self._media.move_to_end(key)
            return self._media[key]

        def work() -> bytes:
            data_key = self._data_key(sid)
            if data_key is None:
                raise web.HTTPGone(text="purged")
            with self._blobs.open_read(f"{sid}/{name}") as fh:
                plain = decrypt_to_memory(fh, lambda _kid: data_key)
            return plain if name.endswith(".jpg.vtenc") else seekable_webm(plain)[0]

        data = await asyncio.to_thread(work)
        self._media[key] = data
        while len(self._media) > CACHE_ITEMS:
            self._media.popitem(last=False)
        return data

    # ------------------------------------------------------------------ export
    async def export(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        body = await self._body(request, ExportBody)
        if body is None:
            return _error(400, "invalid_request", "state a reason (5-500 characters)")
        sid = request.match_info["sid"][:64]
        recipient = None
        if body.recipient_public_key:
            try:
                recipient = serialization.load_pem_public_key(body.recipient_public_key.encode())
            except ValueError:
                recipient = None
            if not isinstance(recipient, X25519PublicKey):
                return _error(400, "invalid_request", "recipient key must be an X25519 PEM")
        await self._record(user.username, "export", sid, body.reason,
                           encrypted_to_recipient=recipient is not None)
        buf = io.BytesIO()
        try:
            await asyncio.to_thread(export_bundle, self._store, sid, self._trail,
                                    self._kek, self._blobs, buf, recipient)
        except LookupError as exc:
            return _error(404, "not_found", str(exc))
        return web.Response(body=buf.getvalue(), content_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="vteller-{sid}.zip"'})

    # ------------------------------------------------------------------ legal hold
    async def hold(self, request: web.Request, user: StaffUser) -> web.Response:
        body = await self._body(request, HoldBody)
        if body is None:
            return _error(400, "invalid_request", "hold (true/false) and a reason are required")
        sid = request.match_info["sid"][:64]
        await self._record(user.username, "hold.set" if body.hold else "hold.clear", sid,
                           body.reason)
        await asyncio.to_thread(self._store.set_legal_hold, sid, body.hold, user.username,
                                body.reason)
        return web.json_response({"session_id": sid, "legal_hold": body.hold})

    # ------------------------------------------------------------------ access log
    async def access_log(self, request: web.Request, user: StaffUser) -> web.Response:
        if REVIEW_ACCESS not in user.profile.get("permissions", []):
            return _error(403, "forbidden", f"needs the {REVIEW_ACCESS} permission")
        await self._record(user.username, "access_log.view", None, "")
        sid = request.query.get("session")
        entries = await asyncio.to_thread(self._access.entries, 500, sid)
        report = await asyncio.to_thread(verify_access, self._store, self._trail.public_key)
        return web.json_response({"entries": entries, "verification": {
            "ok": report.ok, "entries": report.entries, "problems": report.problems}})


def _track_starts(events: list[dict[str, Any]]) -> dict[str, float]:
    """When each party's media (and the screen share) started: the replay timeline."""
    starts: dict[str, float] = {}
    for e in events:
        if e["kind"] == "media.connected":
            starts.setdefault(e["actor"], e["at"])
        elif e["kind"] == "consent.active":
            starts.setdefault("customer.screen", e["at"])
    return starts


def _ranged(request: web.Request, data: bytes, content_type: str) -> web.Response:
    """Serve `data` honouring a single `Range: bytes=a-b` (what media elements send)."""
    size = len(data)
    headers = {"Accept-Ranges": "bytes", "Content-Type": content_type}
    rng = request.headers.get("Range", "")
    if rng.startswith("bytes=") and "," not in rng:
        first, _, last = rng[6:].partition("-")
        try:
            if first:
                start, end = int(first), int(last) if last else size - 1
            else:
                start, end = max(0, size - int(last)), size - 1
        except ValueError:
            start, end = -1, -1
        end = min(end, size - 1)
        if not 0 <= start <= end:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return web.Response(status=206, body=data[start:end + 1], headers=headers)
    return web.Response(body=data, headers=headers)
