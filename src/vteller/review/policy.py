"""Business types and the evidence an approval needs (`[review]`).

Evidence names are what other capabilities record on a call: `face_verified` and
`liveness_passed` come from identity. An approve is refused while any
required evidence of this call is missing; reject (with a configured reason code)
and incomplete are always possible.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class BusinessType(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    title: str
    required_evidence: frozenset[str] = frozenset()


class ReviewPolicy(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    business_types: list[BusinessType] = Field(default_factory=lambda: [
        BusinessType(id="general", title="General enquiry"),
        BusinessType(id="card_issuance_review", title="Card issuance review",
                     required_evidence=frozenset({"face_verified", "liveness_passed"})),
        BusinessType(id="password_reset", title="Debit card password reset",
                     required_evidence=frozenset({"face_verified", "liveness_passed"})),
        BusinessType(id="info_change", title="Personal information change",
                     required_evidence=frozenset({"face_verified"})),
        BusinessType(id="video_ident", title="Video identification",
                     required_evidence=frozenset({"face_verified", "liveness_passed"})),
    ])
    reason_codes: list[str] = Field(default_factory=lambda: [
        "identity_not_confirmed", "documents_missing", "customer_declined",
        "suspected_fraud", "not_eligible", "technical_problem"])

    def business_type(self, type_id: str) -> BusinessType | None:
        return next((b for b in self.business_types if b.id == type_id), None)


def missing_evidence(required: frozenset[str], have: set[str]) -> list[str]:
    return sorted(required - have)
