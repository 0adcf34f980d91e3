"""The face printed on an ID document held up to the customer's camera, compared with
the live face and the enrolled reference (BaFin: pictures of the face and both sides;
V-CIP: a match against the ID photo).

With two or more faces in the frame the customer holds the card beside their face:
the smallest face is the printed photo and the largest the live one. With one face
the card fills the frame, and the live face is the session's newest live encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vteller.identity import worker
from vteller.identity.faces import distance

if TYPE_CHECKING:
    from vteller.identity.session import Analyzer


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
    to_ref = distance(printed, reference) if reference is not None else None
    to_live = distance(printed, live) if live is not None else None
    known = [d for d in (to_ref, to_live) if d is not None]
    matched = bool(known) and all(d < analyzer.policy.match_threshold for d in known)
    return DocumentFace(len(found), to_ref, to_live, matched)
