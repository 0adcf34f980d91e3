"""Booked video appointments: one row per booking. A teller holds at most one booked
appointment per slot (a partial unique index: two nodes booking the same teller and
slot at once, one wins); a customer at most `max_per_customer` at once (checked under a
lock per customer)."""

from __future__ import annotations

import asyncio
from typing import Literal

from vteller.routing.appointments import Appointment
from vteller.store.db import Database, IntegrityError

COLUMNS = ("appointment_id, customer_id, business_type, language, teller, starts_at, ends_at,"
           " state, call_id")
Booking = Literal["booked", "slot_taken", "limit"]


class AppointmentRepository:
    db: Database

    def book_appointment(self, a: Appointment, max_per_customer: int, now: float,
                         created_at: float) -> Booking:
        """Book `a` unless its teller is taken then or the customer holds enough."""
        try:  # a taken slot fails the insert: the transaction rolls back, then we say so
            with self.db.atomic(lock=f"vteller appointments {a.customer_id}"):
                held = self.db.execute(
                    "SELECT COUNT(*) FROM appointments WHERE customer_id=? AND state='booked'"
                    " AND ends_at > ?", (a.customer_id, now))[0][0]
                if held >= max_per_customer:
                    return "limit"
                self.db.execute(
                    f"INSERT INTO appointments ({COLUMNS}, created_at) "
                    "VALUES (?,?,?,?,?,?,?,'booked',NULL,?)",
                    (a.appointment_id, a.customer_id, a.business_type, a.language, a.teller,
                     a.starts_at, a.ends_at, created_at))
        except IntegrityError:
            return "slot_taken"
        return "booked"

    async def abook_appointment(self, a: Appointment, max_per_customer: int, now: float,
                                created_at: float) -> Booking:
        return await asyncio.to_thread(self.book_appointment, a, max_per_customer, now,
                                       created_at)

    def booked_slots(self, since: float, until: float) -> list[tuple[str, float]]:
        """(teller, slot start) of every booked appointment starting in [since, until)."""
        return [(r[0], float(r[1])) for r in self.db.execute(
            "SELECT teller, starts_at FROM appointments WHERE state='booked'"
            " AND starts_at >= ? AND starts_at < ?", (since, until))]

    def customer_appointments(self, customer_id: str, since: float) -> list[Appointment]:
        """The customer's booked appointments not over by `since`, soonest first."""
        return [_appointment(r) for r in self.db.execute(
            f"SELECT {COLUMNS} FROM appointments WHERE customer_id=? AND state='booked'"
            " AND ends_at > ? ORDER BY starts_at", (customer_id, since))]

    def cancel_appointment(self, appointment_id: str, customer_id: str) -> bool:
        return self.db.rowcount(
            "UPDATE appointments SET state='cancelled' WHERE appointment_id=? AND"
            " customer_id=? AND state='booked'", (appointment_id, customer_id)) == 1

    def keep_appointment(self, appointment_id: str, call_id: str) -> bool:
        """The customer came: the booking is used by this call (once)."""
        return self.db.rowcount(
            "UPDATE appointments SET state='kept', call_id=? WHERE appointment_id=? AND"
            " state='booked'", (call_id, appointment_id)) == 1

    async def akeep_appointment(self, appointment_id: str, call_id: str) -> None:
        await asyncio.to_thread(self.keep_appointment, appointment_id, call_id)


def _appointment(r: tuple[object, ...]) -> Appointment:
    return Appointment(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(r[5]),  # type: ignore[arg-type]
                       float(r[6]), str(r[7]), r[8] if r[8] is None else str(r[8]))  # type: ignore[arg-type]
