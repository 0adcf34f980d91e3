"""Liveness: server-chosen random challenges, each judged as a human action on the
frames the server received. Pure logic: samples in, step changes out.

The check: ``calibrate`` (a steady rest pose is measured: eye and mouth openness,
mouth width, yaw, roll), then for each challenge a ``rest`` pause of random length
(the face must stay at rest), the prompt, and the action. An action passes only when:
  * it starts (leaves the rest pose) between `reaction_min_s` and `reaction_max_s`
    after its prompt: not before it (a clip cannot anticipate), not long after;
  * it has a human shape: a head turn or tilt moves through intermediate angles at a
    bounded speed; held actions (turns, tilts, open mouth, smile) stay held until a
    release cue at a random moment and are let go 0.25-`release_max_s` after it (speech
    does not hold a mouth open); blinks are counted exactly, each of human length;
  * it is the only action (`EXCLUDED`; spontaneous single blinks are allowed), and
    all reaction times of the check (to prompts and cues) lie within a band;
  * the video is continuous: no scene cut, no face jumping in position or scale
    between samples, no looped frames, no media clock running backwards or skipping,
    no frozen picture, and every re-encoded face matches the reference.
Every transition of a step is in `STEP_TRANSITIONS`.
"""

from __future__ import annotations

import secrets
import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np

from vteller.identity.landmarks import FaceMeasures
from vteller.identity.policy import LIVENESS_ACTIONS, IdentityPolicy

PROMPTS = {
    "calibrate": "Look straight at the camera",
    "rest": "Look at the camera and keep still",
    "again": "The picture paused. Look at the camera and keep still for another movement",
    "blink_twice": "Blink twice",
    "blink_three_times": "Blink three times",
    "turn_left": "Turn your head to your left and hold",
    "turn_right": "Turn your head to your right and hold",
    "tilt_left": "Tilt your head towards your left shoulder and hold",
    "tilt_right": "Tilt your head towards your right shoulder and hold",
    "open_mouth": "Open your mouth wide and hold",
    "smile": "Smile broadly and hold",
}
RELEASE_PROMPTS = {
    "turn_left": "Now look back at the camera",
    "turn_right": "Now look back at the camera",
    "tilt_left": "Now straighten your head",
    "tilt_right": "Now straighten your head",
    "open_mouth": "Now close your mouth",
    "smile": "Now relax",
}
CALIBRATION_SAMPLES = 5
STATIC_MOTION = 0.004  # landmark spread / inter-ocular distance below this: static
MAX_SAMPLE_GAP_S = 0.6  # longer without a face sample while acting: the action is void
MAX_CALIBRATION_YAW_SPREAD = 6.0  # degrees
MAX_CALIBRATION_MAR_SPREAD = 0.12  # the mouth moved (talking) while calibrating
HEAD_MAX_DEGREES = 60.0  # beyond this the landmarks are not a movement but an error
HOLD_FRACTION = 0.35  # a held action stays above rest + this x (full - rest) ...
RELEASE_FRACTION = 0.6  # below rest + this x (held level - rest): letting go
LOOP_MIN_LAG_S = 1.0  # a frame matching one at least this old can be a loop
LOOP_RUN = 4  # consecutive samples matching earlier frames at one lag: a loop
LOOP_LAG_TOLERANCE_S = 0.15  # (a head going out and back matches in reverse: lag changes)


class Prompt(NamedTuple):
    """What the customer is asked now: an action (or calibrate / rest), the 1-based
    challenge number (0 while calibrating), ``do`` or ``release`` (the cue to come
    back), and the text."""

    action: str
    step: int
    phase: str
    text: str


class LivenessState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class StepState(StrEnum):
    PENDING = "pending"
    REST = "rest"  # waiting a random time with the face at rest before the prompt
    PROMPTED = "prompted"  # prompt shown; the action has not started
    ACTING = "acting"  # the action is under way
    HOLDING = "holding"  # the action reached its full level; held until the cue
    RELEASING = "releasing"  # the release cue was shown; back to rest
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # the samples stopped mid-action: asked again (a retry)


S = StepState
STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    S.PENDING: frozenset({S.REST, S.SKIPPED}),
    S.REST: frozenset({S.PROMPTED, S.FAILED, S.TIMED_OUT}),
    S.PROMPTED: frozenset({S.ACTING, S.FAILED, S.TIMED_OUT}),
    S.ACTING: frozenset({S.HOLDING, S.PASSED, S.FAILED, S.TIMED_OUT, S.INTERRUPTED}),
    S.HOLDING: frozenset({S.RELEASING, S.FAILED, S.TIMED_OUT, S.INTERRUPTED}),
    S.RELEASING: frozenset({S.PASSED, S.FAILED, S.TIMED_OUT, S.INTERRUPTED}),
    S.PASSED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.SKIPPED: frozenset(),
    S.INTERRUPTED: frozenset(),
}
ACTIVE = frozenset({S.REST, S.PROMPTED, S.ACTING, S.HOLDING, S.RELEASING})
MOVING = frozenset({S.ACTING, S.HOLDING, S.RELEASING})
BLINKS = {"blink_twice": 2, "blink_three_times": 3}

# What else each action must not show (a smile check is left out of head movements and
# mouth opening because both change the mouth's width; blinks are never excluded).
HEAD = ("turn_left", "turn_right", "tilt_left", "tilt_right")
EXCLUDED: dict[str, tuple[str, ...]] = {
    "blink_twice": (*HEAD, "open_mouth", "smile"),
    "blink_three_times": (*HEAD, "open_mouth", "smile"),
    "turn_left": ("turn_right", "tilt_left", "tilt_right", "open_mouth"),
    "turn_right": ("turn_left", "tilt_left", "tilt_right", "open_mouth"),
    "tilt_left": ("tilt_right", "turn_left", "turn_right", "open_mouth"),
    "tilt_right": ("tilt_left", "turn_left", "turn_right", "open_mouth"),
    "open_mouth": HEAD,
    "smile": (*HEAD, "open_mouth"),
}


def choose_challenges(policy: IdentityPolicy, rng: Any = None) -> list[str]:
    """`challenges_min`..`challenges_max` distinct actions in random order, at most
    one of them a blink (cryptographic randomness by default). Blinks are the weakest
    evidence: a clip of a person blinking naturally passes "blink twice" more often
    than it passes a held action (see README, "Liveness")."""
    rng = rng or secrets.SystemRandom()
    count = rng.randint(policy.challenges_min, policy.challenges_max)
    held = [a for a in LIVENESS_ACTIONS if a not in BLINKS]
    pool = held + [rng.choice(sorted(BLINKS))]
    return rng.sample(pool, min(count, len(pool)))


@dataclass
class Sample:
    """One analysed frame: ``at`` is the frame's receive time (server clock)."""

    at: float
    faces: int
    measures: FaceMeasures | None = None
    distance: float | None = None  # to the reference, when this frame was encoded
    frame_diff: float | None = None  # mean |diff| of the grey face crop vs the last sample
    thumb: np.ndarray | None = None  # small grey whole frame, mean removed (cuts, loops)
    media_t: float | None = None  # the frame's own timestamp (s), when it has one


@dataclass
class Step:
    action: str
    state: StepState = StepState.PENDING
    prompt_due: float | None = None
    prompted_at: float | None = None
    onset_at: float | None = None
    release_due: float | None = None
    release_at: float | None = None
    dropped_at: float | None = None
    reached_at: float | None = None
    ended_at: float | None = None
    settling: bool = False  # after an interruption: the face may still show that action
    detail: dict[str, Any] = field(default_factory=dict)
    track: list[tuple[float, float]] = field(default_factory=list)  # (at, measure)

    def move(self, to: StepState) -> None:
        if to not in STEP_TRANSITIONS[self.state]:
            raise ValueError(f"liveness step {self.state} -> {to} not allowed")
        self.state = to

    def public(self) -> dict[str, Any]:
        return {"action": self.action, "state": self.state.value,
                "prompt": PROMPTS[self.action], "detail": self.detail}


@dataclass
class Levels:
    """Thresholds derived from the customer's rest pose."""

    closed: float
    open: float
    mouth_wide: float
    mouth_rest: float
    smile_wide: float
    smile_rest: float
    turn: float
    rest_yaw: float
    tilt: float
    rest_roll: float


@dataclass
class LivenessCheck:
    policy: IdentityPolicy
    actions: list[str]
    started_at: float
    rng: Any = None
    state: LivenessState = LivenessState.RUNNING
    reason: str | None = None
    steps: list[Step] = field(default_factory=list)
    phase: str = "calibrate"
    baseline: dict[str, float] = field(default_factory=dict)
    bound: int = 0
    samples: int = 0
    reactions: list[float] = field(default_factory=list)  # to prompts and release cues
    retries: int = 0  # interrupted actions asked again (a fresh held action each)
    _calib: list[FaceMeasures] = field(default_factory=list)
    _diffs: list[tuple[float, float]] = field(default_factory=list)
    _motion: list[np.ndarray] = field(default_factory=list)
    _levels: Levels | None = None
    _last: tuple[float, FaceMeasures] | None = None
    _thumbs: list[tuple[float, np.ndarray]] = field(default_factory=list)
    _loop_lags: list[float] = field(default_factory=list)
    _media: tuple[float, float] | None = None  # (receive time, media time) of the last frame
    _now: float = 0.0  # when a prompt changed by the sample being judged goes out

    def __post_init__(self) -> None:
        self.steps = [Step(a) for a in self.actions]
        self.rng = self.rng or secrets.SystemRandom()

    # -------------------------------------------------------------- queries
    @property
    def current(self) -> Step | None:
        return next((s for s in self.steps if s.state in ACTIVE), None)

    @property
    def done(self) -> bool:
        return self.state != LivenessState.RUNNING

    def prompt(self) -> Prompt | None:
        """What the customer should see now, or None when done."""
        if self.done:
            return None
        if self.phase == "calibrate":
            return Prompt("calibrate", 0, "do", PROMPTS["calibrate"])
        step = self.current
        if step is None:
            return None
        index = self.steps.index(step) + 1
        if step.state == StepState.REST:
            if index > 1 and self.steps[index - 2].state == StepState.INTERRUPTED:
                return Prompt("rest", index, "again", PROMPTS["again"])
            return Prompt("rest", index, "do", PROMPTS["rest"])
        if step.state == StepState.RELEASING:
            return Prompt(step.action, index, "release", RELEASE_PROMPTS[step.action])
        return Prompt(step.action, index, "do", PROMPTS[step.action])

    def summary(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason, "phase": self.phase,
                "steps": [s.public() for s in self.steps], "bound_samples": self.bound}

    # -------------------------------------------------------------- input
    def observe(self, s: Sample, now: float | None = None) -> bool:
        """Judge one sample. Returns True when the prompt or state changed.

        `now` is when a changed prompt goes out (default: the sample's time). A sample
        analysed late is older than that, and reactions count from the prompt's sending,
        not from the frame that led to it."""
        if self.done:
            return False
        self._now = s.at if now is None else max(now, s.at)
        self.samples += 1
        if s.distance is not None and self.bind(s.at, s.distance):
            return True
        if s.frame_diff is not None and self._frozen(s.at, s.frame_diff):
            return self._end(LivenessState.FAILED, "frozen_video", s.at,
                             median_change=round(statistics.median(d for _, d in self._diffs), 3))
        passive = self._passive(s)
        if passive is not None:
            return self._end(LivenessState.FAILED, passive[0], s.at, **passive[1])
        if s.faces != 1 or s.measures is None:
            step = self.current
            if step is not None and step.state in MOVING and \
                    self._last is not None and s.at - self._last[0] > MAX_SAMPLE_GAP_S:
                return self._interrupt(step, s.at, gap_s=round(s.at - self._last[0], 3))
            return self._check_timeout(s.at)
        m = s.measures
        self._track_motion(m)
        last, self._last = self._last, (s.at, m)
        if self.phase == "calibrate":
            return self._calibrate(s.at, m)
        step = self.current
        assert step is not None
        if last is not None and s.at - last[0] > MAX_SAMPLE_GAP_S and \
                step.state in MOVING:
            return self._interrupt(step, s.at, gap_s=round(s.at - last[0], 3))
        return self._judge(step, s.at, m, last) or self._check_timeout(s.at)

    def bind(self, at: float, distance: float) -> bool:
        """The face at `at` measured `distance` from the reference (encoded apart from
        the samples, so a slow encoding never leaves a gap in them). True if it ended
        the check: another person's face."""
        if self.done:
            return False
        if distance >= self.policy.mismatch_threshold:
            return self._end(LivenessState.FAILED, "different_face", at,
                             distance=round(distance, 3))
        self.bound += 1
        return False

    def tick(self, at: float) -> bool:
        """Time passes without samples (no frames at all): enforce timeouts."""
        return False if self.done else self._check_timeout(at)

    # -------------------------------------------------------------- calibration
    def _calibrate(self, at: float, m: FaceMeasures) -> bool:
        """A rest pose needs `CALIBRATION_SAMPLES` steady samples in a row: a face that
        turns or talks meanwhile is measured again."""
        self._calib.append(m)
        window = self._calib[-CALIBRATION_SAMPLES:]
        if len(window) < CALIBRATION_SAMPLES:
            return self._check_timeout(at)
        yaws, mars = [c.yaw for c in window], [c.mar for c in window]
        if max(yaws) - min(yaws) > MAX_CALIBRATION_YAW_SPREAD or \
                max(mars) - min(mars) > MAX_CALIBRATION_MAR_SPREAD:
            return self._check_timeout(at)
        p = self.policy
        b = self.baseline = {k: statistics.median(getattr(c, k) for c in window)
                             for k in ("ear", "mar", "smile", "yaw", "pitch", "roll")}
        self._levels = Levels(
            closed=b["ear"] * p.blink_ratio, open=b["ear"] * (1 + p.blink_ratio) / 2,
            mouth_wide=max(b["mar"] + p.mouth_open_delta, p.mouth_open_min),
            mouth_rest=b["mar"] + p.mouth_open_delta / 2,
            smile_wide=b["smile"] * (1 + p.smile_widen),
            smile_rest=b["smile"] * (1 + p.smile_widen / 2),
            turn=p.turn_degrees, rest_yaw=p.turn_degrees / 3,
            tilt=p.tilt_degrees, rest_roll=p.tilt_degrees / 3)
        self.phase = "challenges"
        self._enter_rest(self.steps[0], at)
        return True

    # -------------------------------------------------------------- judging
    def _offsets(self, m: FaceMeasures) -> dict[str, bool]:
        """Which actions the face shows now (at their full level)."""
        lv = self._levels
        assert lv is not None
        d_yaw, d_roll = m.yaw - self.baseline["yaw"], m.roll - self.baseline["roll"]
        return {"turn_left": d_yaw >= lv.turn, "turn_right": d_yaw <= -lv.turn,
                "tilt_left": d_roll >= lv.tilt, "tilt_right": d_roll <= -lv.tilt,
                "open_mouth": m.mar >= lv.mouth_wide,
                "smile": m.smile >= lv.smile_wide and m.mar < lv.mouth_wide}

    def _at_rest(self, m: FaceMeasures) -> bool:
        lv = self._levels
        assert lv is not None
        return (abs(m.yaw - self.baseline["yaw"]) < lv.rest_yaw and m.mar < lv.mouth_rest
                and abs(m.roll - self.baseline["roll"]) < lv.rest_roll
                and m.smile < lv.smile_rest)

    def _started(self, action: str, m: FaceMeasures) -> bool:
        """The action has begun (left the rest pose in its own direction)."""
        lv = self._levels
        assert lv is not None
        if action in BLINKS:
            return m.ear <= lv.closed
        if action in HEAD:
            return self._value(action, m) >= (lv.rest_yaw if action.startswith("turn")
                                              else lv.rest_roll)
        return {"open_mouth": m.mar >= lv.mouth_rest, "smile": m.smile >= lv.smile_rest}[action]

    def _judge(self, step: Step, at: float, m: FaceMeasures,
               last: tuple[float, FaceMeasures] | None) -> bool:
        p = self.policy
        showing = self._offsets(m)
        if step.state == StepState.REST:
            unprompted = [a for a, on in showing.items() if on]
            if step.settling:  # coming back from the interrupted action first
                step.settling = not self._at_rest(m)
            if unprompted and not step.settling:
                return self._fail(step, at, "unprompted_action", other_action=unprompted[0])
            if not self._at_rest(m):
                step.prompt_due = None  # wait for rest, then a fresh random pause
                return False
            if step.prompt_due is None:
                step.prompt_due = at + self.rng.uniform(p.rest_min_s, p.rest_max_s)
            if at >= step.prompt_due:
                step.move(StepState.PROMPTED)
                step.prompted_at = self._now
                return True
            return False
        wrong = [a for a in EXCLUDED[step.action] if showing[a]]
        if wrong:
            return self._fail(step, at, "wrong_action", other_action=wrong[0])
        assert step.prompted_at is not None
        if step.state == StepState.PROMPTED:
            if not self._started(step.action, m):
                return False
            reaction = at - step.prompted_at
            step.detail["reaction_s"] = round(reaction, 3)
            if reaction < p.reaction_min_s:
                return self._fail(step, at, "anticipated")
            if reaction > p.reaction_max_s:
                return self._fail(step, at, "late_reaction")
            if self._inconsistent(reaction):
                return self._fail(step, at, "inconsistent_reactions",
                                  reactions=[round(r, 2) for r in self.reactions])
            step.onset_at = at
            step.move(StepState.ACTING)
            if last is not None:
                step.track.append((last[0], self._value(step.action, last[1])))
        step.track.append((at, self._value(step.action, m)))
        judge = self._blink if step.action in BLINKS else self._act
        return judge(step, at, m)

    def _value(self, action: str, m: FaceMeasures) -> float:
        return {"turn_left": m.yaw - self.baseline["yaw"],
                "turn_right": self.baseline["yaw"] - m.yaw,
                "tilt_left": m.roll - self.baseline["roll"],
                "tilt_right": self.baseline["roll"] - m.roll, "open_mouth": m.mar,
                "smile": m.smile}.get(action, m.ear)

    def _levels_of(self, action: str) -> tuple[float, float, float]:
        """(rest, hold, full) levels of an action's own measure."""
        lv = self._levels
        assert lv is not None
        rest, full = {"turn_left": (lv.rest_yaw, lv.turn), "turn_right": (lv.rest_yaw, lv.turn),
                      "tilt_left": (lv.rest_roll, lv.tilt), "tilt_right": (lv.rest_roll, lv.tilt),
                      "open_mouth": (lv.mouth_rest, lv.mouth_wide),
                      "smile": (lv.smile_rest, lv.smile_wide)}[action]
        return rest, rest + HOLD_FRACTION * (full - rest), full

    def _act(self, step: Step, at: float, m: FaceMeasures) -> bool:
        """A held action: out to its full level (a turn through intermediate angles at
        a human speed), held until the release cue at a random moment, released only
        after the cue, back at rest soon after."""
        p = self.policy
        d = step.detail
        rest, hold, full = self._levels_of(step.action)
        value = step.track[-1][1]
        if step.action in HEAD:
            failed = self._head_shape(step, at)
            if failed:
                return failed
        if step.state == StepState.ACTING:
            reached = value >= full if not step.action == "smile" else \
                self._offsets(m)["smile"]
            if reached:
                if step.action in HEAD:
                    between = [v for _, v in step.track if rest <= v < 0.85 * max(
                        v for _, v in step.track)]
                    if not between:
                        return self._fail(step, at, "implausible_motion",
                                          why="no_intermediate_angle")
                    d["intermediate_samples"] = len(between)
                step.move(StepState.HOLDING)
                d["reached_at"] = round(at, 3)
                step.reached_at = at
                step.release_due = at + self.rng.uniform(p.hold_min_s, p.hold_max_s)
            return False
        if step.state == StepState.HOLDING:
            value = statistics.median(v for _, v in step.track[-3:])  # landmark noise
            if value >= hold:
                step.dropped_at = None
            elif step.dropped_at is None:
                step.dropped_at = at  # one low sample may be a landmark glitch
            else:
                return self._fail(step, at, "released_early",
                                  held_s=round(step.dropped_at - d["reached_at"], 3))
            if at >= (step.release_due or at):
                step.move(StepState.RELEASING)
                step.release_at = self._now
                d["held_s"] = round(at - d["reached_at"], 3)
                return True
            return False
        assert step.release_at is not None and step.reached_at is not None
        since = at - step.release_at
        # letting go starts with falling clearly below the level actually held
        held = [v for t, v in step.track if step.reached_at <= t <= step.release_at]
        letting_go = max(hold, rest + RELEASE_FRACTION * (statistics.median(held) - rest))
        if value < letting_go and "release_s" not in d:
            d["release_s"] = round(since, 3)
            if since < p.reaction_min_s:
                return self._fail(step, at, "anticipated", why="released_before_cue")
            if since > p.release_max_s:
                return self._fail(step, at, "late_reaction", why="released_late")
            if self._inconsistent(since):
                return self._fail(step, at, "inconsistent_reactions",
                                  reactions=[round(r, 2) for r in self.reactions])
        if value < rest:
            return self._pass(step, at)
        if since > p.release_max_s + p.return_within_s:
            return self._fail(step, at, "no_return")
        return False

    def _head_shape(self, step: Step, at: float) -> bool:
        """A head movement's speed between samples and its angle stay human."""
        t0, v0 = step.track[-2] if len(step.track) > 1 else step.track[-1]
        t1, v1 = step.track[-1]
        if t1 > t0:
            speed = abs(v1 - v0) / (t1 - t0)
            step.detail["max_speed_dps"] = max(step.detail.get("max_speed_dps", 0),
                                               round(speed))
            if speed > self.policy.max_turn_speed_dps:
                return self._fail(step, at, "implausible_motion", speed_dps=round(speed))
        if v1 > HEAD_MAX_DEGREES:
            return self._fail(step, at, "implausible_motion", yaw=round(v1, 1))
        step.detail["peak_deg"] = round(max(v for _, v in step.track), 1)
        return False

    def _blink(self, step: Step, at: float, m: FaceMeasures) -> bool:
        """`BLINKS[action]` closures of human blink length, each soon after the last,
        with open eyes before, between and after."""
        lv, p = self._levels, self.policy
        assert lv is not None
        d = step.detail
        closures: list[list[float]] = d.setdefault("closures", [])
        closed, opened = m.ear <= lv.closed, m.ear >= lv.open
        done = len(closures) == BLINKS[step.action] and len(closures[-1]) == 2
        if closed:
            if done:
                return self._fail(step, at, "not_a_blink", why="too_many_blinks")
            if not closures or len(closures[-1]) == 2:
                if closures and at - closures[-1][1] > p.blink_pair_within_s:
                    return self._fail(step, at, "not_a_blink", why="next_blink_late")
                closures.append([round(at, 3)])
            elif at - closures[-1][0] > p.blink_max_s:
                return self._fail(step, at, "not_a_blink", why="eyes_closed_too_long")
            return False
        if done:  # the count is exact: no further blink for a moment
            return self._pass(step, at) if at - closures[-1][1] >= p.blink_settle_s else False
        if opened and closures and len(closures[-1]) == 1:
            closures[-1].append(round(at, 3))
        elif closures and len(closures[-1]) == 1 and at - closures[-1][0] > p.blink_max_s:
            return self._fail(step, at, "not_a_blink", why="eyes_not_reopened")
        return False

    def _inconsistent(self, reaction: float) -> bool:
        """A person's reaction times to the prompts and cues stay within a band; a
        clip's actions, unrelated to the prompts, start at scattered delays."""
        self.reactions.append(reaction)
        return max(self.reactions) - min(self.reactions) > self.policy.reaction_band_s

    # -------------------------------------------------------------- passive signals
    def _passive(self, s: Sample) -> tuple[str, dict[str, Any]] | None:
        """Continuity of the video itself (None: nothing wrong)."""
        p = self.policy
        if s.media_t is not None:
            if self._media is not None:
                wall, media = s.at - self._media[0], s.media_t - self._media[1]
                if media < -0.05 or media - wall > p.media_skip_s:
                    return "frame_timing", {"media_s": round(media, 3), "wall_s": round(wall, 3)}
            self._media = (s.at, s.media_t)
        if s.thumb is not None:
            thumbs = self._thumbs
            if thumbs and s.at - thumbs[-1][0] <= MAX_SAMPLE_GAP_S:
                change = float(np.abs(s.thumb - thumbs[-1][1]).mean())
                if change > p.cut_diff:
                    return "scene_cut", {"change": round(change, 1)}
                old = [(at, t) for at, t in thumbs if s.at - at >= LOOP_MIN_LAG_S]
                if old and change > p.loop_motion:
                    gaps = np.abs(np.stack([t for _, t in old]) - s.thumb).mean(axis=(1, 2))
                    best = int(gaps.argmin())
                    lag = s.at - old[best][0]
                    if gaps[best] < change * p.loop_ratio:
                        run = self._loop_lags
                        if run and abs(run[-1] - lag) > LOOP_LAG_TOLERANCE_S:
                            run.clear()  # not the same stretch of earlier video
                        run.append(lag)
                        if len(run) >= LOOP_RUN:
                            return "looped_video", {"change": round(change, 2),
                                                    "nearest_earlier": round(float(gaps[best]), 2),
                                                    "lag_s": round(lag, 2)}
                    else:
                        self._loop_lags.clear()
                else:
                    self._loop_lags.clear()
            thumbs.append((s.at, s.thumb))
            while thumbs and s.at - thumbs[0][0] > p.loop_memory_s:
                thumbs.pop(0)
        if s.measures is not None and self._last is not None and \
                s.at - self._last[0] <= MAX_SAMPLE_GAP_S:
            prev = self._last[1]
            moved = float(np.hypot(s.measures.center[0] - prev.center[0],
                                   s.measures.center[1] - prev.center[1])) / prev.iod
            scale = s.measures.iod / prev.iod
            if moved > p.max_face_shift or not 1 / p.max_face_scale <= scale <= p.max_face_scale:
                return "face_jump", {"shift": round(moved, 2), "scale": round(scale, 2)}
        return None

    def _frozen(self, at: float, diff: float) -> bool:
        """The face region hardly changed between frames for `frozen_limit_s` (median,
        so a keyframe's jump or one noisy frame does not reset it)."""
        self._diffs.append((at, diff))
        while self._diffs and at - self._diffs[0][0] > self.policy.frozen_limit_s:
            self._diffs.pop(0)
        window = self._diffs[-1][0] - self._diffs[0][0] if self._diffs else 0.0
        return (window >= self.policy.frozen_limit_s * 0.9 and len(self._diffs) >= 5 and
                statistics.median(d for _, d in self._diffs) < self.policy.frozen_diff)

    def _track_motion(self, m: FaceMeasures) -> None:
        self._motion.append(m.shape)
        if len(self._motion) > 40:
            self._motion.pop(0)

    def _static(self) -> bool:
        if len(self._motion) < 8:
            return False
        spread = np.stack(self._motion).std(axis=0).max()
        return bool(spread < STATIC_MOTION)

    # -------------------------------------------------------------- transitions
    def _enter_rest(self, step: Step, at: float) -> None:
        step.move(StepState.REST)
        step.detail["rest_from"] = round(at, 3)
        step.prompt_due = None

    def _pass(self, step: Step, at: float) -> bool:
        step.move(StepState.PASSED)
        step.ended_at = at
        index = self.steps.index(step)
        if index + 1 < len(self.steps):
            self._enter_rest(self.steps[index + 1], at)
            return True
        if self.bound == 0:
            return self._end(LivenessState.FAILED, "not_bound_to_reference", at)
        return self._end(LivenessState.PASSED, None, at)

    def _fail(self, step: Step, at: float, reason: str, **detail: Any) -> bool:
        step.detail.update(detail)
        return self._end(LivenessState.FAILED, reason, at)

    def _interrupt(self, step: Step, at: float, **detail: Any) -> bool:
        """No usable sample for over `MAX_SAMPLE_GAP_S` mid-action (a stalled link, a
        keyframe wait, the face out of the picture): the action cannot be judged, which
        is not the customer failing it. Up to `liveness_retries` times a check, the step
        ends `INTERRUPTED` and a held action not yet asked in this check follows, after
        a fresh random pause. Never a blink (the weakest evidence) and never a repeat,
        so interrupting on purpose cannot trade a hard action for an easier one."""
        asked = {s.action for s in self.steps}
        fresh = sorted(a for a in LIVENESS_ACTIONS if a not in BLINKS and a not in asked)
        if self.retries >= self.policy.liveness_retries or not fresh:
            return self._end(LivenessState.FAILED, "interrupted", at, **detail)
        self.retries += 1
        step.detail.update(detail)
        step.move(StepState.INTERRUPTED)
        step.ended_at = at
        retry = Step(self.rng.choice(fresh), settling=True)
        self.steps.insert(self.steps.index(step) + 1, retry)
        self._enter_rest(retry, at)
        return True

    def _check_timeout(self, at: float) -> bool:
        p = self.policy
        if self.phase == "calibrate":
            if at - self.started_at >= p.challenge_timeout_s:
                return self._end(LivenessState.TIMED_OUT, "no_usable_face", at)
            return False
        step = self.current
        if step is None:
            return False
        if step.state == StepState.REST:
            if at - step.detail["rest_from"] >= p.challenge_timeout_s:
                return self._end(LivenessState.TIMED_OUT, "no_rest_pose", at)
            return False
        assert step.prompted_at is not None
        late = None
        if step.state == StepState.PROMPTED and at - step.prompted_at > p.reaction_max_s:
            late = f"{step.action}_not_seen"
        elif step.state == StepState.ACTING and step.onset_at is not None and \
                at - step.onset_at > p.action_within_s:
            late = f"{step.action}_not_completed"
        elif step.state == StepState.HOLDING and step.release_due is not None and \
                at - step.release_due > MAX_SAMPLE_GAP_S:
            return self._interrupt(step, at, gap_s=round(at - step.release_due, 3))
        elif step.state == StepState.RELEASING and step.release_at is not None and \
                at - step.release_at > p.release_max_s + p.return_within_s:
            return self._fail(step, at, "no_return")
        if late is None:
            return False
        step.move(StepState.TIMED_OUT)
        step.ended_at = at
        if self._static():
            return self._end(LivenessState.FAILED, "static_face", at)
        return self._end(LivenessState.TIMED_OUT, late, at)

    def _end(self, state: LivenessState, reason: str | None, at: float, **detail: Any) -> bool:
        self.state, self.reason = state, reason
        step = self.current
        if step is not None and state != LivenessState.PASSED:
            step.move(StepState.FAILED)
            step.ended_at = at
            step.detail.update(detail)
        for later in self.steps:
            if later.state == StepState.PENDING:
                later.move(StepState.SKIPPED)
        return True
