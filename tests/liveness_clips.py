"""Liveness clips made from the shared face photos: a cooperating customer (quick or
elderly-slow), and clips that do not follow the prompts (random head motion, talking,
cuts between two photos, looped segments).

A clip is a `Performer`: given the prompt on screen and the time, it says which pose
to show (an action and how far into it, 0..1). `PoseBank` renders each pose of one
photo once and analyses it once with the real landmark model, so hundreds of seeded
clips can be judged in seconds; `run_check(..., real_frames=True)` instead renders
and analyses every frame with sensor noise and head sway, as the server would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests import face_frames as ff
from vteller.identity import worker
from vteller.identity.faces import FaceEngine
from vteller.identity.liveness import LivenessCheck, Prompt, Sample
from vteller.identity.policy import LIVENESS_ACTIONS, IdentityPolicy

RATE_HZ = 10.0
TURN_MAX = 30.0  # degrees the renderer turns at amount 1
TILT_MAX = 20.0  # ... and tilts
LEVELS = 8  # amounts are rendered in this many steps


@dataclass
class Pose:
    action: str | None = None  # blink | turn | tilt | open_mouth | smile | None
    amount: float = 0.0  # 0..1 (turn, tilt: -1..1, + the person's left)
    photo: int = 0  # which photo (cuts switch between two)


class PoseBank:
    """Renders and measures each quantized pose of some photos once."""

    def __init__(self, photos: list[Path], engine: FaceEngine) -> None:
        self.actors = [ff.Actor(p) for p in photos]
        self.engine = engine
        self._images: dict[tuple[Any, ...], np.ndarray] = {}
        self._cache: dict[tuple[Any, ...], tuple[Any, np.ndarray]] = {}  # measured

    def key(self, pose: Pose) -> tuple[Any, ...]:
        if pose.action is None or pose.amount == 0:
            return (pose.photo, None, 0)
        if pose.action == "blink":
            return (pose.photo, "blink", 1)
        q = round(pose.amount * LEVELS)
        return (pose.photo, pose.action, q) if q else (pose.photo, None, 0)

    def image(self, pose: Pose) -> np.ndarray:
        photo, action, q = k = self.key(pose)
        if k not in self._images:
            actor = self.actors[photo]
            base, pts = actor.neutral, actor.pts
            amount = q / LEVELS
            self._images[k] = {
                None: lambda: base,
                "blink": lambda: actor.poses["blink"],
                "turn": lambda: ff.turn(base, pts, TURN_MAX * amount),
                "tilt": lambda: ff.tilt(base, pts, TILT_MAX * amount),
                "open_mouth": lambda: ff.open_mouth(base, pts, 0.45 * amount),
                "smile": lambda: ff.smile(base, pts, 0.4 * amount)}[action]()
        return self._images[k]

    def render_all(self) -> None:
        """Render every pose now (a camera showing them must not stall on a render)."""
        for photo in range(len(self.actors)):
            self.image(Pose("blink", 1, photo))
            for action in ("turn", "tilt", "open_mouth", "smile"):
                low = -LEVELS if action in ("turn", "tilt") else 1
                for q in range(low, LEVELS + 1):
                    self.image(Pose(action, q / LEVELS, photo))

    def _measured(self, pose: Pose) -> tuple[Any, np.ndarray]:
        k = self.key(pose)
        if k not in self._cache:
            img = self.image(pose)
            obs = self.engine.analyze(img, encode=False, landmarks=True)
            grey = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), worker.THUMB_SIZE,
                              interpolation=cv2.INTER_AREA).astype(np.float32)
            self._cache[k] = (obs, grey - grey.mean())
        return self._cache[k]

    def sample(self, pose: Pose, at: float, distance: float, rng: np.random.Generator,
               frame_no: int) -> Sample:
        """The sample the server would make of this pose (measured once, cached); the
        camera's sensor noise shows as a frame difference and thumbnail jitter."""
        obs, thumb = self._measured(pose)
        m = obs.measures
        if m is not None:  # landmark jitter of a live camera
            j = rng.normal(0, 1, 6)
            m = replace(m, ear=m.ear + 0.004 * j[0], mar=m.mar + 0.008 * j[1],
                        smile=m.smile + 0.005 * j[2], yaw=m.yaw + 0.4 * j[3],
                        pitch=m.pitch + 0.4 * j[4], roll=m.roll + 0.3 * j[5],
                        shape=m.shape + rng.normal(0, 0.01, m.shape.shape))
        return Sample(at, obs.faces, m, distance, frame_diff=2.0 + rng.random(),
                      thumb=thumb + rng.normal(0, 0.3, thumb.shape).astype(np.float32),
                      media_t=frame_no / 15)


Performer = Callable[[Prompt | None, float], Pose]
BLINK_S, OPEN_S = 0.25, 0.35  # one deliberate blink: eyes closed, then open


def _ramp(t: float, up: float) -> float:
    return max(0.0, min(1.0, t / up))


def _blinks(t: float, count: int, slow: float) -> float:
    """`count` blinks starting at t=0 (1: eyes closed now)."""
    period = (BLINK_S + OPEN_S) * slow ** 0.5
    n, phase = divmod(t, period)
    return 1.0 if 0 <= t and n < count and phase < BLINK_S * slow ** 0.5 else 0.0


def _pose(action: str, amount: float, photo: int = 0) -> Pose:
    if action.startswith("blink"):
        return Pose("blink" if amount else None, amount, photo)
    if action.startswith(("turn", "tilt")):
        kind, side = action.split("_")
        return Pose(kind, amount * (1 if side == "left" else -1), photo)
    return Pose(action, amount, photo)


@dataclass
class Cooperating:
    """Reacts to each prompt after `reaction_s`: does the action and holds it, lets go
    after the release cue; `slow` stretches the movements (elderly customers)."""

    reaction_s: float = 0.6
    slow: float = 1.0
    release_s: float | None = None  # to the awaited release cue (default: as reaction_s)
    _prompt: Prompt | None = None
    _since: float = 0.0
    _action: str | None = None
    _level: float = 0.0  # how far into the action when the prompt changed

    def __call__(self, prompt: Prompt | None, t: float) -> Pose:
        if prompt != self._prompt:
            if self._action is not None:
                self._level = self._amount(t)
            self._prompt, self._since = prompt, t
            if prompt is not None and prompt.action not in ("calibrate", "rest"):
                self._action = prompt.action
        if self._action is None:
            return Pose()
        return _pose(self._action, self._amount(t))

    def _amount(self, t: float) -> float:
        assert self._action is not None
        p, since = self._prompt, t - self._since - self.reaction_s
        if p is not None and p.phase == "release" and self.release_s is not None:
            since = t - self._since - self.release_s
        if self._action.startswith("blink"):
            if p is None or p.action != self._action:
                return 0.0
            return _blinks(since, 3 if "three" in self._action else 2, self.slow)
        up = (0.5 if self._action.startswith(("turn", "tilt")) else 0.3) * self.slow
        if p is not None and p.action == self._action and p.phase == "do":
            return _ramp(since, up)  # out, then hold
        return self._level * (1 - _ramp(since, up))  # released (cue, or the step ended)


@dataclass
class RandomMotion:
    """A clip that ignores the prompts: actions of random kind at random times (a
    Poisson process of `rate` per second) held for random times, spontaneous blinks,
    optional talking."""

    rng: np.random.Generator
    rate: float = 0.4
    talking: bool = False
    blink_rate: float = 0.3
    slow: float = 1.0
    _events: list[tuple[float, str, float]] = field(default_factory=list)
    _blinks: list[float] = field(default_factory=list)
    _horizon: float = 0.0

    def _extend(self, until: float) -> None:
        while self._horizon < until:
            start = self._horizon
            self._horizon += 5.0
            t = start
            while True:
                t += self.rng.exponential(1 / self.rate)
                if t >= self._horizon:
                    break
                kind = LIVENESS_ACTIONS[self.rng.integers(len(LIVENESS_ACTIONS))]
                self._events.append((t, kind, float(self.rng.uniform(0.3, 3.0))))
            t = start
            while True:
                t += self.rng.exponential(1 / self.blink_rate)
                if t >= self._horizon:
                    break
                self._blinks.append(t)

    def __call__(self, prompt: Prompt | None, t: float) -> Pose:
        self._extend(t + 5)
        for start, action, hold in reversed(self._events):
            since = t - start
            if not 0 <= since < 8:
                continue
            if action.startswith("blink"):
                amount = _blinks(since, 3 if "three" in action else 2, self.slow)
            else:
                up = (0.5 if action.startswith(("turn", "tilt")) else 0.3) * self.slow
                amount = _ramp(since, up) * (1 - _ramp(since - up - hold, up))
            if amount:
                return _pose(action, amount)
        if any(b <= t < b + 0.15 for b in self._blinks):
            return Pose("blink", 1.0)
        if self.talking:  # syllables: the mouth opens part way several times a second
            phase = math.sin(t * 2 * math.pi * 2.7) * math.sin(t * 2 * math.pi * 0.9)
            return Pose("open_mouth", round(abs(phase) * 0.6, 2))
        return Pose()


@dataclass
class Cuts:
    """Random motion with cuts to another person's photo and back."""

    inner: RandomMotion
    every_s: float = 2.5

    def __call__(self, prompt: Prompt | None, t: float) -> Pose:
        pose = self.inner(prompt, t)
        pose.photo = int(t // self.every_s) % 2
        return pose


@dataclass
class Loop:
    """The first `segment_s` of another clip played again and again."""

    inner: Performer
    segment_s: float

    def __call__(self, prompt: Prompt | None, t: float) -> Pose:
        return self.inner(None, t % self.segment_s)


def run_check(policy: IdentityPolicy, actions: list[str], performer: Performer,
              bank: PoseBank, seed: int, distance: float = 0.35,
              real_frames: bool = False, reference: np.ndarray | None = None,
              max_s: float = 60.0, shown: list[np.ndarray] | None = None,
              lost: Callable[[LivenessCheck, float], bool] | None = None) -> LivenessCheck:
    """Show the performer's clip to a liveness check at `RATE_HZ`; the check's own
    random pauses come from `seed`. Distances are given (`distance`) unless real
    frames are analysed against `reference`. Frames for which `lost(check, t)` is true
    never reach the check (a stalled link: the performer goes on regardless)."""
    import random

    rng = np.random.default_rng(seed)
    check = LivenessCheck(policy, actions, 0.0, rng=random.Random(seed))
    grey = None
    looped_frames: dict[float, np.ndarray] = {}
    for i in range(int(max_s * RATE_HZ)):
        t = i / RATE_HZ
        prompt = check.prompt()
        if prompt is None:
            break
        pose = performer(prompt, t)
        if lost is not None and lost(check, t):
            continue
        if not real_frames:
            check.observe(bank.sample(pose, t, distance, rng, i))
            continue
        if isinstance(performer, Loop):  # a looped clip repeats the very same frames
            key = round(t % performer.segment_s, 1)
            if key not in looped_frames:
                looped_frames[key] = ff.live(bank.image(pose), rng, t)
            rgb = looped_frames[key]
        else:
            rgb = ff.live(bank.image(pose), rng, t)
        if shown is not None:
            shown.append(rgb)
        encode = reference is not None and i % 10 == 0
        obs, grey, diff, thumb = worker.analyse(rgb, encode, True, policy.detect_width, grey)
        dist = None
        if encode and obs.encoding is not None:
            dist = float(np.linalg.norm(obs.encoding - reference))
        elif reference is None and i % 10 == 0:
            dist = distance
        check.observe(Sample(t, obs.faces, obs.measures, dist, diff, thumb, i / 15))
    return check
