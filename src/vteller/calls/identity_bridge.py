"""Identity checks on a call: the session per call, the teller's verify/liveness/
judge requests, and the bridge through which a session reports back.

A facet of `CallManager` (one class, one file per concern, as LiveKit splits a
participant); it uses the manager's state and helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from vteller.audit import StreamWriter
from vteller.calls.party import Party
from vteller.calls.session import IN_CALL, Call
from vteller.identity import IdentitySession, Verdict, to_jpeg
from vteller.media.taps import LatestFrameTap
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m

if TYPE_CHECKING:
    from vteller.calls.manager import CallManager



class IdentityBridge:
    """A call's identity session reporting back: to the teller panel, the trail,
    review's evidence, the customer's prompt, the evidence snapshot."""

    def __init__(self, manager: CallManager, call: Call) -> None:
        self._m = manager
        self._call = call

    def _live(self) -> bool:
        return self._call.call_id in self._m.calls

    def status(self, status: dict[str, Any]) -> None:
        teller = self._m.parties.get(self._call.teller_key or "")
        if self._live() and teller is not None:
            teller.send(m.IdentityStatus(call_id=self._call.call_id, **status))

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if not self._live():
            return
        call, mgr = self._call, self._m
        mgr._event(call, "system", kind, **data)
        if kind == "identity.verdict":
            mgr._metrics.identity_verdicts.labels(verdict=data["verdict"]).inc()
            if data["verdict"] == "mismatch":
                mgr._persist(mgr._store.add_call_flag, call.call_id, "identity_mismatch")
        elif kind == "identity.liveness_result":
            mgr._metrics.liveness_results.labels(state=data["state"]).inc()
            if data["state"] != "passed":
                mgr._persist(mgr._store.add_call_flag, call.call_id, "liveness_failed")

    def evidence(self, evidence: str, data: dict[str, Any]) -> None:
        if self._live():
            self._m.add_evidence(self._call.call_id, evidence, **data)

    def challenge(self, challenge: dict[str, Any]) -> None:
        customer = self._m.parties.get(self._call.customer_key)
        if self._live() and customer is not None:
            customer.send(m.IdentityChallenge(**challenge))

    def hint(self, code: str) -> None:
        customer = self._m.parties.get(self._call.customer_key)
        if self._live() and customer is not None:
            customer.send(m.IdentityHint(hint=code))  # type: ignore[arg-type]

    def snapshot(self, rgb: Any, frame_at: float, distance: float) -> None:
        call = self._call
        if not self._live() or not call.data_key:
            return
        name = f"evidence.face-{len(call.evidence_blobs) + 1}.jpg.vtenc"
        call.evidence_blobs[name] = ""
        call.recorder_tasks.append(self._m._background(
            self._m._store_snapshot(call, name, rgb, frame_at, distance)))


class IdentityFacet:
    async def _identity_session(self, call: Call) -> IdentitySession:
        """The call's identity session (created on first use: reference, frame tap)."""
        if self._identity is None:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "identity checks are not configured")
        if call.identity is None:
            reference = await self._identity.reference(call.customer_id)
            if call.state not in IN_CALL:
                raise ProtocolError(ErrorCode.WRONG_STATE, "the call ended")
            if call.identity is None:
                feed = call.feed("customer", "video")
                call.identity_tap = LatestFrameTap(feed)
                feed.add_tap(call.identity_tap)
                bridge = IdentityBridge(self, call)
                call.identity = self._identity.session(call.identity_tap, reference, bridge)
                if reference is None:
                    self._event(call, "system", "identity.no_reference")
                bridge.status(call.identity.status())
        return call.identity

    async def _auto_verify(self, call: Call) -> None:
        with contextlib.suppress(ProtocolError):
            session = await self._identity_session(call)
            if session.has_reference and session.verdict == Verdict.IDLE:
                session.start_verification()

    async def _on_identity_verify(self, party: Party, msg: m.IdentityVerify) -> None:
        session = await self._identity_session(self._live_call(party))
        if not session.has_reference:
            raise ProtocolError(ErrorCode.NO_REFERENCE,
                                "no reference photo is enrolled for this customer")
        session.start_verification()

    async def _on_identity_liveness(self, party: Party, msg: m.IdentityLiveness) -> None:
        session = await self._identity_session(self._live_call(party))
        if not session.has_reference:
            raise ProtocolError(ErrorCode.NO_REFERENCE, "liveness is bound to the reference "
                                "face; no reference photo is enrolled for this customer")
        if session.liveness is not None and not session.liveness.done:
            raise ProtocolError(ErrorCode.WRONG_STATE, "a liveness check is running")
        if session.spoken is not None and not session.spoken.done:
            raise ProtocolError(ErrorCode.WRONG_STATE, "a spoken check is running")
        session.start_liveness()

    async def _on_identity_spoken_check(self, party: Party, msg: m.IdentitySpokenCheck) -> None:
        session = await self._identity_session(self._live_call(party))
        if msg.reason not in session.policy.alternative_reasons:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "reason must be one of: " +
                                ", ".join(session.policy.alternative_reasons))
        if msg.reason == "other" and len(msg.notes.strip()) < 3:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "reason 'other' needs notes")
        if session.spoken is not None and not session.spoken.done:
            raise ProtocolError(ErrorCode.WRONG_STATE, "a spoken check is running")
        if session.liveness is not None and not session.liveness.done:
            raise ProtocolError(ErrorCode.WRONG_STATE, "a liveness check is running")
        session.start_spoken(msg.reason, msg.notes)

    def _on_identity_attest(self, party: Party, msg: m.IdentityAttest) -> None:
        session = self._live_call(party).identity
        if session is None or session.spoken is None or session.spoken.done:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no spoken check is running")
        session.attest_spoken(msg.passed, msg.notes)

    def _on_identity_judge(self, party: Party, msg: m.IdentityJudge) -> None:
        call = self._live_call(party)
        session = call.identity
        if session is None or session.verdict != Verdict.NEEDS_REVIEW or session.judged:
            raise ProtocolError(ErrorCode.WRONG_STATE, "only a borderline result is judged, once")
        recorded = self._event(call, "teller", "identity.judged", accept=msg.accept,
                               notes=msg.notes, median_distance=session.status()["distance"])
        if msg.accept:
            call.evidence.add("face_verified")
            self._event(call, "teller", "evidence", evidence="face_verified",
                        basis="teller_review")
        session.judge(msg.accept)
        self._when_recorded(recorded, (party, self._context(call)))

    async def _store_snapshot(self, call: Call, name: str, rgb: Any, frame_at: float,
                              dist: float) -> None:
        """The best-matching frame as evidence."""
        digest = await self._store_image(call, name, rgb)
        self._event(call, "system", "identity.snapshot", file=name, digest=digest,
                    frame_at=frame_at, distance=dist)

    async def _store_image(self, call: Call, name: str, rgb: Any) -> str:
        """A frame as JPEG, encrypted with the session's data key (both in a worker
        thread), kept as an evidence blob whose digest the session's seal binds."""
        key, blobs = call.data_key, self._blobs

        def write() -> str:
            jpeg = to_jpeg(rgb)
            with blobs.open_write(f"{call.call_id}/{name}") as sink:
                writer = StreamWriter(sink, key, key_id=call.call_id)
                writer.write(jpeg)
                return writer.close()

        digest = await asyncio.to_thread(write)
        call.evidence_blobs[name] = digest
        return digest

    async def _close_identity(self, call: Call) -> None:
        if call.identity is not None:
            await call.identity.close()
        if call.identity_tap is not None:
            await asyncio.to_thread(call.identity_tap.close, 2.0)
