"""ID document capture over the wire, with real faces: an ID-card-like image made from
a shared photo is held up to the customer's (aiortc) camera; the server keeps the frame
it received, encrypted and bound into the session; the printed photo is compared with
the reference and the live face."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.face_frames import HEIGHT, WIDTH, selfie
from tests.test_identity import _call, _close, _verdict, enroll
from vteller.audit.verify import verify_session


def id_card(photo: Path | None, holder: np.ndarray | None = None) -> np.ndarray:
    """A 640x480 frame with an ID card: a portrait cut from `photo` at the left, text
    lines at the right (a back side when `photo` is None). With `holder`, the card is
    small in the lower right corner of the holder's selfie (held beside the face)."""
    card = np.full((300, 480, 3), (214, 226, 236), np.uint8)
    cv2.rectangle(card, (0, 0), (479, 40), (40, 70, 140), -1)
    for i, width in enumerate((260, 200, 230, 150, 240) if photo is not None else
                              (420, 400, 380, 410, 300, 390)):
        y = 70 + i * 40
        cv2.rectangle(card, (200 if photo is not None else 30, y),
                      (200 + width if photo is not None else 30 + width, y + 14),
                      (70, 70, 70), -1)
    if photo is not None:
        portrait = cv2.resize(selfie(photo, face_frac=0.6)[:, 80:560], (160, 200),
                              interpolation=cv2.INTER_AREA)
        card[70:270, 20:180] = portrait
    if holder is None:
        frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
        frame[90:390, 80:560] = card
        return frame
    frame = holder.copy()
    small = cv2.resize(card, (288, 180), interpolation=cv2.INTER_AREA)
    frame[HEIGHT - 190:HEIGHT - 10, WIDTH - 298:WIDTH - 10] = small
    return frame


@pytest.mark.settings(record_calls=True)
async def test_front_and_back_captured_bound_and_matched(server, faces_dir):
    await enroll(server, "c-obama", faces_dir / "obama.jpg")
    call_id, cust_sig, teller_sig, customer, teller, cam = await _call(
        server, faces_dir / "obama2.jpg", "c-obama")
    await teller_sig.send({"type": "identity.verify"})
    assert (await _verdict(teller_sig))["verdict"] == "verified"  # the live face is known

    cam.show(id_card(faces_dir / "obama3.jpg"))  # the card fills the camera
    await asyncio.sleep(1.0)
    await teller_sig.send({"type": "id.capture", "side": "front"})
    front = await teller_sig.recv("id.state", timeout=20)
    assert front["side"] == "front" and front["faces"] == 1, front
    assert front["distance_reference"] < 0.5 and front["distance_live"] < 0.5, front
    assert front["matched"] is True
    cam.show(id_card(None))
    await asyncio.sleep(1.0)
    await teller_sig.send({"type": "id.capture", "side": "back"})
    back = await teller_sig.recv("id.state", side="back", timeout=20)
    assert back["faces"] is None and back["matched"] is None
    context = await teller_sig.recv("call.context", timeout=10)
    while "id_document_captured" not in context["evidence"]:
        context = await teller_sig.recv("call.context", timeout=10)
    assert "id_photo_matched" in context["evidence"]
    await cust_sig.send({"type": "id.capture", "side": "front"})
    await cust_sig.error("forbidden")  # the customer cannot upload or trigger one

    await teller_sig.send({"type": "call.hangup"})
    await teller_sig.recv("call.ended")
    await teller_sig.request({"type": "teller.status", "status": "available"}, "teller.state",
                             state="available")
    await _close(cust_sig, teller_sig, customer, teller)
    await server.manager.shutdown_cleanups()
    await server.manager.flush()
    c = server.components
    events = await asyncio.to_thread(c.trail.events, call_id)
    captured = [e for e in events if e["kind"] == "id_document.captured"]
    assert [e["side"] for e in captured] == ["front", "back"]
    assert captured[0]["matched"] is True and captured[0]["faces"] == 1
    report = await asyncio.to_thread(verify_session, c.store, call_id, c.trail.public_key,
                                     c.kek, c.blobs)
    assert report.ok, report
    assert "tracks: 8" in report.checked  # 5 recordings, the face snapshot, 2 ID sides
    for e in captured:  # stored encrypted, bound by the seal: one flipped bit is found
        blob = server.settings.data_dir / "recordings" / call_id / e["file"]
        raw = bytearray(blob.read_bytes())
        assert b"JFIF" not in raw
        raw[len(raw) // 2] ^= 1
        blob.write_bytes(bytes(raw))
        report = await asyncio.to_thread(verify_session, c.store, call_id,
                                         c.trail.public_key, c.kek, c.blobs)
        assert not report.ok and any(e["file"] in p for p in report.problems), report
        raw[len(raw) // 2] ^= 1
        blob.write_bytes(bytes(raw))


async def test_someone_elses_card_held_beside_the_face_is_not_matched(server, faces_dir):
    await enroll(server, "c-obama", faces_dir / "obama.jpg")
    call_id, cust_sig, teller_sig, *parts = await _call(
        server, faces_dir / "obama2.jpg", "c-obama")
    cam = parts[-1]
    cam.show(id_card(faces_dir / "biden.jpg", holder=selfie(faces_dir / "obama2.jpg")))
    await asyncio.sleep(1.0)
    await teller_sig.send({"type": "id.capture", "side": "front"})
    front = await teller_sig.recv("id.state", timeout=20)
    assert front["faces"] == 2, front  # the live face and the printed one
    assert front["distance_reference"] >= 0.6 and front["distance_live"] >= 0.6, front
    assert front["matched"] is False
    await server.manager.flush()
    events = await asyncio.to_thread(server.components.trail.events, call_id)
    assert "id_photo_matched" not in [e.get("evidence") for e in events]
    await _close(cust_sig, teller_sig, *parts)
