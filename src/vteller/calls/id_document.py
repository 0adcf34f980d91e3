"""ID document capture: the teller keeps the customer's current camera frame as a
picture of the document's front or back (the frame the server received, never a client
upload), encrypted into the session's evidence and bound by its seal like the face
snapshot. On the front the printed photo is found and compared with the reference and
the live face; distances go to the teller and into the trail.

A facet of `CallManager` (one class, one file per concern)."""

from __future__ import annotations

import asyncio
import time

from vteller.calls.party import Party
from vteller.calls.session import IN_CALL
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m

FRESH_S = 2.0  # a frame older than this is not "the customer's camera now"


class IdDocumentFacet:
    async def _on_id_capture(self, party: Party, msg: m.IdCapture) -> None:
        call = self._live_call(party)
        session = await self._identity_session(call)  # the customer camera's frame tap
        latest = None
        for _ in range(int(FRESH_S / 0.1)):  # a tap made just now decodes from a keyframe
            latest = call.identity_tap.latest if call.identity_tap is not None else None
            if latest is not None and time.monotonic() - latest[1] <= FRESH_S:
                break
            await asyncio.sleep(0.1)
        if latest is None or time.monotonic() - latest[1] > FRESH_S:
            raise ProtocolError(ErrorCode.WRONG_STATE, "no picture from the customer's "
                                "camera yet; ask them to hold the document to it")
        if not call.data_key:
            raise ProtocolError(ErrorCode.WRONG_STATE, "the call's evidence is closed")
        frame, received_at = latest
        rgb = await asyncio.to_thread(frame.to_ndarray, format="rgb24")
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
                    digest=digest, frame_at=frame_at, **found)
        call.id_sides.add(msg.side)
        party.send(m.IdState(call_id=call.call_id, side=msg.side, **found))
        if face is not None and face.matched:
            self.add_evidence(call.call_id, "id_photo_matched", actor="system",
                              distance_reference=found["distance_reference"],
                              distance_live=found["distance_live"])
        if call.id_sides == {"front", "back"} and "id_document_captured" not in call.evidence:
            self.add_evidence(call.call_id, "id_document_captured", actor="teller")
