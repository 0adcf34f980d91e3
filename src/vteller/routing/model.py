"""Routing model: requests with segment flags and priority class; teller profiles."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum


class PriorityClass(StrEnum):
    GREEN = "green"  # "silver-hair green channel": elderly customers
    PRIORITY = "priority"  # military / entitled, disability
    VIP = "vip"
    STANDARD = "standard"


PRIORITY_SEGMENTS = frozenset({"military", "disability"})


def segments_for(flags: tuple[str, ...] | frozenset[str], birth_year: int | None,
                 elderly_age: int, today: dt.date | None = None) -> frozenset[str]:
    """Segment flags from the token; `elderly` is derived from the birth year too."""
    out = set(flags)
    if birth_year is not None and (today or dt.date.today()).year - birth_year >= elderly_age:
        out.add("elderly")
    return frozenset(out)


def classify(segments: frozenset[str]) -> PriorityClass:
    if "elderly" in segments:
        return PriorityClass.GREEN
    if segments & PRIORITY_SEGMENTS:
        return PriorityClass.PRIORITY
    if "vip" in segments:
        return PriorityClass.VIP
    return PriorityClass.STANDARD


@dataclass
class Request:
    call_id: str
    business_type: str
    language: str
    segments: frozenset[str]
    enqueued_at: float
    channel: str = "video"
    pclass: PriorityClass = PriorityClass.STANDARD
    seq: int = 0
    declined_by: dict[str, float] = field(default_factory=dict)  # teller -> when (clock.now)
    node: str = ""  # the node holding the customer's connection (a shared queue)
    # a customer come to a booked appointment: offered to this teller first, and to
    # nobody else until `booked_until` (routing clock)
    booked_teller: str = ""
    booked_until: float = 0.0

    def __post_init__(self) -> None:
        self.pclass = classify(self.segments)

    @property
    def elderly(self) -> bool:
        return "elderly" in self.segments

    @property
    def key(self) -> tuple[float, int]:
        return (self.enqueued_at, self.seq)


@dataclass(frozen=True)
class TellerProfile:
    """Skills with proficiency 0..1 by business type, languages, certifications and a
    capability score 0..1 (e.g. from quality reviews)."""

    skills: dict[str, float] = field(default_factory=lambda: {"general": 0.5})
    languages: frozenset[str] = frozenset({"en"})
    certifications: frozenset[str] = frozenset()
    capability: float = 0.5

    def can_serve(self, business_type: str, language: str) -> bool:
        return self.skills.get(business_type, 0.0) > 0 and language in self.languages

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TellerProfile:
        return cls(
            skills={str(k): float(v) for k, v in dict(data.get("skills") or {"general": 0.5}).items()},  # type: ignore[call-overload]
            languages=frozenset(data.get("languages") or ["en"]),  # type: ignore[arg-type]
            certifications=frozenset(data.get("certifications") or []),  # type: ignore[arg-type]
            capability=float(data.get("capability", 0.5)),  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, object]:
        return {"skills": self.skills, "languages": sorted(self.languages),
                "certifications": sorted(self.certifications), "capability": self.capability}
