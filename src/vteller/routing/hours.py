"""Opening hours of the video channel (`[routing] opening_hours`): per weekday, periods
in the bank's time zone. Outside them `queue.join` is refused with `closed` and the
customer's page shows the hours and the next opening; customers already waiting at
closing time are still served."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class OpeningHours(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    timezone: str = Field("UTC", description="IANA zone of the times, e.g. Asia/Shanghai")
    days: dict[str, list[tuple[time, time]]] = Field(
        description="weekday (mon..sun) -> [(open, close), ...]; missing: closed that day")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, ModuleNotFoundError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("days")
    @classmethod
    def _periods(cls, value: dict[str, list[tuple[time, time]]]
                 ) -> dict[str, list[tuple[time, time]]]:
        for day, periods in value.items():
            if day not in DAYS:
                raise ValueError(f"unknown weekday {day!r} (use {', '.join(DAYS)})")
            for start, end in periods:
                if not start < end:
                    raise ValueError(f"{day}: {start} is not before {end}")
        return value

    def _local(self, at: float) -> datetime:
        return datetime.fromtimestamp(at, ZoneInfo(self.timezone))

    def is_open(self, at: float) -> bool:
        now = self._local(at)
        return any(start <= now.time() < end
                   for start, end in self.days.get(DAYS[now.weekday()], []))

    def next_opening(self, at: float) -> float | None:
        """Epoch seconds of the next opening after `at` (None: never open)."""
        now = self._local(at)
        for ahead in range(8):
            day = now.date() + timedelta(days=ahead)
            for start, _ in sorted(self.days.get(DAYS[day.weekday()], [])):
                opening = datetime.combine(day, start, ZoneInfo(self.timezone))
                if opening > now:
                    return opening.timestamp()
        return None

    def describe(self) -> dict[str, object]:
        """For the customer's page (rendered there in the customer's language)."""
        return {"timezone": self.timezone, "days": {
            d: [[s.strftime("%H:%M"), e.strftime("%H:%M")] for s, e in self.days.get(d, [])]
            for d in DAYS}}
