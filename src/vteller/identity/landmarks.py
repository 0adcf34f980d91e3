"""Face landmark models and the measures liveness judges: eye and mouth openness,
mouth width, head yaw, pitch and roll.

Two models behind one `LandmarkModel` protocol (`identity.landmarks` setting):
  mediapipe  MediaPipe Face Mesh, 468 points (Apache-2.0 code and model; the default)
  dlib68     dlib's 68-point shape predictor (iBUG 300-W training data: non-commercial)
Each has a `Scheme`: which of its points are the eye contours, the inner lips, the
mouth corners and the six points head pose is solved from. Everything after that is
the same code, so both models feed the same liveness judge.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class Scheme:
    """Point indices of one landmark model. Eyes are six points each (corner, two
    upper, corner, two lower: Soukupova & Cech's EAR order); the inner mouth is eight
    (corner, three upper, corner, three lower); pose points are the rigid ones (they do
    not move when the jaw drops or the mouth smiles): nose tip, nose bridge between the
    eyes, the base of the nose, and the outer and inner corners of both eyes."""

    name: str
    right_eye: tuple[int, ...]
    left_eye: tuple[int, ...]
    inner_mouth: tuple[int, ...]
    mouth_corners: tuple[int, int]
    pose: tuple[int, ...]


DLIB68 = Scheme("dlib68", right_eye=(36, 37, 38, 39, 40, 41), left_eye=(42, 43, 44, 45, 46, 47),
                inner_mouth=(60, 61, 62, 63, 64, 65, 66, 67), mouth_corners=(48, 54),
                pose=(30, 27, 33, 36, 45, 39, 42))
MEDIAPIPE = Scheme("mediapipe", right_eye=(33, 160, 158, 133, 153, 144),
                   left_eye=(362, 385, 387, 263, 373, 380),
                   inner_mouth=(78, 81, 13, 311, 308, 402, 14, 178), mouth_corners=(61, 291),
                   pose=(1, 168, 2, 33, 263, 133, 362))

# A generic 3D face in camera axes (x right, y down, z away from the camera; about
# 5 units a millimetre, nose tip at the origin) for the pose points, in the order of
# `Scheme.pose`. Yaw and pitch are judged as changes from the customer's own
# calibrated rest pose, so the generic shape's bias cancels out.
_MODEL = np.array([
    (0.0, 0.0, 0.0),  # nose tip
    (0.0, -170.0, 95.0),  # nose bridge between the eyes
    (0.0, 55.0, 60.0),  # base of the nose
    (-225.0, -170.0, 135.0),  # outer corner, person's right eye (image left)
    (225.0, -170.0, 135.0),  # outer corner, left eye
    (-80.0, -165.0, 105.0),  # inner corner, right eye
    (80.0, -165.0, 105.0),  # inner corner, left eye
])


@dataclass(frozen=True)
class FaceMeasures:
    """What liveness reads from one face. Ratios are scale-free; angles in degrees."""

    ear: float  # eye aspect ratio, both eyes' mean: ~0.3 open, < 0.2 closed
    mar: float  # inner-mouth opening over its width: ~0-0.1 closed, > 0.4 wide open
    smile: float  # mouth-corner distance over inter-ocular distance
    yaw: float  # + the person turned to their own left
    pitch: float  # + the person looks up
    roll: float  # + the head tilted towards the person's left shoulder
    iod: float  # inter-ocular distance in frame widths (face scale)
    center: tuple[float, float]  # mean of the pose points, in frame widths
    shape: np.ndarray  # pose and eye points, centred and divided by `iod` (motion)


def _d(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a - b)))


def _ear(e: np.ndarray) -> float:
    width = _d(e[0], e[3])
    return (_d(e[1], e[5]) + _d(e[2], e[4])) / (2 * width) if width else 0.0


def head_pose(points: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float]:
    """(yaw, pitch) in degrees from the pose points by solvePnP against a
    generic face. Yaw +: the person turned to their own left (a non-mirrored camera
    sees the nose move right); pitch +: looking up."""
    width, height = image_size
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]],
                      dtype=np.float64)
    # Start from a face looking at the camera at the distance its eye span implies, so
    # the iterative solver stays in that basin (not the mirrored depth solution).
    span = float(np.hypot(*(points[3] - points[4]))) or 1.0
    center = points.mean(0)
    depth = width * 450.0 / span
    tvec = np.array([[(center[0] - width / 2) * depth / width],
                     [(center[1] - height / 2) * depth / width], [depth]])
    ok, rvec, _ = cv2.solvePnP(_MODEL, points.astype(np.float64), camera, np.zeros(4),
                               rvec=np.zeros((3, 1)), tvec=tvec, useExtrinsicGuess=True,
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return 0.0, 0.0
    rot, _ = cv2.Rodrigues(rvec)
    forward = rot @ np.array([0.0, 0.0, -1.0])  # where the face looks (towards the camera)
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.atan2(-forward[1], math.hypot(forward[0], forward[2])))
    return yaw, pitch


def measure(points: np.ndarray, scheme: Scheme, image_size: tuple[int, int]) -> FaceMeasures:
    """The measures of one face from its landmarks (pixels, full resolution)."""
    right, left = points[list(scheme.right_eye)], points[list(scheme.left_eye)]
    iod = _d(right.mean(0), left.mean(0)) or 1.0
    m = points[list(scheme.inner_mouth)]
    width = _d(m[0], m[4])
    mar = (_d(m[1], m[7]) + _d(m[2], m[6]) + _d(m[3], m[5])) / (2 * width) if width else 0.0
    a, b = scheme.mouth_corners
    pose = points[list(scheme.pose)]
    yaw, pitch = head_pose(pose, image_size)
    key = np.vstack([pose, right, left])
    center = key.mean(0)
    (rx, ry), (lx, ly) = right.mean(0), left.mean(0)
    roll = math.degrees(math.atan2(ly - ry, lx - rx))  # the eye line's slope
    frame_w = float(image_size[0]) or 1.0  # sizes in frame widths: a sender that lowers
    # its resolution mid-call (as WebRTC does under load) does not look like a jump
    return FaceMeasures(ear=(_ear(right) + _ear(left)) / 2, mar=mar,
                        smile=_d(points[a], points[b]) / iod, yaw=yaw, pitch=pitch, roll=roll,
                        iod=iod / frame_w,
                        center=(float(pose[:, 0].mean()) / frame_w,
                                float(pose[:, 1].mean()) / frame_w),
                        shape=(key - center) / iod)


class LandmarkModel(Protocol):
    """Landmarks of the face in ``box`` (left, top, right, bottom), or None."""

    scheme: Scheme

    def points(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None: ...


class MediaPipeLandmarks:
    """MediaPipe Face Mesh on a crop around the detected face (so small faces in a
    large frame are measured at the model's working size). Static-image mode: no state
    is carried between frames, which may come from different calls."""

    scheme = MEDIAPIPE
    CROP_PX = 256  # the crop is scaled so its longer side is this

    def __init__(self) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # TFLite/absl start-up chatter
        import mediapipe as mp  # noqa: PLC0415 - heavy; loaded only where used

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=0.3)

    def points(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
        left, top, right, bottom = box
        h, w = rgb.shape[:2]
        margin = int(max(right - left, bottom - top) * 0.6)
        x0, y0 = max(0, left - margin), max(0, top - margin)
        x1, y1 = min(w, right + margin), min(h, bottom + margin)
        crop = rgb[y0:y1, x0:x1]
        if crop.size == 0:
            return None
        scale = self.CROP_PX / max(crop.shape[:2])
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)),
                                 max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return None
        ch, cw = crop.shape[:2]
        pts = np.array([(p.x * cw, p.y * ch) for p in result.multi_face_landmarks[0].landmark],
                       dtype=np.float64)
        return pts / scale + (x0, y0)

    def close(self) -> None:
        self._mesh.close()


class DlibLandmarks:
    """dlib's 68-point shape predictor (the file given, or the one
    face-recognition-models ships: trained on iBUG 300-W, non-commercial use only)."""

    scheme = DLIB68

    def __init__(self, model: Path) -> None:
        import dlib  # noqa: PLC0415

        self._predictor = dlib.shape_predictor(str(model))
        self._rect = dlib.rectangle

    def points(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
        shape = self._predictor(rgb, self._rect(*box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def close(self) -> None:
        pass


MODELS = ("mediapipe", "dlib68")


def load(name: str, dlib_model: Path) -> LandmarkModel:
    """The landmark model named by the `identity.landmarks` setting."""
    if name == "mediapipe":
        return MediaPipeLandmarks()
    if name == "dlib68":
        return DlibLandmarks(dlib_model)
    raise ValueError(f"unknown landmark model {name!r} (one of {', '.join(MODELS)})")
