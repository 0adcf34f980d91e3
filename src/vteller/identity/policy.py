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

LIVENESS_ACTIONS = ("blink", "turn_left", "turn_right", "open_mouth")


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
    window: int = Field(5, ge=1, le=50, description="samples aggregated (median)")
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
    workers: int = Field(2, ge=1, le=64, description="analysis threads (dlib frees the GIL)")
    landmark_model: Path | None = Field(
        None, description="68-point landmark model (default: dlib's, non-commercial)")
    auto_verify: bool = Field(
        True, description="start verification when a call needing face_verified connects")

    # liveness
    challenges_min: int = Field(2, ge=1, le=4)
    challenges_max: int = Field(3, ge=1, le=4)
    challenge_timeout_s: float = Field(8.0, gt=1, le=60)
    blink_ratio: float = Field(0.75, gt=0, lt=1, description="EAR below this x baseline")
    mouth_open_delta: float = Field(0.25, gt=0, description="MAR above baseline by this")
    turn_degrees: float = Field(15.0, gt=3, le=60)
    bind_every_s: float = Field(1.0, gt=0, description="re-encode the face this often")
    frozen_diff: float = Field(0.6, ge=0, description="median mean |diff| of the grey face "
                               "region between frames below this: frozen")
    frozen_limit_s: float = Field(2.0, gt=0, description="frozen this long fails liveness")

    @model_validator(mode="after")
    def _check(self) -> IdentityPolicy:
        if self.mismatch_threshold < self.match_threshold:
            raise ValueError("mismatch_threshold must be >= match_threshold")
        if self.min_samples > self.window:
            raise ValueError("min_samples must be <= window")
        if self.early_samples > self.min_samples:
            raise ValueError("early_samples must be <= min_samples")
        if self.challenges_min > self.challenges_max:
            raise ValueError("challenges_min must be <= challenges_max")
        return self
