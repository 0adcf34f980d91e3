"""Face verification verdicts from a sliding window of live samples, and presence
checks after verification. Pure logic: observations in, verdicts out."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from vteller.identity.faces import Observation
from vteller.identity.policy import IdentityPolicy


class Verdict(StrEnum):
    IDLE = "idle"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    MISMATCH = "mismatch"
    NEEDS_REVIEW = "needs_review"  # borderline: the teller judges
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    POOR_QUALITY = "poor_quality"  # detail: face_too_small | poorly_lit | too_blurry
    NO_REFERENCE = "no_reference"


FINAL = frozenset({Verdict.VERIFIED, Verdict.MISMATCH, Verdict.NEEDS_REVIEW, Verdict.NO_FACE,
                   Verdict.SEVERAL_FACES, Verdict.POOR_QUALITY, Verdict.NO_REFERENCE})


def quality_problem(obs: Observation, policy: IdentityPolicy) -> str | None:
    if obs.quality is None:
        return None
    return obs.quality.problem(policy.min_face_px, policy.min_brightness,
                               policy.max_brightness, policy.min_sharpness)


@dataclass
class VerificationWindow:
    """Aggregates distances to the reference over the last ``window`` usable samples.

    A verdict needs ``min_samples`` usable samples (one frontal face of usable
    quality), or only ``early_samples`` when every one is ``clear_margin`` beyond a
    threshold; the median decides: below ``match_threshold`` verified, at or above
    ``mismatch_threshold`` mismatch, in between needs the teller's review. A median
    within ``straddle_margin`` of a threshold is not decided yet: the window grows to
    ``window_max`` samples (or the time limit) first. Until then the current
    condition (no face, several faces, poor quality, turned away) is reported, and
    becomes the verdict if the time limit passes without enough samples.
    """

    policy: IdentityPolicy
    started_at: float
    distances: deque[float] = field(default_factory=deque)
    condition: Verdict = Verdict.VERIFYING
    detail: str | None = None
    first_face_at: float | None = None
    _grown: bool = False

    def add(self, obs: Observation, at: float, distance: float | None) -> Verdict:
        """One sample; returns the verdict (VERIFYING while undecided)."""
        if obs.faces == 0:
            self.condition, self.detail = Verdict.NO_FACE, None
        elif obs.faces > 1:
            self.condition, self.detail = Verdict.SEVERAL_FACES, None
        elif (problem := quality_problem(obs, self.policy)) is not None:
            self.condition, self.detail = Verdict.POOR_QUALITY, problem
        elif "turned" in obs.extra:
            self.condition, self.detail = Verdict.POOR_QUALITY, "turned_away"
        elif distance is not None:
            if self.first_face_at is None:
                self.first_face_at = at
            self.condition, self.detail = Verdict.VERIFYING, None
            self.distances.append(distance)
            while len(self.distances) > self.policy.window_max:
                self.distances.popleft()
        timed_out = at - self.started_at >= self.policy.verify_timeout_s
        if len(self.distances) >= self.policy.min_samples:
            if self._straddles() and len(self.distances) < self.policy.window_max and \
                    not timed_out:
                return Verdict.VERIFYING  # near a threshold: look at more frames first
            return self.decide()
        if len(self.distances) >= self.policy.early_samples and (clear := self._clear()):
            return clear
        if timed_out:
            if self.distances:
                return Verdict.NEEDS_REVIEW  # some good samples, too few to decide
            return self.condition if self.condition != Verdict.VERIFYING else Verdict.NO_FACE
        return Verdict.VERIFYING

    @property
    def recent(self) -> list[float]:
        """The samples the verdict is taken on: the last ``window``, or all (up to
        ``window_max``) once the window was grown near a threshold."""
        d = list(self.distances)
        return d if len(d) > self.policy.window and self._grown else d[-self.policy.window:]

    @property
    def median(self) -> float | None:
        return statistics.median(self.recent) if self.distances else None

    def _straddles(self) -> bool:
        p = self.policy
        m = statistics.median(list(self.distances)[-p.window:])
        near = min(abs(m - p.match_threshold), abs(m - p.mismatch_threshold)) < p.straddle_margin
        self._grown = self._grown or near
        return near

    def _clear(self) -> Verdict | None:
        """Sequential decision: every sample far beyond a threshold decides early."""
        p = self.policy
        if max(self.distances) < p.match_threshold - p.clear_margin:
            return Verdict.VERIFIED
        if min(self.distances) >= p.mismatch_threshold + p.clear_margin:
            return Verdict.MISMATCH
        return None

    def decide(self) -> Verdict:
        m = self.median
        assert m is not None
        if m < self.policy.match_threshold and max(self.recent) < self.policy.mismatch_threshold:
            return Verdict.VERIFIED
        if m >= self.policy.mismatch_threshold:
            return Verdict.MISMATCH
        return Verdict.NEEDS_REVIEW


class PresenceAlert(StrEnum):
    LEFT_FRAME = "left_frame"
    SEVERAL_FACES = "several_faces"
    DIFFERENT_PERSON = "different_person"
    RETURNED = "returned"


@dataclass
class PresenceMonitor:
    """After verification: raise an alert when the customer leaves the frame, someone
    joins, or a different person takes over (two samples in a row at or above the
    mismatch threshold); ``returned`` when the verified face is back alone."""

    policy: IdentityPolicy
    last_seen: float
    alert: PresenceAlert | None = None
    _far: int = 0

    def add(self, obs: Observation, at: float, distance: float | None) -> PresenceAlert | None:
        """Returns a new alert (or RETURNED) when the situation changes, else None."""
        new: PresenceAlert | None = None
        if obs.faces == 0:
            if at - self.last_seen >= self.policy.presence_absent_s:
                new = PresenceAlert.LEFT_FRAME
        elif obs.faces > 1:
            new = PresenceAlert.SEVERAL_FACES
        elif distance is not None:
            self._far = self._far + 1 if distance >= self.policy.mismatch_threshold else 0
            if self._far >= 2:
                new = PresenceAlert.DIFFERENT_PERSON
            elif distance < self.policy.mismatch_threshold:
                self.last_seen = at
                if self.alert is not None:
                    self.alert = None
                    return PresenceAlert.RETURNED
                return None
        if new is not None and new != self.alert:
            self.alert = new
            return new
        return None
