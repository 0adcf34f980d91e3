"""Auditor console API: roles, verify-before-replay, ranged replay, access log, evidence
bundles verified offline, legal hold and retention purge with tombstones."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile

import aiohttp
import av
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tests.conftest import STAFF_PASSWORD
from tests.helpers import insecure_ssl
from vteller.audit.access import verify as verify_access
from vteller.audit.bundle import verify_bundle
from vteller.audit.retention import RetentionPolicy, purge, verify_tombstone

pytestmark = pytest.mark.settings(record_calls=True)
REASON = {"reason": "complaint 4711: customer disputes the card order"}


async def session_for(server, username: str, role: str, profile=None) -> aiohttp.ClientSession:
    if server.components.store.get_user(username) is None:
        server.add_staff(username, role=role, profile=profile)
    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()),
                              cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1
    r = await s.post(f"{server.url}/api/login",
                     json={"username": username, "password": STAFF_PASSWORD})
    assert r.status == 200
    return s


@pytest.fixture
async def auditor(server):
    s = await session_for(server, "aud1", "auditor", {"permissions": []})
    yield s
    await s.close()


async def test_only_auditors_reach_the_audit_api(server, closed_session):
    sid = closed_session
    calls = [("get", "/api/audit/sessions", None), ("post", f"/api/audit/sessions/{sid}/open",
             REASON), ("get", f"/api/audit/sessions/{sid}/media/customer.video.webm.vtenc", None),
             ("post", f"/api/audit/sessions/{sid}/export", REASON),
             ("post", f"/api/audit/sessions/{sid}/hold", {**REASON, "hold": True}),
             ("get", "/api/audit/access-log", None)]
    anonymous = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl()))
    teller = await session_for(server, "tel9", "teller")
    sup = await session_for(server, "sup9", "supervisor", {})
    try:
        for client, status in ((anonymous, 401), (teller, 403), (sup, 403)):
            for method, path, body in calls:
                r = await getattr(client, method)(f"{server.url}{path}", json=body)
                assert r.status == status, (path, r.status)
        # a customer's token is not a staff session either
        token = server.customer_token("c-1")
        r = await anonymous.get(f"{server.url}/api/audit/sessions",
                                headers={"Authorization": f"Bearer {token}"})
        assert r.status == 401
    finally:
        for c in (anonymous, teller, sup):
            await c.close()
    assert server.components.store.run("SELECT COUNT(*) FROM legal_holds")[0][0] == 0


async def test_search_open_replay_and_access_log(server, closed_session, auditor):
    sid = closed_session
    url = server.url
    r = await auditor.get(f"{url}/api/audit/sessions", params={"teller": "teller1"})
    found = await r.json()
    assert found["total"] == 1 and found["rows"][0]["session_id"] == sid
    assert found["rows"][0]["decision"] == "incomplete"
    r = await auditor.get(f"{url}/api/audit/sessions", params={"flag": "liveness_failed"})
    assert (await r.json())["total"] == 0
    r = await auditor.get(f"{url}/api/audit/sessions", params={"flag": "bogus"})
    assert r.status == 400

    # replay needs an opening with a reason
    r = await auditor.get(f"{url}/api/audit/sessions/{sid}/media/customer.video.webm.vtenc")
    assert r.status == 403
    r = await auditor.post(f"{url}/api/audit/sessions/{sid}/open", json={"reason": "x"})
    assert r.status == 400
    r = await auditor.post(f"{url}/api/audit/sessions/{sid}/open", json=REASON)
    opened = await r.json()
    assert opened["verification"]["ok"], opened["verification"]
    kinds = [e["kind"] for e in opened["events"]]
    assert "accepted" in kinds and "review.decision" in kinds
    video = next(t for t in opened["tracks"] if t["name"] == "customer.video.webm.vtenc")
    assert video["starts_at"] is not None
    media = f"{url}/api/audit/sessions/{sid}/media/{video['name']}"
    full = await auditor.get(media, params={"grant": opened["grant"]})
    body = await full.read()
    assert full.status == 200 and full.headers["Accept-Ranges"] == "bytes"
    part = await auditor.get(media, params={"grant": opened["grant"]},
                             headers={"Range": "bytes=100-199"})
    assert part.status == 206 and await part.read() == body[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
    with av.open(io.BytesIO(body)) as container:  # decrypted, remuxed, seekable WebM
        frames = sum(1 for _ in container.decode(video=0))
        assert frames >= 30
        container.seek(0)
    assert not any(p.suffix == ".webm" for p in server.settings.data_dir.rglob("*"))
    # a grant is bound to its auditor
    other = await session_for(server, "aud2", "auditor")
    r = await other.get(media, params={"grant": opened["grant"]})
    assert r.status == 403
    await other.close()

    # access log: search, open, replay recorded; separate permission to read it
    r = await auditor.get(f"{url}/api/audit/access-log")
    assert r.status == 403
    lead = await session_for(server, "lead1", "auditor", {"permissions": ["review_access"]})
    r = await lead.get(f"{url}/api/audit/access-log", params={"session": sid})
    log = await r.json()
    await lead.close()
    assert log["verification"]["ok"]
    actions = [(e["user"], e["action"], e["reason"]) for e in log["entries"]]
    assert ("aud1", "open", REASON["reason"]) in actions
    assert ("aud1", "replay", REASON["reason"]) in actions
    assert sum(a == "replay" for _, a, _ in actions) == 1  # once per opening, not per range
    c = server.components
    searches = c.access.entries(50)
    assert any(e["action"] == "search" and e["detail"]["query"] == {"teller": "teller1"}
               for e in searches)
    # the access log is tamper-evident
    c.store.run("UPDATE access_log SET reason='nothing to see' WHERE action='open'")
    assert not verify_access(c.store, c.trail.public_key).ok


async def test_tampered_session_opens_as_failed(server, closed_session, auditor):
    sid = closed_session
    path = server.components.blobs._path(f"{sid}/teller.audio.webm.vtenc")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    r = await auditor.post(f"{server.url}/api/audit/sessions/{sid}/open", json=REASON)
    opened = await r.json()
    assert not opened["verification"]["ok"]
    assert any("teller.audio" in p for p in opened["verification"]["problems"])


async def test_bundle_verifies_offline_and_fails_after_any_change(server, closed_session,
                                                                   auditor, tmp_path):
    sid = closed_session
    r = await auditor.post(f"{server.url}/api/audit/sessions/{sid}/export", json=REASON)
    assert r.status == 200 and r.content_type == "application/zip"
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(await r.read())
    pinned = server.components.trail.public_key
    report = verify_bundle(str(bundle), pinned)
    assert report.ok, report.problems
    names = zipfile.ZipFile(bundle).namelist()
    assert "plain/customer.video.webm" in names and "plain/events.json" in names
    for victim in ("records.json", "log.json", "tracks/customer.video.webm.vtenc",
                   "plain/events.json", "plain/customer.video.webm"):
        changed = tmp_path / f"changed-{victim.replace('/', '_')}"
        with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(changed, "w") as dst:
            for item in src.namelist():
                data = src.read(item)
                if item == victim:
                    data = bytearray(data)
                    data[len(data) // 2] ^= 0x01
                    data = bytes(data)
                dst.writestr(item, data)
        assert not verify_bundle(str(changed), pinned).ok, victim

    # encrypted to a recipient: no plain copies; integrity without the key, contents with it
    recipient = X25519PrivateKey.generate()
    pem = recipient.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    r = await auditor.post(f"{server.url}/api/audit/sessions/{sid}/export",
                           json={**REASON, "recipient_public_key": pem.decode()})
    sealed = tmp_path / "sealed.zip"
    sealed.write_bytes(await r.read())
    assert not any(n.startswith("plain/") for n in zipfile.ZipFile(sealed).namelist())
    assert verify_bundle(str(sealed), pinned).ok
    full = verify_bundle(str(sealed), pinned, recipient)
    assert full.ok and "contents decrypted and compared" in full.checked
    assert not verify_bundle(str(sealed), pinned, X25519PrivateKey.generate()).ok


async def test_purge_respects_hold_and_leaves_a_tombstone(server, closed_session,
                                                          auditor):
    sid = closed_session
    c = server.components
    c.store.run("UPDATE calls SET ended_at=? WHERE call_id=?", (time.time() - 6 * 365 * 86400,
                                                               sid))
    r = await auditor.post(f"{server.url}/api/audit/sessions/{sid}/hold",
                           json={**REASON, "hold": True})
    assert (await r.json())["legal_hold"] is True
    policy = RetentionPolicy()
    assert await asyncio.to_thread(purge, c.store, c.trail, c.blobs, policy) == []
    assert c.blobs.list(sid)
    await auditor.post(f"{server.url}/api/audit/sessions/{sid}/hold",
                       json={**REASON, "hold": False})
    # a longer retention for this business type keeps it
    keep = RetentionPolicy(years_by_business_type={"general": 10})
    assert await asyncio.to_thread(purge, c.store, c.trail, c.blobs, keep) == []
    purged = await asyncio.to_thread(purge, c.store, c.trail, c.blobs, policy)
    assert [p.session_id for p in purged] == [sid]
    assert c.blobs.list(sid) == [] and c.store.session_key(sid) is None
    ok, what = verify_tombstone(c.store, sid, c.trail.public_key)
    assert ok and "retention" in what
    r = await auditor.post(f"{server.url}/api/audit/sessions/{sid}/open", json=REASON)
    opened = await r.json()
    assert opened["purged"] and opened["verification"]["ok"]
    actions = [e["action"] for e in c.access.entries(50, sid)]
    assert "hold.set" in actions and "hold.clear" in actions
    # the tombstone is bound into the signed log: removing it is detected
    for idx, _sid, entry in c.store.log_entries():
        if b"tombstone" in bytes(entry):
            c.store.run("DELETE FROM audit_log WHERE idx=?", (idx,))
    assert not verify_tombstone(c.store, sid, c.trail.public_key)[0]


async def test_cli_export_verify_bundle_hold_and_purge(server, closed_session, tmp_path):
    import subprocess
    import sys

    sid = closed_session
    env = {"VTELLER_DATA_DIR": str(server.settings.data_dir),
           "VTELLER_KEK_DIR": str(server.settings.kek_dir), "PATH": "/usr/bin:/bin",
           **server.database_env}

    def vteller(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vteller", "audit", *args], env=env,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    assert vteller("recipient-key", "inspector.key").returncode == 0
    out = vteller("export", sid, "--reason", "regulator request R-9",
                  "--recipient", "inspector.key.pub", "--out", "b.zip")
    assert out.returncode == 0, out.stderr
    pem = tmp_path / "server.pem"
    pem.write_bytes(server.components.trail.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    ok = vteller("verify-bundle", "b.zip", "--public-key", str(pem),
                 "--private-key", "inspector.key")
    assert ok.returncode == 0 and "VERIFIED" in ok.stdout, ok.stdout
    other = X25519PrivateKey.generate()
    (tmp_path / "other.pem").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    wrong = vteller("verify-bundle", "b.zip", "--private-key", "other.pem")
    assert wrong.returncode == 1 and "cannot unwrap" in wrong.stdout
    server.components.store.run("UPDATE calls SET ended_at=0 WHERE call_id=?", (sid,))
    assert vteller("hold", sid, "--reason", "litigation L-1").returncode == 0
    assert "0 session(s) due" in vteller("purge", "--dry-run").stdout
    assert vteller("hold", sid, "--clear", "--reason", "litigation closed").returncode == 0
    assert "would purge " + sid in vteller("purge", "--dry-run").stdout
    assert "purged " + sid in vteller("purge").stdout
    assert verify_tombstone(server.components.store, sid, server.components.trail.public_key)[0]
    actions = [e["action"] for e in server.components.access.entries(20, sid)]
    assert {"export", "hold.set", "hold.clear", "purge"} <= set(actions)
