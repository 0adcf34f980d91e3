"""Shared fixtures: settings in a temp dir, an in-process server with real TLS, test photos."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import SignalClient, insecure_ssl
from vteller.app import Components, build, create_app
from vteller.auth import StaffAuth
from vteller.config import Settings, load_settings
from vteller.gateway.site import GuardedSite, runner_for
from vteller.tls import ensure_dev_certificates, server_ssl_context

REPO = Path(__file__).resolve().parents[1]
STAFF_PASSWORD = "correct horse battery staple"
TEST_PROFILE = {"skills": {"general": 0.8, "card_issuance_review": 0.7}, "languages": ["en"],
                "certifications": ["elderly_care"], "capability": 0.6}


def stop_process(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM, then SIGKILL if it has not ended within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_run(count: int) -> int:
    """A port p with p .. p + count - 1 all free (`serve --workers` listens on p + i)."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        socks = []
        try:
            for i in range(count):
                s = socket.socket()
                socks.append(s)
                s.bind(("0.0.0.0", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no run of {count} free ports found")


def faces_path() -> Path:
    """Where the shared real face photos are (env VTELLER_TESTDATA overrides it)."""
    return Path(os.environ.get("VTELLER_TESTDATA", REPO.parent / "shared" / "testdata")) / "faces"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The shared real face photos, or the test is skipped."""
    path = faces_path()
    if not (path / "obama.jpg").is_file():
        pytest.skip(f"test photos not found at {path} (set VTELLER_TESTDATA)")
    return path


CHROMIUM = "/usr/bin/chromium"  # Debian's; playwright never downloads a browser here


@pytest.fixture
async def browser(tmp_path, faces_dir):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    from tests.face_frames import write_y4m

    clip = write_y4m(faces_dir / "obama.jpg", tmp_path / "camera.y4m")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
            "--autoplay-policy=no-user-gesture-required",
            "--auto-select-desktop-capture-source=Entire screen"]
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        await b.close()


# The whole suite runs on PostgreSQL when this names a server (a fresh schema per test):
#   VTELLER_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres uv run pytest
PG_URL = os.environ.get("VTELLER_TEST_DATABASE_URL", "")
_pg_schemas: list[str] = []


def postgres_url(base: str = "") -> str:
    """A fresh, migrated schema on the test PostgreSQL server; dropped at session end."""
    import secrets as _secrets

    from vteller.store import db as store_db
    from vteller.store import schema

    base = base or PG_URL or "postgresql://postgres@127.0.0.1:5432/postgres"
    name = "t_" + _secrets.token_hex(6)
    admin = store_db.PostgresDatabase(base, max_size=1)
    admin.execute(f"CREATE SCHEMA {name}")
    admin.close()
    _pg_schemas.append(name)
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"
    database = store_db.PostgresDatabase(url, max_size=1)
    schema.migrate(database)
    database.close()
    return url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _pg_schemas:
        return
    from vteller.store import db as store_db

    admin = store_db.PostgresDatabase(PG_URL or "postgresql://postgres@127.0.0.1:5432/postgres",
                                      max_size=1)
    for name in _pg_schemas:
        admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    admin.close()


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    base = dict(data_dir=tmp / "var", certs_dir=tmp / "certs", kek_dir=tmp / "secrets",
                dev_mode=True, port=free_port(),
                reconnect_grace_s=2.0, ring_timeout_s=5.0, heartbeat_s=5.0)
    if PG_URL and "database_url" not in overrides:
        base["database_url"] = postgres_url()
    base.update(overrides)
    return load_settings(**base)


@dataclass
class RunningServer:
    settings: Settings
    components: Components
    url: str
    ws_url: str

    @property
    def manager(self) -> Any:
        return self.components.manager

    @property
    def database_env(self) -> dict[str, str]:
        """For CLI subprocesses on this server's data."""
        url = self.settings.database_url
        return {"VTELLER_DATABASE_URL": url} if url else {}

    def customer_token(self, customer_id: str = "c-1001", name: str = "Ada Customer",
                       birth_year: int = 1980, **kw: Any) -> str:
        assert self.components.dev_issuer is not None
        return self.components.dev_issuer.issue(customer_id, name, birth_year, **kw)

    def add_staff(self, username: str, role: str = "teller",
                  profile: dict[str, Any] | None = None) -> None:
        self.components.store.add_user(username, username.title(), role,
                                       StaffAuth.hash_password(STAFF_PASSWORD),
                                       profile if profile is not None else TEST_PROFILE)

    async def login(self, username: str) -> dict[str, str]:
        import aiohttp

        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
            r = await s.post(f"{self.url}/api/login",
                             json={"username": username, "password": STAFF_PASSWORD})
            assert r.status == 200, await r.text()
            return {"__Host-vteller_session": r.cookies["__Host-vteller_session"].value}

    async def customer(self, customer_id: str = "c-1001", **kw: Any) -> SignalClient:
        sig = await SignalClient.open(self.ws_url)
        await sig.send({"type": "hello", "token": self.customer_token(customer_id, **kw)})
        await sig.recv("welcome")
        return sig

    async def teller(self, username: str = "teller1", available: bool = True) -> SignalClient:
        if self.components.store.get_user(username) is None:
            self.add_staff(username)
        sig = await SignalClient.open(self.ws_url, cookies=await self.login(username))
        await sig.send({"type": "hello"})
        await sig.recv("welcome")
        if available:
            await sig.request({"type": "teller.status", "status": "available"}, "teller.state",
                              state="available")
        return sig


async def accept_call(teller: SignalClient, customer: SignalClient,
                      **join: Any) -> str:
    """The customer queues, the teller accepts the offer; both got call.started."""
    await customer.send({"type": "queue.join", **join})
    offer = await teller.recv("offer.incoming")
    await teller.send({"type": "offer.accept", "call_id": offer["call_id"]})
    await teller.recv("call.started")
    await customer.recv("call.started")
    return offer["call_id"]


async def end_call(teller: SignalClient, customer: SignalClient) -> None:
    """The customer hangs up and the teller ends wrap-up (the call's session closes)."""
    await customer.send({"type": "call.hangup"})
    await teller.recv("teller.state", state="wrap_up")
    await teller.request({"type": "teller.status", "status": "available"}, "teller.state",
                         state="available")


async def start_server(settings: Settings) -> tuple[web.AppRunner, RunningServer]:
    cert, key, _ = ensure_dev_certificates(settings.certs_dir, ["localhost", "127.0.0.1"])
    components = build(settings)
    app = create_app(settings, components)
    runner = runner_for(app, settings.keepalive_timeout_s)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", settings.port,
                       ssl_context=server_ssl_context(cert, key),
                       header_timeout_s=settings.header_timeout_s,
                       tls_handshake_timeout_s=settings.tls_handshake_timeout_s)
    await site.start()
    base = f"https://127.0.0.1:{settings.port}"
    return runner, RunningServer(settings, components, base, base.replace("https", "wss") + "/ws")


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    marker = request.node.get_closest_marker("settings")
    settings = make_settings(tmp_path, **(marker.kwargs if marker else {}))
    runner, running = await start_server(settings)
    yield running
    await runner.cleanup()
    running.components.store.close()


@pytest.fixture
async def closed_session(server: RunningServer) -> str:
    """A recorded call (real aiortc peers, pre-encoded media) ended, decided and closed."""
    import asyncio

    from tests.helpers import Party

    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-1")
    call_id = await accept_call(teller_sig, cust_sig)
    customer, teller = Party("customer", encoded=True), Party("teller", encoded=True)
    await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
    await teller.wait_frames("video", 30)
    await customer.wait_frames("video", 30)
    await cust_sig.send({"type": "call.hangup"})
    await teller_sig.recv("teller.state", state="wrap_up")
    await teller_sig.send({"type": "review.decide", "decision": "incomplete"})
    await teller_sig.recv("review.recorded")
    await teller_sig.request({"type": "teller.status", "status": "available"}, "teller.state",
                             state="available")
    await server.manager.shutdown_cleanups()
    await server.manager.flush()
    for c in (customer, teller, cust_sig, teller_sig):
        await c.close()
    return call_id


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**kw): settings overrides for the server fixture")
