"""Four-eyes approvals and the bank outbox.

An approval is `pending` from the teller's approve until a different person with the
auditor role decides it (one conditional update: exactly one decision wins). The outbox
holds events for the bank backend until its webhook acknowledged them; an event is
written in the same transaction as the state change it reports."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from vteller.store.db import Database


@dataclass(frozen=True)
class Approval:
    call_id: str
    business_type: str
    teller: str
    requested_at: float
    status: str  # pending | approved | rejected
    auditor: str | None
    reason: str | None
    decided_at: float | None


class ApprovalRepository:
    db: Database

    def _outbox(self, event_id: str, kind: str, payload: dict[str, Any], at: float) -> None:
        self.db.execute(
            "INSERT INTO outbox (event_id, kind, payload, created_at, next_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            (event_id, kind, json.dumps(payload, sort_keys=True), at, at))

    async def record_final_decision(self, event_id: str, payload: dict[str, Any],
                                    at: float, four_eyes: bool, send: bool) -> None:
        """After the teller's decision: a pending approval (four eyes), or the final
        decision queued for the bank (`send`: a webhook is configured)."""
        def run() -> None:
            with self.db.atomic():
                if four_eyes:
                    self.db.execute(
                        "INSERT INTO approvals (call_id, business_type, teller, requested_at,"
                        " status, payload) VALUES (?,?,?,?, 'pending', ?)",
                        (payload["call_id"], payload["business_type"], payload["teller"], at,
                         json.dumps(payload, sort_keys=True)))
                elif send:
                    self._outbox(event_id, "decision.final", payload, at)
        await asyncio.to_thread(run)

    def pending_approvals(self, limit: int = 200) -> list[Approval]:
        return [Approval(*r) for r in self.db.execute(
            "SELECT call_id, business_type, teller, requested_at, status, auditor, reason,"
            " decided_at FROM approvals WHERE status='pending' ORDER BY requested_at LIMIT ?",
            (limit,))]

    def approval(self, call_id: str) -> Approval | None:
        rows = self.db.execute(
            "SELECT call_id, business_type, teller, requested_at, status, auditor, reason,"
            " decided_at FROM approvals WHERE call_id=?", (call_id,))
        return Approval(*rows[0]) if rows else None

    def decide_approval(self, call_id: str, auditor: str, approve: bool, reason: str,
                        at: float, event_id: str, send: bool) -> bool:
        """The second person's decision; False if it was decided already. The call's
        outcome follows, and the final decision is queued for the bank, all at once."""
        with self.db.atomic():
            status = "approved" if approve else "rejected"
            if self.db.rowcount(
                    "UPDATE approvals SET status=?, auditor=?, reason=?, decided_at=? "
                    "WHERE call_id=? AND status='pending'",
                    (status, auditor, reason, at, call_id)) != 1:
                return False
            payload = json.loads(self.db.execute(
                "SELECT payload FROM approvals WHERE call_id=?", (call_id,))[0][0])
            payload["four_eyes"] = {"auditor": auditor, "status": status, "at": at}
            if not approve:
                payload["decision"] = "reject"
                payload["reason_code"] = "four_eyes_rejected"
            self.db.execute(
                "UPDATE calls SET outcome=?, outcome_reason=? WHERE call_id=?",
                ("successful", None, call_id) if approve
                else ("unsuccessful", "four_eyes_rejected", call_id))
            if send:
                self._outbox(event_id, "decision.final", payload, at)
        return True

    # the outbox --------------------------------------------------------------------
    def claim_outbox(self, node: str, now: float, claim_s: float, limit: int
                     ) -> list[tuple[str, str, str, int]]:
        """Due events, claimed by this node for `claim_s` (another node skips them):
        (event_id, kind, payload, attempts so far)."""
        due = self.db.execute(
            "SELECT event_id FROM outbox WHERE state='pending' AND next_at <= ? AND "
            "(claimed_until IS NULL OR claimed_until < ?) ORDER BY next_at LIMIT ?",
            (now, now, limit))
        claimed = []
        for (event_id,) in due:
            if self.db.rowcount(
                    "UPDATE outbox SET claimed_by=?, claimed_until=? WHERE event_id=? AND "
                    "state='pending' AND (claimed_until IS NULL OR claimed_until < ?)",
                    (node, now + claim_s, event_id, now)) == 1:
                claimed.append(event_id)
        if not claimed:
            return []
        marks = ",".join("?" * len(claimed))
        return [(r[0], r[1], r[2], int(r[3])) for r in self.db.execute(
            f"SELECT event_id, kind, payload, attempts FROM outbox WHERE event_id IN ({marks})"
            " ORDER BY created_at", tuple(claimed))]

    def outbox_delivered(self, event_id: str, at: float) -> None:
        self.db.execute("UPDATE outbox SET state='delivered', delivered_at=?, attempts="
                        "attempts+1, claimed_until=NULL, last_error=NULL WHERE event_id=?",
                        (at, event_id))

    def outbox_retry(self, event_id: str, attempts: int, next_at: float, error: str) -> None:
        self.db.execute("UPDATE outbox SET attempts=?, next_at=?, last_error=?, "
                        "claimed_until=NULL WHERE event_id=?",
                        (attempts, next_at, error[:200], event_id))

    def outbox_failed(self, event_id: str, attempts: int, error: str) -> None:
        self.db.execute("UPDATE outbox SET state='failed', attempts=?, last_error=?, "
                        "claimed_until=NULL WHERE event_id=?", (attempts, error[:200], event_id))

    def outbox_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.db.execute(
            "SELECT state, COUNT(*) FROM outbox GROUP BY state")}
