"""Liveness: a server-chosen random sequence of challenges judged from landmarks on
frames the server received. Pure logic: samples in, step changes out.

Phases: ``calibrating`` (look at the camera: neutral eye/mouth ratios and yaw are
measured), then each challenge in turn. A challenge is armed once its own action is
not already showing, and passes when its measure crosses the threshold relative to
the neutral values: blink (eye ratio down then up again), open mouth (mouth ratio
up), turn left / right (yaw). Turning the wrong way (after being seen at rest) fails. Every sample is bound to the
reference: a face encoded during the check that does not match fails it. Passive
signals: a face region that hardly changes between frames (median mean-absolute grey
difference below `frozen_diff` over `frozen_limit_s`) fails: a still image or a
frozen stream (through a lossy codec a still image is not bit-identical, hence the
median; a live camera shows sensor noise and head motion well above it); if a challenge times out while the landmarks never moved beyond sensor
jitter, the reason is ``static_face`` (a photo).
"""

from __future__ import annotations

import secrets
import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from vteller.identity import geometry
from vteller.identity.policy import LIVENESS_ACTIONS, IdentityPolicy

PROMPTS = {
    "calibrate": "Look straight at the camera",
    "blink": "Blink your eyes",
    "turn_left": "Turn your head to your left",
    "turn_right": "Turn your head to your right",
    "open_mouth": "Open your mouth",
}
CALIBRATION_SAMPLES = 4
STATIC_MOTION = 0.004  # landmark spread / inter-ocular distance below this: static


class LivenessState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


def choose_challenges(policy: IdentityPolicy, rng: Any = None) -> list[str]:
    """2-3 distinct actions in random order (cryptographic randomness by default)."""
    rng = rng or secrets.SystemRandom()
    count = rng.randint(policy.challenges_min, policy.challenges_max)
    return rng.sample(list(LIVENESS_ACTIONS), count)


@dataclass
class Sample:
    """One analysed frame: ``at`` is the frame's receive time (server clock)."""

    at: float
    faces: int
    landmarks: np.ndarray | None = None
    image_size: tuple[int, int] = (0, 0)
    distance: float | None = None  # to the reference, when this frame was encoded
    frame_diff: float | None = None  # mean |diff| of the grey face crop vs the last sample


@dataclass
class Step:
    action: str
    state: str = "pending"  # pending | active | passed | failed | timed_out
    prompted_at: float | None = None
    armed: bool = False
    ended_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"action": self.action, "state": self.state, "prompt": PROMPTS[self.action],
                "detail": self.detail}


@dataclass
class LivenessCheck:
    policy: IdentityPolicy
    actions: list[str]
    started_at: float
    state: LivenessState = LivenessState.RUNNING
    reason: str | None = None
    steps: list[Step] = field(default_factory=list)
    phase: str = "calibrate"
    baseline: dict[str, float] = field(default_factory=dict)
    _calib: list[tuple[float, float, float]] = field(default_factory=list)
    _diffs: list[tuple[float, float]] = field(default_factory=list)
    _motion: list[np.ndarray] = field(default_factory=list)
    bound: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        self.steps = [Step(a) for a in self.actions]
        self._phase_started = self.started_at

    # -------------------------------------------------------------- queries
    @property
    def current(self) -> Step | None:
        return next((s for s in self.steps if s.state == "active"), None)

    @property
    def done(self) -> bool:
        return self.state != LivenessState.RUNNING

    def prompt(self) -> tuple[str, int] | None:
        """(action, index) the customer should do now, or None when done."""
        if self.done:
            return None
        if self.phase == "calibrate":
            return "calibrate", 0
        step = self.current
        return (step.action, self.steps.index(step) + 1) if step else None

    def summary(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason, "phase": self.phase,
                "steps": [s.public() for s in self.steps], "bound_samples": self.bound}

    # -------------------------------------------------------------- input
    def observe(self, s: Sample) -> bool:
        """Judge one sample. Returns True when the prompt or state changed."""
        if self.done:
            return False
        self.samples += 1
        if s.distance is not None:
            if s.distance >= self.policy.mismatch_threshold:
                return self._end(LivenessState.FAILED, "different_face", s.at,
                                 distance=round(s.distance, 3))
            self.bound += 1
        if s.frame_diff is not None and self._frozen(s.at, s.frame_diff):
            return self._end(LivenessState.FAILED, "frozen_video", s.at,
                             median_change=round(statistics.median(d for _, d in self._diffs), 3))
        if s.faces != 1 or s.landmarks is None:
            return self._check_timeout(s.at)
        pts = s.landmarks
        ear = geometry.eye_aspect_ratio(pts)
        mar = geometry.mouth_aspect_ratio(pts)
        yaw = geometry.yaw_degrees(pts, s.image_size)
        self._track_motion(pts)
        if self.phase == "calibrate":
            self._calib.append((ear, mar, yaw))
            if len(self._calib) >= CALIBRATION_SAMPLES:
                self.baseline = {
                    "ear": statistics.median(c[0] for c in self._calib),
                    "mar": statistics.median(c[1] for c in self._calib),
                    "yaw": statistics.median(c[2] for c in self._calib)}
                self.phase = "challenges"
                self._activate(0, s.at)
                return True
            return self._check_timeout(s.at)
        step = self.current
        assert step is not None
        return self._judge(step, s.at, ear, mar, yaw) or self._check_timeout(s.at)

    # -------------------------------------------------------------- internals
    def _frozen(self, at: float, diff: float) -> bool:
        """The face region hardly changed between frames for `frozen_limit_s` (median,
        so a keyframe's jump or one noisy frame does not reset it)."""
        self._diffs.append((at, diff))
        while self._diffs and at - self._diffs[0][0] > self.policy.frozen_limit_s:
            self._diffs.pop(0)
        window = self._diffs[-1][0] - self._diffs[0][0] if self._diffs else 0.0
        return (window >= self.policy.frozen_limit_s * 0.9 and len(self._diffs) >= 5 and
                statistics.median(d for _, d in self._diffs) < self.policy.frozen_diff)

    def _track_motion(self, pts: np.ndarray) -> None:
        iod = geometry.inter_ocular(pts) or 1.0
        self._motion.append((pts - pts.mean(0)) / iod)
        if len(self._motion) > 40:
            self._motion.pop(0)

    def _static(self) -> bool:
        if len(self._motion) < 8:
            return False
        spread = np.stack(self._motion).std(axis=0).max()
        return bool(spread < STATIC_MOTION)

    def _activate(self, index: int, at: float) -> None:
        step = self.steps[index]
        step.state, step.prompted_at = "active", at

    def _judge(self, step: Step, at: float, ear: float, mar: float, yaw: float) -> bool:
        """A step is armed once its own action is not already showing (so the customer
        must do it after the prompt); the opposite turn counts as a wrong action only
        after the face was seen at rest during this step."""
        b, p = self.baseline, self.policy
        d_yaw = yaw - b["yaw"]
        eyes_open = ear > b["ear"] * (1 + p.blink_ratio) / 2
        if (abs(d_yaw) < p.turn_degrees / 2 and mar < b["mar"] + p.mouth_open_delta / 2
                and eyes_open):
            step.detail.setdefault("rest_at", round(at, 3))
        if not step.armed:
            step.armed = {"blink": eyes_open,
                          "open_mouth": mar < b["mar"] + p.mouth_open_delta / 2,
                          "turn_left": d_yaw < p.turn_degrees / 2,
                          "turn_right": d_yaw > -p.turn_degrees / 2}[step.action]
            if not step.armed:
                return False
        detail = step.detail
        if step.action == "blink":
            if ear <= b["ear"] * p.blink_ratio and "closed_at" not in detail:
                detail.update(closed_at=round(at, 3), ear_closed=round(ear, 3))
            elif "closed_at" in detail and eyes_open:
                detail.update(opened_at=round(at, 3), ear_open=round(ear, 3))
                return self._pass(step, at)
        elif step.action == "open_mouth":
            if mar >= b["mar"] + p.mouth_open_delta:
                detail.update(at=round(at, 3), mar=round(mar, 3), mar_neutral=round(b["mar"], 3))
                return self._pass(step, at)
        else:
            sign = 1 if step.action == "turn_left" else -1
            if sign * d_yaw >= p.turn_degrees:
                detail.update(at=round(at, 3), yaw=round(d_yaw, 1))
                return self._pass(step, at)
            if -sign * d_yaw >= p.turn_degrees and "rest_at" in detail:
                detail.update(at=round(at, 3), yaw=round(d_yaw, 1))
                step.state, step.ended_at = "failed", at
                return self._end(LivenessState.FAILED, "wrong_action", at)
        return False

    def _pass(self, step: Step, at: float) -> bool:
        step.state, step.ended_at = "passed", at
        index = self.steps.index(step)
        if index + 1 < len(self.steps):
            self._activate(index + 1, at)
            return True
        if self.bound == 0:
            return self._end(LivenessState.FAILED, "not_bound_to_reference", at)
        return self._end(LivenessState.PASSED, None, at)

    def _check_timeout(self, at: float) -> bool:
        if self.phase == "calibrate":
            if at - self.started_at >= self.policy.challenge_timeout_s:
                return self._end(LivenessState.TIMED_OUT, "no_usable_face", at)
            return False
        step = self.current
        if step is not None and step.prompted_at is not None and \
                at - step.prompted_at >= self.policy.challenge_timeout_s:
            step.state, step.ended_at = "timed_out", at
            if self._static():
                return self._end(LivenessState.FAILED, "static_face", at)
            return self._end(LivenessState.TIMED_OUT, f"{step.action}_not_seen", at)
        return False

    def _end(self, state: LivenessState, reason: str | None, at: float, **detail: Any) -> bool:
        self.state, self.reason = state, reason
        step = self.current
        if step is not None and state != LivenessState.PASSED:
            step.state, step.ended_at = "failed", at
            step.detail.update(detail)
        for later in self.steps:
            if later.state == "pending":
                later.state = "skipped"
        return True

    def tick(self, at: float) -> bool:
        """Time passes without samples (no frames at all): enforce timeouts."""
        return False if self.done else self._check_timeout(at)
