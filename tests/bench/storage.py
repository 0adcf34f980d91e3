"""Storage benchmark, PostgreSQL and S3 beside the embedded defaults, in one run.

    uv run python -m tests.bench.storage [--closes 300] [--log-size 20000] [--track-mb 72]

- durable event appends per second, one writer and four writer threads: SQLite (WAL,
  synchronous=FULL) and PostgreSQL (autocommit; every statement is a durable commit);
- session close p50/p99 including the global-log append and signed tree head, on a
  log that already holds `--log-size` entries; and what the old full recompute of the
  tree head would cost at that size (the baseline the frontier replaces);
- verifying a recorded session from S3 (moto's server on loopback) beside the
  filesystem, scaled to a one-hour call;
- resident memory of this process after each part.
Needs PostgreSQL on 127.0.0.1:5432 (or VTELLER_TEST_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

from tests.conftest import postgres_url
from tests.s3_server import start_s3
from vteller.audit import LocalKeyring, StreamWriter, merkle, new_data_key
from vteller.audit.trail import AuditTrail, load_or_create_signing_key
from vteller.audit.verify import verify_session
from vteller.store import FileBlobStore, Store, open_store
from vteller.store.s3 import S3BlobStore, S3Settings


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p * len(values)))]


def appends(trail: AuditTrail, kek: LocalKeyring, threads: int, each: int) -> float:
    def run(t: int) -> None:
        sid = f"app-{threads}-{t}-{os.urandom(3).hex()}"
        key = new_data_key()
        trail.open_session(sid, key, kek.wrap(key, sid))
        for i in range(each):
            trail.append(sid, "system", "bench", {"i": i, "note": "x" * 100})

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * each / (time.perf_counter() - t0)


def closes(store: Store, trail: AuditTrail, kek: LocalKeyring, n: int, log_size: int
           ) -> list[float]:
    for i in range(log_size):  # an old log (entries need no real sessions behind them)
        store.append_log_entry(f"old-{i}", f"entry {i}".encode(), lambda s, r: ("0", b"s" * 64))
    times = []
    for i in range(n):
        sid = f"close-{i}"
        key = new_data_key()
        trail.open_session(sid, key, kek.wrap(key, sid))
        for j in range(5):
            trail.append(sid, "system", "step", {"j": j})
        t0 = time.perf_counter()
        trail.close_session(sid, {})
        times.append(time.perf_counter() - t0)
    return times


def engine_figures(name: str, store: Store, tmp: Path, args: argparse.Namespace) -> dict:
    kek = LocalKeyring(tmp / "secrets")
    trail = AuditTrail(store, kek, load_or_create_signing_key(tmp / "secrets"))
    one = appends(trail, kek, 1, 1000)
    four = appends(trail, kek, 4, 400)
    times = closes(store, trail, kek, args.closes, args.log_size)
    out = {"appends_1": one, "appends_4": four, "close_p50": pct(times, 0.5),
           "close_p99": pct(times, 0.99), "rss": rss_mb()}
    print(f"  {name:10s} appends/s 1 writer {one:7.0f}  4 writers {four:7.0f}   "
          f"close p50 {out['close_p50'] * 1000:6.1f} ms  p99 {out['close_p99'] * 1000:6.1f} ms"
          f"   (log of {args.log_size + args.closes} entries)  RSS {out['rss']:.0f} MB")
    return out


def verify_figures(tmp: Path, track_mb: int) -> tuple[float, float]:
    s3 = start_s3()
    try:
        bucket = s3.new_bucket()
        stores = {"filesystem": FileBlobStore(tmp / "rec"),
                  "S3": S3BlobStore(S3Settings(**s3.settings(bucket)))}
        results = {}
        for label, blobs in stores.items():
            db = open_store(None, tmp / f"verify-{label}.sqlite3")
            kek = LocalKeyring(tmp / "secrets")
            trail = AuditTrail(db, kek, load_or_create_signing_key(tmp / "secrets"))
            key = new_data_key()
            trail.open_session("s1", key, kek.wrap(key, "s1"))
            for i in range(360):  # ~1 event per 10 s of a 1-hour call, scaled like the tracks
                trail.append("s1", "system", "bench", {"i": i})
            chunk = os.urandom(64 * 1024)
            digests = {}
            for t in range(4):
                with blobs.open_write(f"s1/t{t}.webm.vtenc") as fh:
                    w = StreamWriter(fh, key, "s1", fsync=False)
                    for n in range(track_mb * 1024 * 1024 // 4 // len(chunk)):
                        w.write(chunk)
                        if n % 24 == 0:  # the recorder's flush cadence: a segment each
                            w.flush()
                    digests[f"t{t}.webm.vtenc"] = w.close()
            trail.close_session("s1", digests)
            t0 = time.perf_counter()
            report = verify_session(db, "s1", trail.public_key, kek, blobs)
            results[label] = time.perf_counter() - t0
            assert report.ok, report.problems
            db.close()
        scale = 1440 / track_mb  # a 1-hour call: four ~800 kb/s tracks, ~1.44 GB
        print(f"  verify {track_mb} MB of tracks: filesystem {results['filesystem']:.2f} s, "
              f"S3 {results['S3']:.2f} s -> one hour: ~{results['filesystem'] * scale:.0f} s "
              f"vs ~{results['S3'] * scale:.0f} s; S3/filesystem "
              f"{results['S3'] / results['filesystem']:.2f}x   RSS {rss_mb():.0f} MB")
        return results["filesystem"], results["S3"]
    finally:
        s3.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--closes", type=int, default=300)
    ap.add_argument("--log-size", type=int, default=20000)
    ap.add_argument("--track-mb", type=int, default=72)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    print("storage benchmark (one run; this machine: 2 shared cores)")
    sqlite = engine_figures("SQLite", open_store(None, tmp / "bench.sqlite3"), tmp, args)
    pg = engine_figures("PostgreSQL", open_store(postgres_url(), tmp / "unused"), tmp, args)
    leaves = [merkle.leaf_hash(os.urandom(32)) for _ in range(args.log_size + args.closes)]
    t0 = time.perf_counter()
    merkle.root(leaves)
    recompute = time.perf_counter() - t0
    print(f"  baseline: recomputing the tree head over {len(leaves)} entries "
          f"(what every close cost before): {recompute * 1000:.0f} ms")
    print(f"  PostgreSQL / SQLite: appends {pg['appends_1'] / sqlite['appends_1']:.2f}x "
          f"(1 writer), {pg['appends_4'] / sqlite['appends_4']:.2f}x (4 writers); "
          f"close p99 {pg['close_p99'] / sqlite['close_p99']:.2f}x")
    verify_figures(tmp, args.track_mb)


if __name__ == "__main__":
    main()
