"""The auditors' REST edge: search, open (verify first), replay, export, legal hold,
access log. Auditor role only; opening, replay and export need a stated reason, and
every action is written to the access log before anything is returned."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import math
import re
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
from vteller.audit.keys import KekProvider, unwrap_session_key
from vteller.audit.replay import decrypt_to_memory, seekable_webm
from vteller.audit.retention import verify_tombstone
from vteller.audit.trail import AuditTrail
from vteller.audit.verify import verify_session
from vteller.auth import StaffAuth
from vteller.calls.outcome import Outcome
from vteller.gateway.text import clean_model
from vteller.gateway.ws import SESSION_COOKIE
from vteller.store import BlobStore, CallSearch, StaffUser, Store

log = structlog.get_logger("vteller.audit_api")
GRANT_TTL_S = 3600
PAGE_SIZE = 25
MAX_PAGE = 1_000_000
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TRACK_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
REVIEW_ACCESS = "review_access"
FLAGS = ("identity_mismatch", "liveness_failed", "consent_used", "incomplete")
OUTCOMES = tuple(o.value for o in Outcome)
CACHE_ITEMS = 8  # remuxed tracks kept in memory for range requests


class ReasonBody(BaseModel):
    reason: str = Field(min_length=5, max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")


class HoldBody(ReasonBody):
    hold: bool


class ApprovalBody(ReasonBody):
    approve: bool


class ExportBody(ReasonBody):
    recipient_public_key: str | None = Field(None, max_length=2000,
                                             description="X25519 public key, PEM")


@dataclass(frozen=True)
class Grant:
    """An auditor's right to replay one session's media, stored in the database so
    that every node honours it."""

    token_hash: str
    user: str
    session_id: str
    reason: str


Handler = Callable[[web.Request, StaffUser], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class AuditApi:
    def __init__(self, store: Store, staff: StaffAuth, trail: AuditTrail,
                 kek: KekProvider, blobs: BlobStore, access: AccessLog,
                 send_to_bank: bool = False) -> None:
        self._store, self._staff, self._trail = store, staff, trail
        self._send_to_bank = send_to_bank  # a bank webhook is configured
        self._kek, self._blobs, self._access = kek, blobs, access
        self._media: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def routes(self, app: web.Application) -> None:
        r, a = app.router, self._auditors_only
        r.add_get("/api/audit/sessions", a(self.search))
        r.add_post("/api/audit/sessions/{sid}/open", a(self.open))
        r.add_get("/api/audit/sessions/{sid}/media/{name}", a(self.media))
        r.add_post("/api/audit/sessions/{sid}/export", a(self.export))
        r.add_post("/api/audit/sessions/{sid}/hold", a(self.hold))
        r.add_get("/api/audit/access-log", a(self.access_log))
        r.add_get("/api/audit/approvals", a(self.approvals))
        r.add_post("/api/audit/sessions/{sid}/approval", a(self.approval))

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
            body = model.model_validate(await request.json())
        except ValueError:
            return None
        return body if clean_model(body) else None

    async def _grant(self, request: web.Request, user: StaffUser) -> Grant | None:
        token_hash = hashlib.sha256(request.query.get("grant", "").encode()).hexdigest()
        found = await asyncio.to_thread(self._store.replay_grant, token_hash)
        if found is None or found[0] != user.username \
                or found[1] != request.match_info["sid"]:
            return None
        return Grant(token_hash, *found)

    def _data_key(self, session_id: str) -> bytes | None:
        return unwrap_session_key(self._store, self._kek, session_id)

    # ------------------------------------------------------------------ search
    async def search(self, request: web.Request, user: StaffUser) -> web.Response:
        q = request.query
        try:
            bounds = {b: float(q[b]) for b in ("from", "to") if q.get(b)}
            if not all(math.isfinite(v) for v in bounds.values()):
                raise ValueError
            page = int(q.get("page", "1"))
            if not 1 <= page <= MAX_PAGE:
                raise ValueError
        except ValueError:
            return _error(400, "invalid_request",
                          f"from/to are epoch seconds, page a number in 1..{MAX_PAGE}")
        flag = q.get("flag") or None
        if flag is not None and flag not in FLAGS:
            return _error(400, "invalid_request", "flag must be one of " + ", ".join(FLAGS))

        outcome = q.get("outcome") or None
        if outcome is not None and outcome not in OUTCOMES:
            return _error(400, "invalid_request", "outcome must be one of " + ", ".join(OUTCOMES))

        def text(name: str) -> str | None:
            return q[name][:128] if q.get(name) else None

        search = CallSearch(queued_from=bounds.get("from"), queued_to=bounds.get("to"),
                            teller=text("teller"), customer_id=text("customer"),
                            business_type=text("business_type"), decision=text("decision"),
                            flag=flag, outcome=outcome)
        total, rows = await asyncio.to_thread(self._store.search_calls, search, page,
                                              PAGE_SIZE)
        query = {k: v[:128] for k, v in q.items()}
        if "customer" in query:  # the access log outlives purges: no customer ids in it
            query["customer"] = self._access.pseudonym(query["customer"])
        await self._record(user.username, "search", None, q.get("reason", "")[:500],
                           query=query, results=total)
        return web.json_response({"page": page, "page_size": PAGE_SIZE, "total": total,
                                  "rows": [dataclasses.asdict(r) for r in rows]})

    # ------------------------------------------------------------------ open
    async def open(self, request: web.Request, user: StaffUser) -> web.Response:
        body = await self._body(request, ReasonBody)
        if body is None:
            return _error(400, "invalid_request", "state a reason (5-500 characters)")
        sid = request.match_info["sid"]
        if not SESSION_ID.match(sid):
            return _error(404, "not_found", "no such session")
        if not await asyncio.to_thread(self._store.session_exists, sid):
            return _error(404, "not_found", "no such session")
        await self._record(user.username, "open", sid, body.reason)
        purged = await asyncio.to_thread(self._store.purged, sid)
        hold = await asyncio.to_thread(self._store.legal_hold, sid)
        result: dict[str, Any] = {
            "session_id": sid,
            "legal_hold": {"set_by": hold[0], "reason": hold[1], "at": hold[2]}
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
                                  "checked": report.checked, "counts": report.counts,
                                  "incomplete": report.incomplete}
        try:
            events = await asyncio.to_thread(self._trail.events, sid)
        except Exception:  # noqa: BLE001 - tampered payloads: the report already says so
            events = []
        token = secrets.token_urlsafe(24)
        await asyncio.to_thread(self._store.put_replay_grant,
                                hashlib.sha256(token.encode()).hexdigest(), user.username,
                                sid, body.reason, GRANT_TTL_S)
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
        grant = await self._grant(request, user)
        if grant is None:
            return _error(403, "forbidden", "open the session with a reason first")
        sid, name = grant.session_id, request.match_info["name"]
        if not TRACK_NAME.match(name) or not self._blobs.exists(f"{sid}/{name}"):
            return _error(404, "not_found", "no such track")
        # once per opening and track, not per range request (on whichever node)
        if await asyncio.to_thread(self._store.first_replay, grant.token_hash, name):
            try:
                await self._record(user.username, "replay", sid, grant.reason, track=name)
            except BaseException:  # not logged, so not marked: the next request logs it
                await asyncio.to_thread(self._store.forget_replay, grant.token_hash, name)
                raise
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
        sid = request.match_info["sid"]
        if not SESSION_ID.match(sid):
            return _error(404, "not_found", "no such session")
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
        sid = request.match_info["sid"]
        if not SESSION_ID.match(sid):
            return _error(404, "not_found", "no such session")
        if not await asyncio.to_thread(self._store.session_exists, sid):
            return _error(404, "not_found", "no such session")
        if not body.hold:  # separation of duties: not any auditor may lift a hold
            held = await asyncio.to_thread(self._store.legal_hold, sid)
            if held and held[0] != user.username and \
                    REVIEW_ACCESS not in user.profile.get("permissions", []):
                return _error(403, "forbidden", "only the auditor who placed this hold or an "
                              "audit lead (review_access) may clear it")
        await self._record(user.username, "hold.set" if body.hold else "hold.clear", sid,
                           body.reason)
        await asyncio.to_thread(self._store.set_legal_hold, sid, body.hold, user.username,
                                body.reason)
        return web.json_response({"session_id": sid, "legal_hold": body.hold})

    # ------------------------------------------------------------------ four eyes
    async def approvals(self, request: web.Request, user: StaffUser) -> web.Response:
        """Approvals waiting for a second person (oldest first)."""
        pending = await asyncio.to_thread(self._store.pending_approvals)
        await self._record(user.username, "approvals.list", None, "", results=len(pending))
        return web.json_response({"approvals": [
            {"session_id": a.call_id, "business_type": a.business_type, "teller": a.teller,
             "requested_at": a.requested_at, "own": a.teller == user.username}
            for a in pending]})

    async def approval(self, request: web.Request, user: StaffUser) -> web.Response:
        """The second person's decision on a teller's approval: an auditor other than
        the teller, after opening the session, once the call is over."""
        body = await self._body(request, ApprovalBody)
        if body is None:
            return _error(400, "invalid_request", "approve (true/false) and a reason are "
                          "required")
        sid = request.match_info["sid"]
        found = await asyncio.to_thread(self._store.approval, sid) \
            if SESSION_ID.match(sid) else None
        if found is None:
            return _error(404, "not_found", "no approval is waiting for this session")
        if found.status != "pending":
            return _error(409, "already_decided", f"already {found.status} by another auditor")
        if found.teller == user.username:
            return _error(403, "forbidden", "four eyes: the teller who approved cannot "
                          "confirm their own approval")
        call = await self._store.get_call(sid)
        if call is None or call.get("state") != "closed":
            return _error(409, "wrong_state", "the call is not over yet")
        if not await asyncio.to_thread(self._store.opened_by, sid, user.username):
            return _error(403, "open_first", "open (verify and read) the session first")
        action = "four_eyes.approve" if body.approve else "four_eyes.reject"
        await self._record(user.username, action, sid, body.reason)
        won = await asyncio.to_thread(self._store.decide_approval, sid, user.username,
                                      body.approve, body.reason, time.time(),
                                      f"decision:{sid}", self._send_to_bank)
        if not won:
            return _error(409, "already_decided", "decided by another auditor meanwhile")
        return web.json_response({"session_id": sid,
                                  "status": "approved" if body.approve else "rejected"})

    # ------------------------------------------------------------------ access log
    async def access_log(self, request: web.Request, user: StaffUser) -> web.Response:
        if REVIEW_ACCESS not in user.profile.get("permissions", []):
            return _error(403, "forbidden", f"needs the {REVIEW_ACCESS} permission")
        await self._record(user.username, "access_log.view", None, "")
        sid = request.query.get("session")
        entries = await asyncio.to_thread(self._access.entries, 500, sid)
        # the newest 500 entries (every entry is signed): the whole chain costs O(n)
        # signature checks, so it is `vteller audit verify-access`'s job
        report = await asyncio.to_thread(verify_access, self._store, self._trail.public_key,
                                         500)
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
