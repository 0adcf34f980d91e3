"""Business types and the evidence an approval needs (`[review]`).

Evidence names are what other capabilities record on a call: `face_verified`,
`liveness_passed` and `liveness_attested` (the teller-attested spoken check) come
from identity. An approve is refused while any required evidence of this call is
missing; a business type's `alternatives` name what may stand in for a requirement
(`liveness_attested` for `liveness_passed` unless the type forbids it: video
identification keeps gesture liveness). Reject (with a configured reason code) and
incomplete are always possible, and so is reschedule (the customer comes back at an
agreed time). A type with `restart_on_drop` refuses approval once the call's connection
or media dropped; a type with a `script` (dual recording of sales) refuses it until the
customer confirmed every statement.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, field_validator


class ScriptStep(BaseModel):
    """One required statement of a sales script (dual recording): the teller reads it,
    the customer confirms it on screen."""

    model_config = {"frozen": True, "extra": "forbid"}

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4000, description="what the customer "
                      "confirms (shown, and spoken in elderly mode)")


class Region(BaseModel):
    """A place customers may be in: a latitude/longitude box (degrees)."""

    model_config = {"frozen": True, "extra": "forbid"}

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    south: float = Field(ge=-90, le=90)
    west: float = Field(ge=-180, le=180)
    north: float = Field(ge=-90, le=90)
    east: float = Field(ge=-180, le=180)

    def contains(self, lat: float, lon: float) -> bool:
        inside_lon = self.west <= lon <= self.east if self.west <= self.east \
            else lon >= self.west or lon <= self.east  # a box across the antimeridian
        return self.south <= lat <= self.north and inside_lon


class BusinessType(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    title: str
    required_evidence: frozenset[str] = frozenset()
    alternatives: dict[str, frozenset[str]] = Field(
        default_factory=lambda: {"liveness_passed": frozenset({"liveness_attested"})},
        description="evidence that may stand in for a required one")
    four_eyes: bool = Field(
        False, description="an approval is final only when a different person with the "
        "auditor role approves it after opening the session (RBI's concurrent audit)")
    script: list[ScriptStep] = Field(
        default_factory=list, description="required statements in order (dual recording "
        "of sales): approval is refused until the customer confirmed every one")
    allowed_regions: list[Region] = Field(
        default_factory=list, description="the customer must share a location inside one "
        "of these (V-CIP: in the country); empty: any place, location optional")
    teller_networks: list[str] = Field(
        default_factory=list, description="CIDRs tellers must connect from to be offered "
        "this type (V-CIP: officials on the bank's premises); empty: any network")
    restart_on_drop: bool = Field(
        False, description="a session whose connection or media dropped mid-call cannot "
        "be approved; the customer starts afresh (V-CIP)")

    @field_validator("teller_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
        return value

    def teller_may_serve(self, address: str) -> bool:
        if not self.teller_networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False  # unknown address: not on the bank's premises
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.teller_networks)

    def region_of(self, lat: float, lon: float) -> str | None:
        return next((r.id for r in self.allowed_regions if r.contains(lat, lon)), None)

    def missing(self, have: set[str]) -> list[str]:
        """Required evidence neither present nor replaced by an accepted alternative."""
        return sorted(r for r in self.required_evidence
                      if r not in have and not self.alternatives.get(r, frozenset()) & have)


DISPOSITIONS = ("resolved", "follow_up", "callback_requested", "complaint", "referred",
                "technical_problem")


class ReviewPolicy(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    # wrap-up disposition codes a teller records after a call (contact-centre reporting,
    # separate from the business decision)
    dispositions: list[str] = Field(default_factory=lambda: list(DISPOSITIONS))

    business_types: list[BusinessType] = Field(default_factory=lambda: [
        BusinessType(id="general", title="General enquiry"),
        BusinessType(id="card_issuance_review", title="Card issuance review",
                     required_evidence=frozenset({"face_verified", "liveness_passed"})),
        BusinessType(id="password_reset", title="Debit card password reset",
                     required_evidence=frozenset({"face_verified", "liveness_passed"})),
        BusinessType(id="info_change", title="Personal information change",
                     required_evidence=frozenset({"face_verified"})),
        BusinessType(id="video_ident", title="Video identification",
                     required_evidence=frozenset({"face_verified", "liveness_passed"}),
                     alternatives={}, restart_on_drop=True),
        BusinessType(id="wealth_product_sale", title="Wealth management product sale",
                     required_evidence=frozenset({"face_verified"}), script=[
                         ScriptStep(id="product", title="The product",
                                    text="I have been told the name, type, term and issuer "
                                    "of the product, and that it is not a deposit."),
                         ScriptStep(id="risks", title="Risks",
                                    text="I understand that I may lose part or all of the "
                                    "money I invest, and that past returns do not promise "
                                    "future returns."),
                         ScriptStep(id="key_facts", title="Key facts",
                                    text="I have been told the fees, the risk level of the "
                                    "product and my own risk rating, and how and when I "
                                    "can get my money back."),
                     ]),
    ])
    reason_codes: list[str] = Field(default_factory=lambda: [
        "identity_not_confirmed", "documents_missing", "customer_declined",
        "suspected_fraud", "not_eligible", "technical_problem"])

    def business_type(self, type_id: str) -> BusinessType | None:
        return next((b for b in self.business_types if b.id == type_id), None)

