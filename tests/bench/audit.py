"""Recording encryption throughput: StreamWriter (AES-256-GCM segments + SHA-256 of the
output) against raw AES-GCM of `cryptography` on the same segments, in one run.

    uv run python -m tests.bench.audit
"""

from __future__ import annotations

import io
import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vteller.audit import StreamWriter, decrypt, new_data_key

TOTAL = 256 * 1024 * 1024
SEGMENT = 64 * 1024


class Null(io.RawIOBase):
    def write(self, b: bytes) -> int:  # type: ignore[override]
        return len(b)


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    chunk = os.urandom(SEGMENT)
    key = new_data_key()
    count = TOTAL // SEGMENT

    def raw() -> None:
        aead = AESGCM(key)
        nonce = os.urandom(12)
        for _ in range(count):
            aead.encrypt(nonce, chunk, None)

    def stream() -> None:
        w = StreamWriter(Null(), key, "bench", segment_max=SEGMENT, fsync=False)
        for _ in range(count):
            w.write(chunk)
        w.close()

    t_raw, t_stream = best_of(3, raw), best_of(3, stream)
    mb = TOTAL / 1e6
    print(f"audit: {mb:.0f} MB in {SEGMENT // 1024} KiB segments")
    print(f"  raw AES-256-GCM:            {mb / t_raw:7.0f} MB/s")
    print(f"  StreamWriter (GCM+SHA-256): {mb / t_stream:7.0f} MB/s   ratio {t_raw / t_stream:.2f} "
          "of raw (target >= 0.8)")
    buf = io.BytesIO()
    w = StreamWriter(buf, key, "bench", segment_max=SEGMENT, fsync=False)
    for _ in range(count // 4):
        w.write(chunk)
    w.close()
    data = buf.getvalue()
    t_verify = best_of(1, lambda: sum(len(p) for p in decrypt(io.BytesIO(data), lambda _: key)))
    hour_mb = 4 * 0.8 / 8 * 3600  # four ~800 kb/s tracks for an hour
    print(f"  verify+decrypt:             {len(data) / 1e6 / t_verify:7.0f} MB/s "
          f"(a 1-hour call, ~{hour_mb:.0f} MB of tracks: {hour_mb / (len(data) / 1e6 / t_verify):.1f} s)")


def trail_figures() -> None:
    """Durable appends per second, and verify time for a 1-hour session."""
    import tempfile
    from pathlib import Path

    from vteller.audit import LocalKeyring
    from vteller.audit.trail import AuditTrail, load_or_create_signing_key
    from vteller.audit.verify import verify_session
    from vteller.store import SqliteStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    store = SqliteStore(tmp / "var" / "db.sqlite3")  # WAL + synchronous=FULL: fsync per commit
    kek = LocalKeyring(tmp / "secrets")
    trail = AuditTrail(store, kek, load_or_create_signing_key(tmp / "secrets"))
    key = new_data_key()
    trail.open_session("s1", key, kek.wrap(key, "s1"))
    n = 2000
    t0 = time.perf_counter()
    for i in range(n):
        trail.append("s1", "system", "bench", {"i": i, "note": "x" * 100})
    per_s = n / (time.perf_counter() - t0)
    print(f"  event appends, durable:     {per_s:7.0f} /s (SQLite WAL, synchronous=FULL)")
    # a 1-hour call: ~1 event/s and four ~800 kb/s tracks (1.44 GB); measured on a
    # 1/10 scale session, then scaled linearly
    folder = tmp / "var" / "recordings" / "s1"
    folder.mkdir(parents=True)
    tracks = {}
    chunk = os.urandom(SEGMENT)
    for t in range(4):
        path = folder / f"t{t}.webm.vtenc"
        with path.open("wb") as fh:
            w = StreamWriter(fh, key, "s1", fsync=False)
            for _ in range(int(144e6 / 4 / SEGMENT)):
                w.write(chunk)
            tracks[path.name] = w.close()
    trail.close_session("s1", tracks)
    from vteller.store import FileBlobStore

    t0 = time.perf_counter()
    report = verify_session(store, "s1", trail.public_key, kek,
                            FileBlobStore(tmp / "var" / "recordings"))
    took = time.perf_counter() - t0
    assert report.ok, report.problems
    print(f"  verify, 1/10-hour session:  {took:7.2f} s ({n + 5} events, 144 MB of tracks) -> "
          f"~{took * 10:.0f} s for a 1-hour call (chain, signatures, log, AEAD + digest of tracks)")


if __name__ == "__main__":
    main()
    trail_figures()
