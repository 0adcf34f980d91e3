"""Findings of the security and reliability review (issue 16), one test each; every
test failed before its fix."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.conftest import STAFF_PASSWORD
from tests.helpers import SignalClient, insecure_ssl


def dump_all(store) -> str:  # type: ignore[no-untyped-def]
    """Every row of every table as text (bytes as latin-1), on either engine."""
    if store.dialect == "sqlite":
        tables = [r[0] for r in store.run("SELECT name FROM sqlite_master WHERE type='table'")]
    else:
        tables = [r[0] for r in store.run("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = current_schema()")]
    out = []
    for table in tables:
        for row in store.run(f"SELECT * FROM {table}"):
            out.append(" ".join(bytes(v).decode("latin-1") if isinstance(v, (bytes, memoryview))
                                else str(v) for v in row))
    return "\n".join(out)


def http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl(), limit=200))


# 1. concurrent guesses are limited like sequential ones; hashing never stalls storage
async def test_concurrent_guesses_are_rate_limited(server):
    server.add_staff("victim")
    async with http() as s:
        async def attempt(password: str) -> aiohttp.ClientResponse:
            r = await s.post(f"{server.url}/api/login",
                             json={"username": "victim", "password": password})
            await r.read()
            return r
        results = await asyncio.gather(*[attempt(f"wrong guess {i:04d}") for i in range(29)],
                                       attempt(STAFF_PASSWORD))
    statuses = [r.status for r in results]
    assert statuses.count(429) >= 24, statuses  # 5 failures per window, counted up front
    assert statuses.count(200) <= 1
    limited = next(r for r in results if r.status == 429)
    body = await limited.json()
    retry = int(limited.headers["Retry-After"])
    assert f"retry in {retry} s" in body["error"]["message"]  # header and text agree


async def test_a_login_burst_leaves_the_database_responsive(server):
    async with http() as s:
        async def attempt(i: int) -> int:
            r = await s.post(f"{server.url}/api/login",
                             json={"username": f"nobody{i}", "password": "not the password"})
            await r.read()
            return r.status

        async def ready() -> float:
            started = time.monotonic()
            r = await s.get(f"{server.url}/readyz")
            assert r.status == 200, await r.text()
            return time.monotonic() - started

        burst = asyncio.gather(*[attempt(i) for i in range(60)])
        await asyncio.sleep(0.05)
        waits = [await ready() for _ in range(5)]
        statuses = await burst
    assert 429 in statuses, statuses  # the hashing pool is bounded
    assert max(waits) < 1.0, waits


# 2. revoking a staff member reaches their live connection
@pytest.mark.settings(staff_recheck_s=0.3)
async def test_disabling_a_teller_closes_their_connection_and_resume(server):
    teller = await server.teller("teller1")  # available
    # a second connection of the same teller takes the session over (and its secret)
    resume_probe = await SignalClient.open(server.ws_url, cookies=await server.login("teller1"))
    welcome = await resume_probe.request({"type": "hello"}, "welcome")
    welcome_resume = welcome["resume"]
    assert welcome["state"]["teller_state"] == "available"
    assert server.components.store.set_disabled("teller1", True)  # what `users disable` does
    await asyncio.wait_for(resume_probe.closed.wait(), 5)
    assert server.manager.router.teller("teller1") is None or \
        server.manager.router.teller("teller1").state.value == "offline"
    customer = await server.customer("c-77")
    await customer.send({"type": "queue.join"})
    with pytest.raises((TimeoutError, ConnectionError)):
        await resume_probe.recv("offer.incoming", timeout=1.0)
    # the old resume secret with no cookie: refused
    again = await SignalClient.open(server.ws_url)
    await again.send({"type": "hello", "resume": welcome_resume})
    err = await again.recv("error")
    assert err["code"] in ("resume_failed", "unauthenticated"), err
    for c in (teller, customer, again):
        await c.close()


async def test_logout_closes_the_staff_connection_at_once(server):
    server.add_staff("teller2")
    cookies = await server.login("teller2")
    sig = await SignalClient.open(server.ws_url, cookies=cookies)
    welcome = await sig.request({"type": "hello"}, "welcome")
    async with aiohttp.ClientSession(cookies=cookies,
                                     connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        r = await s.post(f"{server.url}/api/logout", headers={"Origin": server.url.replace(
            "127.0.0.1", "localhost")})
        assert r.status == 200, await r.text()
    await asyncio.wait_for(sig.closed.wait(), 2)
    probe = await SignalClient.open(server.ws_url, cookies=cookies)
    await probe.send({"type": "hello", "resume": welcome["resume"]})
    assert (await probe.recv("error"))["code"] == "resume_failed"
    await probe.close()
    await sig.close()


# 3. purge leaves nothing that identifies the customer; the chains still verify
async def test_purge_removes_customer_id_notes_and_searched_ids(server):
    from tests.conftest import accept_call
    from vteller.audit.access import verify as verify_access
    from vteller.audit.retention import RetentionPolicy, purge, verify_tombstone

    c = server.components
    teller = await server.teller("teller1")
    customer = await server.customer("cust-4711")
    call_id = await accept_call(teller, customer)
    await customer.send({"type": "call.hangup"})
    await teller.recv("teller.state", state="wrap_up")
    await customer.recv("call.ended")  # the survey's comment names the customer too
    await customer.send({"type": "survey.submit", "call_id": call_id, "score": 3,
                         "comment": "this is cust-4711, I lost the card"})
    await customer.recv("survey.recorded")
    notes = "customer cust-4711 lost the card at the station"
    await teller.send({"type": "review.decide", "decision": "incomplete", "notes": notes})
    await teller.recv("review.recorded")
    await teller.request({"type": "teller.status", "status": "available"}, "teller.state",
                         state="available")
    await server.manager.shutdown_cleanups()
    await server.manager.flush()
    stored_notes = c.store.run("SELECT notes FROM decisions WHERE call_id=?", (call_id,))[0][0]
    assert "cust-4711" not in stored_notes and stored_notes.startswith("enc:")
    # an auditor searches for the customer: the access log keeps a pseudonym only
    server.add_staff("aud1", role="auditor", profile={"permissions": []})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        r = await s.post(f"{server.url}/api/login",
                         json={"username": "aud1", "password": STAFF_PASSWORD})
        assert r.status == 200
        r = await s.get(f"{server.url}/api/audit/sessions",
                        params={"customer": "cust-4711", "reason": "complaint 1"})
        assert (await r.json())["total"] == 1
    c.store.run("UPDATE calls SET ended_at=? WHERE call_id=?",
                (time.time() - 6 * 365 * 86400, call_id))
    assert [p.session_id for p in purge(c.store, c.trail, c.blobs, RetentionPolicy())] == [
        call_id]
    dump = dump_all(c.store)  # every table, every row
    assert "cust-4711" not in dump
    assert "lost the card" not in dump
    assert verify_access(c.store, c.trail.public_key).ok
    assert verify_tombstone(c.store, call_id, c.trail.public_key)[0]
    for sig in (teller, customer):
        await sig.close()


# 4. a customer token opens one connection: a copy cannot take over the call
async def test_a_reused_customer_token_cannot_take_over(server):
    token = server.customer_token("c-take")
    real = await SignalClient.open(server.ws_url)
    await real.request({"type": "hello", "token": token}, "welcome")
    thief = await SignalClient.open(server.ws_url)
    await thief.send({"type": "hello", "token": token})
    assert (await thief.recv("error"))["code"] == "token_reused"
    pong = await real.request({"type": "ping"}, "pong")  # the real customer is still on
    assert pong["type"] == "pong"
    for sig in (real, thief):
        await sig.close()


# 5. legal hold: separation of duties; unknown sessions
async def test_legal_hold_needs_the_setter_or_a_lead_to_clear(server):
    from tests.conftest import accept_call

    teller = await server.teller("teller1")
    customer = await server.customer("c-hold")
    call_id = await accept_call(teller, customer)
    await server.manager.flush()
    sessions = {}
    for name, perms in (("aud1", []), ("aud2", []), ("lead1", ["review_access"])):
        server.add_staff(name, role="auditor", profile={"permissions": perms})
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                  cookie_jar=aiohttp.CookieJar(unsafe=True))
        r = await s.post(f"{server.url}/api/login",
                         json={"username": name, "password": STAFF_PASSWORD})
        assert r.status == 200
        sessions[name] = s
    url = f"{server.url}/api/audit/sessions/{call_id}/hold"
    body = {"reason": "litigation 2026-17", "hold": True}
    assert (await sessions["aud1"].post(url, json=body)).status == 200
    clear = {**body, "hold": False}
    assert (await sessions["aud2"].post(url, json=clear)).status == 403
    assert (await sessions["lead1"].post(url, json=clear)).status == 200
    missing = f"{server.url}/api/audit/sessions/no-such-session/hold"
    assert (await sessions["aud1"].post(missing, json=body)).status == 404
    for s in sessions.values():
        await s.close()
    for sig in (teller, customer):
        await sig.close()


# 6. errors that tore connections down or answered 500
async def test_malformed_messages_get_typed_errors_and_the_connection_lives(server):
    sig = await SignalClient.open(server.ws_url)
    await sig.send('{"type": "ping", "id": ' + "9" * 60_000 + "}")
    assert (await sig.recv("error"))["code"] in ("bad_json", "too_large")
    await sig.send('{"type": "ping", "id": 1' + "0" * 5000 + "}")  # beyond the digit limit
    assert (await sig.recv("error"))["code"] == "bad_json"
    await sig.send('{"type": "ping", "id": "\\ud800"}')  # a lone surrogate
    err = await sig.recv("error")
    assert err["code"] == "invalid_message" and err["re"] == "ping"
    await sig.send('{"type": "ping", "\\udfff": 1}')  # ... as a field name
    assert (await sig.recv("error"))["code"] == "invalid_message"
    assert (await sig.request({"type": "ping", "id": "still-here"}, "pong"))["type"] == "pong"
    await sig.close()


async def test_bad_search_pages_and_track_names_are_400_or_404(server):
    server.add_staff("aud1", role="auditor", profile={"permissions": []})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await s.post(f"{server.url}/api/login",
                     json={"username": "aud1", "password": STAFF_PASSWORD})
        for page in ("99999999999999999999", "0", "-1", "1e9", "nan"):
            r = await s.get(f"{server.url}/api/audit/sessions", params={"page": page})
            assert r.status == 400, (page, r.status)
        r = await s.get(f"{server.url}/api/audit/sessions", params={"from": "inf"})
        assert r.status == 400
        r = await s.get(f"{server.url}/api/audit/sessions/x/media/a%00b?grant=zz")
        assert r.status in (400, 403, 404), r.status


async def test_an_offer_without_a_fingerprint_is_refused(server):
    from tests.conftest import accept_call
    from tests.helpers import Party

    teller = await server.teller("teller1")
    customer = await server.customer("c-fp")
    await accept_call(teller, customer)
    party = Party("customer", encoded=True)
    await party.pc.setLocalDescription(await party.pc.createOffer())
    sdp = "\r\n".join(line for line in party.pc.localDescription.sdp.split("\r\n")
                      if not line.startswith("a=fingerprint"))
    await customer.send({"type": "webrtc.offer", "sdp": sdp})
    err = await customer.recv("error")
    assert err["code"] == "bad_sdp" and "fingerprint" in err["message"]
    for c in (party, teller, customer):
        await c.close()


# 7. slow and idle connections are closed; unauthenticated sockets are capped
@pytest.mark.settings(hello_timeout_s=0.5, header_timeout_s=0.5, tls_handshake_timeout_s=0.5,
                      max_unauthenticated_per_address=5)
async def test_idle_and_slow_connections_are_closed(server):
    import ssl

    port = server.settings.port
    # a WebSocket that never says hello
    silent = await SignalClient.open(server.ws_url)
    await asyncio.wait_for(silent.closed.wait(), 3)
    assert silent.ws.close_code == 4408
    await silent.close()
    # TCP connected, TLS never started: the server hangs up (EOF) after the timeout
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    assert time.monotonic() - started < 2.0
    writer.close()
    # TLS done, headers trickled
    r2, w2 = await asyncio.open_connection("127.0.0.1", port, ssl=insecure_ssl(),
                                           server_hostname="localhost")
    started = time.monotonic()
    w2.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed = False
    while time.monotonic() - started < 3:
        w2.write(b"X-Slow: 1\r\n")
        try:
            await w2.drain()
            data = await asyncio.wait_for(r2.read(100), 0.2)
            if data == b"":
                closed = True
                break
        except (TimeoutError, ConnectionError, ssl.SSLError):
            if w2.transport.is_closing():
                closed = True
                break
    assert closed and time.monotonic() - started < 2.0
    w2.close()
    # at most 5 WebSockets from one address before hello
    opened, refused = [], 0
    for _ in range(8):
        try:
            opened.append(await SignalClient.open(server.ws_url))
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429
            refused += 1
    assert len(opened) == 5 and refused == 3
    for sig in opened:
        await sig.close()


# 8. the server never probes addresses a customer names in blocked networks
def test_filter_candidates_drops_blocked_and_hostname_candidates():
    import ipaddress

    from vteller.media.leg import filter_candidates

    sdp = "\r\n".join([
        "v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=candidate:1 1 udp 2130706431 10.255.255.1 5353 typ host",
        "a=candidate:2 1 udp 2130706431 203.0.113.7 40000 typ srflx raddr 0.0.0.0 rport 0",
        "a=candidate:3 1 udp 2130706431 4f1e2d3c.local 40001 typ host",
        "a=candidate:4 1 udp 2130706431 fe80::1 40002 typ host",
        "a=candidate:5 1 udp 21307",
        "a=end-of-candidates", ""])
    blocked = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "fe80::/10")]
    out, dropped = filter_candidates(sdp, blocked)
    assert dropped == 4
    assert "203.0.113.7" in out and "10.255.255.1" not in out and ".local" not in out
    assert filter_candidates(sdp, []) == (sdp, 0)


@pytest.mark.settings(ice_blocked_networks=["10.255.0.0/16"])
async def test_a_blocked_candidate_never_reaches_the_ice_agent(server):
    from tests.conftest import accept_call
    from tests.helpers import Party

    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-ice")
    call_id = await accept_call(teller_sig, cust_sig)
    customer, teller = Party("customer", encoded=True), Party("teller", encoded=True)
    await customer.pc.setLocalDescription(await customer.pc.createOffer())
    lines = customer.pc.localDescription.sdp.split("\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("a=candidate:"))
    lines.insert(at, "a=candidate:99 1 udp 2130706431 10.255.255.1 5353 typ host")
    answer = await cust_sig.request({"type": "webrtc.offer", "sdp": "\r\n".join(lines)},
                                    "webrtc.answer")
    from aiortc import RTCSessionDescription

    await customer.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await teller.negotiate(teller_sig)
    await teller.wait_frames("video", 10)  # the call works on the other candidates
    leg = server.manager.calls[call_id].legs["customer"]
    ice = leg._pc.getTransceivers()[0].receiver.transport.transport
    remote = [c.ip for c in ice.getRemoteCandidates()]
    assert remote and "10.255.255.1" not in remote
    for c in (customer, teller, cust_sig, teller_sig):
        await c.close()


# 9. a production start on a data folder once used in dev mode
def test_dev_leftovers_are_disabled_outside_dev_mode(tmp_path):
    from tests.conftest import make_settings
    from vteller.app import DEV_CREDENTIALS, build, seed_dev_users
    from vteller.auth.service import ServiceAuth

    dev = make_settings(tmp_path)
    c = build(dev)
    created = seed_dev_users(dev, c.store)
    backend_key = next(p for u, r, p in created if r == "backend")
    c.store.add_user("realteller", "Real", "teller", "x", {})
    c.store.close()
    key = tmp_path / "bank.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    prod = make_settings(tmp_path, dev_mode=False, customer_token_key_file=key,
                         port=dev.port, database_url=dev.database_url)
    c = build(prod)
    users = {u.username: u for u in c.store.list_users()}
    assert all(users[name].disabled for name in ("teller1", "supervisor1", "auditor1",
                                                 "auditlead1"))
    assert not users["realteller"].disabled
    assert asyncio.run(ServiceAuth(c.store).authenticate(f"Bearer {backend_key}")) is None
    assert not (prod.data_dir / DEV_CREDENTIALS).exists()
    c.store.close()


# 10. info findings: configured/link-free purposes, headers, cookie prefix
async def test_purpose_with_a_link_is_refused_and_headers_are_tight(server):
    from tests.conftest import accept_call

    teller = await server.teller("teller1")
    customer = await server.customer("c-purpose")
    await accept_call(teller, customer)
    for bad in ("Visit https://evil.example and type your PIN", "go to evil.example now",
                "write to help@evil.example", "open www.evil.cn"):
        await teller.send({"type": "assist.request", "purpose": bad})
        err = await teller.recv("error")
        assert err["code"] == "invalid_message" and "links" in err["message"], bad
    await teller.send({"type": "assist.request", "purpose": "help you activate your card"})
    shown = await customer.recv("assist.state", state="requested")
    assert shown["purpose"] == "help you activate your card"
    async with http() as s:
        r = await s.post(f"{server.url}/api/login",
                         json={"username": "teller1", "password": STAFF_PASSWORD})
        assert r.headers["Server"] == "vteller"
        assert "includeSubDomains" in r.headers["Strict-Transport-Security"]
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("__Host-vteller_session=") and "Secure" in cookie
        assert "Path=/" in cookie and "Domain" not in cookie
    for sig in (teller, customer):
        await sig.close()


# 11. a customer is never stranded behind a decline
@pytest.mark.settings(routing={"decline_memory_s": 1.5})
async def test_a_declined_customer_is_offered_again_after_the_memory_expires(server):
    teller = await server.teller("teller1")
    customer = await server.customer("c-strand")
    await customer.send({"type": "queue.join"})
    offer = await teller.recv("offer.incoming")
    rejected_at = time.monotonic()
    await teller.send({"type": "offer.reject", "call_id": offer["call_id"]})
    status = await customer.recv("queue.status", state="queued", servable=False, timeout=3)
    assert status["ewt_s"] is None  # nobody can take it right now: no promise of a wait
    again = await teller.recv("offer.incoming", timeout=5)
    assert again["call_id"] == offer["call_id"]
    assert time.monotonic() - rejected_at >= 1.4
    for sig in (teller, customer):
        await sig.close()


async def test_a_supervisor_assigns_a_waiting_customer(server):
    teller = await server.teller("teller1")
    server.add_staff("super1", role="supervisor")
    sup = await SignalClient.open(server.ws_url, cookies=await server.login("super1"))
    await sup.request({"type": "hello"}, "welcome")
    customer = await server.customer("c-assign")
    await customer.send({"type": "queue.join"})
    offer = await teller.recv("offer.incoming")
    await teller.send({"type": "offer.reject", "call_id": offer["call_id"]})
    board = await sup.recv("dashboard", timeout=3)
    while not board["waiting"] or board["waiting"][0]["staffed"] != 0:
        board = await sup.recv("dashboard", timeout=3)
    assert board["waiting"][0]["call_id"] == offer["call_id"]
    await sup.send({"type": "supervisor.assign", "call_id": offer["call_id"],
                    "username": "teller1"})
    again = await teller.recv("offer.incoming", timeout=3)
    assert again["call_id"] == offer["call_id"]
    # a customer who is not waiting, a teller who is not available: typed errors
    await sup.send({"type": "supervisor.assign", "call_id": offer["call_id"],
                    "username": "teller1"})
    assert (await sup.recv("error"))["code"] == "wrong_state"
    await customer.send({"type": "supervisor.assign", "call_id": offer["call_id"],
                         "username": "teller1"})
    assert (await customer.recv("error"))["code"] == "forbidden"
    for sig in (teller, customer, sup):
        await sig.close()


def test_access_log_window_and_full_verification(tmp_path):
    import subprocess
    import sys

    from tests.conftest import make_settings
    from vteller.app import build
    from vteller.audit.access import verify

    settings = make_settings(tmp_path)
    c = build(settings, serving=False)
    for i in range(30):
        c.access.record("aud1", "search", None, f"reason {i}", query={})
    public = c.trail.public_key
    assert verify(c.store, public).ok and verify(c.store, public, last=10).entries == 10
    c.store.run("UPDATE access_log SET reason='edited' WHERE seq=5")
    assert verify(c.store, public, last=10).ok  # outside the window shown
    assert not verify(c.store, public).ok
    c.store.run("UPDATE access_log SET reason='edited' WHERE seq=25")
    assert any(p.startswith("entry 25") for p in verify(c.store, public, last=10).problems)
    c.store.close()
    out = subprocess.run([sys.executable, "-m", "vteller", "audit", "verify-access"],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={"PATH": "/usr/bin:/bin", "VTELLER_DATA_DIR": str(settings.data_dir),
                              "VTELLER_KEK_DIR": str(settings.kek_dir),
                              **({"VTELLER_DATABASE_URL": settings.database_url}
                                 if settings.database_url else {})})
    assert out.returncode == 1 and "FAILED entry 5" in out.stdout, out.stdout + out.stderr
