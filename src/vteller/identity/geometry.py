"""Measures from 68 landmarks (iBUG 300-W numbering): eye and mouth aspect ratios and
head yaw from solvePnP against a generic 3D face."""

from __future__ import annotations

import math

import cv2
import numpy as np

RIGHT_EYE = slice(36, 42)  # the person's right eye (image left)
LEFT_EYE = slice(42, 48)
INNER_MOUTH = slice(60, 68)

# Generic 3D face in camera axes (x right, y down, z away from the camera), matched to
# landmarks nose tip 30, chin 8, eye outer corners 36/45, mouth corners 48/54.
_MODEL = np.array([
    (0.0, 0.0, 0.0),
    (0.0, 330.0, 65.0),
    (-225.0, -170.0, 135.0),
    (225.0, -170.0, 135.0),
    (-150.0, 150.0, 125.0),
    (150.0, 150.0, 125.0),
])
_MODEL_POINTS = (30, 8, 36, 45, 48, 54)


def _d(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a - b)))


def eye_aspect_ratio(pts: np.ndarray) -> float:
    """Mean EAR of both eyes (Soukupova & Cech 2016): ~0.3 open, < 0.2 closed."""
    def ear(e: np.ndarray) -> float:
        width = _d(e[0], e[3])
        return (_d(e[1], e[5]) + _d(e[2], e[4])) / (2 * width) if width else 0.0
    return (ear(pts[RIGHT_EYE]) + ear(pts[LEFT_EYE])) / 2


def mouth_aspect_ratio(pts: np.ndarray) -> float:
    """Inner-lip opening over mouth width: ~0-0.1 closed, > 0.4 wide open."""
    m = pts[INNER_MOUTH]
    width = _d(m[0], m[4])
    return (_d(m[1], m[7]) + _d(m[2], m[6]) + _d(m[3], m[5])) / (2 * width) if width else 0.0


def inter_ocular(pts: np.ndarray) -> float:
    return _d(pts[RIGHT_EYE].mean(0), pts[LEFT_EYE].mean(0))


def yaw_degrees(pts: np.ndarray, image_size: tuple[int, int]) -> float:
    """Head yaw. Positive: the person turned to their own left (as a non-mirrored
    camera sees it, the nose moves towards the image's right)."""
    width, height = image_size
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    image_points = np.array([pts[i] for i in _MODEL_POINTS], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(_MODEL, image_points, camera, np.zeros(4),
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return 0.0
    rot, _ = cv2.Rodrigues(rvec)
    forward = rot @ np.array([0.0, 0.0, -1.0])  # where the face looks (towards the camera)
    return math.degrees(math.atan2(forward[0], -forward[2]))
