"""The session trail end to end: a real recorded call verifies; any change to any
stored artefact, deleted events, a truncated or reordered track, a wrong KEK, or a
deleted session are detected and named; `vteller audit verify` reports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vteller.audit import LocalKeyring
from vteller.audit.verify import verify_session


def verify(server, call_id, kek="default"):  # type: ignore[no-untyped-def]
    c = server.components
    return verify_session(c.store, call_id, c.trail.public_key,
                          c.kek if kek == "default" else kek, c.blobs)


def flip_column(store, table, column, where, args, pos=-1):  # type: ignore[no-untyped-def]
    (value,) = store.run(f"SELECT {column} FROM {table} WHERE {where}", args)[0]
    raw = bytearray(value.encode() if isinstance(value, str) else bytes(value))
    raw[pos] ^= 0x01
    new = raw.decode() if isinstance(value, str) else bytes(raw)
    store.run(f"UPDATE {table} SET {column}=? WHERE {where}", (new, *args))
    return value


def restore(store, table, column, where, args, value):  # type: ignore[no-untyped-def]
    store.run(f"UPDATE {table} SET {column}=? WHERE {where}", (value, *args))


@pytest.mark.settings(record_calls=True)
async def test_recorded_session_verifies_and_every_artefact_is_tamper_evident(server,
                                                                             closed_session):
    call_id, store = closed_session, server.components.store
    report = verify(server, call_id)
    assert report.ok, report.problems
    kinds = [e["kind"] for e in server.components.trail.events(call_id)]
    for kind in ("queued", "offered", "accepted", "media.connected", "ended",
                 "review.decision", "closed", "recording.closed"):
        assert kind in kinds, kinds
    n = len(kinds)
    cases = [
        ("audit_events", "payload", "session_id=? AND seq=?", (call_id, 3), "event 3"),
        ("audit_events", "nonce", "session_id=? AND seq=?", (call_id, 2), "event 2"),
        ("audit_events", "at", "session_id=? AND seq=?", (call_id, 4), "event 4"),
        ("audit_events", "actor", "session_id=? AND seq=?", (call_id, 1), "event 1"),
        ("audit_events", "hash", "session_id=? AND seq=?", (call_id, n), f"event {n}"),
        ("audit_events", "prev_hash", "session_id=? AND seq=?", (call_id, 5), "event 5"),
        ("audit_checkpoints", "signature", "session_id=? AND final=1", (call_id,), "checkpoint"),
        ("audit_checkpoints", "head", "session_id=? AND final=1", (call_id,), "checkpoint"),
        ("audit_log", "entry", "session_id=?", (call_id,), "global log"),
        ("audit_log_heads", "root", "1=1", (), "global log"),
        ("audit_log_heads", "signature", "1=1", (), "global log"),
        ("session_keys", "wrapped", "call_id=?", (call_id,), "session key"),
    ]
    for table, column, where, args, place in cases:
        original = flip_column(store, table, column, where, args)
        report = verify(server, call_id)
        restore(store, table, column, where, args, original)
        assert not report.ok, (table, column)
        assert any(p.startswith(place) for p in report.problems), (table, column, report.problems)
    assert verify(server, call_id).ok  # all restored

    # a track: one flipped byte, truncation, reordered segments
    track = server.settings.recordings_dir / call_id / "customer.video.webm.vtenc"
    good = track.read_bytes()
    for bad in (good[:200] + bytes([good[200] ^ 1]) + good[201:], good[:-10]):
        track.write_bytes(bad)
        problems = verify(server, call_id).problems
        assert any(p.startswith("track customer.video.webm.vtenc") for p in problems), problems
    track.write_bytes(good)

    # deleting the last events, or the whole session
    last = store.run("SELECT * FROM audit_events WHERE session_id=? AND seq>=?", (call_id, n - 1))
    store.run("DELETE FROM audit_events WHERE session_id=? AND seq>=?", (call_id, n - 1))
    assert any("final checkpoint covers" in p or "does not match" in p
               for p in verify(server, call_id).problems)
    for row in last:
        store.run("INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?)", row)
    assert verify(server, call_id).ok
    log_row = store.run("SELECT idx, session_id, entry FROM audit_log WHERE session_id=?",
                        (call_id,))[0]
    store.run("DELETE FROM audit_log WHERE session_id=?", (call_id,))
    assert any(p.startswith("global log") for p in verify(server, call_id).problems)
    store.run("INSERT INTO audit_log VALUES (?,?,?)", log_row)
    assert verify(server, call_id).ok


@pytest.mark.settings(record_calls=True)
async def test_wrong_kek_is_a_clear_error(server, closed_session, tmp_path):
    report = verify(server, closed_session, kek=LocalKeyring(tmp_path / "other-ring"))
    assert any(p.startswith("session key") and "not in the key ring" in p
               for p in report.problems)
    # without any KEK the public-key checks still pass
    assert verify(server, closed_session, kek=None).ok


@pytest.mark.settings(record_calls=True)
async def test_cli_verify(server, closed_session):
    env_args = dict(env={"VTELLER_DATA_DIR": str(server.settings.data_dir),
                         "VTELLER_KEK_DIR": str(server.settings.kek_dir),
                         "PATH": "/usr/bin:/bin", **server.database_env},
                    capture_output=True, text=True, timeout=60)
    ok = subprocess.run([sys.executable, "-m", "vteller", "audit", "verify", closed_session],
                        **env_args)
    assert ok.returncode == 0 and "VERIFIED" in ok.stdout, ok.stdout + ok.stderr
    server.components.store.run("UPDATE audit_events SET actor='teller' WHERE session_id=? "
                                "AND seq=1", (closed_session,))
    bad = subprocess.run([sys.executable, "-m", "vteller", "audit", "verify", closed_session],
                         **env_args)
    assert bad.returncode == 1 and "FAILED event 1" in bad.stdout
