"""Composition root: build every component from Settings and wire them. Nothing else."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from vteller.audit import EnvKek, KekProvider, LocalKeyring
from vteller.audit.access import AccessLog
from vteller.audit.keys import KeyError_
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.auth import (
    CustomerTokenVerifier,
    DevTokenIssuer,
    LocalLoginLimiter,
    LoginLimiter,
    ServiceAuth,
    SharedLoginLimiter,
    StaffAuth,
)
from vteller.auth.tokens import SharedUsedTokens
from vteller.bank import BankWebhook, OutboxWorker
from vteller.calls import CallManager
from vteller.cluster import NodeId, NodeLease, SessionSweeper
from vteller.cluster.bus import NodeBus
from vteller.config import Settings, SettingsError
from vteller.gateway import openapi, setup_routes
from vteller.gateway.audit_api import AuditApi
from vteller.gateway.ws import SignalingEndpoint
from vteller.identity import IdentityService
from vteller.media import native
from vteller.observability import Metrics
from vteller.routing.redis_store import PrefixTaken, RoutingUnavailable
from vteller.routing.store import RoutingStore, make_router
from vteller.store import (
    BlobStore,
    FileBlobStore,
    SchemaMismatch,
    Store,
    StoreError,
    open_store,
)
from vteller.tls import write_private

DEV_USERS = (("teller1", "Teller One", "teller"), ("supervisor1", "Supervisor One", "supervisor"),
             ("auditor1", "Auditor One", "auditor"), ("auditlead1", "Audit Lead", "auditor"))
DEV_PROFILES: dict[str, dict[str, object]] = {"auditlead1": {"permissions": ["review_access"]}}
DEV_TELLER_PROFILE = {
    "skills": {"general": 0.8, "card_issuance_review": 0.8, "password_reset": 0.8,
               "info_change": 0.7, "video_ident": 0.7},
    "languages": ["en", "zh"], "certifications": ["elderly_care"], "capability": 0.7}
DEV_CREDENTIALS = "dev-credentials.txt"
DEV_BACKEND = "dev-backend"
APP_KEY = web.AppKey("vteller", object)
log = structlog.get_logger("vteller.app")


@dataclass
class Components:
    settings: Settings
    store: Store
    staff: StaffAuth
    customers: CustomerTokenVerifier
    dev_issuer: DevTokenIssuer | None
    metrics: Metrics
    kek: KekProvider
    trail: AuditTrail
    blobs: BlobStore
    identity: IdentityService
    access: AccessLog
    router: RoutingStore
    node: NodeId
    manager: CallManager | None = None


def prepare_data(settings: Settings) -> None:
    """Create the data directory layout (0700 where secrets live)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    settings.keys_dir.chmod(0o700)


def customer_verifier(settings: Settings, dev_issuer: DevTokenIssuer | None,
                      store: Store | None = None) -> CustomerTokenVerifier:
    """The bank's key (or the dev issuer's). On PostgreSQL, used token ids are kept in
    the database, so a token used on one node is refused by every node."""
    kw: dict[str, Any] = dict(
        issuer=settings.customer_token_issuer, audience=settings.customer_token_audience,
        max_ttl_s=settings.customer_token_max_ttl_s, leeway_s=settings.customer_token_leeway_s,
        used=SharedUsedTokens(store) if store is not None and store.dialect == "postgres"
        else None)
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


def seed_dev_users(settings: Settings, store: Store) -> list[tuple[str, str, str]]:
    """Dev mode only: demo staff accounts with random passwords and a bank-backend
    credential (for reference photo uploads), written 0600 once."""
    created = []
    for username, display, role in DEV_USERS:
        if store.get_user(username) is None:
            password = secrets.token_urlsafe(12)
            profile = dict(DEV_TELLER_PROFILE if role == "teller"
                           else DEV_PROFILES.get(username, {}))
            store.add_user(username, display, role, StaffAuth.hash_password(password),
                           {**profile, "dev_account": True})
            created.append((username, role, password))
    if not any(name == DEV_BACKEND for name, _, _ in store.list_service_credentials()):
        created.append((DEV_BACKEND, "backend", ServiceAuth(store).create(DEV_BACKEND)))
    if created:
        path = settings.data_dir / DEV_CREDENTIALS
        old = path.read_text() if path.exists() else ""
        write_private(path, (old + "".join(f"{u} {r} {p}\n" for u, r, p in created)).encode())
    return created


def retire_dev_leftovers(settings: Settings, store: Store) -> list[str]:
    """Outside dev mode, on a data folder that was once run in dev mode: disable the
    demo accounts and the dev-backend key (their secrets sat in a file) and delete that
    file. Returns what was retired; the caller says so loudly."""
    path = settings.data_dir / DEV_CREDENTIALS
    listed = set()
    if path.exists():
        listed = {line.split()[0] for line in path.read_text().splitlines() if line.split()}
    retired = []
    for user in store.list_users():
        if not user.disabled and (user.username in listed or user.profile.get("dev_account")):
            store.set_disabled(user.username, True)
            retired.append(user.username)
    for name, _, disabled in store.list_service_credentials():
        if name == DEV_BACKEND and not disabled:
            store.revoke_service_credential(name)
            retired.append(name)
    path.unlink(missing_ok=True)
    return retired


def open_database(settings: Settings, migrate: bool = False) -> Store:
    """The configured store, or SettingsError naming the setting (never the secret)."""
    try:
        return open_store(settings.database_url, settings.database_path, migrate=migrate)
    except SchemaMismatch as exc:
        raise SettingsError(f"VTELLER_DATABASE_URL: {exc}") from None
    except StoreError as exc:
        raise SettingsError(f"VTELLER_DATABASE_URL: {exc}") from None


def open_blobs(settings: Settings) -> BlobStore:
    """Files under data_dir/recordings, or the configured S3 bucket (checked now)."""
    s3 = settings.s3
    if not s3.bucket:
        return FileBlobStore(settings.recordings_dir)
    from vteller.store.s3 import BlobUnavailable, S3BlobStore, S3Settings

    try:
        blobs = S3BlobStore(S3Settings(
            s3.bucket, s3.prefix, s3.endpoint_url, s3.region, s3.access_key_id,
            s3.secret_access_key.get_secret_value() if s3.secret_access_key else None),
            max_buffer=s3.max_buffer_bytes)
    except ValueError as exc:
        raise SettingsError(f"VTELLER_S3__ENDPOINT_URL: {exc}") from None
    try:
        blobs.check()
    except BlobUnavailable as exc:
        raise SettingsError(f"VTELLER_S3__BUCKET: {exc}") from None
    return blobs


def build(settings: Settings, serving: bool = True) -> Components:
    """Every component. ``serving=False`` (CLI tools) skips the customer-token verifier,
    which needs the bank's key only to serve."""
    prepare_data(settings)
    blobs = open_blobs(settings)
    store = open_database(settings)
    if serving and not settings.dev_mode:
        retired = retire_dev_leftovers(settings, store)
        if retired:
            log.warning("dev_leftovers_disabled", accounts=retired,
                        note="this data folder was used in dev mode; its demo accounts and "
                        "dev-backend key are now disabled and dev-credentials.txt deleted")
            print(f"WARNING: dev-mode leftovers disabled: {', '.join(retired)} "
                  "(this data folder was used with --dev)", file=sys.stderr)
    dev_issuer = (
        DevTokenIssuer.load_or_create(settings.keys_dir, settings.customer_token_issuer,
                                      settings.customer_token_audience)
        if settings.dev_mode else None
    )
    kek = kek_provider(settings)
    signer = load_or_create_signing_key(settings.kek_dir)
    node = NodeId.this_process()
    trail = AuditTrail(store, kek, signer, owner=str(node) if serving else None)
    try:
        identity = IdentityService(settings.identity, store, kek, trail)
    except FileNotFoundError as exc:
        raise SettingsError(f"VTELLER_IDENTITY__LANDMARK_MODEL: {exc}") from None
    try:
        if settings.standby and not settings.redis_url:
            raise SettingsError("VTELLER_STANDBY needs VTELLER_REDIS_URL (the queue a "
                                "standby takes over lives there)")
        claim = serving and not (settings.standby or settings.share_queue)
        router = make_router(settings.routing, settings.redis_url, settings.redis_prefix,
                             node=str(node) if claim else None,
                             lease_s=settings.node_lease_s)
    except RoutingUnavailable as exc:
        raise SettingsError(f"VTELLER_REDIS_URL: {exc}") from None
    except PrefixTaken as exc:
        raise SettingsError(f"VTELLER_REDIS_PREFIX: {exc}; one active node per prefix "
                            "(VTELLER_STANDBY=true waits to take over from it)") from None
    except ValueError as exc:  # a malformed URL
        raise SettingsError(f"VTELLER_REDIS_URL: {exc}") from None
    return Components(
        settings=settings,
        store=store,
        staff=StaffAuth(store, login_limiter(settings, store), settings.staff_session_ttl_s),
        customers=customer_verifier(settings, dev_issuer, store) if serving else None,  # type: ignore[arg-type]
        dev_issuer=dev_issuer,
        metrics=Metrics(node=str(node)),
        kek=kek,
        trail=trail,
        blobs=blobs,
        identity=identity,
        access=AccessLog(store, signer),
        router=router,
        node=node,
    )


def login_limiter(settings: Settings, store: Store) -> LoginLimiter:
    """On PostgreSQL (several nodes may share it) login attempts are counted in the
    database, so every node sees them; the embedded SQLite file has one process."""
    if store.dialect == "postgres":
        return SharedLoginLimiter(store, settings.login_max_failures, settings.login_window_s)
    return LocalLoginLimiter(settings.login_max_failures, settings.login_window_s)


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
    native.use(settings.native_forwarding)

    def node_load() -> dict[str, object]:
        if c.manager is None:
            return {"role": "standby"}
        return {"role": "draining" if c.manager.draining else "active", **c.manager.load()}

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        lease = NodeLease(c.store, c.node, settings.node_lease_s, load=node_load,
                          on_lost=lambda: os.kill(os.getpid(), signal.SIGTERM))
        await lease.start()  # before any session is opened: they are owned by this node
        if settings.standby:  # not listening yet: the load balancer sends nobody here
            from vteller.routing.redis_store import RedisRouter

            assert isinstance(c.router, RedisRouter)
            print(f"standby: waiting for {settings.redis_prefix!r} (held by "
                  f"{c.router.holder()})", flush=True)
            await asyncio.to_thread(c.router.wait_claim, str(c.node), settings.node_lease_s)
            log.warning("standby_took_over", prefix=settings.redis_prefix)
        sweeper = SessionSweeper(c.store, c.trail, c.blobs, c.node, settings.node_lease_s / 2)
        sealed = await asyncio.to_thread(sweeper.at_start)
        if sealed:
            log.warning("sealed_incomplete_sessions", count=len(sealed))
        sweeper.start()
        bank = BankWebhook(settings.bank) if settings.bank.enabled else None
        bus = NodeBus(settings.redis_url, settings.redis_prefix, str(c.node),
                      str(settings.node_url), settings.node_lease_s) \
            if settings.share_queue and settings.redis_url else None
        c.manager = CallManager(settings, c.store, c.metrics, c.kek, c.trail, c.blobs,
                                c.identity, c.router, node=str(c.node), bank=bank, bus=bus)
        c.manager.cluster_view = lease.view
        stats = c.manager.stats  # the last hour's figures survive a restart or failover
        rows = await asyncio.to_thread(c.store.call_outcomes_since, time.time() - stats.window_s)
        stats.restore(rows, time.time(), time.monotonic())
        c.manager.start()
        endpoint._manager = c.manager
        c.metrics.service.source = c.manager.dashboard
        c.metrics.loop_lag.start()
        outbox = OutboxWorker(c.store, settings.bank, str(c.node), c.metrics) \
            if settings.bank.enabled else None
        if outbox is not None:
            outbox.start()
        yield
        if outbox is not None:
            await outbox.stop()
        if bank is not None:
            await bank.close()
        c.metrics.loop_lag.stop()
        await c.manager.shutdown()
        await sweeper.stop()
        await lease.stop()  # after every session of this node is closed
        c.router.close()  # gives up this node's hold on a Redis prefix
        c.identity.close()
        await c.store.purge_sessions()

    endpoint = SignalingEndpoint(settings, None, c.staff, c.customers, c.metrics)  # type: ignore[arg-type]
    setup_routes(app, settings, c.store, c.staff, endpoint, c.metrics, c.dev_issuer,
                 ServiceAuth(c.store), c.identity)
    AuditApi(c.store, c.staff, c.trail, c.kek, c.blobs, c.access,
             send_to_bank=settings.bank.enabled).routes(app)
    spec = openapi.document(settings.dev_mode)

    async def openapi_json(_: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/api/openapi.json", openapi_json)
    async def end_calls(_: web.Application) -> None:
        """Before the server waits for open connections: end the calls and close them."""
        if c.manager is not None:
            await c.manager.shutdown()

    app.on_shutdown.append(end_calls)
    app.cleanup_ctx.append(lifecycle)
    app[APP_KEY] = c
    return app

