"""Face verification on video the way phones send it, not on photos.

    uv run python -m tests.bench.video_verify [--frames 24]

For every identity with two photos, one photo is the enrolled reference and a clip is
made from the other: 640x360 frames with the face `FACE_PX` tall, head sway and sensor
noise, every third frame turned 20-35 degrees, compressed with VP8 at 400 kbit/s and
decoded again. Impostor clips are the other identities against the same references.
For each face size it prints the genuine and impostor distance ranges over all decoded
frames and over the frames the server now prefers (frontal within `max_verify_yaw`, of
usable quality), and the verdicts of the verification window on each clip.
"""

from __future__ import annotations

import argparse
import io
import statistics
from itertools import product

import av
import cv2
import numpy as np

from tests.conftest import faces_path
from tests.face_frames import live, turn
from vteller.identity import (
    FaceEngine,
    IdentityPolicy,
    Observation,
    analyse_reference,
    distance,
)
from vteller.identity.verify import Verdict, VerificationWindow, quality_problem

PEOPLE = {"obama": ("obama.jpg", "obama2.jpg"), "biden": ("biden.jpg", "biden2.jpg"),
          "kit": ("kit_harington1.jpg", "kit_harington2.jpg"),
          "rose": ("rose_leslie1.jpg", "rose_leslie2.jpg")}
FACE_PX = (45, 60, 80, 105, 140)
W, H = 640, 360


def phone_frame(engine: FaceEngine, photo: np.ndarray,
                face_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled so its face is `face_px` tall, in a 640x360 frame; and the
    frame's landmarks (to turn the head)."""
    box = engine.detect(photo, 0, 1)[0]
    scale = face_px / box.height
    img = cv2.resize(photo, (max(1, round(photo.shape[1] * scale)),
                             max(1, round(photo.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    cx, cy = int((box.left + box.right) / 2 * scale), int((box.top + box.bottom) / 2 * scale)
    out = np.full((H, W, 3), 90, np.uint8)
    x0, y0 = cx - W // 2, cy - H // 2
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(img.shape[1], x0 + W), min(img.shape[0], y0 + H)
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    obs = engine.analyze(out, encode=False, landmarks=True, detect_width=0, upsample=1)
    return out, obs.landmarks


def clip(engine: FaceEngine, photo: np.ndarray, face_px: int, frames: int,
         rng: np.random.Generator) -> list[np.ndarray]:
    """Frames as the server decodes them after VP8 at 400 kbit/s."""
    base, pts = phone_frame(engine, photo, face_px)
    raw = []
    for i in range(frames):
        img = base
        if i % 3 == 2 and pts is not None and len(pts) == 68:
            img = turn(base, pts, float(rng.choice([-35, -20, 20, 35])))
        raw.append(live(img, rng, i / 15))
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=15)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 400_000
        for rgb in raw:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as inp:
        return [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]


def measure(engine: FaceEngine, policy: IdentityPolicy, frames: list[np.ndarray],
            reference: np.ndarray) -> tuple[list[float], list[float], str]:
    """(distances of all frames with one face, of the preferred frames, the verdict)."""
    every, preferred = [], []
    window = VerificationWindow(policy, 0.0)
    verdict = Verdict.VERIFYING
    last = Observation(faces=0)
    for i, rgb in enumerate(frames):
        obs = last = engine.analyze(rgb, encode=True, landmarks=True, detect_width=0)
        if obs.faces != 1 or obs.encoding is None:
            continue
        d = distance(obs.encoding, reference)
        every.append(d)
        frontal = obs.measures is not None and abs(obs.measures.yaw) <= policy.max_verify_yaw
        if frontal and quality_problem(obs, policy) is None:
            preferred.append(d)
        if verdict == Verdict.VERIFYING:
            if not frontal:
                obs.extra["turned"] = 1.0  # as the server's engine marks it
            verdict = window.add(obs, i / 5, d if frontal else None)
    if verdict == Verdict.VERIFYING:  # the clip ended undecided: the time limit decides
        verdict = window.add(last, policy.verify_timeout_s, None)
    detail = f":{window.detail}" if verdict == Verdict.POOR_QUALITY and window.detail else ""
    return every, preferred, verdict.value + detail


def spread(values: list[float]) -> str:
    if not values:
        return "   -"
    return (f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f} "
            f"(n={len(values)})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--sizes", default=",".join(map(str, FACE_PX)), help="face heights, px")
    args = ap.parse_args(argv)
    faces = faces_path()
    engine = FaceEngine()
    policy = IdentityPolicy()
    refs = {name: analyse_reference(engine, (faces / pair[0]).read_bytes(), policy).encoding
            for name, pair in PEOPLE.items()}
    lives = {name: cv2.cvtColor(cv2.imread(str(faces / pair[1])), cv2.COLOR_BGR2RGB)
             for name, pair in PEOPLE.items()}
    rng = np.random.default_rng(5)
    print("distances min/median/max; verdicts per clip "
          f"(match < {policy.match_threshold}, mismatch >= {policy.mismatch_threshold})")
    for px in (int(x) for x in args.sizes.split(",")):
        clips = {name: clip(engine, photo, px, args.frames, rng) for name, photo in lives.items()}
        rows = {"genuine": ([], [], {}), "impostor": ([], [], {})}
        for ref_name, live_name in product(PEOPLE, PEOPLE):
            kind = "genuine" if ref_name == live_name else "impostor"
            every, preferred, verdict = measure(engine, policy, clips[live_name], refs[ref_name])
            rows[kind][0].extend(every)
            rows[kind][1].extend(preferred)
            rows[kind][2][verdict] = rows[kind][2].get(verdict, 0) + 1
        for kind, (every, preferred, verdicts) in rows.items():
            print(f"face {px:3d} px {kind:8s} all frames {spread(every):28s} preferred "
                  f"{spread(preferred):28s} verdicts {verdicts}")


if __name__ == "__main__":
    main()
