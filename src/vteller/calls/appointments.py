"""Video appointments, the customer's side: find free slots, book one, cancel it; and
the lookup that makes a customer joining in their slot's window a booked request (its
teller is offered it first; see `routing/appointments.py`).

A facet of `CallManager`."""

from __future__ import annotations

import asyncio
import secrets
import time

import structlog

from vteller.calls.party import Party
from vteller.protocol import ErrorCode, ProtocolError
from vteller.protocol import messages as m
from vteller.routing import appointments as booking
from vteller.routing.appointments import Appointment
from vteller.routing.model import TellerProfile
from vteller.store import StoreError

log = structlog.get_logger("vteller.calls")


def _info(a: Appointment) -> m.AppointmentInfo:
    return m.AppointmentInfo(appointment_id=a.appointment_id, business_type=a.business_type,
                             language=a.language, starts_at=a.starts_at, ends_at=a.ends_at)


class AppointmentFacet:
    def _booking_policy(self, business_type: str) -> booking.AppointmentPolicy:
        policy = self._settings.appointments
        if not policy.enabled:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "video appointments are not offered")
        if self._settings.review.business_type(business_type) is None:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "unknown business type")
        return policy

    def _teller_profiles(self) -> dict[str, TellerProfile]:
        return {u.username: TellerProfile.from_dict(u.profile) for u in self._store.list_users()
                if u.role == "teller" and not u.disabled}

    def _free(self, policy: booking.AppointmentPolicy, business_type: str, language: str,
              now: float) -> tuple[list[float], list[str], list[tuple[str, float]]]:
        """(free slot starts, able tellers, bookings in the bookable range): blocking."""
        starts = booking.slot_starts(policy, self.policy.opening_hours, now)
        candidates = booking.able(self._teller_profiles(), business_type, language)
        if not starts or not candidates:
            return [], candidates, []
        taken = self._store.booked_slots(starts[0], starts[-1] + 1)
        return booking.free_slots(starts, candidates, taken), candidates, taken

    async def _on_appointment_find(self, party: Party, msg: m.AppointmentFind) -> None:
        policy = self._booking_policy(msg.business_type)
        now = time.time()
        free, _, _ = await asyncio.to_thread(self._free, policy, msg.business_type,
                                             msg.language, now)
        mine = await asyncio.to_thread(self._store.customer_appointments, party.principal, now)
        party.send(m.AppointmentSlots(
            business_type=msg.business_type, language=msg.language, slot_s=policy.slot_s,
            timezone=policy.hours(self.policy.opening_hours).timezone, slots=free,
            booked=[_info(a) for a in mine]))

    async def _on_appointment_book(self, party: Party, msg: m.AppointmentBook) -> None:
        policy = self._booking_policy(msg.business_type)
        now = time.time()
        free, candidates, taken = await asyncio.to_thread(
            self._free, policy, msg.business_type, msg.language, now)
        if msg.starts_at not in free:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "that time cannot be booked (not a "
                                "free slot); ask for the slots again")
        teller = booking.choose_teller(candidates, msg.starts_at, taken)
        if teller is None:  # pragma: no cover - free means a candidate is free then
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "that time was just taken")
        appointment = Appointment(
            "ap_" + secrets.token_urlsafe(12), party.principal, msg.business_type,
            msg.language, teller, msg.starts_at, msg.starts_at + policy.slot_s)
        result = await self._store.abook_appointment(appointment, policy.max_per_customer,
                                                     now, now)
        if result == "limit":
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "you already hold an appointment; "
                                "cancel it to book another")
        if result == "slot_taken":
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "that time was just taken; ask for "
                                "the slots again")
        self._metrics.appointments.labels(event="booked").inc()
        party.send(m.AppointmentBooked(appointment=_info(appointment)))

    async def _on_appointment_cancel(self, party: Party, msg: m.AppointmentCancel) -> None:
        if not await asyncio.to_thread(self._store.cancel_appointment, msg.appointment_id,
                                       party.principal):
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "no such appointment of yours")
        self._metrics.appointments.labels(event="cancelled").inc()
        party.send(m.AppointmentCancelled(appointment_id=msg.appointment_id))

    async def _appointment_now(self, party: Party, business_type: str) -> Appointment | None:
        """The customer's booking whose window holds now, for this business type."""
        policy = self._settings.appointments
        if not policy.enabled:
            return None
        now = time.time()
        try:
            held = await asyncio.to_thread(self._store.customer_appointments, party.principal,
                                           now - policy.join_late_s - policy.slot_s)
        except StoreError:  # the queue does not wait for the database: join unbooked
            log.warning("appointment_lookup_failed")
            return None
        for a in held:
            start, end = a.window(policy)
            if a.business_type == business_type and start <= now <= end:
                return a
        return None
