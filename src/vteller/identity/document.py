"""The face printed on an ID document held up to the customer's camera, compared with
the live face and the enrolled reference (BaFin: pictures of the face and both sides;
V-CIP: a match against the ID photo).

With two or more faces in the frame the customer holds the card beside their face:
the smallest face is the printed photo and the largest the live one. With one face
the card fills the frame, and the live face is the one face verification last saw.
One face is taken for the printed photo only when verification has seen the live face
and this one is not nearly it (`SAME_FRAME_FACE`): otherwise it may be the customer's
own face with the card's photo missed (small and blurred in compressed video), and a
match claimed then would be false, so nothing is matched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from vteller.identity import worker
from vteller.identity.faces import distance

if TYPE_CHECKING:
    from vteller.identity.session import Analyzer


SAME_FRAME_FACE = 0.3  # a printed photo of the same person was 0.44-0.51 from the live face


SHARPNESS_WIDTH_PX = 320  # frames are compared at this width: the card's detail, not noise


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the frame in grey at `SHARPNESS_WIDTH_PX`: far higher
    for a frame in focus than for one a moving hand blurred (about 20x for a card), a
    little higher for one the encoder has refined than for the coarse first frame of a
    scene (about 4%)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if grey.shape[1] > SHARPNESS_WIDTH_PX:
        height = round(grey.shape[0] * SHARPNESS_WIDTH_PX / grey.shape[1])
        grey = cv2.resize(grey, (SHARPNESS_WIDTH_PX, height), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass(frozen=True)
class DocumentFace:
    faces: int  # faces found in the frame
    to_reference: float | None
    to_live: float | None
    matched: bool  # every available distance below the match threshold

    def as_event(self) -> dict[str, object]:
        r = (lambda d: None if d is None else round(d, 3))
        return {"faces": self.faces, "distance_reference": r(self.to_reference),
                "distance_live": r(self.to_live), "matched": self.matched}


async def check_document(analyzer: Analyzer, rgb: np.ndarray, reference: np.ndarray | None,
                         live: np.ndarray | None) -> DocumentFace:
    found = await analyzer.run(worker.document_faces, rgb)
    if not found:
        return DocumentFace(0, None, None, False)
    printed = found[-1][1]  # largest first: the last is the smallest
    if len(found) >= 2:
        live = found[0][1]
    elif live is None or distance(printed, live) < SAME_FRAME_FACE:
        # the customer's own face (or no way to tell it from the card's): nothing matched
        return DocumentFace(1, None, None, False)
    to_ref = distance(printed, reference) if reference is not None else None
    to_live = distance(printed, live) if live is not None else None
    known = [d for d in (to_ref, to_live) if d is not None]
    matched = bool(known) and all(d < analyzer.policy.document_match_threshold for d in known)
    return DocumentFace(len(found), to_ref, to_live, matched)
