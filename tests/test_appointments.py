"""Video appointments: slots cut from the opening hours, the teller chosen, and on the
wire: a customer books a slot, comes back in its window, and the booked teller is
offered them before an older waiting customer; limits, refusals and cancelling."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import TEST_PROFILE
from vteller.routing.appointments import (
    AppointmentPolicy,
    choose_teller,
    free_slots,
    slot_starts,
)
from vteller.routing.hours import OpeningHours

pytestmark = pytest.mark.timeout(60)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).timestamp()


def test_slots_are_whole_periods_of_the_opening_hours():
    """Monday 30 Nov 2026 in Shanghai; open mon 09:00-10:30 and 14:00-15:00, tue
    09:00-10:00; half-hour slots from an hour ahead, up to a day ahead."""
    hours = OpeningHours(timezone="Asia/Shanghai", days={
        "mon": [(time(9), time(10, 30)), (time(14), time(15))], "tue": [(time(9), time(10))]})
    policy = AppointmentPolicy(slot_s=1800, lead_s=3600, days_ahead=1)
    assert slot_starts(policy, hours, at(11, 30, 8)) == [
        at(11, 30, 9), at(11, 30, 9, 30), at(11, 30, 10), at(11, 30, 14), at(11, 30, 14, 30)]
    # at 09:10: 10:00 starts before 10:10 (too soon); tuesday 09:00 is within a day
    assert slot_starts(policy, hours, at(11, 30, 9, 10)) == [
        at(11, 30, 14), at(11, 30, 14, 30), at(12, 1, 9)]
    # without opening hours: the default day, in UTC
    utc = AppointmentPolicy(slot_s=3600, lead_s=0, days_ahead=1, default_day=(time(9), time(11)))
    noon = datetime(2026, 11, 30, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    assert slot_starts(utc, None, noon) == [noon + 21 * 3600, noon + 22 * 3600]


def test_the_least_booked_free_teller_is_chosen():
    booked = [("ann", 1000.0), ("ann", 5000.0), ("bob", 9000.0)]
    assert choose_teller(["ann", "bob", "cho"], 1000.0, booked) == "cho"  # ann taken; cho 0
    assert choose_teller(["ann", "bob"], 3000.0, booked) == "bob"  # bob 1 booking, ann 2
    assert choose_teller(["ann"], 1000.0, booked) is None
    assert free_slots([1000.0, 2000.0], ["ann"], booked) == [2000.0]


BOOKING = {"lead_s": 0, "join_early_s": 86400, "slot_s": 900}


@pytest.mark.settings(appointments=BOOKING)
async def test_the_booked_teller_is_offered_the_booking_first(server):
    store = server.components.store
    for name in ("teller_a", "teller_b"):
        server.add_staff(name, profile=TEST_PROFILE)
    booker = await server.customer("c-booker")
    found = await booker.request({"type": "appointment.find", "business_type": "general",
                                  "language": "en"}, "appointment.slots")
    assert found["slots"] and found["booked"] == [] and found["slot_s"] == 900
    assert found["timezone"] == "UTC"  # no opening hours: the default day
    slot = found["slots"][0]

    await booker.send({"type": "appointment.book", "business_type": "general",
                       "language": "en", "starts_at": slot + 1})  # not a slot start
    assert "not a free slot" in (await booker.error("not_allowed"))["message"]
    booked = await booker.request({"type": "appointment.book", "business_type": "general",
                                   "language": "en", "starts_at": slot}, "appointment.booked")
    info = booked["appointment"]
    assert (info["starts_at"], info["ends_at"], info["business_type"]) == (slot, slot + 900,
                                                                          "general")
    [held] = store.customer_appointments("c-booker", 0.0)
    assert held.appointment_id == info["appointment_id"]
    await booker.send({"type": "appointment.book", "business_type": "general",
                       "language": "en", "starts_at": found["slots"][1]})
    assert "already hold" in (await booker.error("not_allowed"))["message"]  # one at a time
    again = await booker.request({"type": "appointment.find", "business_type": "general",
                                  "language": "en"}, "appointment.slots")
    assert [b["appointment_id"] for b in again["booked"]] == [info["appointment_id"]]

    # an older customer waits; the booker comes back in the window
    early = await server.customer("c-early")
    await early.send({"type": "queue.join", "business_type": "general"})
    await early.recv("queue.status")
    await booker.send({"type": "queue.join", "business_type": "general"})
    await booker.recv("queue.status")
    other = "teller_b" if held.teller == "teller_a" else "teller_a"
    mine = await server.teller(held.teller)
    offer = await mine.recv("offer.incoming")
    assert offer["customer"]["display_name"] == "Ada Customer" and offer["appointment_at"] == slot
    waiting = {c.call_id: c for c in server.manager.calls.values()}
    assert server.manager.parties[waiting[offer["call_id"]].customer_key].principal == "c-booker"
    theirs = await server.teller(other)
    offer2 = await theirs.recv("offer.incoming")
    assert offer2["appointment_at"] is None
    assert server.manager.parties[waiting[offer2["call_id"]].customer_key].principal == "c-early"
    await server.manager.flush()
    assert store.customer_appointments("c-booker", 0.0) == []  # kept: used once
    kept = store.run("SELECT state, call_id FROM appointments WHERE appointment_id=?",
                     (info["appointment_id"],))
    assert [tuple(r) for r in kept] == [("kept", offer["call_id"])]

    for c in (booker, early, mine, theirs):
        await c.close()


@pytest.mark.settings(appointments=BOOKING)
async def test_cancel_refusals_and_roles(server):
    server.add_staff("teller1", profile=TEST_PROFILE)
    customer = await server.customer("c-cancel")
    await customer.send({"type": "appointment.find", "business_type": "no_such_type"})
    await customer.error("not_allowed")
    found = await customer.request({"type": "appointment.find"}, "appointment.slots")
    booked = await customer.request({"type": "appointment.book", "starts_at": found["slots"][0]},
                                    "appointment.booked")
    aid = booked["appointment"]["appointment_id"]
    stranger = await server.customer("c-stranger")
    await stranger.send({"type": "appointment.cancel", "appointment_id": aid})
    await stranger.error("not_allowed")  # not theirs
    assert await customer.request({"type": "appointment.cancel", "appointment_id": aid},
                                  "appointment.cancelled") == {
        "type": "appointment.cancelled", "appointment_id": aid}
    await customer.send({"type": "appointment.cancel", "appointment_id": aid})
    await customer.error("not_allowed")  # once
    teller = await server.teller("teller1", available=False)
    await teller.send({"type": "appointment.find"})
    await teller.error("forbidden")  # customers book, staff do not
    for c in (customer, stranger, teller):
        await c.close()


@pytest.mark.settings(appointments={"enabled": False})
async def test_appointments_can_be_switched_off(server):
    customer = await server.customer("c-off")
    await customer.send({"type": "appointment.find"})
    assert "not offered" in (await customer.error("not_allowed"))["message"]
    await customer.close()


@pytest.mark.settings(appointments=BOOKING)
async def test_a_database_that_cannot_be_read_neither_blocks_joining_nor_hides_the_error(
        server, monkeypatch):
    """The booking lookup of `queue.join` fails: the customer is queued unbooked. Finding
    slots needs the read: a typed `storage_unavailable`, not `internal`."""
    from vteller.store import Unavailable

    def down(*_args: object) -> None:
        raise Unavailable("the database cannot be reached")

    monkeypatch.setattr(server.components.store, "customer_appointments", down)
    customer = await server.customer("c-db-down")
    await customer.send({"type": "appointment.find"})
    assert (await customer.error("storage_unavailable"))["re"] == "appointment.find"
    await customer.send({"type": "queue.join"})
    assert (await customer.recv("queue.status"))["state"] == "queued"
    await customer.close()
