"""What runs inside the analysis worker processes.

dlib's face encoder holds the GIL for its whole forward pass (~150 ms here), so in a
thread it would stall the event loop; worker processes keep the loop free. Each
process loads its own models once (`init`), then analyses frames and reference photos.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from vteller.identity.faces import Box, FaceEngine, Observation
from vteller.identity.policy import IdentityPolicy
from vteller.identity.reference import ReferenceFace, analyse_reference

_engine: FaceEngine | None = None
GREY_WIDTH = 320
THUMB_SIZE = (32, 24)  # whole-frame thumbnail for scene cuts and loops


def _exit_with_parent() -> None:
    """Workers hold both ends of the executor's queues, so they would outlive a killed
    server; end this process when the parent goes."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        def watch() -> None:
            parent.join()
            os._exit(0)
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def init(landmark_model: Path | None, detect_width: int, upsample: int,
         landmarks: str = "mediapipe") -> None:
    global _engine
    _exit_with_parent()
    _engine = FaceEngine(landmark_model, detect_width, upsample, landmarks)
    _engine.warm_up()


def ready() -> bool:
    return _engine is not None


def analyse(rgb: np.ndarray, encode: bool, landmarks: bool, detect_width: int,
            prev_grey: np.ndarray | None, hint: Box | None = None, fallback: bool = True,
            max_yaw: float | None = None, liveness: bool | None = None
            ) -> tuple[Observation, np.ndarray | None, float | None, np.ndarray | None]:
    """Analyse one frame. For liveness (default: with landmarks) also return a small grey copy of
    the frame, the mean absolute difference of the face region between it and
    ``prev_grey`` (the same region in both frames: frozen-video detection) and a
    32x24 thumbnail of the whole frame with its mean removed (cuts and loops)."""
    assert _engine is not None, "worker not initialised"
    started = time.thread_time()
    obs = _engine.analyze(rgb, encode=encode, landmarks=landmarks, detect_width=detect_width,
                          hint=hint, fallback=fallback, max_yaw=max_yaw)
    grey, diff, thumb = None, None, None
    if landmarks if liveness is None else liveness:
        scale = GREY_WIDTH / rgb.shape[1]
        grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
                          (GREY_WIDTH, round(rgb.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA).astype(np.int16)
        if prev_grey is not None and prev_grey.shape == grey.shape and obs.box is not None:
            b = obs.box
            y0, y1 = int(b.top * scale), max(int(b.bottom * scale), int(b.top * scale) + 1)
            x0, x1 = int(b.left * scale), max(int(b.right * scale), int(b.left * scale) + 1)
            diff = float(np.abs(grey[y0:y1, x0:x1] - prev_grey[y0:y1, x0:x1]).mean())
        thumb = cv2.resize(grey.astype(np.float32), THUMB_SIZE, interpolation=cv2.INTER_AREA)
        thumb -= thumb.mean()
    obs.cpu_s = time.thread_time() - started
    return obs, grey, diff, thumb


def document_faces(rgb: np.ndarray, limit: int = 4) -> list[tuple[Box, np.ndarray]]:
    """Every face in a frame showing an ID document (full resolution, upsampled twice:
    a printed photo is small; ~1 s, once per capture), largest first, with encodings."""
    assert _engine is not None, "worker not initialised"
    boxes = _engine.detect(rgb, detect_width=0, upsample=2)[:limit]
    return [(b, _engine.encode(rgb, b)) for b in boxes]


def reference(photo: bytes, policy: IdentityPolicy) -> ReferenceFace:
    assert _engine is not None, "worker not initialised"
    return analyse_reference(_engine, photo, policy)
