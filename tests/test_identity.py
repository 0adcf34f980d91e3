"""Identity: reference enrollment, live verification and liveness on real faces,
through real aiortc calls (no mocks)."""

from __future__ import annotations

import asyncio
import gc
import io
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import accept_call
from tests.face_frames import FaceCam, selfie
from tests.helpers import LoopWatch, Party, insecure_ssl
from tests.liveness_clips import (
    Cooperating,
    PoseBank,
)
from vteller.audit.verify import verify_session
from vteller.auth import ServiceAuth
from vteller.identity import (
    EnrollmentError,
    FaceEngine,
    IdentityPolicy,
    Observation,
    PresenceMonitor,
    Verdict,
    VerificationWindow,
    analyse_reference,
    to_jpeg,
)
from vteller.identity.faces import Quality
from vteller.identity.liveness import Prompt

pytestmark = pytest.mark.faces
POLICY = IdentityPolicy()


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine()


# ------------------------------------------------------------------ reference photos
def test_reference_accepts_one_clear_face(engine, faces_dir):
    ref = analyse_reference(engine, (faces_dir / "obama.jpg").read_bytes(), POLICY)
    assert ref.encoding.shape == (128,) and ref.photo is None
    assert ref.quality.face_px >= POLICY.min_reference_face_px


def test_reference_accepts_png(engine, faces_dir):
    buf = io.BytesIO()
    Image.open(faces_dir / "biden.jpg").save(buf, format="PNG")
    assert analyse_reference(engine, buf.getvalue(), POLICY).encoding.shape == (128,)


@pytest.mark.parametrize("case,code", [
    ("text", "not_an_image"), ("gif", "not_an_image"), ("truncated", "not_an_image"),
    ("huge", "too_large"), ("two_people", "several_faces"), ("blank", "no_face"),
    ("tiny", "face_too_small"), ("blurred", "too_blurry"),
])
def test_reference_errors_are_typed(engine, faces_dir, case, code):
    obama = (faces_dir / "obama.jpg").read_bytes()
    rgb = np.asarray(Image.open(faces_dir / "obama.jpg").convert("RGB"))
    data = {
        "text": lambda: b"this is not a photo",
        "gif": lambda: _encode(Image.open(faces_dir / "obama.jpg"), "GIF"),
        "truncated": lambda: obama[:2000],
        "huge": lambda: obama + b"\0" * POLICY.max_photo_bytes,
        "two_people": lambda: (faces_dir / "two_people.jpg").read_bytes(),
        "blank": lambda: to_jpeg(np.full((400, 400, 3), 128, np.uint8)),
        "tiny": lambda: to_jpeg(cv2.resize(rgb, (rgb.shape[1] // 4, rgb.shape[0] // 4))),
        "blurred": lambda: to_jpeg(cv2.GaussianBlur(rgb, (0, 0), 6)),
    }[case]()
    with pytest.raises(EnrollmentError) as err:
        analyse_reference(engine, data, POLICY)
    assert err.value.code == code


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


# ------------------------------------------------------------------ pure verdict logic
def _obs(faces: int = 1, face_px: int = 200, brightness: float = 120) -> Observation:
    return Observation(faces=faces, quality=Quality(face_px, brightness, 300.0) if faces else None)


@pytest.mark.parametrize("distances,verdict", [
    ([0.30, 0.35], Verdict.VERIFIED),  # clear: decided after early_samples
    ([0.80, 0.75], Verdict.MISMATCH),
    ([0.42, 0.45, 0.44], Verdict.VERIFIED),  # near the threshold: min_samples needed
    ([0.65, 0.62, 0.68], Verdict.MISMATCH),
    ([0.30, 0.40, 0.65], Verdict.NEEDS_REVIEW),  # one sample far off: a human looks
    # a median within 0.05 of a threshold: more frames before deciding
    ([0.48, 0.52, 0.49, 0.40, 0.41, 0.42], Verdict.VERIFIED),
    ([0.49, 0.51] * 5, Verdict.NEEDS_REVIEW),  # still straddling at window_max (10)
    ([0.55, 0.56, 0.54] * 3 + [0.55], Verdict.NEEDS_REVIEW),  # between the two: the same
])
def test_window_verdicts(distances, verdict):
    w = VerificationWindow(POLICY, 0.0)
    got = [w.add(_obs(), i * 0.2, d) for i, d in enumerate(distances)]
    assert got[:-1] == [Verdict.VERIFYING] * (len(distances) - 1) and got[-1] == verdict


def test_window_reports_conditions_and_times_out():
    w = VerificationWindow(POLICY, 0.0)
    assert w.add(_obs(faces=0), 1.0, None) == Verdict.VERIFYING and w.condition == Verdict.NO_FACE
    assert w.add(_obs(faces=2), 2.0, None) == Verdict.VERIFYING
    assert w.condition == Verdict.SEVERAL_FACES
    w.add(_obs(face_px=30), 3.0, None)
    assert (w.condition, w.detail) == (Verdict.POOR_QUALITY, "face_too_small")
    w.add(_obs(brightness=15), 4.0, None)
    assert w.detail == "poorly_lit"
    assert w.add(_obs(faces=2), POLICY.verify_timeout_s + 1, None) == Verdict.SEVERAL_FACES


def test_presence_alerts():
    p = PresenceMonitor(POLICY, 0.0)
    assert p.add(_obs(), 1.0, 0.3) is None
    assert p.add(_obs(faces=0), 5.0, None) is None  # briefly out of frame
    assert p.add(_obs(faces=0), 1.0 + POLICY.presence_absent_s, None) == "left_frame"
    assert p.add(_obs(), 20.0, 0.3) == "returned"
    assert p.add(_obs(), 22.0, 0.8) is None  # one odd sample
    assert p.add(_obs(), 24.0, 0.8) == "different_person"
    assert p.add(_obs(faces=2), 26.0, None) == "several_faces"


# ------------------------------------------------------------------ over the wire
async def enroll(server, customer_id: str, photo: Path | bytes,
                 content_type: str = "image/jpeg", key: str | None = None) -> tuple[int, dict]:
    if key is None:
        key = getattr(server, "_backend_key", None)
        if key is None:
            key = server._backend_key = ServiceAuth(server.components.store).create("bank")
    body = photo if isinstance(photo, bytes) else photo.read_bytes()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        r = await s.put(f"{server.url}/api/backend/references/{customer_id}", data=body,
                        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})
        return r.status, await r.json()


async def test_reference_upload_api(server, faces_dir):
    status, body = await enroll(server, "c-77", faces_dir / "obama.jpg")
    assert status == 201 and body["replaced"] is False
    status, body = await enroll(server, "c-77", faces_dir / "obama2.jpg")
    assert status == 200 and body["replaced"] is True
    events = await asyncio.to_thread(server.components.trail.events, body["audit_session"])
    assert [e["kind"] for e in events][:1] == ["reference.replaced"]
    assert events[0]["customer"] == "c-77" and events[0]["actor"] == "backend:bank"
    assert (await enroll(server, "c-77", faces_dir / "two_people.jpg"))[1]["error"]["code"] \
        == "several_faces"
    assert (await enroll(server, "c-77", b"GIF89a", "image/gif"))[0] == 415
    assert (await enroll(server, "c-77", b"x" * (POLICY.max_photo_bytes + 1)))[0] == 413
    assert (await enroll(server, "c-77", b"not really", "image/png"))[1]["error"]["code"] \
        == "not_an_image"
    assert (await enroll(server, "c-77", faces_dir / "obama.jpg", key="vtb_wrong"))[0] == 401
    assert (await enroll(server, "bad id!", faces_dir / "obama.jpg"))[0] == 400
    # staff cookies are not a backend credential
    server.add_staff("sup1", role="supervisor")
    cookies = await server.login("sup1")
    async with aiohttp.ClientSession(cookies=cookies,
                                     connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        r = await s.put(f"{server.url}/api/backend/references/c-77",
                        data=(faces_dir / "obama.jpg").read_bytes(),
                        headers={"Content-Type": "image/jpeg"})
        assert r.status == 401
    # stored encrypted: the raw row does not contain the encoding's bytes
    ref = await asyncio.to_thread(server.components.identity.references.get, "c-77")
    raw = server.components.store.run("SELECT encoding FROM identity_references")[0][0]
    assert ref.shape == (128,) and ref.astype("<f8").tobytes()[:16] not in bytes(raw)


async def _call(server, photo: Path | None, customer_id: str, business_type: str = "general",
                cam: FaceCam | None = None):
    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer(customer_id)
    call_id = await accept_call(teller_sig, cust_sig, business_type=business_type)
    cam = cam or FaceCam(photo)
    customer, teller = Party("customer", video=cam), Party("teller")
    await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
    await teller.wait_frames("video", 5)
    return call_id, cust_sig, teller_sig, customer, teller, cam


async def _verdict(teller_sig, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = await teller_sig.recv("identity.status", timeout=deadline - time.monotonic())
        if msg["verdict"] not in ("verifying", "idle"):
            return msg


async def _close(*parts) -> None:
    for p in parts:
        if hasattr(p, "close"):
            await p.close()


@pytest.mark.settings(record_calls=True)
async def test_live_verification_obama_verified_with_evidence(server, faces_dir):
    await enroll(server, "c-obama", faces_dir / "obama.jpg")
    call_id, cust_sig, teller_sig, *parts = await _call(
        server, faces_dir / "obama2.jpg", "c-obama", business_type="card_issuance_review")
    status = await _verdict(teller_sig)  # the business type needs face_verified: auto start
    assert status["verdict"] == "verified", status
    # 3 samples (min_samples), or 2 (early_samples) when both are clearly below the
    # threshold (checked on the verdict event's window below: the panel's trend also
    # holds samples the window turned away, e.g. too much yaw on a loaded machine)
    assert status["distance"] < 0.5 and status["samples"] >= 2, status
    assert status["verdict_s"] < 5
    ctx = await teller_sig.recv("call.context", evidence=["face_verified"])
    assert ctx["call_id"] == call_id
    await teller_sig.send({"type": "review.decide", "decision": "approve"})
    refused = await teller_sig.error("evidence_missing")
    assert "liveness_passed" in refused["message"] and "face_verified" not in refused["message"]
    await teller_sig.send({"type": "call.hangup"})
    await teller_sig.recv("call.ended")
    await teller_sig.request({"type": "teller.status", "status": "available"}, "teller.state",
                             state="available")  # ends wrap-up: the session closes
    await _close(cust_sig, teller_sig, *parts)
    await server.manager.shutdown_cleanups()
    await server.manager.flush()
    events = await asyncio.to_thread(server.components.trail.events, call_id)
    kinds = [e["kind"] for e in events]
    verdict = next(e for e in events if e["kind"] == "identity.verdict")
    assert verdict["verdict"] == "verified"
    assert len(verdict["distances"]) >= 3 or (len(verdict["distances"]) == 2 and
                                              max(verdict["distances"]) < 0.4), verdict
    assert verdict["best_frame_at"] <= verdict["decided_frame_at"]
    snap = next(e for e in events if e["kind"] == "identity.snapshot")
    assert kinds.index("identity.verdict") < kinds.index("review.refused")
    c = server.components
    report = await asyncio.to_thread(verify_session, c.store, call_id, c.trail.public_key,
                                     c.kek, c.blobs)
    assert report.ok, report
    assert c.blobs.exists(f"{call_id}/{snap['file']}")


@pytest.mark.parametrize("photo,verdict", [("biden.jpg", "mismatch"),
                                           ("obama3.jpg", "verified"),
                                           ("two_people.jpg", "several_faces")])
@pytest.mark.settings(identity={"verify_timeout_s": 4.0})
async def test_live_verification_verdicts(server, faces_dir, photo, verdict):
    await enroll(server, "c-obama", faces_dir / "obama.jpg")
    call_id, cust_sig, teller_sig, *parts = await _call(server, faces_dir / photo, "c-obama")
    await teller_sig.send({"type": "identity.verify"})
    status = await _verdict(teller_sig)
    assert status["verdict"] == verdict, status
    if verdict != "verified":
        ctx = server.manager.calls[call_id]
        assert "face_verified" not in ctx.evidence
    await server.manager.flush()
    flags = server.components.store.call_flags(call_id)
    assert ("identity_mismatch" in flags) == (verdict == "mismatch")  # auditor search
    await _close(cust_sig, teller_sig, *parts)


async def test_identity_needs_a_reference_and_the_teller_role(server, faces_dir):
    _, cust_sig, teller_sig, *parts = await _call(server, faces_dir / "obama.jpg", "c-none")
    await teller_sig.send({"type": "identity.verify"})
    await teller_sig.error("no_reference")
    await cust_sig.send({"type": "identity.verify"})
    await cust_sig.error("forbidden")
    await teller_sig.send({"type": "identity.judge", "accept": True, "notes": "looks fine"})
    await teller_sig.error("wrong_state")  # nothing borderline to judge
    await _close(cust_sig, teller_sig, *parts)


# thresholds that make every real match "borderline": the teller must judge
@pytest.mark.settings(identity={"match_threshold": 0.05, "mismatch_threshold": 0.7})
async def test_borderline_goes_to_the_teller(server, faces_dir):
    await enroll(server, "c-obama", faces_dir / "obama.jpg")
    call_id, cust_sig, teller_sig, *parts = await _call(server, faces_dir / "obama2.jpg",
                                                        "c-obama")
    await teller_sig.send({"type": "identity.verify"})
    status = await _verdict(teller_sig)
    assert status["verdict"] == "needs_review" and status["borderline"], status
    await teller_sig.send({"type": "identity.judge", "accept": True,
                           "notes": "matches the ID card in hand"})
    ctx = await teller_sig.recv("call.context", evidence=["face_verified"])
    assert ctx["call_id"] == call_id
    await server.manager.flush()
    events = await asyncio.to_thread(server.components.trail.events, call_id)
    judged = next(e for e in events if e["kind"] == "identity.judged")
    assert judged["actor"] == "teller" and judged["accept"] is True
    await _close(cust_sig, teller_sig, *parts)


async def _liveness(server, faces_dir, cam: FaceCam, performer=None) -> tuple[dict, list, str]:
    """Start liveness; the customer's camera shows what `performer` does on each
    prompt (poses of rose_leslie1.jpg rendered as the call runs)."""
    await enroll(server, "c-rose", faces_dir / "rose_leslie2.jpg")
    if performer is not None:
        poses = PoseBank([faces_dir / "rose_leslie1.jpg"], FaceEngine())
        await asyncio.to_thread(poses.render_all)
        shown: list[Prompt | None] = [None]
        cam.scene = lambda t: poses.image(performer(shown[0], t))
    call_id, cust_sig, teller_sig, *parts = await _call(server, None, "c-rose", cam=cam)
    await teller_sig.send({"type": "identity.liveness"})
    prompts = []
    lags = []
    while True:
        sent = time.monotonic()
        await cust_sig.send({"type": "ping"})
        await cust_sig.recv("pong")
        lags.append(time.monotonic() - sent)
        try:
            msg = await cust_sig.recv("identity.challenge", timeout=0.1)
        except TimeoutError:
            continue
        prompts.append(msg)
        if msg["state"] != "running":
            break
        if performer is not None:
            shown[0] = Prompt(msg["action"], msg["step"], msg["phase"], msg["prompt"])
    while True:
        status = await teller_sig.recv("identity.status")
        if status["liveness"] and status["liveness"]["state"] != "running":
            break
    await _close(cust_sig, teller_sig, *parts)
    return status, prompts, call_id, lags  # type: ignore[return-value]


async def test_liveness_cooperating_customer_passes(server, faces_dir):
    cam = FaceCam(faces_dir / "rose_leslie1.jpg")
    started = time.monotonic()
    # a customer at an everyday pace (a 0.3 s blink, a 0.65 s turn); the quick and the
    # elderly-slow ones are judged by the thousand in test_liveness
    # The test process runs the server and the customer, and carries the heap of every
    # test before it: a full collection then walks all of it (the server process
    # freezes its start-up heap for the same reason: cli.freeze_startup_heap).
    gc.collect()
    gc.freeze()
    try:
        async with LoopWatch() as watch:
            status, prompts, call_id, lags = await _liveness(server, faces_dir, cam,
                                                             Cooperating(slow=1.3))
    finally:
        gc.unfreeze()
    assert prompts[-1]["state"] == "passed", (status["liveness"], watch.report())
    # a loaded machine may stall the analysis mid-action: that action is asked again
    # (a fresh one, at most twice), and the rest all pass
    steps = status["liveness"]["steps"]
    passed = [s for s in steps if s["state"] == "passed"]
    assert len(passed) in (3, 4) and len(steps) - len(passed) <= 2, steps
    assert {s["state"] for s in steps} <= {"passed", "interrupted"}, steps
    asked = [p["action"] for p in prompts if p["phase"] == "do" and
             p["action"] not in ("calibrate", "rest", None)]
    assert asked == [s["action"] for s in steps]
    released = [p["action"] for p in prompts if p["phase"] == "release"]
    assert [a for a in released if a in {s["action"] for s in passed}] == \
        [s["action"] for s in passed if not s["action"].startswith("blink")]
    assert "liveness_passed" in server.manager.calls[call_id].evidence
    # The loop never blocked for long. This process also renders and encodes the
    # customer's camera; on a loaded machine that alone has delayed a ping past 0.5 s
    # (LoopWatch found the loop in aiortc's encoding sender), so only a gross stall
    # fails. (The face analysis runs in `Analyzer`'s process pool: even run on the loop
    # it moved these pings little, p90 63 ms against 85 ms, so they cannot show that.)
    assert max(lags) < 2.0, (sorted(lags)[-5:], watch.report())
    assert time.monotonic() - started < 60
    await server.manager.flush()
    events = await asyncio.to_thread(server.components.trail.events, call_id)
    result = next(e for e in events if e["kind"] == "identity.liveness_result")
    assert result["state"] == "passed"
    assert [e["state"] for e in events if e["kind"] == "identity.liveness_step"] == \
        [s["state"] for s in steps]


async def test_liveness_still_photo_video_fails(server, faces_dir):
    cam = FaceCam(faces_dir / "rose_leslie1.jpg", still=True)
    status, prompts, call_id, _ = await _liveness(server, faces_dir, cam)
    assert prompts[-1]["state"] == "failed"
    assert status["liveness"]["reason"] == "frozen_video"
    assert "liveness_passed" not in server.manager.calls[call_id].evidence


async def test_selfie_frames_have_one_face(faces_dir, engine):
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        assert engine.analyze(selfie(faces_dir / name), encode=False).faces == 1


def test_analysis_workers_end_with_a_killed_server():
    """A server killed with -9 must not leave its face-analysis processes behind."""
    import os
    import subprocess
    import sys

    script = ("import os, sys\n"
              "from vteller.identity import IdentityPolicy\n"
              "from vteller.identity.session import Analyzer\n"
              "a = Analyzer(IdentityPolicy(workers=2))\n"
              "assert a.warm_up()\n"
              "print(' '.join(str(p) for p in a._pool._processes), flush=True)\n"
              "os.kill(os.getpid(), 9)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2, out.stderr
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{p}") and "spawn" in open(f"/proc/{p}/cmdline").read()
                   for p in pids)


def test_identity_eval_cli_on_the_shared_photos(faces_dir, tmp_path):
    """`vteller identity eval`: genuine vs impostor distances and FAR/FRR per threshold."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "VTELLER_DATA_DIR": str(tmp_path / "var")}
    out = subprocess.run([sys.executable, "-m", "vteller", "identity", "eval", str(faces_dir),
                          "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["skipped"] == {"two_people.jpg": "2 faces"}
    assert report["genuine"]["pairs"] == 9 and report["impostor"]["pairs"] == 36
    assert report["genuine"]["max"] < POLICY.match_threshold < report["impostor"]["min"]
    at = {row["threshold"]: row for row in report["thresholds"]}
    assert at[0.5]["far"] == 0 and at[0.5]["frr"] == 0
    assert at[0.3]["frr"] > 0.5  # too strict: most genuine pairs rejected


def test_backend_credentials_cli(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "VTELLER_DATA_DIR": str(tmp_path / "var")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vteller", "backend", *args],
                              capture_output=True, text=True, timeout=60, env=env)

    added = run("add", "core-banking")
    key = added.stdout.split()[-1]
    assert added.returncode == 0 and key.startswith("vtb_")
    assert run("add", "core-banking").returncode == 1  # names are unique
    assert "core-banking\t" in run("list").stdout and "active" in run("list").stdout
    assert run("revoke", "core-banking").returncode == 0
    assert "revoked" in run("list").stdout
    assert run("revoke", "nobody").returncode == 1


@pytest.mark.settings(record_calls=True)
async def test_spoken_alternative_stands_in_for_gesture_liveness(server, faces_dir):
    """A customer who cannot do gestures: the teller runs the spoken check with a
    recorded reason; the attestation stands in for liveness where the business type
    allows it (not for video identification)."""
    await enroll(server, "c-obama", faces_dir / "obama.jpg")
    call_id, cust_sig, teller_sig, *parts = await _call(
        server, faces_dir / "obama2.jpg", "c-obama", business_type="card_issuance_review")
    assert (await _verdict(teller_sig))["verdict"] == "verified"
    await teller_sig.send({"type": "identity.attest", "passed": True, "notes": "said it"})
    await teller_sig.error("wrong_state")  # nothing to attest yet
    await teller_sig.send({"type": "identity.spoken_check", "reason": "other"})
    await teller_sig.error("invalid_message")  # 'other' needs notes
    await teller_sig.send({"type": "identity.spoken_check", "reason": "tired"})
    await teller_sig.error("invalid_message")
    await cust_sig.send({"type": "identity.spoken_check", "reason": "disability"})
    await cust_sig.error("forbidden")
    await teller_sig.send({"type": "identity.spoken_check", "reason": "disability",
                           "notes": "customer cannot turn their head"})
    prompt = await cust_sig.recv("identity.challenge", action="speak_phrase")
    phrase = prompt["phrase"]
    assert len(phrase.replace(" ", "")) == 6 and phrase.replace(" ", "").isdigit()
    while True:
        status = await teller_sig.recv("identity.status")
        if status.get("spoken"):
            break
    assert status["spoken"]["phrase"] == phrase and len(status["spoken"]["questions"]) == 2
    await teller_sig.send({"type": "identity.liveness"})
    await teller_sig.error("wrong_state")  # one check at a time
    await teller_sig.send({"type": "identity.attest", "passed": True,
                           "notes": "read the numbers and answered both questions"})
    ctx = await teller_sig.recv("call.context", evidence=["face_verified", "liveness_attested"])
    assert ctx["business_type"]["alternatives"] == {"liveness_passed": ["liveness_attested"]}
    done = await cust_sig.recv("identity.challenge", state="passed")
    assert done["action"] is None
    await teller_sig.request({"type": "review.decide", "decision": "approve"},
                             "review.recorded", decision="approve")
    await server.manager.flush()
    events = await asyncio.to_thread(server.components.trail.events, call_id)
    started = next(e for e in events if e["kind"] == "identity.spoken_started")
    assert started["reason"] == "disability" and started["phrase"] == phrase
    result = next(e for e in events if e["kind"] == "identity.spoken_result")
    assert result["state"] == "passed" and result["attested"] is True
    assert result["actor"] == "system"
    evidence = next(e for e in events if e["kind"] == "evidence" and
                    e["evidence"] == "liveness_attested")
    assert evidence["basis"] == "teller_attestation" and evidence["reason"] == "disability"
    await _close(cust_sig, teller_sig, *parts)


def test_business_types_say_which_liveness_paths_count():
    from vteller.review import ReviewPolicy

    review = ReviewPolicy()
    card = review.business_type("card_issuance_review")
    ident = review.business_type("video_ident")
    assert card.missing({"face_verified", "liveness_attested"}) == []
    assert card.missing({"face_verified", "liveness_passed"}) == []
    assert card.missing({"face_verified"}) == ["liveness_passed"]
    assert ident.missing({"face_verified", "liveness_attested"}) == ["liveness_passed"]
    assert ident.missing({"face_verified", "liveness_passed"}) == []
