"""Opening hours: judged in the bank's time zone; joins outside them are refused with
`closed`, and the customer's welcome carries the hours and the next opening."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import SignalClient
from vteller.routing.hours import OpeningHours

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURS = OpeningHours(timezone="Asia/Shanghai", days={
    "mon": [("08:30", "12:00"), ("13:00", "17:30")], "sat": [("09:00", "12:00")]})


def at(*args: int) -> float:
    return datetime(*args, tzinfo=SHANGHAI).timestamp()


@pytest.mark.parametrize("moment,is_open", [
    (at(2026, 11, 30, 8, 29), False),  # Monday, before opening
    (at(2026, 11, 30, 8, 30), True),
    (at(2026, 11, 30, 12, 30), False),  # lunch
    (at(2026, 11, 30, 17, 29), True),
    (at(2026, 11, 30, 17, 30), False),  # closing time is closed
    (at(2026, 12, 1, 10, 0), False),  # Tuesday: closed all day
    (at(2026, 12, 5, 11, 59), True),  # Saturday morning
])
def test_open_by_the_bank_clock(moment, is_open):
    assert HOURS.is_open(moment) is is_open


def test_next_opening():
    assert HOURS.next_opening(at(2026, 11, 30, 12, 30)) == at(2026, 11, 30, 13, 0)
    assert HOURS.next_opening(at(2026, 11, 30, 18, 0)) == at(2026, 12, 5, 9, 0)  # Saturday
    assert HOURS.next_opening(at(2026, 12, 5, 12, 0)) == at(2026, 12, 7, 8, 30)  # Monday
    assert OpeningHours(days={}).next_opening(time.time()) is None


def test_bad_hours_are_refused():
    with pytest.raises(ValueError, match="not before"):
        OpeningHours(days={"mon": [("17:00", "09:00")]})
    with pytest.raises(ValueError, match="weekday"):
        OpeningHours(days={"monday": [("09:00", "17:00")]})
    with pytest.raises(ValueError):
        OpeningHours(timezone="Mars/Olympus", days={})


def _closed_now() -> dict:
    tomorrow = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(
        datetime.now(ZoneInfo("UTC")).weekday() + 1) % 7]
    return {"timezone": "UTC", "days": {tomorrow: [("10:00", "11:00")]}}


@pytest.mark.settings(routing={"opening_hours": _closed_now()})
async def test_joining_when_closed_is_refused_with_the_hours(server):
    cust = await SignalClient.open(server.ws_url)
    await cust.send({"type": "hello", "token": server.customer_token("c-late")})
    service = (await cust.recv("welcome"))["service"]
    assert service["open"] is False and service["next_open_at"] > time.time()
    assert service["timezone"] == "UTC" and sum(map(len, service["days"].values())) == 1
    await cust.send({"type": "queue.join"})
    assert "opening hours" in (await cust.error("closed"))["message"]
    assert not server.manager.calls  # nothing queued
    teller = await server.teller("teller1")  # staff still log in
    await teller.close()
    await cust.close()


@pytest.mark.settings(routing={"opening_hours": {"timezone": "UTC", "days": {
    d: [("00:00", "23:59:59")] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}})
async def test_joining_when_open(server):
    cust = await server.customer("c-early")
    await cust.send({"type": "queue.join"})
    assert (await cust.recv("queue.status"))["state"] == "queued"
    await cust.close()
