"""Routing policy (configurable under `[routing]` / `VTELLER_ROUTING__*`).

Order of requests: priority = class base + aging_per_s x seconds waited; the
highest goes first, so a request of any class eventually outranks fresh requests
of higher classes (no starvation). With the defaults a standard request outranks a
fresh green-channel one after 300 s of extra waiting.

Choice of teller among the eligible (skill for the business type with proficiency
> 0, and the language): the highest score = w_proficiency x proficiency +
w_capability x capability (+ certification bonus for elderly customers), longest
idle first on ties; or uniformly at random for business types listed in
`random_business_types` (video-ident rules: random assignment against collusion).
Elderly customers are offered only to tellers holding `elderly_certification`
during their first `elderly_widen_after_s` seconds, then to any eligible teller.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from vteller.routing.hours import OpeningHours
from vteller.routing.model import PriorityClass


class RoutingPolicy(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}

    class_base: dict[PriorityClass, float] = Field(default_factory=lambda: {
        PriorityClass.GREEN: 300.0, PriorityClass.PRIORITY: 200.0,
        PriorityClass.VIP: 100.0, PriorityClass.STANDARD: 0.0})
    aging_per_s: float = Field(1.0, ge=0)
    elderly_age: int = Field(60, ge=40, le=100)
    elderly_certification: str = "elderly_care"
    elderly_widen_after_s: float = Field(1.0, ge=0)
    random_business_types: frozenset[str] = frozenset({"video_ident"})
    w_proficiency: float = 0.6
    w_capability: float = 0.4
    certified_bonus: float = 0.2
    wrap_up_s: float = Field(30.0, ge=0, le=3600)
    decline_memory_s: float = Field(
        60.0, ge=0, le=3600, description="a request a teller rejected or let ring out is "
        "not offered to that teller again for this long (then it may be)")
    service_level_threshold_s: float = Field(20.0, gt=0)
    service_level_target: float = Field(0.8, gt=0, lt=1, description="share of calls to "
                                        "answer within the threshold (staffing forecast)")
    shrinkage: float = Field(0.3, ge=0, lt=1, description="share of rostered time not on "
                             "calls (breaks, training, absence): scheduled = needed / (1 - it)")
    forecast_interval_s: float = Field(1800.0, ge=60, le=86400, description="staffing "
                                       "forecast interval: the next is taken to be like the last")
    default_handle_time_s: float = Field(180.0, gt=0)
    opening_hours: OpeningHours | None = Field(
        None, description="when customers may join (unset: always); see routing/hours.py")

    def priority(self, pclass: PriorityClass, waited_s: float) -> float:
        return self.class_base.get(pclass, 0.0) + self.aging_per_s * waited_s


FIFO = RoutingPolicy(class_base={c: 0.0 for c in PriorityClass}, elderly_widen_after_s=0,
                     random_business_types=frozenset(), w_proficiency=0, w_capability=0,
                     certified_bonus=0)
"""Plain first-come-first-served (with skills): the comparison baseline."""
