"""The tamper campaign as a property: every single change to any stored artefact of a
closed session (each byte of its log entry, checkpoints and the latest tree head, a
sample of event rows, each integer column) is reported as FAILED with its place; none
crashes verify; none makes start-up sealing touch the closed session. Bundles get the
same sweep through `verify_bundle`."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from vteller.audit import LocalKeyring, StreamWriter, new_data_key
from vteller.audit.bundle import export_bundle, verify_bundle
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.audit.verify import verify_session
from vteller.store import FileBlobStore, IntegrityError, SqliteStore

SESSION = "c-tamper"
OTHER = "c-other"  # closed earlier: the log has more than one entry and head


class Audit:
    def __init__(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        self.store = SqliteStore(tmp_path / "vteller.sqlite3")
        self.kek = LocalKeyring(tmp_path / "secrets")
        self.blobs = FileBlobStore(tmp_path / "recordings")
        self.signer = load_or_create_signing_key(tmp_path / "secrets")
        self.trail = AuditTrail(self.store, self.kek, self.signer, checkpoint_every=3)

    def record(self, session_id: str, events: int, tracks: dict[str, bytes]) -> None:
        key = new_data_key()
        self.trail.open_session(session_id, key, self.kek.wrap(key, session_id))
        for i in range(events):
            self.trail.append(session_id, "teller" if i % 2 else "customer", f"step.{i}",
                              {"i": i, "note": "x" * i})
        digests = {}
        for name, data in tracks.items():
            with self.blobs.open_write(f"{session_id}/{name}") as fh:
                writer = StreamWriter(fh, key, self.kek.current_id, segment_max=1024)
                writer.write(data)
                digests[name] = writer.close()
        self.trail.close_session(session_id, digests)

    def verify(self, kek: bool = True):  # type: ignore[no-untyped-def]
        return verify_session(self.store, SESSION, self.signer.public_key(),
                              self.kek if kek else None, self.blobs)

    def untouched_by_sealing(self) -> bool:
        """Would a restart seal a closed session? (a fresh trail: nothing open here).
        A change that moves rows to a made-up session may make that one a candidate;
        it has no data key, so sealing skips it (tested below)."""
        fresh = AuditTrail(self.store, self.kek, self.signer)
        return not {SESSION, OTHER} & set(fresh.sessions_to_seal())


@pytest.fixture
def audit(tmp_path):  # type: ignore[no-untyped-def]
    a = Audit(tmp_path)
    a.record(OTHER, 2, {})
    a.record(SESSION, 7, {"customer.audio.webm.vtenc": b"a" * 3000,
                          "customer.video.webm.vtenc": b"v" * 5000})
    assert a.verify().ok, a.verify().problems
    assert a.untouched_by_sealing()
    yield a
    a.store.close()


def byte_variants(value: object) -> list[object]:
    """Single-byte changes of a stored value: each byte XOR 0x01 (a letter becomes
    another, a digit another digit) and XOR 0x80 on every fourth byte (text stops being
    UTF-8 and is then stored as a BLOB: a type change)."""
    raw = value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]
    out: list[object] = []
    for i in range(len(raw)):
        for mask in (0x01, 0x80) if i % 4 == 0 else (0x01,):
            changed = bytearray(raw)
            changed[i] ^= mask
            if isinstance(value, str):
                try:
                    out.append(changed.decode())
                except UnicodeDecodeError:
                    out.append(bytes(changed))
            else:
                out.append(bytes(changed))
    return out


def int_variants(value: int) -> list[object]:
    return [v for v in (value + 1, value - 1, 2, -1, 10**12, str(value), f"{value}.0",
                        float(value) + 0.5, bytes([value % 256])) if v != value]


def sweep(audit: Audit, table: str, key_cols: tuple[str, ...], key: tuple[object, ...],
          places: tuple[str, ...]) -> int:
    """Apply every variant of every column of one row; returns how many were applied."""
    store = audit.store
    where = " AND ".join(f"{c}=?" for c in key_cols)
    cols = [r[1] for r in store.run(f"PRAGMA table_info({table})")]
    (row,) = store.run(f"SELECT {', '.join(cols)} FROM {table} WHERE {where}", key)
    applied = 0
    for col, value in zip(cols, row, strict=True):
        variants = int_variants(value) if type(value) is int else byte_variants(value)
        for bad in variants:
            try:
                store.run(f"UPDATE {table} SET {col}=? WHERE {where}", (bad, *key))
            except IntegrityError:
                continue  # not a state the database can hold
            changed_key = tuple(bad if c == col else k for c, k in zip(key_cols, key,
                                                                       strict=True))
            stored = store.run(f"SELECT {col} FROM {table} WHERE "
                               + " AND ".join(f"{c}=?" for c in key_cols), changed_key)
            if stored and type(stored[0][0]) is type(value) and stored[0][0] == value:
                continue  # column affinity turned it back into the same value ('2' -> 2)
            try:
                report = audit.verify()
                sealed_ok = audit.untouched_by_sealing()
            finally:
                store.run(f"UPDATE {table} SET {col}=? WHERE "
                          + " AND ".join(f"{c}=?" for c in key_cols), (value, *changed_key))
            applied += 1
            assert not report.ok, (table, col, bad)
            assert any(p.startswith(places) for p in report.problems), \
                (table, col, bad, report.problems)
            assert sealed_ok, (table, col, bad)
    assert audit.verify().ok  # every change was undone
    return applied


def test_every_single_change_to_the_log_entry_checkpoints_and_head_fails(audit):
    store = audit.store
    (idx,) = store.run("SELECT idx FROM audit_log WHERE session_id=?", (SESSION,))[0]
    n = sweep(audit, "audit_log", ("idx",), (idx,), ("global log",))
    checkpoints = [s for (s,) in store.run(
        "SELECT seq FROM audit_checkpoints WHERE session_id=? ORDER BY seq", (SESSION,))]
    assert len(checkpoints) >= 3  # every 3 events and the final one
    for seq in checkpoints:
        n += sweep(audit, "audit_checkpoints", ("session_id", "seq"), (SESSION, seq),
                   ("checkpoint", "checkpoints"))
    (size,) = store.run("SELECT MAX(size) FROM audit_log_heads")[0]
    n += sweep(audit, "audit_log_heads", ("size",), (size,), ("global log",))
    print(f"log entry, checkpoints and tree head: {n} single changes, all FAILED")
    assert n > 1000, n


def test_a_sample_of_event_rows_and_the_session_key(audit):
    n = 0
    last = audit.store.run("SELECT MAX(seq) FROM audit_events WHERE session_id=?",
                           (SESSION,))[0][0]
    for seq in (1, 4, last):
        n += sweep(audit, "audit_events", ("session_id", "seq"), (SESSION, seq),
                   ("event", "checkpoint", "checkpoints", "chain", "global log"))
    n += sweep(audit, "session_keys", ("call_id",), (SESSION,), ("session key",))
    print(f"event rows and session key: {n} single changes, all FAILED")
    assert n > 800, n


def test_the_reported_checkpoint_tampering_is_caught_and_never_resealed(audit):
    """The campaign's finding: `final` 1 -> 2 verified, and a restart reopened the
    session, appended events and a second log entry."""
    store = audit.store
    store.run("UPDATE audit_checkpoints SET final=2 WHERE session_id=? AND final=1", (SESSION,))
    report = audit.verify()
    assert any("final malformed" in p for p in report.problems), report.problems
    before = store.run("SELECT COUNT(*) FROM audit_events")[0][0]
    fresh = AuditTrail(store, audit.kek, audit.signer)
    assert fresh.seal_open_sessions(audit.blobs) == []
    assert store.run("SELECT COUNT(*) FROM audit_events")[0][0] == before
    # the column says "not final" outright: still decided from the signature
    store.run("UPDATE audit_checkpoints SET final=0 WHERE session_id=? AND final=2", (SESSION,))
    assert fresh.seal_open_sessions(audit.blobs) == []
    assert any(p.startswith("checkpoint") for p in audit.verify().problems)
    # rows moved to a made-up session: nothing to seal it with, start-up goes on
    store.run("UPDATE audit_events SET session_id='c-made-up' WHERE session_id=? AND seq=1",
              (SESSION,))
    assert fresh.seal_open_sessions(audit.blobs) == []
    # a session really left open by a crash is still sealed
    key = new_data_key()
    audit.trail.open_session("c-crashed", key, audit.kek.wrap(key, "c-crashed"))
    audit.trail.append("c-crashed", "system", "queued", {})
    assert AuditTrail(store, audit.kek, audit.signer).seal_open_sessions(audit.blobs) == [
        "c-crashed"]


def test_the_log_read_by_position_notices_a_changed_index(audit):
    store = audit.store
    (idx,) = store.run("SELECT idx FROM audit_log WHERE session_id=?", (SESSION,))[0]
    store.run("UPDATE audit_log SET idx=? WHERE idx=?", (idx + 40, idx))
    assert any("index" in p and p.startswith("global log") for p in audit.verify().problems)
    store.run("UPDATE audit_log SET idx=? WHERE idx=?", (idx, idx + 40))
    # an entry appended without a signed head
    store.run("INSERT INTO audit_log (session_id, entry) VALUES ('x', '{}')")
    assert any("covers" in p for p in audit.verify().problems)


def test_verify_without_keys_still_checks_tracks_from_the_log(audit):
    assert audit.verify(kek=False).ok
    path = audit.blobs.root / SESSION / "customer.audio.webm.vtenc"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    problems = audit.verify(kek=False).problems
    assert any(p.startswith("track customer.audio") for p in problems), problems


# ---- bundles ------------------------------------------------------------------------

def _bundle(audit: Audit) -> bytes:
    out = io.BytesIO()
    export_bundle(audit.store, SESSION, audit.trail, audit.kek, audit.blobs, out)
    return out.getvalue()


def _repack(bundle: bytes, part: str, data: bytes, fix_manifest: bool,
            audit: Audit) -> bytes:
    with zipfile.ZipFile(io.BytesIO(bundle)) as src:
        parts = {n: src.read(n) for n in src.namelist()}
    parts[part] = data
    if fix_manifest and part != "manifest.json":
        import hashlib

        manifest = json.loads(parts["manifest.json"])
        manifest["files"][part] = hashlib.sha256(data).hexdigest()
        parts["manifest.json"] = json.dumps(manifest, indent=1).encode()
        parts["manifest.sig"] = audit.trail.sign_manifest(parts["manifest.json"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name, content in parts.items():
            dst.writestr(name, content)
    return out.getvalue()


def test_every_single_change_to_a_bundle_fails_and_never_crashes(audit):
    bundle = _bundle(audit)
    pinned = audit.signer.public_key()
    assert verify_bundle(io.BytesIO(bundle), pinned).ok
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        parts = {n: z.read(n) for n in ("records.json", "log.json", "key.json",
                                        "manifest.json", "manifest.sig")}
    records = parts["records.json"]
    # every byte of the log, key and manifest; the checkpoints and two events of records
    cps_at = records.index(b'"checkpoints"')
    sample = [*range(600), *range(cps_at, len(records))]
    plan = [(name, range(len(data))) for name, data in parts.items() if name != "records.json"]
    plan.append(("records.json", sample))  # type: ignore[arg-type]
    n = 0
    for part, positions in plan:
        data = parts[part]
        for i in positions:
            changed = bytearray(data)
            changed[i] ^= 0x01
            # as stored (the manifest signature catches it), and repacked with the
            # manifest re-signed (so the part's own checks must catch it)
            for fix in (False, True) if part not in ("manifest.json", "manifest.sig") \
                    else (False,):
                report = verify_bundle(io.BytesIO(_repack(bundle, part, bytes(changed),
                                                          fix, audit)), pinned)
                n += 1
                assert not report.ok, (part, i, fix)
                if fix:
                    assert any(not p.startswith("manifest") for p in report.problems), \
                        (part, i, report.problems)
    print(f"bundle: {n} single changes, all FAILED")
    assert n > 5000, n
