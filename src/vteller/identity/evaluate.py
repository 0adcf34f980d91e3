"""Accuracy of face matching on labelled photos and clips (`vteller identity eval DIR`).

Labels: a `labels.csv` in DIR (`file,identity` rows), else one sub-folder per identity,
else the file name without trailing digits (`obama2.jpg` -> obama), where a name that
extends a known label with `_...` belongs to it (`obama_partial_face` -> obama).
Clips (.mp4 .webm .mkv .y4m) give up to `clip_frames` frames, two a second. Images
with no face or several faces are reported and left out. Every pair of samples is
compared: same label = genuine, different = impostor.
"""

from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import av
import numpy as np

from vteller.identity.faces import FaceEngine, distance
from vteller.identity.policy import IdentityPolicy
from vteller.identity.reference import EnrollmentError, decode_photo

IMAGES = {".jpg", ".jpeg", ".png"}
CLIPS = {".mp4", ".webm", ".mkv", ".y4m"}
THRESHOLDS = [round(0.30 + 0.05 * i, 2) for i in range(9)]


@dataclass
class EvalReport:
    samples: list[tuple[str, str]] = field(default_factory=list)  # (file, label)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    genuine: list[float] = field(default_factory=list)
    impostor: list[float] = field(default_factory=list)

    def rates(self, threshold: float) -> tuple[float | None, float | None]:
        """(false accept rate, false reject rate) at a threshold (accept if d < t)."""
        far = (sum(d < threshold for d in self.impostor) / len(self.impostor)
               if self.impostor else None)
        frr = (sum(d >= threshold for d in self.genuine) / len(self.genuine)
               if self.genuine else None)
        return far, frr

    def as_dict(self) -> dict[str, Any]:
        def dist(values: list[float]) -> dict[str, Any]:
            if not values:
                return {"pairs": 0}
            return {"pairs": len(values), "min": round(min(values), 4),
                    "median": round(statistics.median(values), 4),
                    "max": round(max(values), 4)}
        return {
            "samples": len(self.samples), "skipped": self.skipped,
            "genuine": dist(self.genuine), "impostor": dist(self.impostor),
            "thresholds": [{"threshold": t, "far": far, "frr": frr}
                           for t in THRESHOLDS for far, frr in [self.rates(t)]],
        }


def labels_for(folder: Path) -> dict[Path, str]:
    table = folder / "labels.csv"
    if table.is_file():
        with table.open(newline="") as fh:
            return {folder / row[0].strip(): row[1].strip() for row in csv.reader(fh)
                    if len(row) >= 2 and not row[0].startswith("#")}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGES | CLIPS)
    if any(p.parent != folder for p in files):
        return {p: p.parent.name for p in files if p.parent != folder}
    base = {p: re.sub(r"\d+$", "", p.stem) for p in files}
    known = set(base.values())
    out = {}
    for p, label in base.items():
        parent = next((k for k in sorted(known, key=len) if label.startswith(k + "_")), None)
        out[p] = parent or label
    return out


def _clip_frames(path: Path, limit: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        next_t = 0.0
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            if t + 1e-6 >= next_t:
                frames.append(frame.to_ndarray(format="rgb24"))
                next_t = t + 0.5
            if len(frames) >= limit:
                break
    return frames


def evaluate(folder: Path, engine: FaceEngine | None = None,
             policy: IdentityPolicy | None = None, clip_frames: int = 10) -> EvalReport:
    engine = engine or FaceEngine()
    policy = policy or IdentityPolicy()
    report = EvalReport()
    encodings: list[tuple[str, np.ndarray]] = []
    for path, label in sorted(labels_for(folder).items()):
        name = str(path.relative_to(folder))
        try:
            if path.suffix.lower() in CLIPS:
                images = _clip_frames(path, clip_frames)
            else:
                images = [decode_photo(path.read_bytes(), policy)]
        except (EnrollmentError, OSError, av.error.FFmpegError) as exc:
            report.skipped[name] = f"unreadable ({type(exc).__name__})"
            continue
        for n, rgb in enumerate(images):
            boxes = engine.detect(rgb, detect_width=0, upsample=1)
            key = name if len(images) == 1 else f"{name}#{n}"
            if len(boxes) != 1:
                report.skipped[key] = "no face" if not boxes else f"{len(boxes)} faces"
                continue
            encodings.append((label, engine.encode(rgb, boxes[0])))
            report.samples.append((key, label))
    for (la, ea), (lb, eb) in combinations(encodings, 2):
        (report.genuine if la == lb else report.impostor).append(distance(ea, eb))
    return report


def render(report: EvalReport) -> str:
    d = report.as_dict()
    lines = [f"samples: {d['samples']} ({len(report.skipped)} left out)"]
    lines += [f"  left out {k}: {v}" for k, v in sorted(report.skipped.items())]
    for kind in ("genuine", "impostor"):
        s = d[kind]
        lines.append(f"{kind:9s} pairs={s['pairs']}" + (
            f"  min={s['min']:.3f} median={s['median']:.3f} max={s['max']:.3f}"
            if s["pairs"] else ""))
    lines.append("threshold   false-accept   false-reject")
    for row in d["thresholds"]:
        far = "-" if row["far"] is None else f"{row['far'] * 100:6.1f}%"
        frr = "-" if row["frr"] is None else f"{row['frr'] * 100:6.1f}%"
        lines.append(f"  {row['threshold']:.2f}      {far:>9}      {frr:>9}")
    return "\n".join(lines)
