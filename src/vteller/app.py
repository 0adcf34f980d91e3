"""Composition root: build every component from Settings and wire them. Nothing else."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import structlog
from aiohttp import web

from vteller.audit import EnvKek, KekProvider, LocalKeyring
from vteller.audit.keys import KeyError_
from vteller.audit.access import AccessLog
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.auth import (
    CustomerTokenVerifier,
    DevTokenIssuer,
    LoginRateLimiter,
    ServiceAuth,
    StaffAuth,
)
from vteller.calls import CallManager
from vteller.config import Settings, SettingsError
from vteller.gateway import setup_routes
from vteller.gateway.audit_api import AuditApi
from vteller.gateway.ws import SignalingEndpoint
from vteller.identity import IdentityService
from vteller.observability import Metrics
from vteller.store import FileBlobStore, SqliteStore
from vteller.tls import write_private

DEV_USERS = (("teller1", "Teller One", "teller"), ("supervisor1", "Supervisor One", "supervisor"),
             ("auditor1", "Auditor One", "auditor"), ("auditlead1", "Audit Lead", "auditor"))
DEV_PROFILES: dict[str, dict[str, object]] = {"auditlead1": {"permissions": ["review_access"]}}
DEV_TELLER_PROFILE = {
    "skills": {"general": 0.8, "card_issuance_review": 0.8, "password_reset": 0.8,
               "info_change": 0.7, "video_ident": 0.7},
    "languages": ["en"], "certifications": ["elderly_care"], "capability": 0.7}
DEV_CREDENTIALS = "dev-credentials.txt"
DEV_BACKEND = "dev-backend"
APP_KEY = web.AppKey("vteller", object)
log = structlog.get_logger("vteller.app")


@dataclass
class Components:
    settings: Settings
    store: SqliteStore
    staff: StaffAuth
    customers: CustomerTokenVerifier
    dev_issuer: DevTokenIssuer | None
    metrics: Metrics
    kek: KekProvider
    trail: AuditTrail
    blobs: FileBlobStore
    identity: IdentityService
    access: AccessLog
    manager: CallManager | None = None


def prepare_data(settings: Settings) -> None:
    """Create the data directory layout (0700 where secrets live)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    settings.keys_dir.chmod(0o700)


def customer_verifier(settings: Settings, dev_issuer: DevTokenIssuer | None) -> CustomerTokenVerifier:
    kw = dict(issuer=settings.customer_token_issuer, audience=settings.customer_token_audience,
              max_ttl_s=settings.customer_token_max_ttl_s,
              leeway_s=settings.customer_token_leeway_s)
    if settings.customer_token_key_file is not None:
        try:
            return CustomerTokenVerifier.from_key_file(
                settings.customer_token_algorithm, settings.customer_token_key_file, **kw)
        except (OSError, ValueError, TypeError) as exc:
            raise SettingsError(
                f"VTELLER_CUSTOMER_TOKEN_KEY_FILE: cannot use it as a "
                f"{settings.customer_token_algorithm} key ({type(exc).__name__})") from None
    if dev_issuer is None:
        raise SettingsError(
            "VTELLER_CUSTOMER_TOKEN_KEY_FILE is required outside dev mode "
            "(the bank backend's public key)")
    return CustomerTokenVerifier("EdDSA", dev_issuer.public_key, **kw)


def seed_dev_users(settings: Settings, store: SqliteStore) -> list[tuple[str, str, str]]:
    """Dev mode only: demo staff accounts with random passwords and a bank-backend
    credential (for reference photo uploads), written 0600 once."""
    created = []
    for username, display, role in DEV_USERS:
        if store.get_user(username) is None:
            password = secrets.token_urlsafe(12)
            store.add_user(username, display, role, StaffAuth.hash_password(password),
                           DEV_TELLER_PROFILE if role == "teller" else DEV_PROFILES.get(username))
            created.append((username, role, password))
    if not any(name == DEV_BACKEND for name, _, _ in store.list_service_credentials()):
        created.append((DEV_BACKEND, "backend", ServiceAuth(store).create(DEV_BACKEND)))
    if created:
        path = settings.data_dir / DEV_CREDENTIALS
        old = path.read_text() if path.exists() else ""
        write_private(path, (old + "".join(f"{u} {r} {p}\n" for u, r, p in created)).encode())
    return created


def build(settings: Settings, serving: bool = True) -> Components:
    """Every component. ``serving=False`` (CLI tools) skips the customer-token verifier,
    which needs the bank's key only to serve."""
    prepare_data(settings)
    store = SqliteStore(settings.database_path)
    dev_issuer = (
        DevTokenIssuer.load_or_create(settings.keys_dir, settings.customer_token_issuer,
                                      settings.customer_token_audience)
        if settings.dev_mode else None
    )
    kek = kek_provider(settings)
    signer = load_or_create_signing_key(settings.kek_dir)
    trail = AuditTrail(store, kek, signer)
    try:
        identity = IdentityService(settings.identity, store, kek, trail)
    except FileNotFoundError as exc:
        raise SettingsError(f"VTELLER_IDENTITY__LANDMARK_MODEL: {exc}") from None
    return Components(
        settings=settings,
        store=store,
        staff=StaffAuth(store, LoginRateLimiter(settings.login_max_failures,
                                                settings.login_window_s),
                        settings.staff_session_ttl_s),
        customers=customer_verifier(settings, dev_issuer) if serving else None,  # type: ignore[arg-type]
        dev_issuer=dev_issuer,
        metrics=Metrics(),
        kek=kek,
        trail=trail,
        blobs=FileBlobStore(settings.recordings_dir),
        identity=identity,
        access=AccessLog(store, signer),
    )


def kek_provider(settings: Settings) -> KekProvider:
    try:
        if settings.kek_provider == "env":
            return EnvKek("VTELLER_KEK")
        return LocalKeyring(settings.kek_dir)
    except KeyError_ as exc:
        raise SettingsError(f"VTELLER_KEK_PROVIDER={settings.kek_provider}: {exc}") from None


def create_app(settings: Settings, components: Components | None = None) -> web.Application:
    """The aiohttp application. The CallManager starts with the app's event loop."""
    c = components or build(settings)
    app = web.Application(client_max_size=64 * 1024)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        sealed = await asyncio.to_thread(c.trail.seal_open_sessions, c.blobs)
        if sealed:
            log.warning("sealed_incomplete_sessions", count=len(sealed))
        c.manager = CallManager(settings, c.store, c.metrics, c.kek, c.trail, c.blobs,
                                c.identity)
        endpoint._manager = c.manager
        c.metrics.service.source = c.manager.dashboard
        c.metrics.loop_lag.start()
        yield
        c.metrics.loop_lag.stop()
        await c.manager.shutdown()
        c.identity.close()
        await c.store.purge_sessions()

    endpoint = SignalingEndpoint(settings, None, c.staff, c.customers, c.metrics)  # type: ignore[arg-type]
    setup_routes(app, settings, c.store, c.staff, endpoint, c.metrics, c.dev_issuer,
                 ServiceAuth(c.store), c.identity)
    AuditApi(c.store, c.staff, c.trail, c.kek, c.blobs, c.access).routes(app)
    app.cleanup_ctx.append(lifecycle)
    app[APP_KEY] = c
    return app

