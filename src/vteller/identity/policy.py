"""Identity settings (`[identity]` / `VTELLER_IDENTITY__*`).

Thresholds are face_recognition (dlib ResNet) encoding distances. The library's usual
0.6 accepts more impostors; 0.5 is stricter: on the labelled test photos genuine
pairs sit at 0.24-0.45 and impostors at 0.7-0.9 (`vteller identity eval`). Lowering
`match_threshold` trades false accepts for false rejects (more "needs review", each of
which a teller must judge); distances between the two thresholds are borderline and
always go to the teller.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

LIVENESS_ACTIONS = (
    "blink_twice", "blink_three_times", "turn_left", "turn_right", "tilt_left", "tilt_right",
    "open_mouth", "smile")
LANDMARK_MODELS = ("mediapipe", "dlib68")


class IdentityPolicy(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    # reference photos
    max_photo_bytes: int = Field(5 * 1024 * 1024, ge=64 * 1024, le=50 * 1024 * 1024)
    max_photo_pixels: int = Field(40_000_000, ge=1_000_000)
    min_reference_face_px: int = Field(100, ge=40, description="face box height")
    min_reference_sharpness: float = Field(40.0, ge=0, description="Laplacian variance")
    keep_reference_photo: bool = Field(False, description="also keep the photo, encrypted")

    # live frames
    match_threshold: float = Field(0.5, gt=0, lt=1.5, description="verified below this")
    mismatch_threshold: float = Field(0.6, gt=0, lt=1.5, description="mismatch at or above")
    document_match_threshold: float = Field(
        0.55, gt=0, lt=1.5, description="an ID document's printed photo matches the reference "
        "and the live face below this (one still, small and often years old: looser than "
        "the live window's median)")
    window: int = Field(5, ge=1, le=50, description="samples aggregated (median)")
    window_max: int = Field(10, ge=1, le=100, description="the window grows to this when "
                            "its median is within `straddle_margin` of a threshold")
    straddle_margin: float = Field(0.05, ge=0, le=1)
    max_verify_yaw: float = Field(25.0, gt=0, le=90, description="faces turned further are "
                                  "not encoded for verification (degrees from frontal)")
    min_samples: int = Field(3, ge=1, le=50, description="samples needed for a verdict")
    early_samples: int = Field(
        2, ge=1, le=50, description="a clear result (every distance `clear_margin` beyond a "
        "threshold) is decided after this many samples")
    clear_margin: float = Field(0.1, ge=0, le=1)
    verify_rate_hz: float = Field(5.0, gt=0, le=30)
    presence_rate_hz: float = Field(0.5, gt=0, le=30)
    liveness_rate_hz: float = Field(10.0, gt=0, le=30)
    verify_timeout_s: float = Field(20.0, gt=1, le=300)
    presence_absent_s: float = Field(10.0, gt=0, description="no face this long: left frame")
    detect_width: int = Field(320, ge=0, le=4096, description="detect on a copy this wide")
    full_scan_every_s: float = Field(
        1.0, ge=0, le=60, description="between whole-frame scans only the last face's "
        "neighbourhood is searched; a second face is noticed within this time")
    min_face_px: int = Field(60, ge=20, description="live face box height")
    min_brightness: float = Field(40.0, ge=0, le=255)
    max_brightness: float = Field(230.0, ge=0, le=255)
    min_sharpness: float = Field(15.0, ge=0)
    workers: int = Field(2, ge=1, le=64, description="analysis processes")
    landmarks: str = Field(
        "mediapipe", pattern="^(mediapipe|dlib68)$",
        description="liveness landmark model: mediapipe (Apache-2.0) or dlib68 "
        "(non-commercial licence)")
    landmark_model: Path | None = Field(
        None, description="dlib68 only: the shape predictor file (default: dlib's)")
    auto_verify: bool = Field(
        True, description="start verification when a call needing face_verified connects")

    # liveness: which challenges and how many
    challenges_min: int = Field(3, ge=1, le=6)
    challenges_max: int = Field(4, ge=1, le=6)
    liveness_retries: int = Field(2, ge=0, le=4, description="actions interrupted by a gap "
                                  "in the video asked again (a fresh held action each) "
                                  "before the check fails 'interrupted'")
    challenge_timeout_s: float = Field(10.0, gt=1, le=60, description="calibration, and "
                                       "waiting for the rest pose before a prompt")
    rest_min_s: float = Field(0.2, ge=0, le=10, description="random pause at rest before "
                              "each prompt: shortest")
    rest_max_s: float = Field(0.7, ge=0, le=20, description="... and longest")
    hold_min_s: float = Field(0.5, ge=0.2, le=10, description="held actions: the release "
                              "cue comes at random this long after the full level at least")
    hold_max_s: float = Field(1.0, ge=0.2, le=20, description="... and at most")
    action_within_s: float = Field(4.0, gt=0, le=30, description="from its start to its "
                                   "full level (all blinks)")
    reaction_min_s: float = Field(0.25, ge=0, le=2, description="an action starting sooner "
                                  "after its prompt was not a reaction to it")
    reaction_max_s: float = Field(4.0, gt=0, le=30, description="the action must start "
                                  "within this after its prompt")
    release_max_s: float = Field(2.5, gt=0, le=30, description="a held action is let go "
                                 "within this after the release cue (awaited, so quicker)")
    reaction_band_s: float = Field(2.5, gt=0, le=30, description="all reaction times of one "
                                   "check (to prompts and release cues) lie within this")
    # liveness: what counts as each action (ratios relative to the rest pose)
    blink_ratio: float = Field(0.65, gt=0, lt=1, description="eyes closed: EAR below this "
                               "x rest")
    blink_max_s: float = Field(0.8, gt=0, le=5, description="a closure longer than this is "
                               "not a blink")
    blink_pair_within_s: float = Field(1.0, gt=0, le=10, description="each blink starts "
                                       "within this of the last one's end")
    blink_settle_s: float = Field(0.6, ge=0, le=5, description="after the last blink asked "
                                  "for, eyes stay open this long (the count is exact)")
    mouth_open_delta: float = Field(0.25, gt=0, description="wide open: MAR above rest by "
                                    "this ...")
    mouth_open_min: float = Field(0.4, ge=0, description="... and at least this")
    smile_widen: float = Field(0.08, gt=0, lt=1, description="smile: mouth width up by "
                               "this fraction of rest")
    turn_degrees: float = Field(15.0, gt=3, le=60)
    tilt_degrees: float = Field(10.0, gt=3, le=45, description="head tilt (roll) to count")
    max_turn_speed_dps: float = Field(360.0, gt=10, description="faster between two samples "
                                      "is a jump, not a turn")
    return_within_s: float = Field(3.0, gt=0, le=30, description="back at rest within this")
    bind_every_s: float = Field(1.0, gt=0, description="re-encode the face this often")
    # the spoken alternative (identity/spoken.py)
    alternative_reasons: tuple[str, ...] = Field(
        ("disability", "gesture_check_failed", "customer_declined_face_check",
         "camera_problem", "other"), min_length=1,
        description="why the spoken check replaced gestures ('other' needs notes)")
    spoken_digits: int = Field(6, ge=4, le=12, description="digits of the random phrase")
    spoken_questions: tuple[str, ...] = Field(
        ("What day of the week is it today?", "What colour is the top you are wearing?",
         "What is the weather like where you are?", "Please count backwards from five.",
         "Please name one thing you can see near you."), min_length=1,
        description="questions the teller asks (none asks for personal data)")
    spoken_questions_asked: int = Field(2, ge=0, le=10)
    spoken_timeout_s: float = Field(300.0, gt=10, le=3600, description="attest within this")
    # liveness: passive signals
    frozen_diff: float = Field(0.6, ge=0, description="median mean |diff| of the grey face "
                               "region between frames below this: frozen")
    frozen_limit_s: float = Field(2.0, gt=0, description="frozen this long fails liveness")
    cut_diff: float = Field(35.0, gt=0, description="whole-frame mean |diff| between two "
                            "samples above this: a scene cut")
    loop_ratio: float = Field(0.35, gt=0, lt=1, description="a frame this much closer to an "
                              "earlier one than to the previous: looped")
    loop_motion: float = Field(2.0, ge=0, description="loops are judged on frames changing "
                               "more than this")
    loop_memory_s: float = Field(20.0, gt=1, le=120)
    max_face_shift: float = Field(1.0, gt=0, description="face centre moving more than this "
                                  "x its eye distance between samples: a jump")
    max_face_scale: float = Field(1.35, gt=1, description="face size changing by more than "
                                  "this factor between samples: a jump")
    media_skip_s: float = Field(1.0, gt=0, description="media clock ahead of the wall clock "
                                "by more than this between samples: spliced")

    @model_validator(mode="after")
    def _check(self) -> IdentityPolicy:
        if self.mismatch_threshold < self.match_threshold:
            raise ValueError("mismatch_threshold must be >= match_threshold")
        if self.min_samples > self.window:
            raise ValueError("min_samples must be <= window")
        if self.window > self.window_max:
            raise ValueError("window must be <= window_max")
        if self.early_samples > self.min_samples:
            raise ValueError("early_samples must be <= min_samples")
        if self.challenges_min > self.challenges_max:
            raise ValueError("challenges_min must be <= challenges_max")
        if self.rest_min_s > self.rest_max_s:
            raise ValueError("rest_min_s must be <= rest_max_s")
        if self.hold_min_s > self.hold_max_s:
            raise ValueError("hold_min_s must be <= hold_max_s")
        if self.reaction_min_s >= self.reaction_max_s:
            raise ValueError("reaction_min_s must be < reaction_max_s")
        return self
