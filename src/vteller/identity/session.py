"""One call's identity checks: samples the newest customer camera frame at the rate
the current mode needs, analyses it in the worker pool (never on the event loop),
and turns observations into verdicts, presence alerts and liveness steps.

The call coordinator gives an `IdentityListener` (one method per kind of report) and
stays in charge of what is sent and recorded:
  status     the teller's live panel (verdict, distance trend, liveness steps)
  event      an audit event (its kind and data) with frame timestamps
  evidence   evidence earned (face_verified, liveness_passed)
  challenge  the liveness prompt for the customer
  snapshot   the best-matching frame (RGB array; the caller encodes and stores it
             encrypted, off the event loop)
  hint       what would help the customer be verified (come closer, more light, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import numpy as np
import structlog

from vteller.identity import worker
from vteller.identity.document import DocumentFace, check_document
from vteller.identity.faces import Observation, distance
from vteller.identity.liveness import (
    LivenessCheck,
    LivenessState,
    Prompt,
    Sample,
    choose_challenges,
)
from vteller.identity.policy import IdentityPolicy
from vteller.identity.spoken import SpokenCheck, SpokenState
from vteller.identity.verify import (
    FINAL,
    PresenceMonitor,
    Verdict,
    VerificationWindow,
    quality_problem,
)


class FrameTap(Protocol):
    """Where the session takes the customer's frames from (`media.LatestFrameTap`)."""

    latest: tuple[Any, float] | None

    def keep_grid(self, spacing_s: float, keep_s: float) -> None: ...
    def next_after(self, at: float) -> tuple[Any, float] | None: ...


class IdentityListener(Protocol):
    """What a session reports to the call (one method per kind of report)."""

    def status(self, status: dict[str, Any]) -> None: ...  # the teller panel
    def event(self, kind: str, data: dict[str, Any]) -> None: ...  # for the trail
    def evidence(self, evidence: str, data: dict[str, Any]) -> None: ...  # for review
    def challenge(self, challenge: dict[str, Any]) -> None: ...  # the customer's prompt
    def snapshot(self, rgb: Any, frame_at: float, distance: float) -> None: ...  # best frame
    def hint(self, code: str) -> None: ...  # to the customer: come_closer, more_light, ...


# A verification condition -> what the customer is asked to do about it.
HINTS = {"face_too_small": "come_closer", "poorly_lit": "more_light",
         "too_blurry": "hold_still", "turned_away": "face_camera", "no_face": "face_camera",
         "several_faces": "alone_in_frame"}


log = structlog.get_logger("vteller.identity")


class Analyzer:
    """The worker processes that run the face engine, shared by all calls. A worker
    that dies (a crash inside dlib) breaks the pool; it is replaced and the request
    retried once, so one bad frame never ends other calls' checks."""

    def __init__(self, policy: IdentityPolicy, upsample: int = 0) -> None:
        self.policy = policy
        self._upsample = upsample
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.policy.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.init,
            initargs=(self.policy.landmark_model, self.policy.detect_width, self._upsample,
                      self.policy.landmarks))

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return await loop.run_in_executor(self._pool, fn, *args)

    def warm_up(self) -> bool:
        """Start every worker and load its models now (blocking), not during a call.
        False if the pool was shut down meanwhile or a worker failed to start."""
        try:
            futures = [self._pool.submit(time.sleep, 0.2) for _ in range(self.policy.workers)]
            for f in futures:
                f.result()
            return bool(self._pool.submit(worker.ready).result())
        except (BrokenProcessPool, RuntimeError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
TREND = 20  # distances shown to the teller
GRID_KEEP_S = 1.5  # liveness: frames kept for an analysis that fell behind (one per 1/rate)


def _media_time(frame: Any) -> float | None:
    """The frame's own timestamp in seconds (RTP time through aiortc), if it has one."""
    pts, base = getattr(frame, "pts", None), getattr(frame, "time_base", None)
    return float(pts * base) if pts is not None and base is not None else None


def _wall(monotonic_at: float) -> float:
    return round(time.time() - (time.monotonic() - monotonic_at), 3)


class IdentitySession:
    def __init__(self, analyzer: Analyzer, tap: FrameTap, reference: np.ndarray | None,
                 listener: IdentityListener) -> None:
        self._analyzer = analyzer
        self.policy = analyzer.policy
        self._tap = tap
        self._reference = reference
        self._listener = listener
        self.verdict = Verdict.NO_REFERENCE if reference is None else Verdict.IDLE
        self.detail: str | None = None
        self.window: VerificationWindow | None = None
        self.presence: PresenceMonitor | None = None
        self.liveness: LivenessCheck | None = None
        self.spoken: SpokenCheck | None = None
        self.trend: deque[float] = deque(maxlen=TREND)
        # the live face's newest encoding from verification (to compare an ID document's
        # printed photo with)
        self.live_encoding: np.ndarray | None = None
        self.verdict_s: float | None = None
        self.judged: str | None = None
        self.cpu_s = 0.0
        self.analysed = 0
        self._best: tuple[float, np.ndarray, float] | None = None
        self._last_grey: np.ndarray | None = None
        self._last_bind = -1e9
        self._bind_task: asyncio.Task[None] | None = None
        self._last_scan = -1e9
        self._last_fallback = -1e9
        self._small_faces = False
        self._last_box: Any = None
        self._last_prompt: Prompt | None = None
        self._last_hint: str | None = None
        self._reported: set[tuple[str, str]] = set()  # liveness steps already recorded
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="identity")

    # ------------------------------------------------------------ commands
    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    def start_verification(self) -> None:
        if self._reference is None:
            return
        now = time.monotonic()
        self.window = VerificationWindow(self.policy, now)
        self.presence = None
        self.verdict, self.detail, self.verdict_s, self.judged = Verdict.VERIFYING, None, None, None
        self._best = None
        self._event("identity.verification_started")
        self._status()
        self._wake.set()

    def start_liveness(self, actions: list[str] | None = None) -> list[str]:
        actions = actions or choose_challenges(self.policy)
        now = time.monotonic()
        self.liveness = LivenessCheck(self.policy, actions, now)
        self._last_grey = None
        self._last_prompt = None
        self._reported = set()
        self._event("identity.liveness_started", challenges=actions)
        self._prompt()
        self._status()
        self._wake.set()
        return actions

    def start_spoken(self, reason: str, notes: str) -> SpokenCheck:
        """The accessible alternative to gestures (`identity.spoken`): a random phrase
        for the customer to read aloud and questions for the teller to ask (the caller
        has checked `reason` against `alternative_reasons`)."""
        self.spoken = SpokenCheck.start(self.policy, reason, notes, time.monotonic())
        self._event("identity.spoken_started", reason=reason, notes=notes,
                    phrase=self.spoken.phrase, questions=self.spoken.questions)
        self._listener.challenge({
            "state": "running", "action": "speak_phrase", "phase": "do",
            "prompt": "Please read these numbers aloud", "phrase": self.spoken.phrase,
            "step": 1, "steps": 1, "timeout_s": self.policy.spoken_timeout_s})
        self._status()
        return self.spoken

    def attest_spoken(self, passed: bool, notes: str) -> SpokenState:
        """The teller's attestation; a late one is recorded as expired."""
        check = self.spoken
        assert check is not None and not check.done
        now = time.monotonic()
        elapsed = now - check.started_at
        state = SpokenState.EXPIRED if elapsed > self.policy.spoken_timeout_s else \
            SpokenState.PASSED if passed else SpokenState.FAILED
        check.move(state, now)
        self._event("identity.spoken_result", state=state.value, attested=passed, notes=notes,
                    reason=check.reason, phrase=check.phrase, elapsed_s=round(elapsed, 1))
        if state == SpokenState.PASSED:
            self._listener.evidence("liveness_attested", {"basis": "teller_attestation",
                                                          "reason": check.reason})
        self._listener.challenge({"state": "passed" if state == SpokenState.PASSED else
                                  "failed", "action": None, "prompt": "Thank you",
                                  "step": 0, "steps": 1})
        self._status()
        return state

    async def check_document(self, rgb: np.ndarray) -> DocumentFace:
        """The face printed on an ID document in this frame against the reference and
        the live face."""
        return await check_document(self._analyzer, rgb, self._reference, self.live_encoding)

    def judge(self, accept: bool) -> None:
        """The teller's judgement of a borderline result (recorded by the caller)."""
        self.judged = "accepted" if accept else "rejected"
        self._status()

    def status(self) -> dict[str, Any]:
        w = self.window
        return {
            "verdict": self.verdict.value, "detail": self.detail,
            "distance": round(w.median, 3) if w and w.median is not None else None,
            "trend": [round(d, 3) for d in self.trend],
            "samples": len(w.distances) if w else 0,
            "match_threshold": self.policy.match_threshold,
            "mismatch_threshold": self.policy.mismatch_threshold,
            "borderline": self.verdict == Verdict.NEEDS_REVIEW,
            "judged": self.judged,
            "verdict_s": self.verdict_s,
            "presence": self.presence.alert.value if self.presence and self.presence.alert
            else None,
            "liveness": self.liveness.summary() if self.liveness else None,
            "spoken": self.spoken.public() if self.spoken else None,
        }

    async def close(self) -> None:
        for task in (self._task, self._bind_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # ------------------------------------------------------------ loop
    def _rate(self) -> float:
        if self.liveness is not None and not self.liveness.done:
            return self.policy.liveness_rate_hz
        if self.verdict == Verdict.VERIFYING:
            return self.policy.verify_rate_hz
        if self.presence is not None:
            return self.policy.presence_rate_hz
        return 0.0

    async def _run(self) -> None:
        last_at = -1.0
        while True:
            rate = self._rate()
            if rate == 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            started = time.monotonic()
            live = self.liveness is not None and not self.liveness.done
            # liveness judges short events (blinks): every 1/rate interval's frame is kept
            # and judged in order, even when one analysis took longer than the interval
            self._tap.keep_grid(1.0 / rate, GRID_KEEP_S if live else 0.0)
            frame = self._tap.next_after(last_at)
            if frame is not None:
                last_at = frame[1]
                try:
                    await self._sample(*frame)
                except Exception:  # noqa: BLE001 - one bad frame must not end the checks
                    log.exception("identity_sample_failed")
            elif self.liveness is not None and self.liveness.tick(time.monotonic()):
                self._liveness_changed(time.monotonic())
            self._wake.clear()
            behind = live and self._tap.next_after(last_at) is not None
            delay = 0.0 if behind else max(0.0, 1.0 / rate - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _sample(self, frame: Any, at: float) -> None:
        live = self.liveness is not None and not self.liveness.done
        verifying = self.verdict == Verdict.VERIFYING
        encode = verifying or (self.presence is not None and not live)
        rgb = await asyncio.to_thread(frame.to_ndarray, format="rgb24")  # off the loop
        if live and at - self._last_bind >= self.policy.bind_every_s and \
                self._reference is not None and self._bind_task is None:
            # the face is encoded beside the samples (on another worker), so the ~150 ms
            # encoding never opens a gap in which a blink goes unseen
            self._last_bind = at
            self._bind_task = asyncio.create_task(self._bind(rgb, at), name="identity-bind")
        scan = at - self._last_scan >= self.policy.full_scan_every_s
        fallback = at - self._last_fallback >= self.policy.full_scan_every_s
        obs, grey, diff, thumb = await self._analyzer.run(
            worker.analyse, rgb, encode, live or verifying,
            0 if self._small_faces else self.policy.detect_width,
            self._last_grey if live else None, None if scan else self._last_box, fallback,
            self.policy.max_verify_yaw, live)
        if "tracked" not in obs.extra:
            self._last_scan = at
            # faces only found at full resolution: keep looking there while they stay
            self._small_faces = obs.faces > 0 and (
                self._small_faces or "full_resolution" in obs.extra)
        if "full_resolution" in obs.extra:
            self._last_fallback = at
        self._last_box = obs.box if obs.faces == 1 else None
        if live:
            self._last_grey = grey
        self.cpu_s += obs.cpu_s
        self.analysed += 1
        dist = None
        if obs.encoding is not None and obs.faces == 1 and verifying:
            # only while verifying, when the customer faces the camera: later frames may
            # show the ID card held up to it
            self.live_encoding = obs.encoding
        if obs.encoding is not None and self._reference is not None and obs.faces == 1:
            dist = distance(obs.encoding, self._reference)
            self.trend.append(dist)
        if verifying and self.window is not None:
            self._verify_step(obs, at, dist, rgb)
        elif self.presence is not None and not live:
            alert = self.presence.add(obs, at, dist)
            if alert is not None:
                self._event("identity.presence", alert=alert.value, frame_at=_wall(at),
                            distance=round(dist, 3) if dist is not None else None,
                            faces=obs.faces)
                self._status()
        if live and self.liveness is not None:
            sample = Sample(at, obs.faces, obs.measures, None, diff, thumb, _media_time(frame))
            if self.liveness.observe(sample, time.monotonic()):
                self._liveness_changed(at)

    async def _bind(self, rgb: np.ndarray, at: float) -> None:
        """Encode the liveness face at `at` and compare it with the reference: the
        check is bound to the enrolled person, not only to a live one."""
        check, reference = self.liveness, self._reference
        try:
            # with landmarks, so that a face turned past max_verify_yaw is not encoded
            obs, *_ = await self._analyzer.run(
                worker.analyse, rgb, True, True, 0 if self._small_faces else
                self.policy.detect_width, None, self._last_box, True,
                self.policy.max_verify_yaw, False)
            if obs.encoding is None or obs.faces != 1 or check is None or reference is None:
                return
            self.cpu_s += obs.cpu_s
            dist = distance(obs.encoding, reference)
            self.trend.append(dist)
            if check.bind(at, dist):
                self._liveness_changed(time.monotonic())
        except Exception:  # a failed encoding only skips one binding
            log.exception("identity_bind_failed")
        finally:
            self._bind_task = None

    # ------------------------------------------------------------ verification
    def _verify_step(self, obs: Observation, at: float, dist: float | None,
                     rgb: np.ndarray) -> None:
        w = self.window
        assert w is not None
        verdict = w.add(obs, at, dist)
        if dist is not None and (self._best is None or dist < self._best[0]):
            self._best = (dist, rgb, at)
        if verdict in FINAL:
            self._decided(verdict, w, at, obs)
        elif (w.condition, w.detail) != (self.verdict, self.detail) and \
                w.condition != Verdict.VERIFYING:
            self.detail = w.detail
            self._status(condition=w.condition.value)
            self._hint(HINTS.get(w.detail or w.condition.value))
        else:
            self._status()

    def _hint(self, code: str | None) -> None:
        """Tell the customer what would help (once per change)."""
        if code is not None and code != self._last_hint:
            self._last_hint = code
            self._listener.hint(code)

    def _decided(self, verdict: Verdict, w: VerificationWindow, at: float,
                 obs: Observation) -> None:
        self.verdict = verdict
        self.detail = w.detail if verdict == Verdict.POOR_QUALITY else None
        if w.first_face_at is not None:
            self.verdict_s = round(at - w.first_face_at, 3)
        data: dict[str, Any] = {
            "verdict": verdict.value, "detail": self.detail,
            "median_distance": round(w.median, 4) if w.median is not None else None,
            "distances": [round(d, 4) for d in w.distances],
            "match_threshold": self.policy.match_threshold,
            "mismatch_threshold": self.policy.mismatch_threshold,
            "first_face_at": _wall(w.first_face_at) if w.first_face_at else None,
            "decided_frame_at": _wall(at), "verdict_s": self.verdict_s}
        if self._best is not None:
            best_d, best_rgb, best_at = self._best
            data["best_frame_at"] = _wall(best_at)
            data["best_distance"] = round(best_d, 4)
            self._listener.snapshot(best_rgb, _wall(best_at), round(best_d, 4))
        self._best = None
        self._event("identity.verdict", **data)
        if verdict == Verdict.VERIFIED:
            self._listener.evidence("face_verified", {
                "basis": "machine", "median_distance": data["median_distance"]})
            self.presence = PresenceMonitor(self.policy, at)
        self._status()

    # ------------------------------------------------------------ liveness
    def _liveness_changed(self, at: float) -> None:
        check = self.liveness
        assert check is not None
        for step in check.steps:
            key = (step.action, step.state)
            if step.state in ("passed", "failed", "timed_out", "interrupted") and \
                    key not in self._reported:
                self._reported.add(key)
                self._event("identity.liveness_step", action=step.action, state=step.state,
                            prompted_at=_wall(step.prompted_at) if step.prompted_at else None,
                            ended_at=_wall(step.ended_at) if step.ended_at else None,
                            **step.detail)
        if check.done:
            self._event("identity.liveness_result", state=check.state.value,
                        reason=check.reason, steps=[s.public() for s in check.steps],
                        bound_samples=check.bound, baseline={
                            k: round(v, 3) for k, v in check.baseline.items()})
            if check.state == LivenessState.PASSED:
                self._listener.evidence("liveness_passed", {
                    "challenges": [s.action for s in check.steps if s.state == "passed"],
                    "interrupted": check.retries})
            self._listener.challenge({"state": check.state.value, "action": None,
                                       "prompt": "Thank you" if check.state ==
                                       LivenessState.PASSED else "Check finished",
                                       "step": 0, "steps": len(check.steps)})
        else:
            self._prompt()
        self._status()

    def _prompt(self) -> None:
        check = self.liveness
        prompt = check.prompt() if check else None
        if prompt is None or prompt == self._last_prompt:
            return
        self._last_prompt = prompt
        self._listener.challenge({
            "state": "running", "action": prompt.action, "phase": prompt.phase,
            "prompt": prompt.text, "step": prompt.step,
            "steps": len(check.steps),  # type: ignore[union-attr]
            "timeout_s": self.policy.reaction_max_s})

    # ------------------------------------------------------------ output
    def _event(self, kind: str, **data: Any) -> None:
        self._listener.event(kind, data)

    def _status(self, **extra: Any) -> None:
        self._listener.status({**self.status(), **extra})


__all__ = ["Analyzer", "IdentitySession", "quality_problem"]
