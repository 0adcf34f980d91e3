"""Camera frames made from real face photos, and the synthetic "cooperating customer":
perspective-like yaw warps, closed eyes, an open mouth, sensor noise and head sway.

A real camera never sends two identical frames (sensor noise) and a live head always
moves a little; a still photo replayed as video does neither. `FaceCam` sends one of
these as an aiortc video track and can be told what to do next.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame

from vteller.identity import landmarks as lm
from vteller.identity.faces import FaceEngine

WIDTH, HEIGHT = 640, 480
_engine = FaceEngine(landmarks="dlib68")  # renders poses; the judge uses its own model


@functools.lru_cache(maxsize=16)
def selfie(path: Path, face_frac: float = 0.45) -> np.ndarray:
    """A 640x480 RGB frame cropped around the photo's face like a phone selfie (the
    face about `face_frac` of the height). Photos with several faces are only scaled."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    boxes = _engine.detect(img, 0, 1)
    if len(boxes) == 1:
        b = boxes[0]
        side = int(b.height / face_frac)
        cx, cy = (b.left + b.right) // 2, (b.top + b.bottom) // 2
        half_w = int(side * WIDTH / HEIGHT / 2)
        img = img[max(0, cy - side // 2):cy + side // 2, max(0, cx - half_w):cx + half_w]
    scale = min(WIDTH / img.shape[1], HEIGHT / img.shape[0])
    img = cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)),
                     interpolation=cv2.INTER_AREA)
    out = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    y, x = (HEIGHT - img.shape[0]) // 2, (WIDTH - img.shape[1]) // 2
    out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


def landmarks(rgb: np.ndarray) -> np.ndarray:
    obs = _engine.analyze(rgb, encode=False, landmarks=True, detect_width=0)
    assert obs.landmarks is not None, "no face in the base frame"
    return obs.landmarks


def turn(rgb: np.ndarray, pts: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate the head about the vertical axis (positive: the person's left) by mapping
    the face onto a cylinder: the nose moves more than the face outline, as in 3D."""
    h, w = rgb.shape[:2]
    cx = (pts[0, 0] + pts[16, 0]) / 2
    r = (pts[16, 0] - pts[0, 0]) / 2 * 1.15
    xs = np.arange(w, dtype=np.float32)
    theta = np.arcsin(np.clip((xs - cx) / r, -1, 1)) - np.radians(degrees)
    src = np.where(np.abs(theta) < np.pi / 2, cx + r * np.sin(theta), -1)
    src = np.where(np.abs(xs - cx) < r, src, xs).astype(np.float32)
    map_x = np.tile(src, (h, 1))
    top = int(pts[19, 1] - (pts[8, 1] - pts[19, 1]) * 0.6)
    bottom = int(pts[8, 1] + 20)
    map_x[:max(0, top)] = xs
    map_x[bottom:] = xs
    map_y = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    return cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def nod(rgb: np.ndarray, pts: np.ndarray, degrees: float) -> np.ndarray:
    """Tilt the head about the horizontal axis (positive: looking up) by mapping the
    face onto a horizontal cylinder: the nose moves more than the brow and chin."""
    h, w = rgb.shape[:2]
    top = pts[19, 1] - (pts[8, 1] - pts[19, 1]) * 0.35
    cy = (top + pts[8, 1]) / 2
    r = (pts[8, 1] - top) / 2 * 1.15
    ys = np.arange(h, dtype=np.float32)
    theta = np.arcsin(np.clip((ys - cy) / r, -1, 1)) + np.radians(degrees)
    src = np.where(np.abs(theta) < np.pi / 2, cy + r * np.sin(theta), -1)
    src = np.where(np.abs(ys - cy) < r, src, ys).astype(np.float32)
    map_y = np.tile(src[:, None], (1, w))
    left, right = int(pts[0, 0] - 10), int(pts[16, 0] + 10)
    map_y[:, :max(0, left)] = ys[:, None]
    map_y[:, right:] = ys[:, None]
    map_x = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    return cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def smile(rgb: np.ndarray, pts: np.ndarray, amount: float = 0.25) -> np.ndarray:
    """Widen the mouth and lift its corners (a broad smile)."""
    h, w = rgb.shape[:2]
    mouth = pts[48:68]
    cx, cy = mouth[:, 0].mean(), mouth[:, 1].mean()
    half_w = (pts[54, 0] - pts[48, 0]) / 2
    half_h = (pts[57, 1] - pts[51, 1]) / 2 + half_w * 0.6
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx - cx) / (half_w * 1.8), (yy - cy) / (half_h * 1.6)
    weight = np.clip(1 - (u ** 2 + v ** 2), 0, 1) ** 1.5
    map_x = xx - (xx - cx) * (amount / (1 + amount)) * weight
    lift = half_w * amount * 0.5 * (np.abs(xx - cx) / half_w) ** 2
    map_y = yy + lift * weight
    return cv2.remap(rgb, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def tilt(rgb: np.ndarray, pts: np.ndarray, degrees: float) -> np.ndarray:
    """Tilt the head in the image plane (positive: towards the person's left shoulder,
    which a non-mirrored camera shows on the image's right)."""
    centre = tuple(float(v) for v in pts[27:36].mean(0))  # the nose
    m = cv2.getRotationMatrix2D(centre, -degrees, 1.0)
    return cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def close_eyes(rgb: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Paint both eyes over with the surrounding skin and draw the closed lid: a dark
    lash line sagging halfway to the lower lid. (A thin line on the eye's midline read
    as half-closed to MediaPipe for some faces: EAR 0.6 of open, close to the 0.65
    threshold, so a compressed frame on a loaded machine could miss a blink.)"""
    out = rgb.copy()
    for eye in (list(lm.DLIB68.right_eye), list(lm.DLIB68.left_eye)):
        e = pts[eye]
        mask = np.zeros(rgb.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(e.astype(np.int32)), 255)
        mask = cv2.dilate(mask, np.ones((9, 9), np.uint8))
        out = cv2.inpaint(out, mask, 7, cv2.INPAINT_TELEA)
        lid = np.array([e[0], ((e[1] + e[5]) / 2 + e[5]) / 2, ((e[2] + e[4]) / 2 + e[4]) / 2,
                        e[3]]).astype(np.int32)
        cv2.polylines(out, [lid.reshape(-1, 1, 2)], False, (20, 15, 15), 3, cv2.LINE_AA)
    return out


def open_mouth(rgb: np.ndarray, pts: np.ndarray, amount: float = 0.4) -> np.ndarray:
    """Drop the jaw: shift the lower face down and fill the mouth opening dark."""
    h, w = rgb.shape[:2]
    cy = (pts[62, 1] + pts[66, 1]) / 2
    d = (pts[54, 0] - pts[48, 0]) * amount
    chin = pts[8, 1] + d * 0.3
    ys = np.arange(h, dtype=np.float32)
    x0, x1 = pts[4, 0], pts[12, 0]
    xw = np.clip(1 - np.abs((np.arange(w) - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 4, 0, 1)
    shift = np.where(ys <= cy, 0, np.where(ys < chin + d, d, np.clip(chin + 2 * d - ys, 0, d)))
    map_y = np.tile(ys[:, None], (1, w)) - shift[:, None].astype(np.float32) * xw[None, :]
    map_x = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    out = cv2.remap(rgb, map_x, map_y.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    lower = pts[[64, 65, 66, 67, 60]] + [0, d]
    inner = np.vstack([pts[[60, 61, 62, 63, 64]], lower[:-1]]).astype(np.int32)
    cv2.fillPoly(out, [inner], (50, 20, 25), cv2.LINE_AA)
    return out


def live(rgb: np.ndarray, rng: np.random.Generator, t: float) -> np.ndarray:
    """Sensor noise and a slow head sway of a couple of pixels (a live camera)."""
    dx, dy = 2.0 * np.sin(t * 1.7), 1.5 * np.sin(t * 1.1 + 1)
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    noise = rng.normal(0, 3.0, rgb.shape)
    return np.clip(moved + noise, 0, 255).astype(np.uint8)


class Actor:
    """A face that can be told to do a liveness action (frames from one photo)."""

    def __init__(self, photo: Path) -> None:
        self.neutral = selfie(photo)
        self.pts = pts = landmarks(self.neutral)
        self.poses = {
            None: self.neutral, "calibrate": self.neutral,
            "blink": close_eyes(self.neutral, pts),
            "turn_left": turn(self.neutral, pts, 28),
            "turn_right": turn(self.neutral, pts, -28),
            "open_mouth": open_mouth(self.neutral, pts),
        }


class FaceCam(VideoStreamTrack):
    """A camera track showing a photo; `pose` and `still` change what it shows."""

    def __init__(self, photo: Path | None = None, still: bool = False, fps: int = 15) -> None:
        super().__init__()
        self.actor = Actor(photo) if photo is not None else None
        self.image: np.ndarray | None = None
        self.pose: str | None = None
        self.pose_until = 0.0
        self.still = still
        self.scene: Callable[[float], np.ndarray] | None = None  # t (s) -> frame to show
        self._rng = np.random.default_rng(7)
        self._n = 0
        self._fps = fps
        self._start: float | None = None
        self._next = 0.0
        self._t = 0.0

    def show(self, rgb: np.ndarray) -> None:
        self.image = rgb

    def act(self, action: str | None, seconds: float) -> None:
        """Hold `action`'s pose for `seconds`, then neutral again."""
        self.pose = action
        self.pose_until = self._t + seconds

    async def recv(self) -> VideoFrame:
        import asyncio
        import fractions

        # paced and stamped by the wall clock, like a real camera: on a loaded machine
        # frames come late or are dropped, but each shows what happens at its moment
        now = time.monotonic()
        if self._start is None:
            self._start = self._next = now
        self._next = max(self._next + 1 / self._fps, now)
        await asyncio.sleep(self._next - now)
        t = self._t = time.monotonic() - self._start
        if t >= self.pose_until:
            self.pose = None
        if self.scene is not None:
            base = self.scene(t)
        elif self.image is not None:
            base = self.image
        else:
            base = self.actor.poses[self.pose]  # type: ignore[union-attr]
        rgb = base if self.still else live(base, self._rng, t)
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = round(t * 90000), fractions.Fraction(1, 90000)
        self._n += 1
        return frame


def write_y4m(photo: Path, out: Path, frames: int = 60, size: tuple[int, int] = (640, 480)) -> Path:
    """A fake camera clip from a still photo (slight zoom drift so frames differ)."""
    img = cv2.imread(str(photo))
    w, h = size
    scale = min(w / img.shape[1], h / img.shape[0])
    img = cv2.resize(img, (int(img.shape[1] * scale) // 2 * 2, int(img.shape[0] * scale) // 2 * 2))
    canvas = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
    canvas[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
    with out.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, 1 + 0.002 * i)
            frame = cv2.warpAffine(canvas, m, (w, h))
            fh.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return out
