"""REST routes, static pages and security middleware."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field, ValidationError

from vteller.auth import AuthError, DevTokenIssuer, ServiceAuth, StaffAuth
from vteller.auth.staff import USERNAME_PATTERN, hash_token
from vteller.config import Settings
from vteller.gateway.text import clean_model, storable
from vteller.gateway.ws import SESSION_COOKIE, SignalingEndpoint
from vteller.identity import EnrollmentError, IdentityService
from vteller.observability import Metrics
from vteller.store import Store

log = structlog.get_logger("vteller.http")
WEB_CLIENT = Path(__file__).resolve().parents[3] / "web_client"
PAGES = {"/": "index.html", "/customer": "customer.html", "/teller": "teller.html",
         "/supervisor": "supervisor.html", "/auditor": "auditor.html"}
CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self' wss:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


REFERENCE_PATH = "/api/backend/references/"
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
PHOTO_TYPES = ("image/jpeg", "image/png")


def json_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


class LoginBody(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=1, max_length=1024)


class DemoTokenBody(BaseModel):
    name: str = Field("Demo Customer", min_length=1, max_length=64)
    birth_year: int = Field(1958, ge=1900, le=2100)


def _security_middleware(settings: Settings) -> Any:
    origins = settings.effective_origins()

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if not storable(request.path, *request.query.keys(), *request.query.values()):
            return json_error(400, "invalid_request",
                              "the path and query must be valid UTF-8 without NUL")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and origin not in origins:
                return json_error(403, "forbidden", "cross-origin request refused")
            if (request.content_length is not None and request.content_length > 16 * 1024
                    and not request.path.startswith(REFERENCE_PATH)):
                return json_error(413, "too_large", "request body too large")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        if not isinstance(response, web.WebSocketResponse) and not response.prepared:
            h = response.headers
            h.setdefault("Content-Security-Policy", CSP)
            h.setdefault("X-Content-Type-Options", "nosniff")
            h.setdefault("Referrer-Policy", "no-referrer")
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
            h.setdefault("Permissions-Policy",
                         "camera=(self), microphone=(self), display-capture=(self)")
            h.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException) and response.status >= 400:
            raise response
        return response

    return middleware


async def _read_json(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        body = model.model_validate(await request.json())
        if not clean_model(body):
            raise ValueError("unstorable text")
        return body
    except (ValueError, ValidationError):
        raise web.HTTPBadRequest(
            text='{"error":{"code":"invalid_request","message":"malformed request body"}}',
            content_type="application/json") from None


def setup_routes(
    app: web.Application, settings: Settings, store: Store, staff: StaffAuth,
    signaling: SignalingEndpoint, metrics: Metrics, dev_issuer: DevTokenIssuer | None,
    services: ServiceAuth, identity: IdentityService,
) -> None:
    app.middlewares.append(_security_middleware(settings))

    async def no_versions(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "vteller"  # not aiohttp's and Python's versions

    app.on_response_prepare.append(no_versions)

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_CLIENT / PAGES[request.path])

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            ok = await asyncio.wait_for(asyncio.to_thread(store.ping), 2)
        except Exception:  # noqa: BLE001 - any failure means not ready
            ok = False
        manager = getattr(signaling, "_manager", None)
        if manager is not None and manager.draining:  # load balancers: send nobody new
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ready" if ok else "not ready"},
                                 status=200 if ok else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def login(request: web.Request) -> web.Response:
        body = await _read_json(request, LoginBody)
        try:
            user, token = await staff.login(body.username, body.password, request.remote or "?")
        except AuthError as exc:
            metrics.logins.labels(result=exc.code).inc()
            if exc.code == "rate_limited":
                return json_error(429, exc.code, exc.message,
                                  **{"Retry-After": str(exc.retry_after_s or 1)})
            return json_error(401, exc.code, exc.message)
        metrics.logins.labels(result="ok").inc()
        log.info("staff_login", role=user.role)
        resp = web.json_response(
            {"username": user.username, "display_name": user.display_name, "role": user.role})
        resp.set_cookie(SESSION_COOKIE, token, max_age=settings.staff_session_ttl_s,
                        httponly=True, secure=True, samesite="Strict", path="/")
        return resp

    async def logout(request: web.Request) -> web.Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await staff.logout(token)
            signaling.revoke_staff_session(hash_token(token))
        resp = web.json_response({"ok": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    async def me(request: web.Request) -> web.Response:
        user = await staff.user_for_session(request.cookies.get(SESSION_COOKIE))
        if user is None:
            return json_error(401, "unauthenticated", "not logged in")
        return web.json_response(
            {"username": user.username, "display_name": user.display_name, "role": user.role})

    async def review_report(request: web.Request) -> web.Response:
        user = await staff.user_for_session(request.cookies.get(SESSION_COOKIE))
        if user is None:
            return json_error(401, "unauthenticated", "not logged in")
        if user.role != "supervisor":
            return json_error(403, "forbidden", "supervisors only")
        try:
            hours = float(request.query.get("hours", "24"))
            if not 0 < hours <= 24 * 366:
                raise ValueError
        except ValueError:
            return json_error(400, "invalid_request", "hours must be a number in (0, 8784]")
        now = time.time()
        rows = await store.review_report(now - hours * 3600, now)
        outcomes = await store.outcome_report(now - hours * 3600, now)
        surveys = await store.survey_report(now - hours * 3600, now)
        return web.json_response({"hours": hours, "rows": rows, "outcomes": outcomes,
                                  "surveys": surveys})

    async def demo_token(request: web.Request) -> web.Response:
        assert dev_issuer is not None
        body = await _read_json(request, DemoTokenBody)
        customer_id = "demo-" + secrets.token_hex(4)
        token = dev_issuer.issue(customer_id, body.name, body.birth_year, ttl_s=600)
        return web.json_response({"token": token, "customer_id": customer_id})

    async def backend(request: web.Request) -> tuple[str, str] | web.Response:
        """(credential name, customer id) or the error response."""
        name = await services.authenticate(request.headers.get("Authorization"))
        if name is None:
            return json_error(401, "unauthenticated", "a valid backend service credential is "
                              "required", **{"WWW-Authenticate": "Bearer"})
        customer_id = request.match_info["customer_id"]
        if not CUSTOMER_ID.match(customer_id):
            return json_error(400, "invalid_request", "bad customer id")
        return name, customer_id

    async def put_reference(request: web.Request) -> web.Response:
        who = await backend(request)
        if isinstance(who, web.Response):
            return who
        name, customer_id = who
        limit = settings.identity.max_photo_bytes
        if request.content_type not in PHOTO_TYPES:
            return json_error(415, "not_an_image", "send the photo as image/jpeg or image/png")
        if request.content_length is not None and request.content_length > limit:
            return json_error(413, "too_large", f"photo larger than {limit} bytes")
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                return json_error(413, "too_large", f"photo larger than {limit} bytes")
        try:
            result = await identity.enroll(customer_id, bytes(body), f"backend:{name}")
        except EnrollmentError as exc:
            metrics.enrollments.labels(result=exc.code).inc()
            status = {"too_large": 413, "not_an_image": 415}.get(exc.code, 422)
            return json_error(status, exc.code, exc.message)
        metrics.enrollments.labels(result="ok").inc()
        return web.json_response(result, status=200 if result["replaced"] else 201)

    async def delete_reference(request: web.Request) -> web.Response:
        who = await backend(request)
        if isinstance(who, web.Response):
            return who
        name, customer_id = who
        if not await identity.forget(customer_id, f"backend:{name}"):
            return json_error(404, "not_found", "no reference for this customer")
        return web.json_response({"customer_id": customer_id, "deleted": True})

    r = app.router
    r.add_put(REFERENCE_PATH + "{customer_id}", put_reference)
    r.add_delete(REFERENCE_PATH + "{customer_id}", delete_reference)
    for path in PAGES:
        r.add_get(path, page)
    r.add_static("/static", WEB_CLIENT / "static", follow_symlinks=False)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_view)
    r.add_post("/api/login", login)
    r.add_post("/api/logout", logout)
    r.add_get("/api/me", me)
    r.add_get("/api/reports/reviews", review_report)
    r.add_get("/ws", signaling.handle)
    if settings.dev_mode and dev_issuer is not None:
        r.add_post("/api/dev/customer-token", demo_token)
