"""Liveness judged as human actions: clips made from the real face photos (cooperating
customers quick and slow, clips that ignore the prompts), each rule on spelled-out
measure sequences, and the passive continuity checks. Pure logic and the real landmark
model; no server and no database (the PostgreSQL pass of CI skips this file)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.liveness_clips import (
    Cooperating,
    Cuts,
    Loop,
    Pose,
    PoseBank,
    RandomMotion,
    run_check,
)
from vteller.identity import (
    FaceEngine,
    IdentityPolicy,
    LivenessCheck,
    analyse_reference,
    worker,
)
from vteller.identity.faces import distance
from vteller.identity.landmarks import FaceMeasures
from vteller.identity.liveness import Sample, choose_challenges

pytestmark = [pytest.mark.faces, pytest.mark.nodb]
POLICY = IdentityPolicy()


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine()


# ------------------------------------------------------------------ liveness judged on real frames
COOPERATING_PHOTOS = ("obama.jpg", "rose_leslie1.jpg", "kit_harington1.jpg")


@pytest.fixture(scope="module")
def obama_ref(engine, faces_dir):
    return analyse_reference(engine, (faces_dir / "obama2.jpg").read_bytes(), POLICY).encoding


@pytest.fixture(scope="module")
def bank(engine, faces_dir):
    """Poses of the cooperating photos, each rendered and measured once."""
    worker.init(None, POLICY.detect_width, 0)
    return {name: PoseBank([faces_dir / name], engine) for name in COOPERATING_PHOTOS}


@pytest.fixture(scope="module")
def cut_bank(engine, faces_dir):
    return PoseBank([faces_dir / "obama.jpg", faces_dir / "obama3.jpg"], engine)


@pytest.fixture(scope="module")
def rose_ref(engine, faces_dir):
    return analyse_reference(engine, (faces_dir / "rose_leslie2.jpg").read_bytes(),
                             POLICY).encoding


def test_cooperating_customer_passes_on_every_frame_analysed(bank, rose_ref):
    """Every frame rendered with sensor noise and sway and analysed as the server's
    workers do, the face re-encoded once a second against the reference."""
    actions = ["blink_twice", "turn_left", "open_mouth", "smile"]
    check = run_check(POLICY, actions, Cooperating(), bank["rose_leslie1.jpg"], seed=1,
                      real_frames=True, reference=rose_ref)
    assert check.state == "passed", check.summary()
    assert [s.state for s in check.steps] == ["passed"] * 4
    assert check.bound >= 5
    blink, turn, mouth, smile = (s.detail for s in check.steps)
    assert len(blink["closures"]) == 2
    assert turn["peak_deg"] >= 15 and turn["intermediate_samples"] >= 1
    assert 0.5 <= mouth["held_s"] <= 1.1 and 0.5 <= smile["held_s"] <= 1.1
    assert all(0.25 <= s.detail["reaction_s"] <= 4.0 for s in check.steps)


@pytest.mark.parametrize("photo", COOPERATING_PHOTOS)
def test_cooperating_customers_pass_quick_and_slow(bank, photo):
    """100 seeded checks per photo and speed: reactions to prompts 0.4-1.6 s and 0.6 s to
    the awaited release cue (quick); 2.5-3.3 s and 1.8 s with movements 1.8x slower
    (elderly)."""
    results = {}
    for label, make in (("quick", lambda n: Cooperating(reaction_s=0.4 + (n % 7) * 0.2,
                                                        release_s=0.6)),
                        ("elderly", lambda n: Cooperating(reaction_s=2.5 + (n % 3) * 0.4,
                                                          release_s=1.8, slow=1.8))):
        passed = 0
        for seed in range(100):
            actions = choose_challenges(POLICY, random.Random(seed))
            check = run_check(POLICY, actions, make(seed), bank[photo], seed)
            passed += check.state == "passed"
        results[label] = passed
    assert results["quick"] >= 95 and results["elderly"] >= 95, results


def _non_following(kind: str, seed: int):
    rng = np.random.default_rng(10_000 + seed)
    return {
        "random_slow": lambda: RandomMotion(rng, rate=0.2),
        "random": lambda: RandomMotion(rng, rate=0.5),
        "random_busy": lambda: RandomMotion(rng, rate=1.0),
        "talking": lambda: RandomMotion(rng, rate=0.3, talking=True),
        "cuts": lambda: Cuts(RandomMotion(rng, rate=0.4)),
        "loop": lambda: Loop(RandomMotion(rng, rate=0.6), segment_s=3.0),
    }[kind]()


@pytest.mark.parametrize("kind", ["random_slow", "random", "random_busy", "talking", "cuts",
                                  "loop"])
def test_clips_not_following_the_prompts_always_fail(bank, cut_bank, kind):
    """250 seeded clips of each kind, each against its own random challenges."""
    reasons: dict[str | None, int] = {}
    for seed in range(250):
        actions = choose_challenges(POLICY, random.Random(seed))
        check = run_check(POLICY, actions, _non_following(kind, seed),
                          cut_bank if kind == "cuts" else bank["obama.jpg"], seed)
        reasons[check.reason] = reasons.get(check.reason, 0) + 1
        assert check.state != "passed", (kind, seed, check.summary())
    if kind == "cuts":
        assert reasons.get("scene_cut", 0) >= 100, reasons


def _measures(yaw=0.0, ear=0.3, mar=0.05, smile=0.9, roll=0.0, center=(320.0, 240.0),
              iod=60.0):
    return FaceMeasures(ear=ear, mar=mar, smile=smile, yaw=yaw, pitch=0.0, roll=roll, iod=iod,
                        center=center, shape=np.zeros((13, 2)))


def _feed(check, frames, start=0.0, dt=0.1, **kw):
    """Feed (measures-kwargs) frames at `dt`; returns the time after the last."""
    t = start
    for f in frames:
        check.observe(Sample(t, 1, _measures(**f), distance=0.3 if round(t * 10) % 10 == 0
                             else None, **kw))
        t = round(t + dt, 3)
    return t


def _prompted(action, policy=POLICY, **kw):
    """A check calibrated at rest and prompted for `action` (random pause drawn)."""
    check = LivenessCheck(policy, [action], 0.0, rng=random.Random(1))
    t = 0.0
    while check.prompt().action != action:  # calibration, then the random pause
        t = _feed(check, [{}], start=t)
        assert t < 10, check.summary()
    return check, t


def test_turn_that_jumps_is_not_a_turn():
    """The replayed clip's 45-55 degree yaw jumps: from rest straight to 50 degrees."""
    check, t = _prompted("turn_left")
    _feed(check, [{}] * 4 + [{"yaw": 50.0}] * 5, start=t)
    assert check.state == "failed" and check.reason == "implausible_motion", check.summary()
    check, t = _prompted("turn_left")  # 0.3 s between samples: slow enough, but no path
    _feed(check, [{}] * 4, start=t)
    _feed(check, [{"yaw": 45.0}] * 3, start=t + 0.7, dt=0.3)
    assert check.reason == "implausible_motion", check.summary()
    assert check.steps[0].detail["why"] == "no_intermediate_angle"


def test_turn_must_wait_for_the_release_cue():
    check, t = _prompted("turn_left")
    t = _feed(check, [{}] * 4 + [{"yaw": y} for y in (6, 12, 18, 24)], start=t)
    assert check.steps[0].state == "holding"
    _feed(check, [{"yaw": 24.0}] * 2 + [{}] * 5, start=t)  # back before any cue
    assert check.reason == "released_early", check.summary()


def test_talking_does_not_hold_the_mouth_open():
    check, t = _prompted("open_mouth")
    talk = [{"mar": m} for m in (0.1, 0.35, 0.55, 0.2, 0.05, 0.45, 0.6, 0.3, 0.1)]
    _feed(check, [{}] * 4 + talk * 4, start=t)
    assert check.state != "passed"
    assert check.reason in ("released_early", "open_mouth_not_completed"), check.summary()


def test_blink_of_seconds_is_not_a_blink():
    """The replayed clip's 4.8 s between closed and open eyes."""
    check, t = _prompted("blink_twice")
    _feed(check, [{}] * 4 + [{"ear": 0.1}] * 48 + [{}] * 5, start=t)
    assert check.reason == "not_a_blink", check.summary()
    assert check.steps[0].detail["why"] == "eyes_closed_too_long"


def test_blinks_are_counted_exactly():
    blink = [{"ear": 0.1}] * 2 + [{}] * 3
    check, t = _prompted("blink_twice")
    _feed(check, [{}] * 4 + blink * 3 + [{}] * 10, start=t)
    assert check.reason == "not_a_blink" and \
        check.steps[0].detail["why"] == "too_many_blinks", check.summary()
    check, t = _prompted("blink_three_times")
    _feed(check, [{}] * 4 + blink * 3 + [{}] * 10, start=t)
    assert check.state == "passed", check.summary()


def test_action_before_the_prompt_fails():
    check, t = _prompted("smile")
    _feed(check, [{"smile": 1.05}] * 15, start=t)  # within 0.25 s of the prompt
    assert check.reason == "anticipated", check.summary()
    check = LivenessCheck(POLICY, ["smile"], 0.0, rng=random.Random(1))
    _feed(check, [{}] * 5 + [{"yaw": y} for y in (5, 10, 16, 20)] + [{}] * 10)
    assert check.reason == "unprompted_action", check.summary()


def test_reaction_counts_from_the_prompts_sending_not_from_a_late_analysed_frame():
    """The frame that led to the prompt arrived at t, but its analysis (and the prompt)
    finished 0.8 s later: a smile 0.5 s after the prompt went out is a reaction (0.5 s),
    and the same smile in a frame received before the prompt went out is not."""
    check = LivenessCheck(POLICY, ["smile"], 0.0, rng=random.Random(1))
    t = 0.0
    while check.prompt().action != "smile":
        check.observe(Sample(t, 1, _measures()), now=t + 0.8)
        t = round(t + 0.1, 3)
    sent = t - 0.1 + 0.8
    assert check.steps[0].prompted_at == pytest.approx(sent)
    _feed(check, [{"smile": 1.05}] * 3, start=sent + 0.5)
    assert check.steps[0].detail["reaction_s"] == pytest.approx(0.5), check.summary()
    check = LivenessCheck(POLICY, ["smile"], 0.0, rng=random.Random(1))
    t = 0.0
    while check.prompt().action != "smile":
        check.observe(Sample(t, 1, _measures()), now=t + 0.8)
        t = round(t + 0.1, 3)
    _feed(check, [{"smile": 1.05}] * 3, start=t + 0.3)  # received before it was sent
    assert check.reason == "anticipated", check.summary()


def test_another_action_during_a_challenge_fails():
    check, t = _prompted("blink_twice")
    _feed(check, [{}] * 4 + [{"yaw": y} for y in (5, 10, 16, 20)], start=t)
    assert check.reason == "wrong_action" and \
        check.steps[0].detail["other_action"] == "turn_left", check.summary()


def test_reactions_far_apart_fail():
    policy = IdentityPolicy(challenges_min=2, challenges_max=2)
    check = LivenessCheck(policy, ["smile", "turn_left"], 0.0, rng=random.Random(1))
    t = _feed(check, [{}] * 30)
    assert check.prompt().action == "smile"
    t = _feed(check, [{}] * 3 + [{"smile": s} for s in (0.95, 1.0, 1.0)], start=t)  # 0.3 s
    while check.prompt().phase == "do":
        t = _feed(check, [{"smile": 1.0}], start=t)
    t = _feed(check, [{"smile": 1.0}] * 3 + [{}] * 3, start=t)  # let go after 0.3 s
    while check.prompt().action != "turn_left":
        t = _feed(check, [{}], start=t)
    t = _feed(check, [{}] * 35 + [{"yaw": y} for y in (6, 12, 18)], start=t)  # after 3.5 s
    assert check.reason == "inconsistent_reactions", check.summary()


def _moving_thumbs(n, phase=0.0):
    """Thumbnails of a scene in steady motion (a bar sweeping across)."""
    out = []
    for i in range(n):
        img = np.zeros(worker.THUMB_SIZE[::-1], np.float32)
        x = int((i * 3 + phase) % 32)
        img[:, x:x + 6] = 80.0
        out.append(img - img.mean())
    return out


def test_looped_frames_fail_but_motion_out_and_back_does_not():
    segment = _moving_thumbs(10)
    check = LivenessCheck(POLICY, ["smile"], 0.0, rng=random.Random(1))
    for i, thumb in enumerate(segment * 4):  # the same second of video, four times
        check.observe(Sample(i * 0.1, 1, _measures(), 0.3, thumb=thumb))
    assert check.reason == "looped_video", check.summary()
    check = LivenessCheck(POLICY, ["smile"], 0.0, rng=random.Random(1))
    for i, thumb in enumerate(segment + segment[::-1]):  # a turn out and back
        check.observe(Sample(i * 0.1, 1, _measures(), 0.3, thumb=thumb))
    assert check.reason != "looped_video", check.summary()


def test_cut_face_jump_and_media_clock_fail():
    a = _moving_thumbs(1)[0]
    check = LivenessCheck(POLICY, ["smile"], 0.0)
    check.observe(Sample(0.0, 1, _measures(), 0.3, thumb=a))
    check.observe(Sample(0.1, 1, _measures(), None, thumb=-a * 3))
    assert check.reason == "scene_cut", check.summary()
    check = LivenessCheck(POLICY, ["smile"], 0.0)
    _feed(check, [{}] * 3 + [{"center": (420.0, 240.0)}])
    assert check.reason == "face_jump", check.summary()
    check = LivenessCheck(POLICY, ["smile"], 0.0)
    _feed(check, [{}] * 3 + [{"iod": 90.0}])
    assert check.reason == "face_jump", check.summary()
    check = LivenessCheck(POLICY, ["smile"], 0.0)
    for i, media in enumerate((10.0, 10.1, 10.2, 8.0)):
        check.observe(Sample(i * 0.1, 1, _measures(), 0.3, media_t=media))
    assert check.reason == "frame_timing", check.summary()


def test_still_photo_fails_as_frozen(bank, obama_ref):
    still = bank["obama.jpg"]
    check = LivenessCheck(POLICY, ["smile", "turn_left", "open_mouth"], 0.0)
    image = still.image(Pose())
    grey = None
    for i in range(60):
        obs, grey, diff, thumb = worker.analyse(image, i % 10 == 0, True, POLICY.detect_width,
                                                grey)
        dist = distance(obs.encoding, obama_ref) if obs.encoding is not None else None
        check.observe(Sample(i * 0.1, obs.faces, obs.measures, dist, diff, thumb, i / 15))
        if check.done:
            break
    assert check.state == "failed" and check.reason == "frozen_video", check.summary()


def test_liveness_by_someone_else_fails(engine, faces_dir, bank):
    biden = analyse_reference(engine, (faces_dir / "biden.jpg").read_bytes(), POLICY).encoding
    check = run_check(POLICY, ["smile", "turn_left", "open_mouth"], Cooperating(),
                      bank["rose_leslie1.jpg"], seed=2, real_frames=True, reference=biden)
    assert check.state == "failed" and check.reason == "different_face"


class _Stalls:
    """Drops every frame for `gap_s` once each time a step starts acting (up to
    `times` stalls): the link stalls mid-action while the customer goes on."""

    def __init__(self, gap_s: float, times: int):
        self.gap_s, self.times, self.until, self.seen = gap_s, times, -1.0, set()

    def __call__(self, check, t):
        step = check.current
        if t < self.until:
            return True
        if step is not None and step.state == "acting" and id(step) not in self.seen and \
                len(self.seen) < self.times:
            self.seen.add(id(step))
            self.until = t + self.gap_s
            return True
        return False


HELD = {"turn_left", "turn_right", "tilt_left", "tilt_right", "open_mouth", "smile"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_stalled_link_mid_action_asks_a_fresh_action_and_the_customer_passes(bank, seed):
    """0.9 s without frames in the middle of two actions (a stalled link, a keyframe
    wait): each is interrupted, not failed; a held action not yet asked follows after
    a fresh pause, and the cooperating customer passes."""
    actions = ["blink_twice", "turn_left", "smile"]
    check = run_check(POLICY, actions, Cooperating(), bank["rose_leslie1.jpg"], seed,
                      lost=_Stalls(0.9, times=2))
    assert check.state == "passed", check.summary()
    states = [(s.action, s.state) for s in check.steps]
    assert [st for _, st in states] == ["interrupted", "interrupted", "passed", "passed",
                                        "passed"], states
    assert [a for a, _ in states[:2]] == ["blink_twice", states[1][0]]
    first_retry, second_retry = states[1][0], states[2][0]
    assert first_retry in HELD - {"turn_left", "smile"}, states
    assert second_retry in HELD - {"turn_left", "smile", first_retry}, states
    assert [a for a, _ in states[3:]] == ["turn_left", "smile"]
    assert check.retries == 2
    assert all(0.85 <= s.detail["gap_s"] <= 1.0 for s in check.steps[:2]), check.summary()


def test_interruptions_beyond_the_retries_fail_the_check(bank):
    policy = IdentityPolicy(liveness_retries=1)
    check = run_check(policy, ["turn_left", "smile", "open_mouth"], Cooperating(),
                      bank["rose_leslie1.jpg"], 1, lost=_Stalls(0.9, times=2))
    assert check.state == "failed" and check.reason == "interrupted", check.summary()
    assert [s.state for s in check.steps] == ["interrupted", "failed", "skipped", "skipped"]
    assert check.steps[1].action in HELD - {"turn_left", "smile", "open_mouth"}
    check = run_check(IdentityPolicy(liveness_retries=0), ["turn_left", "smile"],
                      Cooperating(), bank["rose_leslie1.jpg"], 1, lost=_Stalls(0.9, times=1))
    assert check.reason == "interrupted" and [s.state for s in check.steps] == \
        ["failed", "skipped"], check.summary()


def test_a_gap_shorter_than_the_limit_interrupts_nothing(bank):
    check = run_check(POLICY, ["turn_left", "smile", "open_mouth"], Cooperating(),
                      bank["rose_leslie1.jpg"], 1, lost=_Stalls(0.4, times=3))
    assert check.state == "passed" and check.retries == 0, check.summary()
    assert [s.state for s in check.steps] == ["passed"] * 3


def test_held_action_with_no_frames_after_its_cue_is_interrupted():
    """No samples at all (tick only) well past the release cue: interrupted, asked
    again with another held action."""
    check, t = _prompted("turn_left", policy=IdentityPolicy(challenges_min=1))
    t = _feed(check, [{}] * 4 + [{"yaw": y} for y in (6, 12, 18, 24)], start=t)
    assert check.steps[0].state == "holding"
    due = check.steps[0].release_due
    assert not check.tick(due + 0.5)
    assert check.tick(due + 0.7)
    assert [s.state for s in check.steps] == ["interrupted", "rest"], check.summary()
    assert check.steps[1].action in HELD - {"turn_left"} and check.state == "running"
    assert check.prompt().action == "rest" and check.prompt().phase == "again"
    assert check.prompt().step == 2


def test_challenges_are_random_with_at_most_one_blink():
    seen = set()
    for seed in range(300):
        actions = choose_challenges(POLICY, random.Random(seed))
        assert len(actions) in (3, 4) and len(set(actions)) == len(actions)
        assert sum(a.startswith("blink") for a in actions) <= 1
        seen.add(tuple(actions))
    assert len(seen) >= 150  # counts, orders and kinds vary
    assert {len(c) for c in seen} == {3, 4}
    assert {a for combo in seen for a in combo} == {
        "blink_twice", "blink_three_times", "turn_left", "turn_right", "tilt_left",
        "tilt_right", "open_mouth", "smile"}




def test_a_lower_resolution_mid_call_is_not_a_face_jump(bank):
    bank = bank["rose_leslie1.jpg"]
    """WebRTC senders lower their resolution under load (640x480 -> 320x240): the same
    face then measures the same, and liveness does not call it a jump."""
    import cv2

    from vteller.identity import landmarks as lm

    face = bank.image(Pose())  # the neutral face, 640x480, measured by the real model
    small = cv2.resize(face, (320, 240), interpolation=cv2.INTER_AREA)
    big_m = bank.engine.analyze(face, encode=False, landmarks=True).measures
    small_m = bank.engine.analyze(small, encode=False, landmarks=True).measures
    assert big_m is not None and small_m is not None
    assert small_m.iod == pytest.approx(big_m.iod, rel=0.1)
    assert small_m.center == pytest.approx(big_m.center, abs=0.01)
    check = LivenessCheck(POLICY, ["smile"], 0.0, rng=random.Random(1))
    check.observe(Sample(0.0, 1, big_m))
    check.observe(Sample(0.1, 1, small_m))
    assert check.state == "running", check.summary()
    points = np.random.default_rng(3).uniform(200, 400, (68, 2))
    assert lm.measure(points / 2, lm.DLIB68, (320, 240)).center == pytest.approx(
        lm.measure(points, lm.DLIB68, (640, 480)).center)
