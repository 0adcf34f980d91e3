"""Identity benchmark: time from the first face frame to the verdict, and analysis CPU
per verified call, for vteller's pipeline against the naive loop (full-resolution
detect with one upsampling, as face_recognition.face_locations does by default, plus
encode on every sampled frame), measured in the same run; then 8 calls verifying at
once with the event-loop lag.

    uv run python -m tests.bench.identity

Frames come from real photos (sensor noise added, pre-rendered so making them costs
the loop nothing) through the same interface as the media plane's analysis tap (the
newest decoded frame and its arrival time); decoding the video is not measured here
(tests/bench/media_relay covers the media plane). Each trial shows no face for 0.5 s,
then the customer's face; the verdict is timed from the first frame with the face.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import av
import numpy as np

from tests.conftest import faces_path
from tests.face_frames import live, selfie
from vteller.identity import FaceEngine, IdentityPolicy, analyse_reference
from vteller.identity.session import Analyzer, IdentitySession

FACES = faces_path()
PAIRS = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("biden.jpg", "biden2.jpg"),
         ("kit_harington1.jpg", "kit_harington2.jpg"), ("rose_leslie1.jpg", "rose_leslie2.jpg")]
FPS = 30


class FrameSource:
    """Stands where the analysis tap stands: `latest` = (frame, arrival time)."""

    def __init__(self, frames: list[av.VideoFrame], blank: av.VideoFrame) -> None:
        self.frames, self.blank = frames, blank
        self.latest: tuple[av.VideoFrame, float] | None = None
        self.face_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, blank_s: float = 0.5) -> None:
        self.face_at = None
        self._task = asyncio.create_task(self._run(blank_s))

    async def _run(self, blank_s: float) -> None:
        started, n = time.monotonic(), 0
        while True:
            now = time.monotonic()
            if now - started < blank_s:
                frame = self.blank
            else:
                frame = self.frames[n % len(self.frames)]
                if self.face_at is None:
                    self.face_at = now
            self.latest = (frame, now)
            n += 1
            await asyncio.sleep(max(0.0, started + n / FPS - time.monotonic()))

    def keep_grid(self, spacing_s: float, keep_s: float) -> None:
        """Frames come from memory at FPS: nothing is ever missed, nothing to keep."""

    def next_after(self, at: float) -> tuple[av.VideoFrame, float] | None:
        latest = self.latest
        return latest if latest is not None and latest[1] > at else None

    def stop(self) -> None:
        if self._task:
            self._task.cancel()


def render(photo: str, count: int = 30) -> list[av.VideoFrame]:
    rng = np.random.default_rng(5)
    base = selfie(FACES / photo)
    return [av.VideoFrame.from_ndarray(live(base, rng, i / FPS), format="rgb24")
            for i in range(count)]


class LagProbe:
    def __init__(self, period: float = 0.01) -> None:
        self.period, self.lags = period, []  # type: ignore[var-annotated]
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(self.period)
            self.lags.append(time.monotonic() - t - self.period)

    def stop(self) -> dict[str, float]:
        self._task.cancel()
        lags = sorted(self.lags) or [0.0]
        return {"p50_ms": lags[len(lags) // 2] * 1e3,
                "p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1e3}


class VerdictListener:
    """An IdentityListener that only hears verdicts."""

    def __init__(self, on_verdict: Any) -> None:
        self._on_verdict = on_verdict

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "identity.verdict":
            self._on_verdict(data["verdict"])

    def status(self, status: dict[str, Any]) -> None: ...
    def evidence(self, evidence: str, data: dict[str, Any]) -> None: ...
    def challenge(self, challenge: dict[str, Any]) -> None: ...
    def snapshot(self, rgb: Any, frame_at: float, distance: float) -> None: ...
    def hint(self, code: str) -> None: ...


async def verify_once(service: Any, source: FrameSource, reference: np.ndarray
                      ) -> tuple[float, float, str]:
    """(seconds from first face frame to verdict, analysis CPU s, verdict)."""
    decided = asyncio.get_running_loop().create_future()

    def on_verdict(verdict: str) -> None:
        if not decided.done():
            decided.set_result((time.monotonic(), verdict))

    source.start()
    session = IdentitySession(service, source, reference, VerdictListener(on_verdict))
    session.start_verification()
    at, verdict = await asyncio.wait_for(decided, 60)
    cpu = session.cpu_s
    await session.close()
    source.stop()
    assert source.face_at is not None
    return at - source.face_at, cpu, verdict


def naive_policy(workers: int) -> IdentityPolicy:
    """Every sampled frame: full-resolution detect + encode, during the whole call."""
    return IdentityPolicy(workers=workers, detect_width=0, full_scan_every_s=0,
                          presence_rate_hz=IdentityPolicy().verify_rate_hz)


async def whole_call(naive: bool, seconds: float, workers: int = 2) -> dict[str, Any]:
    """One verified call of `seconds`: verification, then presence checks (the naive
    loop keeps analysing every sampled frame). Analysis CPU over the whole call."""
    policy = naive_policy(workers) if naive else IdentityPolicy(workers=workers)
    analyzer = Analyzer(policy, upsample=1 if naive else 0)
    await asyncio.to_thread(analyzer.warm_up)
    ref_photo, live_photo = PAIRS[0]
    reference = analyse_reference(FaceEngine(), (FACES / ref_photo).read_bytes(),
                                  IdentityPolicy()).encoding
    blank = av.VideoFrame.from_ndarray(np.full((480, 640, 3), 90, np.uint8), format="rgb24")
    source = FrameSource(render(live_photo), blank)
    verdicts: list[str] = []
    source.start()
    session = IdentitySession(analyzer, source, reference, VerdictListener(verdicts.append))
    cpu0 = time.process_time()
    session.start_verification()
    await asyncio.sleep(seconds)
    cpu = session.cpu_s + time.process_time() - cpu0
    await session.close()
    source.stop()
    analyzer.close()
    return {"verdicts": verdicts, "cpu_s": cpu, "analysed": session.analysed}


async def scenario(naive: bool, calls: int, rounds: int, workers: int = 2) -> dict[str, Any]:
    policy = naive_policy(workers) if naive else IdentityPolicy(workers=workers)
    service = Analyzer(policy, upsample=1 if naive else 0)
    await asyncio.to_thread(service.warm_up)
    engine = FaceEngine()
    blank = av.VideoFrame.from_ndarray(np.full((480, 640, 3), 90, np.uint8), format="rgb24")
    refs, sources = [], []
    for i in range(calls):
        ref_photo, live_photo = PAIRS[i % len(PAIRS)]
        refs.append(analyse_reference(engine, (FACES / ref_photo).read_bytes(),
                                      IdentityPolicy()).encoding)
        sources.append(FrameSource(render(live_photo), blank))
    probe = LagProbe()
    cpu0 = time.process_time()
    results = []
    for _ in range(rounds):
        results += await asyncio.gather(*(verify_once(service, s, r)
                                          for s, r in zip(sources, refs)))
    cpu_total = time.process_time() - cpu0
    lag = probe.stop()
    service.close()
    times = sorted(r[0] for r in results)
    return {
        "trials": len(results),
        "verified": sum(r[2] == "verified" for r in results),
        "p50_s": statistics.median(times),
        "p95_s": times[min(len(times) - 1, int(len(times) * 0.95))],
        "analysis_cpu_per_call_s": statistics.mean(r[1] for r in results),
        # the server process (event loop, frame conversion) + its analysis workers
        "process_cpu_per_call_s": (cpu_total + sum(r[1] for r in results)) / len(results),
        "lag_p50_ms": lag["p50_ms"], "lag_p99_ms": lag["p99_ms"],
    }


def line(name: str, r: dict[str, Any]) -> str:
    return (f"{name:34s} trials={r['trials']:3d} verified={r['verified']:3d}  "
            f"to-verdict p50/p95={r['p50_s']:.2f}/{r['p95_s']:.2f} s  "
            f"cpu/verified call={r['analysis_cpu_per_call_s']:.2f} s "
            f"(with loop {r['process_cpu_per_call_s']:.2f} s)  "
            f"loop lag p50/p99={r['lag_p50_ms']:.1f}/{r['lag_p99_ms']:.1f} ms")


async def main(rounds: int, call_s: float) -> None:
    print(f"identity benchmark: {os.cpu_count()} cores, 640x480 frames, 5 Hz sampling, "
          f"verdict after {IdentityPolicy().min_samples} samples")
    naive = await scenario(True, 1, rounds)
    print(line("baseline: naive loop, 1 call", naive))
    ours = await scenario(False, 1, rounds)
    print(line("vteller pipeline, 1 call", ours))
    many = await scenario(False, 8, max(1, rounds // 4))
    print(line("vteller pipeline, 8 calls at once", many))
    ratio = naive["process_cpu_per_call_s"] / ours["process_cpu_per_call_s"]
    print(f"CPU from first face to verdict, naive / vteller: {ratio:.1f}x less")
    call_naive = await whole_call(True, call_s)
    call_ours = await whole_call(False, call_s)
    for name, c in (("baseline: naive loop", call_naive), ("vteller pipeline", call_ours)):
        print(f"{name + f', one {call_s:.0f} s verified call':45s} analysed frames="
              f"{c['analysed']:4d}  CPU={c['cpu_s']:.2f} s  verdicts={c['verdicts']}")
    print(f"CPU per verified {call_s:.0f} s call, naive / vteller: "
          f"{call_naive['cpu_s'] / call_ours['cpu_s']:.1f}x less (target >= 3x)")
    print(f"verdict p50 (1 call): {ours['p50_s']:.2f} s (target <= 1.5 s); "
          f"8 calls: p50 {many['p50_s']:.2f} s p95 {many['p95_s']:.2f} s")
    print(f"event-loop lag p99 with 8 calls verifying: {many['lag_p99_ms']:.1f} ms "
          f"(target < 20 ms)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12, help="verifications per scenario")
    ap.add_argument("--call-s", type=float, default=60.0, help="length of the whole-call run")
    args = ap.parse_args()
    asyncio.run(main(args.rounds, args.call_s))
