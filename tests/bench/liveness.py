"""Liveness benchmark: who passes, who cannot, how long it takes, what it costs.

    uv run python -m tests.bench.liveness [--coop 200] [--clips 250] [--sim 20000]

- pass rate of cooperating customers (quick: reactions 0.4-1.6 s; elderly: 2.5-3.3 s,
  movements 1.8x slower) on the three photos whose synthetic poses render well, and on
  a few checks where every frame is rendered with noise and analysed for real;
- non-following clips made from the photos (random motion at three rates, talking,
  cuts between two photos, looped segments): passes out of `--clips` each;
- the chance that a clip of random motion passes: full checks simulated at five
  motion rates (`--sim` each), and per-challenge pass rates from one-challenge checks
  multiplied out (an upper bound: it ignores the consistency of reaction times);
- time to complete a check (from the liveness start to the last release), 3 and 4
  challenges, p50 and p90;
- CPU per check of the frame analysis, MediaPipe (the default) beside dlib's 68-point
  model (before this change) on the same clip, and resident memory over the run.
Clips are judged at `RATE_HZ` (10 Hz, the server's liveness rate).
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from tests import liveness_clips as lc
from tests.conftest import faces_path
from vteller.identity import worker
from vteller.identity.faces import FaceEngine
from vteller.identity.liveness import choose_challenges
from vteller.identity.policy import IdentityPolicy

PHOTOS = ("obama.jpg", "rose_leslie1.jpg", "kit_harington1.jpg")
RATES = (0.1, 0.2, 0.35, 0.6, 1.0)


def rss_mb() -> float:
    """Resident memory now (not the peak)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p * len(values)))]


def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """The one-sided upper confidence bound of a Poisson mean after `k` events."""
    def tail(lam: float) -> float:  # P(X <= k)
        term = total = math.exp(-lam)
        for i in range(1, k + 1):
            term *= lam / i
            total += term
        return total
    lo, hi = 0.0, 10.0 + 10 * k
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 1 - confidence else (lo, mid)
    return hi


def cooperating(banks: dict[str, lc.PoseBank], n: int, policy: IdentityPolicy) -> None:
    print("cooperating customers (cached poses):")
    for label, make in (("quick", lambda s: lc.Cooperating(reaction_s=0.4 + (s % 7) * 0.2,
                                                           release_s=0.6)),
                        ("elderly", lambda s: lc.Cooperating(reaction_s=2.5 + (s % 3) * 0.4,
                                                             release_s=1.8, slow=1.8))):
        for photo, bank in banks.items():
            passed, reasons = 0, {}
            for seed in range(n):
                check = lc.run_check(policy, choose_challenges(policy, random.Random(seed)),
                                     make(seed), bank, seed)
                passed += check.state == "passed"
                if check.state != "passed":
                    reasons[check.reason] = reasons.get(check.reason, 0) + 1
            print(f"  {label:8s} {photo:20s} {passed}/{n} = {passed / n:.1%}  "
                  f"failures: {reasons or '-'}")


def durations(bank: lc.PoseBank, n: int) -> None:
    print("time to complete (quick customers: reaction 0.4-1.6 s, 0.6 s to release cues):")
    for count in (3, 4):
        policy = IdentityPolicy(challenges_min=count, challenges_max=count)
        took = []
        for seed in range(n):
            coop = lc.Cooperating(reaction_s=0.4 + (seed % 7) * 0.2, release_s=0.6)
            check = lc.run_check(policy, choose_challenges(policy, random.Random(seed)),
                                 coop, bank, seed)
            if check.state == "passed":
                took.append(max(s.ended_at or 0 for s in check.steps))
        print(f"  {count} challenges: p50 {pct(took, 0.5):.1f} s, p90 {pct(took, 0.9):.1f} s "
              f"({len(took)} passed checks)")


def non_following(banks: dict[str, lc.PoseBank], cut_bank: lc.PoseBank, n: int,
                  policy: IdentityPolicy) -> None:
    print(f"non-following clips ({n} seeded tries each, own random challenges):")
    kinds = {
        "random 0.2/s": lambda rng: lc.RandomMotion(rng, rate=0.2),
        "random 0.5/s": lambda rng: lc.RandomMotion(rng, rate=0.5),
        "random 1.0/s": lambda rng: lc.RandomMotion(rng, rate=1.0),
        "talking": lambda rng: lc.RandomMotion(rng, rate=0.3, talking=True),
        "cuts": lambda rng: lc.Cuts(lc.RandomMotion(rng, rate=0.4)),
        "loop 3 s": lambda rng: lc.Loop(lc.RandomMotion(rng, rate=0.6), segment_s=3.0),
    }
    for name, make in kinds.items():
        passed, reasons = 0, {}
        for seed in range(n):
            check = lc.run_check(policy, choose_challenges(policy, random.Random(seed)),
                                 make(np.random.default_rng(10_000 + seed)),
                                 cut_bank if name == "cuts" else banks["obama.jpg"], seed)
            passed += check.state == "passed"
            reasons[check.reason] = reasons.get(check.reason, 0) + 1
        top = sorted(reasons.items(), key=lambda kv: -kv[1])[:4]
        print(f"  {name:13s} passed {passed}/{n}; top reasons {top}")


def false_pass(bank: lc.PoseBank, n: int, policy: IdentityPolicy) -> None:
    print(f"random-motion clips, full checks ({n} per rate, {policy.challenges_min}-"
          f"{policy.challenges_max} challenges):")
    total = passed = 0
    worst_step = 0.0
    for rate in RATES:
        p_here, steps = 0, {}
        t0 = time.process_time()
        for seed in range(n):
            check = lc.run_check(policy, choose_challenges(policy, random.Random(seed)),
                                 lc.RandomMotion(np.random.default_rng(10**6 + seed), rate=rate),
                                 bank, seed)
            p_here += check.state == "passed"
            k = sum(s.state == "passed" for s in check.steps)
            steps[k] = steps.get(k, 0) + 1
        total, passed = total + n, passed + p_here
        one = IdentityPolicy(challenges_min=1, challenges_max=1)
        single = sum(lc.run_check(one, choose_challenges(one, random.Random(seed)),
                                  lc.RandomMotion(np.random.default_rng(2 * 10**6 + seed),
                                                  rate=rate), bank, seed).state == "passed"
                     for seed in range(n // 2)) / (n // 2)
        worst_step = max(worst_step, single)
        print(f"  rate {rate:4.2f}/s: passed {p_here}/{n}; challenges passed per check "
              f"{dict(sorted(steps.items()))}; one-challenge pass rate {single:.4f}; "
              f"{(time.process_time() - t0) / n * 1000:.1f} ms CPU per simulated check")
    counts = range(policy.challenges_min, policy.challenges_max + 1)
    bound = statistics.mean(worst_step ** c for c in counts)
    print(f"  all rates: {passed}/{total} passed (95% upper bound "
          f"{poisson_upper(passed) / total:.1e}); "
          f"per-challenge worst rate {worst_step:.4f} -> {bound:.1e} per check "
          f"(independent steps, no reaction-consistency credit)")


def cpu_per_check(faces: Path, policy: IdentityPolicy) -> None:
    """The frames one cooperating 4-challenge check showed, analysed by each landmark
    model the way the server's workers do (encoding once a second for binding)."""
    actions = ["blink_twice", "turn_left", "open_mouth", "smile"]
    worker.init(None, policy.detect_width, 0, "mediapipe")
    bank = lc.PoseBank([faces / "rose_leslie1.jpg"], FaceEngine())
    frames: list[np.ndarray] = []
    check = lc.run_check(policy, actions, lc.Cooperating(), bank, 1, real_frames=True,
                         shown=frames)
    print(f"frame analysis CPU per check ({len(frames)} frames of one cooperating "
          f"4-challenge check, {check.state}):")
    per_frame = {}
    for kind in ("mediapipe", "dlib68"):
        worker.init(None, policy.detect_width, 0, kind)
        worker.analyse(frames[0], True, True, policy.detect_width, None)  # models loaded
        grey = None
        t0 = time.process_time()
        for i, rgb in enumerate(frames):
            _, grey, _, _ = worker.analyse(rgb, i % 10 == 0, True, policy.detect_width, grey)
        cpu = time.process_time() - t0
        per_frame[kind] = cpu / len(frames)
        print(f"  {kind:9s}: {cpu:.2f} s CPU per check, {cpu / len(frames) * 1000:.1f} ms/frame")
    print(f"  mediapipe / dlib68: {per_frame['mediapipe'] / per_frame['dlib68']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coop", type=int, default=200)
    ap.add_argument("--clips", type=int, default=250)
    ap.add_argument("--sim", type=int, default=20000)
    args = ap.parse_args(argv)
    faces = faces_path()
    policy = IdentityPolicy()
    engine = FaceEngine()
    rss0 = rss_mb()
    banks = {p: lc.PoseBank([faces / p], engine) for p in PHOTOS}
    cut_bank = lc.PoseBank([faces / "obama.jpg", faces / "obama3.jpg"], engine)
    cooperating(banks, args.coop, policy)
    rss1 = rss_mb()
    durations(banks["rose_leslie1.jpg"], args.coop)
    non_following(banks, cut_bank, args.clips, policy)
    false_pass(banks["obama.jpg"], args.sim, policy)
    rss2 = rss_mb()
    cpu_per_check(faces, policy)
    print(f"RSS: {rss0:.0f} MB at start, {rss1:.0f} MB after the poses and "
          f"{args.coop * 6} cooperating checks, {rss2:.0f} MB after "
          f"{args.sim * len(RATES) * 3 // 2 + args.clips * 6} more checks "
          f"({(rss2 - rss1) * 1024 / (args.sim * len(RATES) * 1.5 + args.clips * 6):.2f} kB "
          f"per check)")


if __name__ == "__main__":
    main()
