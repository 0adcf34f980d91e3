"""kill -9 during a recorded call: every track decrypts up to its last flushed segment."""

from __future__ import annotations

import asyncio
import io
import os
import signal

import av
import pytest

from tests.bench.media_relay import PASSWORD, BenchCall
from tests.serve_process import start_serve
from vteller.audit import LocalKeyring, StreamError, WrappedKey, decrypt
from vteller.auth import StaffAuth
from vteller.store import SqliteStore


@pytest.mark.timeout(120)
async def test_kill_9_mid_recording_leaves_decryptable_prefix(tmp_path):
    store = SqliteStore(tmp_path / "var" / "vteller.sqlite3")
    store.add_user("bench0", "Bench", "teller", StaffAuth.hash_password(PASSWORD),
                   {"skills": {"general": 1.0}})
    store.close()
    server = start_serve(tmp_path, "--dev", env={"VTELLER_RECORD_CALLS": "true"})
    call = BenchCall()
    try:
        await call.start(server.url, server.url.replace("https", "wss") + "/ws", 0)
        call.go()
        await asyncio.sleep(5.0)  # > 2 flush periods of recording
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
    finally:
        await call.close()
        if server.proc.poll() is None:
            server.stop()
    store = SqliteStore(tmp_path / "var" / "vteller.sqlite3")
    folders = list((tmp_path / "var" / "recordings").iterdir())
    assert len(folders) == 1
    call_id = folders[0].name
    kek_id, blob = store.session_key(call_id)
    data_key = LocalKeyring(tmp_path / "secrets").unwrap(WrappedKey(kek_id, blob), call_id)
    video = folders[0] / "customer.video.webm.vtenc"
    plain = b""
    with pytest.raises(StreamError) as info, video.open("rb") as fh:
        for chunk in decrypt(fh, lambda _: data_key):
            plain += chunk
    assert info.value.kind == "truncated"  # crash, not tampering
    frames = 0
    with av.open(io.BytesIO(plain)) as container:
        try:
            for _ in container.decode(video=0):
                frames += 1
        except av.error.FFmpegError:
            pass  # the last cluster may be cut mid-way
    assert frames >= 60, frames  # at least ~2 s of the 5 s survived
    store.close()

    # the next start seals the open session; it then verifies, marked incomplete
    again = start_serve(tmp_path, "--dev", env={"VTELLER_RECORD_CALLS": "true"})
    again.stop()
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "vteller", "audit", "verify", call_id], capture_output=True,
        text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "VTELLER_DATA_DIR": str(tmp_path / "var"),
             "VTELLER_KEK_DIR": str(tmp_path / "secrets")})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sealed as incomplete" in out.stdout and "VERIFIED" in out.stdout
