"""ID document capture: the teller keeps the customer's current camera frame as a
picture of the document's front or back (the frame the server received, never a client
upload), encrypted into the session's evidence and bound by its seal like the face
snapshot. On the front the printed photo is found and compared with the reference and
the live face; distances go to the teller and into the trail.

A facet of `CallManager` (one class, one file per concern)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from vteller.calls.party import Party
from vteller.calls.session import IN_CALL
from vteller.identity.document import sharpness
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m

FRESH_S = 2.0  # a frame older than this is not "the customer's camera now"
CAPTURE_WINDOW_S = 1.0  # the frames received this long from the request are compared
CAPTURE_RATE_HZ = 8.0  # at most this many of them a second


class IdDocumentFacet:
    async def _on_id_capture(self, party: Party, msg: m.IdCapture) -> None:
        call = self._live_call(party)
        session = await self._identity_session(call)  # the customer camera's frame tap
        frames = await self._document_frames(call)
        if not frames:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no picture from the customer's "
                                "camera yet; ask them to hold the document to it")
        if not call.data_key:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the call's evidence is closed")
        rgb, received_at = await asyncio.to_thread(_sharpest, frames)
        call.id_captures += 1
        name = f"evidence.id-{msg.side}-{call.id_captures}.jpg.vtenc"
        call.evidence_blobs[name] = ""
        stored = self._background(self._store_image(call, name, rgb))
        call.recorder_tasks.append(stored)
        digest = await stored
        face = await session.check_document(rgb) if msg.side == "front" else None
        if call.state not in IN_CALL:
            return
        found = face.as_event() if face is not None else {}
        frame_at = round(time.time() - (time.monotonic() - received_at), 3)
        self._event(call, "teller", "id_document.captured", side=msg.side, file=name,
                    digest=digest, frame_at=frame_at, frames_compared=len(frames), **found)
        call.id_sides.add(msg.side)
        party.send(m.IdState(call_id=call.call_id, side=msg.side, **found))
        if face is not None and face.matched:
            self.add_evidence(call.call_id, "id_photo_matched", actor="system",
                              distance_reference=found["distance_reference"],
                              distance_live=found["distance_live"])
        if call.id_sides == {"front", "back"} and "id_document_captured" not in call.evidence:
            self.add_evidence(call.call_id, "id_document_captured", actor="teller")

    async def _document_frames(self, call: Any) -> list[tuple[Any, float]]:
        """The customer camera's distinct frames received over `CAPTURE_WINDOW_S` from
        now, at most `CAPTURE_RATE_HZ` a second (the teller asked once the card was in
        view: earlier ones may show it being raised). Waits up to `FRESH_S` for the first
        (a tap made just now decodes from the next keyframe; a loaded one lags), then
        makes do with the newest frame if it is fresh."""
        started = time.monotonic()
        kept: list[tuple[Any, float]] = []
        while True:
            now = time.monotonic()
            tap = call.identity_tap
            latest = tap.latest if tap is not None else None
            if latest is not None and latest[1] >= started and (
                    not kept or latest[1] != kept[-1][1]):
                kept.append(latest)
            if kept and now - started >= CAPTURE_WINDOW_S:
                return kept
            if not kept and now - started >= FRESH_S:
                return [latest] if latest is not None and now - latest[1] <= FRESH_S else []
            await asyncio.sleep(1.0 / CAPTURE_RATE_HZ)


def _sharpest(frames: list[tuple[Any, float]]) -> tuple[np.ndarray, float]:
    """The sharpest of `frames` as RGB, with when it arrived: the document in focus and
    refined by the encoder, not a frame blurred by the hand or coarse just after the card
    came into view (runs in a thread: decoding and the Laplacian take milliseconds)."""
    best: tuple[float, np.ndarray, float] | None = None
    for frame, received_at in frames:
        rgb = frame.to_ndarray(format="rgb24")
        score = sharpness(rgb)
        if best is None or score > best[0]:
            best = (score, rgb, received_at)
    assert best is not None, "no frames"
    return best[1], best[2]
