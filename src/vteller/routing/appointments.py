"""Video appointments (`[appointments]`): a customer nobody can serve now books a slot
with a teller who can serve their business and language; when they come back in the
slot's window, routing offers them to that teller first.

Slots are cut from the opening hours (`[routing] opening_hours`; without them, from
`default_day`), `slot_s` long, from `lead_s` ahead up to `days_ahead` days. A teller holds
at most one booking per slot, and the teller chosen is the one of the fewest bookings
that day among those whose profile serves the business type and language (ties: user
name). There are no rosters: a booking assumes its teller works then. If the teller is
not available when the customer comes, any eligible teller takes the call after
`hold_s`.

Pure functions over values, so the store (bookings) and calls (messages) stay thin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from vteller.routing.hours import DAYS, OpeningHours
from vteller.routing.model import TellerProfile


class AppointmentPolicy(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    enabled: bool = True
    slot_s: int = Field(900, ge=300, le=7200, description="length of a slot (s)")
    lead_s: float = Field(3600.0, ge=0, le=7 * 86400, description="earliest booking: "
                          "this long from now")
    days_ahead: int = Field(7, ge=1, le=60, description="latest booking: this many days on")
    join_early_s: float = Field(600.0, ge=0, le=86400, description="a customer joining this "
                                "long before the slot starts counts as coming to it")
    join_late_s: float = Field(900.0, ge=0, le=86400, description="... or this long after")
    hold_s: float = Field(120.0, ge=0, le=3600, description="only the booked teller is "
                          "offered the customer until this long after they joined (or the "
                          "slot started, if later); then any eligible teller")
    max_per_customer: int = Field(1, ge=1, le=10, description="booked appointments a "
                                  "customer may hold at once")
    default_day: tuple[time, time] = Field(
        (time(9, 0), time(17, 0)), description="hours for slots when no opening hours are "
        "configured (UTC, every day)")

    def hours(self, opening: OpeningHours | None) -> OpeningHours:
        if opening is not None:
            return opening
        return OpeningHours(timezone="UTC", days={d: [self.default_day] for d in DAYS})


@dataclass(frozen=True)
class Appointment:
    """A booked slot: who, what, with whom, when (epoch seconds)."""

    appointment_id: str
    customer_id: str
    business_type: str
    language: str
    teller: str
    starts_at: float
    ends_at: float
    state: str = "booked"  # booked | kept | cancelled
    call_id: str | None = None

    def window(self, policy: AppointmentPolicy) -> tuple[float, float]:
        """When joining the queue counts as coming to this appointment."""
        return self.starts_at - policy.join_early_s, self.starts_at + policy.join_late_s

    def hold_until(self, policy: AppointmentPolicy, joined_at: float) -> float:
        return max(joined_at, self.starts_at) + policy.hold_s


def slot_starts(policy: AppointmentPolicy, opening: OpeningHours | None, now: float
                ) -> list[float]:
    """Every slot start (epoch seconds) from `now + lead_s` to `days_ahead` days on, whole
    slots inside an opening period, in the hours' own time zone."""
    hours = policy.hours(opening)
    zone = ZoneInfo(hours.timezone)
    today = datetime.fromtimestamp(now, zone).date()
    earliest, out = now + policy.lead_s, []
    for ahead in range(policy.days_ahead + 1):
        day = today + timedelta(days=ahead)
        for start, end in sorted(hours.days.get(DAYS[day.weekday()], [])):
            at = datetime.combine(day, start, zone).timestamp()
            close = datetime.combine(day, end, zone).timestamp()
            while at + policy.slot_s <= close:
                if earliest <= at <= now + policy.days_ahead * 86400:
                    out.append(at)
                at += policy.slot_s
    return out


def able(tellers: Mapping[str, TellerProfile], business_type: str, language: str
         ) -> list[str]:
    """The tellers whose profile serves this business and language."""
    return sorted(u for u, p in tellers.items() if p.can_serve(business_type, language))


def free_slots(starts: Iterable[float], candidates: list[str],
               booked: Iterable[tuple[str, float]]) -> list[float]:
    """The slot starts at which at least one candidate teller has no booking."""
    taken: dict[float, set[str]] = {}
    for teller, at in booked:
        taken.setdefault(at, set()).add(teller)
    return [at for at in starts if set(candidates) - taken.get(at, set())]


def choose_teller(candidates: list[str], at: float, booked: Iterable[tuple[str, float]],
                  day_s: float = 86400.0) -> str | None:
    """The candidate free at `at` with the fewest bookings within a day of it (ties:
    user name); None when every candidate is taken then."""
    booked = list(booked)
    busy = {t for t, start in booked if start == at}
    load = {c: sum(1 for t, start in booked if t == c and abs(start - at) < day_s)
            for c in candidates if c not in busy}
    if not load:
        return None
    return min(load, key=lambda c: (load[c], c))
