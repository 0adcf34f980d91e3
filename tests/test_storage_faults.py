"""Storage faults with real parts: kill -9 with recordings in object storage, the object
store's network down mid-call, PostgreSQL restarted mid-call, the disk full under the
embedded SQLite. Acknowledged data is never lost; the trail always verifies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import accept_call, make_settings, start_server
from tests.helpers import Party
from tests.s3_server import start_s3
from tests.serve_process import start_serve
from tests.tcp_proxy import TcpProxy
from tests.test_crash_recording import kill_9_mid_call, recorded_losses
from vteller.audit import LocalKeyring
from vteller.audit.keys import unwrap_session_key
from vteller.audit.verify import verify_session
from vteller.store import SqliteStore
from vteller.store.s3 import S3BlobStore, S3Settings


async def consent_round(teller, customer, timeout: float = 10):  # type: ignore[no-untyped-def]
    """Teller asks to see the screen, the customer declines: two acknowledged events."""
    await teller.send({"type": "assist.request", "purpose": "check your card"})
    requested = await customer.recv("assist.state", timeout=timeout)
    assert requested["state"] == "requested", requested
    await customer.send({"type": "assist.respond", "allow": False})
    denied = await teller.recv("assist.state", timeout=timeout, state="denied")
    assert denied["state"] == "denied"
    customer.inbox.clear()
    teller.inbox.clear()


async def end_call_and_verify(server, teller_sig, cust_sig,  # type: ignore[no-untyped-def]
                              call_id: str, timeout: float) -> None:
    """Hang up, decide `incomplete`, end wrap-up so the session closes, then the session
    must verify."""
    await cust_sig.send({"type": "call.hangup"})
    await teller_sig.recv("call.ended", timeout=timeout)
    await teller_sig.send({"type": "review.decide", "decision": "incomplete"})
    await teller_sig.recv("review.recorded", timeout=timeout)
    await teller_sig.request({"type": "teller.status", "status": "available"},
                             "teller.state", state="available")
    await server.manager.shutdown_cleanups()
    await server.manager.flush()
    c = server.components
    report = await asyncio.to_thread(verify_session, c.store, call_id, c.trail.public_key,
                                     c.kek, c.blobs)
    assert report.ok, report.problems


@pytest.fixture(scope="module")
def s3():  # type: ignore[no-untyped-def]
    server = start_s3()
    yield server
    server.stop()


def _s3_env(s3, bucket: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {f"VTELLER_S3__{k.upper()}": v for k, v in s3.settings(bucket).items()}


@pytest.mark.timeout(180)
async def test_kill_9_with_recordings_in_object_storage(tmp_path, s3):
    bucket = s3.new_bucket()
    env = {"VTELLER_RECORD_CALLS": "true", **_s3_env(s3, bucket)}
    call, killed_at = await kill_9_mid_call(tmp_path, env)
    blobs = S3BlobStore(S3Settings(**s3.settings(bucket)))
    store = SqliteStore(tmp_path / "var" / "vteller.sqlite3")
    (call_id,) = [r[0] for r in store.run("SELECT call_id FROM calls")]
    data_key = unwrap_session_key(store, LocalKeyring(tmp_path / "secrets"), call_id)
    store.close()
    losses = recorded_losses(lambda track: blobs.open_read(f"{call_id}/{track}.webm.vtenc"),
                             data_key, call, killed_at)  # type: ignore[arg-type]
    print("lost at kill -9, object storage (s):", {k: round(v, 2) for k, v in losses.items()})
    assert all(loss <= 2.0 for loss in losses.values()), losses
    # the next start seals it from what the bucket holds; it verifies, incomplete
    start_serve(tmp_path, "--dev", env=env).stop()
    out = subprocess.run(
        [sys.executable, "-m", "vteller", "audit", "verify", call_id], capture_output=True,
        text=True, timeout=120, cwd=tmp_path, check=False,
        env={"PATH": "/usr/bin:/bin", "VTELLER_DATA_DIR": str(tmp_path / "var"),
             "VTELLER_KEK_DIR": str(tmp_path / "secrets"), **_s3_env(s3, bucket)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sealed as incomplete" in out.stdout and "VERIFIED" in out.stdout
    assert "testing-secret-key" not in out.stdout + out.stderr


@pytest.mark.timeout(180)
async def test_object_store_outage_mid_call_is_bounded_and_sealed_incomplete(tmp_path, s3):
    bucket = s3.new_bucket()
    proxy = TcpProxy(s3.port)
    settings = make_settings(tmp_path, record_calls=True, s3={
        **s3.settings(bucket), "endpoint_url": f"http://127.0.0.1:{proxy.port}",
        "max_buffer_bytes": 256 << 10})
    runner, server = await start_server(settings)
    try:
        teller_sig = await server.teller("teller1")
        cust_sig = await server.customer("c-s3")
        call_id = await accept_call(teller_sig, cust_sig)
        customer, teller = Party("customer", encoded=True), Party("teller", encoded=True)
        await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
        await teller.wait_frames("video", 30)
        await asyncio.sleep(2.0)  # some of the recording is stored
        proxy.down()
        before = teller.received["video"]
        await asyncio.sleep(4.0)  # the call goes on; recordings buffer, then stop
        assert teller.received["video"] - before > 60  # media kept flowing
        await cust_sig.send({"type": "call.hangup"})
        await teller_sig.recv("call.ended", timeout=15)
        await asyncio.sleep(1.0)
        proxy.up()  # storage back: the session is sealed from what was stored
        deadline = time.monotonic() + 30
        while server.components.trail.is_open(call_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert not server.components.trail.is_open(call_id)
        c = server.components
        report = await asyncio.to_thread(verify_session, c.store, call_id, c.trail.public_key,
                                         c.kek, c.blobs)
        assert report.ok and report.incomplete, report.problems
        kinds = [e["kind"] for e in c.trail.events(call_id)]
        assert "recording.failed" in kinds and "session.sealed_incomplete" in kinds
        assert "incomplete" in c.store.call_flags(call_id)
        for p in (customer, teller, cust_sig, teller_sig):
            await p.close()
    finally:
        proxy.up()
        await runner.cleanup()
        server.components.store.close()
        proxy.close()


@pytest.mark.timeout(180)
async def test_postgres_restart_mid_call_loses_nothing_acknowledged(tmp_path):
    from tests.test_store_contract import _need_postgres

    _need_postgres()
    if not os.path.isdir("/etc/postgresql"):
        pytest.skip("no local PostgreSQL cluster to restart")
    version = max(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])
    from tests.conftest import postgres_url

    settings = make_settings(tmp_path, record_calls=True, database_url=postgres_url())
    runner, server = await start_server(settings)
    try:
        teller_sig = await server.teller("teller1")
        cust_sig = await server.customer("c-pg")
        call_id = await accept_call(teller_sig, cust_sig)
        acked = 0
        for _ in range(3):  # consent steps are acknowledged after their events are durable
            await consent_round(teller_sig, cust_sig)
            acked += 2
        restart = await asyncio.to_thread(  # the server keeps running meanwhile
            subprocess.run, ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main",
                             "restart"], capture_output=True, text=True, timeout=60,
            check=False)
        assert restart.returncode == 0, restart.stderr
        # after the restart the pool reconnects; actions are recorded again
        deadline = time.monotonic() + 20
        answered = False
        while time.monotonic() < deadline and not answered:
            try:
                await consent_round(teller_sig, cust_sig, timeout=3)
                answered = True
            except (TimeoutError, AssertionError):
                await asyncio.sleep(0.5)  # refused with a typed error while it was down
        assert answered
        await end_call_and_verify(server, teller_sig, cust_sig, call_id, timeout=15)
        c = server.components
        consent = [e for e in c.trail.events(call_id) if e["kind"].startswith("consent.")]
        assert len(consent) >= acked + 2  # every acknowledged step, and the later round
        for sig in (cust_sig, teller_sig):
            await sig.close()
    finally:
        await runner.cleanup()
        server.components.store.close()


@pytest.mark.timeout(120)
async def test_disk_full_under_sqlite_is_a_clear_error_and_the_trail_verifies(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        settings = make_settings(mount, database_url=None)
        runner, server = await start_server(settings)
        try:
            teller_sig = await server.teller("teller1")
            cust_sig = await server.customer("c-full")
            call_id = await accept_call(teller_sig, cust_sig)
            await server.manager.flush()
            filler = mount / "filler"
            with filler.open("wb") as fh:  # the disk fills up (another program, a log)
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                        fh.flush()
                except OSError:
                    pass
            await teller_sig.send({"type": "assist.request", "purpose": "check your card"})
            err = await teller_sig.recv("error", timeout=10)
            assert err["code"] == "storage_unavailable", err
            filler.unlink()  # space again: the call goes on and closes cleanly
            await teller_sig.send({"type": "assist.stop"})  # what memory had applied
            await teller_sig.recv("assist.state", timeout=10, state="stopped")
            cust_sig.inbox.clear()
            await consent_round(teller_sig, cust_sig)
            await end_call_and_verify(server, teller_sig, cust_sig, call_id, timeout=10)
            for sig in (cust_sig, teller_sig):
                await sig.close()
        finally:
            await runner.cleanup()
            server.components.store.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
