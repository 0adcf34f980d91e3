"""Face analysis on one image: detect, measure quality, landmarks, 128-d encoding.

dlib does the work. Its face encoder holds the GIL for its whole forward pass, so the
server runs this in worker processes (`identity.worker`), never on the event loop.
dlib's networks keep per-call state inside the model objects, so every thread that
uses an engine loads its own copy (``threading.local``).

Models (see README "Models and licences"): dlib's HOG frontal face detector (built
in), the 5-point landmark model and the ResNet face encoder from
`face-recognition-models` (public domain), and the landmark model liveness reads
(`identity.landmarks`: MediaPipe Face Mesh by default, Apache-2.0; or dlib's 68-point
model, trained on iBUG 300-W: non-commercial use only).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import dlib
import numpy as np

from vteller.identity import landmarks as lm
from vteller.identity.landmarks import FaceMeasures

with __import__("warnings").catch_warnings():
    __import__("warnings").simplefilter("ignore")  # pkg_resources deprecation notice
    import face_recognition_models as _models


@dataclass(frozen=True)
class Box:
    """A face box in full-resolution pixel coordinates."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def rect(self) -> dlib.rectangle:
        return dlib.rectangle(self.left, self.top, self.right, self.bottom)


@dataclass(frozen=True)
class Quality:
    face_px: int  # box height in pixels
    brightness: float  # mean grey level of the face, 0..255
    sharpness: float  # variance of the Laplacian of the face at 128 px

    def problem(self, min_face_px: int, min_brightness: float, max_brightness: float,
                min_sharpness: float) -> str | None:
        """The first quality problem as a verdict/error code, or None."""
        if self.face_px < min_face_px:
            return "face_too_small"
        if not min_brightness <= self.brightness <= max_brightness:
            return "poorly_lit"
        if self.sharpness < min_sharpness:
            return "too_blurry"
        return None


@dataclass
class Observation:
    """What one frame showed. ``faces`` counts detections; the rest describe the
    largest face (None when there is none)."""

    faces: int
    box: Box | None = None
    quality: Quality | None = None
    landmarks: np.ndarray | None = None  # (N, 2) float, full resolution
    measures: FaceMeasures | None = None  # what liveness reads from the landmarks
    encoding: np.ndarray | None = None  # (128,) float
    image_size: tuple[int, int] = (0, 0)  # width, height
    cpu_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def default_landmark_model() -> Path:
    return Path(_models.pose_predictor_model_location())


class FaceEngine:
    """Stateless face analysis; safe to call from many threads at once."""

    def __init__(self, landmark_model: Path | None = None, detect_width: int = 320,
                 upsample: int = 0, landmarks: str = "mediapipe") -> None:
        if landmarks not in lm.MODELS:
            raise ValueError(f"unknown landmark model {landmarks!r}")
        self.landmark_kind = landmarks
        self.landmark_model = Path(landmark_model or default_landmark_model())
        if landmarks == "dlib68" and not self.landmark_model.is_file():
            raise FileNotFoundError(f"landmark model not found: {self.landmark_model}")
        self.detect_width = detect_width
        self.upsample = upsample
        self._local = threading.local()

    def _m(self) -> threading.local:
        m = self._local
        if not hasattr(m, "detector"):
            m.detector = dlib.get_frontal_face_detector()
            m.marks = lm.load(self.landmark_kind, self.landmark_model)
            m.shape5 = dlib.shape_predictor(_models.pose_predictor_five_point_model_location())
            m.encoder = dlib.face_recognition_model_v1(_models.face_recognition_model_location())
        return m

    def warm_up(self) -> None:
        """Load this thread's models now (they take ~0.3 s)."""
        self._m()

    def detect(self, rgb: np.ndarray, detect_width: int | None = None,
               upsample: int | None = None) -> list[Box]:
        """Face boxes, largest first. Detection runs on a copy scaled to
        ``detect_width`` (0: full resolution); boxes are mapped back."""
        width = self.detect_width if detect_width is None else detect_width
        ups = self.upsample if upsample is None else upsample
        h, w = rgb.shape[:2]
        scale = width / w if width and w > width else 1.0
        return self._detect_in(rgb, scale, 0, 0, ups, (w, h))

    def _detect_in(self, region: np.ndarray, scale: float, x0: int, y0: int, upsample: int,
                   bounds: tuple[int, int]) -> list[Box]:
        """Run the detector on ``region`` (offset x0, y0 in the frame) resized by
        ``scale``; boxes in frame coordinates, clipped to ``bounds``, largest first."""
        small = region
        if scale < 1:
            small = cv2.resize(region, (max(1, round(region.shape[1] * scale)),
                                        max(1, round(region.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
        w, h = bounds
        boxes = [Box(max(0, x0 + round(r.left() / scale)), max(0, y0 + round(r.top() / scale)),
                     min(w, x0 + round(r.right() / scale)), min(h, y0 + round(r.bottom() / scale)))
                 for r in self._m().detector(np.ascontiguousarray(small), upsample)]
        return sorted(boxes, key=lambda b: -(b.width * b.height))

    def quality(self, rgb: np.ndarray, box: Box) -> Quality:
        crop = rgb[box.top:box.bottom, box.left:box.right]
        if crop.size == 0:
            return Quality(box.height, 0.0, 0.0)
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        grey128 = cv2.resize(grey, (128, 128), interpolation=cv2.INTER_AREA)
        return Quality(box.height, float(grey.mean()),
                       float(cv2.Laplacian(grey128, cv2.CV_64F).var()))

    @property
    def scheme(self) -> lm.Scheme:
        return lm.MEDIAPIPE if self.landmark_kind == "mediapipe" else lm.DLIB68

    def landmarks(self, rgb: np.ndarray, box: Box) -> np.ndarray | None:
        return self._m().marks.points(rgb, (box.left, box.top, box.right, box.bottom))

    def encode(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        m = self._m()
        shape = m.shape5(rgb, box.rect())
        return np.array(m.encoder.compute_face_descriptor(rgb, shape, 1))

    def track(self, rgb: np.ndarray, hint: Box) -> list[Box]:
        """Detect only near the last known face: a region three face-widths wide,
        scaled so the face is ~100 px (a few ms instead of a whole-frame scan)."""
        h, w = rgb.shape[:2]
        size = max(hint.width, hint.height)
        x0, y0 = max(0, hint.left - size), max(0, hint.top - size)
        x1, y1 = min(w, hint.right + size), min(h, hint.bottom + size)
        scale = min(1.0, 100 / max(1, size))
        return self._detect_in(rgb[y0:y1, x0:x1], scale, x0, y0, 0, (w, h))

    def analyze(self, rgb: np.ndarray, *, encode: bool = True, landmarks: bool = False,
                detect_width: int | None = None, upsample: int | None = None,
                hint: Box | None = None, fallback: bool = True,
                max_yaw: float | None = None) -> Observation:
        """Detect, then measure the largest face (encode and landmarks on request).

        With a ``hint`` (the last face box) only its neighbourhood is searched; callers
        still scan the whole frame regularly to notice other faces. Without one, the
        downscaled frame is scanned, then (no face found, ``fallback``) the
        full-resolution one, for faces too small for the copy. With landmarks and
        ``max_yaw``, a face turned further from frontal is not encoded (its encoding
        would be a poor sample); ``extra["turned"]`` says so."""
        started = time.thread_time()
        rgb = np.ascontiguousarray(rgb)
        obs_extra: dict[str, float] = {}
        boxes = self.track(rgb, hint) if hint is not None else []
        if boxes:
            obs_extra["tracked"] = 1.0
        else:
            boxes = self.detect(rgb, detect_width, upsample)
            if not boxes and fallback and (
                    self.detect_width if detect_width is None else detect_width):
                boxes = self.detect(rgb, 0, upsample)
                obs_extra["full_resolution"] = 1.0
        obs = Observation(faces=len(boxes), image_size=(rgb.shape[1], rgb.shape[0]),
                          extra=obs_extra)
        if boxes:
            box = boxes[0]
            obs.box = box
            obs.quality = self.quality(rgb, box)
            if landmarks:
                obs.landmarks = self.landmarks(rgb, box)
                if obs.landmarks is not None:
                    obs.measures = lm.measure(obs.landmarks, self.scheme, obs.image_size)
                    if max_yaw is not None and abs(obs.measures.yaw) > max_yaw:
                        obs_extra["turned"] = 1.0
                        encode = False
            if encode:
                obs.encoding = self.encode(rgb, box)
        obs.cpu_s = time.thread_time() - started
        return obs


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two encodings (same person: typically < 0.6)."""
    return float(np.linalg.norm(a - b))


def to_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """An RGB frame as JPEG (evidence snapshots)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()
