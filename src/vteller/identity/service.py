"""The identity capability's face: the analysis pool, reference enrollment (audited)
and per-call sessions."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import numpy as np
import structlog

from vteller.audit import KekProvider, new_data_key
from vteller.audit.trail import AuditTrail
from vteller.identity import worker
from vteller.identity.policy import IdentityPolicy
from vteller.identity.reference import ReferenceStore, fingerprint
from vteller.identity.session import Analyzer, IdentityListener, IdentitySession
from vteller.store import Store

log = structlog.get_logger("vteller.identity")


class IdentityService:
    def __init__(self, policy: IdentityPolicy, store: Store, kek: KekProvider,
                 trail: AuditTrail) -> None:
        self.analyzer = Analyzer(policy)
        self.references = ReferenceStore(store, kek)
        self._kek = kek
        self._trail = trail

    @property
    def policy(self) -> IdentityPolicy:
        return self.analyzer.policy

    async def enroll(self, customer_id: str, photo: bytes, source: str) -> dict[str, Any]:
        """Validate and store a reference (raises EnrollmentError); audited as its own
        session in the global log, so replacing a reference is provable."""
        ref = await self.analyzer.run(worker.reference, photo, self.policy)
        replaced = await asyncio.to_thread(self.references.put, customer_id, ref, source)
        session_id = "ref-" + secrets.token_urlsafe(12)
        await asyncio.to_thread(self._audit, session_id, source,
                                "reference.replaced" if replaced else "reference.enrolled",
                                {"customer": customer_id, "face_px": ref.quality.face_px,
                                 "sharpness": round(ref.quality.sharpness, 1),
                                 "encoding_digest": fingerprint(ref.encoding),
                                 "photo_kept": ref.photo is not None})
        log.info("reference_enrolled", replaced=replaced, audit_session=session_id)
        return {"customer_id": customer_id, "replaced": replaced, "audit_session": session_id,
                "face_px": ref.quality.face_px, "sharpness": round(ref.quality.sharpness, 1)}

    async def forget(self, customer_id: str, source: str) -> bool:
        deleted = await asyncio.to_thread(self.references.delete, customer_id)
        if deleted:
            await asyncio.to_thread(self._audit, "ref-" + secrets.token_urlsafe(12), source,
                                    "reference.deleted", {"customer": customer_id})
        return deleted

    def _audit(self, session_id: str, actor: str, kind: str, data: dict[str, Any]) -> None:
        key = new_data_key()
        self._trail.open_session(session_id, key, self._kek.wrap(key, session_id))
        self._trail.append(session_id, actor, kind, data)
        self._trail.close_session(session_id, {})

    async def reference(self, customer_id: str) -> np.ndarray | None:
        return await asyncio.to_thread(self.references.get, customer_id)

    def session(self, tap: Any, reference: np.ndarray | None,
                listener: IdentityListener) -> IdentitySession:
        return IdentitySession(self.analyzer, tap, reference, listener)

    def close(self) -> None:
        self.analyzer.close()
