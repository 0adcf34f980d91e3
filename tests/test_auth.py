"""Staff login over HTTPS: argon2id, cookie flags, rate limit, disabled accounts; tokens."""

from __future__ import annotations

import time

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import STAFF_PASSWORD
from tests.helpers import insecure_ssl
from vteller.auth import AuthError, CustomerTokenVerifier, DevTokenIssuer, LoginRateLimiter


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))  # IP host


async def test_login_sets_hardened_cookie_and_me_works(server):
    server.add_staff("alice", "teller")
    assert server.components.store.get_user("alice").password_hash.startswith("$argon2id$")
    async with session() as s:
        r = await s.post(f"{server.url}/api/login",
                         json={"username": "alice", "password": STAFF_PASSWORD})
        assert r.status == 200
        raw = r.headers["Set-Cookie"]
        for flag in ("HttpOnly", "Secure", "SameSite=Strict"):
            assert flag in raw
        me = await (await s.get(f"{server.url}/api/me")).json()
        assert me == {"username": "alice", "display_name": "Alice", "role": "teller"}
        assert (await s.post(f"{server.url}/api/logout")).status == 200
        assert (await s.get(f"{server.url}/api/me")).status == 401


async def test_wrong_password_then_rate_limited(server):
    server.add_staff("bob", "teller")
    async with session() as s:
        for _ in range(server.settings.login_max_failures):
            r = await s.post(f"{server.url}/api/login", json={"username": "bob", "password": "x"})
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "login_failed"
        r = await s.post(f"{server.url}/api/login",
                         json={"username": "bob", "password": STAFF_PASSWORD})
        assert r.status == 429 and "Retry-After" in r.headers


async def test_disabled_user_cannot_login_and_sessions_end(server):
    server.add_staff("carol", "auditor")
    cookies = await server.login("carol")
    server.components.store.set_disabled("carol", True)
    async with aiohttp.ClientSession(cookies=cookies,
                                     connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        assert (await s.get(f"{server.url}/api/me")).status == 401
        r = await s.post(f"{server.url}/api/login",
                         json={"username": "carol", "password": STAFF_PASSWORD})
        assert r.status == 401


async def test_malformed_login_and_cross_origin_post(server):
    async with session() as s:
        r = await s.post(f"{server.url}/api/login", data=b"{nope")
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_request"
        r = await s.post(f"{server.url}/api/login", json={"username": "x", "password": "y"},
                         headers={"Origin": "https://evil.example"})
        assert r.status == 403


@pytest.mark.settings(dev_mode=False, customer_token_key_file=None)
async def test_demo_token_only_in_dev_mode(tmp_path):
    from tests.conftest import make_settings, start_server
    from vteller.config import SettingsError

    with pytest.raises(SettingsError, match="CUSTOMER_TOKEN_KEY_FILE"):
        await start_server(make_settings(tmp_path, dev_mode=False))
    # with the bank's public key configured, prod mode starts and has no demo endpoint
    key = ed25519.Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    pub = tmp_path / "bank.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    runner, srv = await start_server(make_settings(tmp_path, dev_mode=False,
                                                   customer_token_key_file=pub))
    try:
        async with session() as s:
            assert (await s.post(f"{srv.url}/api/dev/customer-token", json={})).status == 404
        from tests.helpers import SignalClient

        token = DevTokenIssuer(key, "bank-backend", "vteller").issue("c-7", "Real", 1950)
        sig = await SignalClient.open(srv.ws_url)
        welcome = await sig.request({"type": "hello", "token": token}, "welcome")
        assert welcome["elderly"] is True  # born 1950
        await sig.close()
    finally:
        await runner.cleanup()
        srv.components.store.close()


def test_token_verifier_rejects_algorithm_confusion(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    issuer = DevTokenIssuer(key, "bank", "vteller")
    verifier = CustomerTokenVerifier("EdDSA", key.public_key(), issuer="bank", audience="vteller",
                                     max_ttl_s=900, leeway_s=0)
    claims = verifier.verify(issuer.issue("c-1", "Ann", 1990, segments=("vip",)))
    assert claims.sub == "c-1" and claims.segments == ("vip",)
    hs = CustomerTokenVerifier("HS256", b"s" * 32, issuer="bank", audience="vteller",
                               max_ttl_s=900, leeway_s=0)
    with pytest.raises(AuthError) as info:
        hs.verify(issuer.issue("c-1", "Ann", 1990))
    assert info.value.code == "token_invalid"
    future = issuer.issue("c-1", "Ann", 1990, now=time.time() + 600)
    with pytest.raises(AuthError):
        verifier.verify(future)


def test_rate_limiter_window():
    rl = LoginRateLimiter(max_failures=2, window_s=10)
    rl.failed(["user:u"], now=0)
    assert rl.retry_after(["user:u"], now=1) == 0
    rl.failed(["user:u"], now=1)
    assert rl.retry_after(["user:u"], now=2) == pytest.approx(8)
    assert rl.retry_after(["user:u"], now=11) == 0


def test_rate_limiter_forgets_stale_keys():
    rl = LoginRateLimiter(max_failures=2, window_s=10)
    for i in range(100):
        rl.begin([f"user:guess{i}", f"addr:10.0.0.{i}"], now=float(i) / 100)
    assert len(rl._failures) == 200
    rl.begin(["user:late", "addr:5.6.7.8"], now=100.0)
    assert set(rl._failures) == {"user:late", "addr:5.6.7.8"}
