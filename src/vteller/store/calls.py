"""Call records, their flags, recordings and review decisions; the auditors' search."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from vteller.store.db import Database, Row

CALL_FIELDS = frozenset({"teller", "state", "end_reason", "answered_at", "ended_at", "outcome",
                         "outcome_reason", "disposition"})


@dataclass(frozen=True)
class CallSearch:
    """The auditors' search; every field optional."""

    queued_from: float | None = None
    queued_to: float | None = None
    teller: str | None = None
    customer_id: str | None = None
    business_type: str | None = None
    decision: str | None = None
    flag: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class CallRow:
    session_id: str
    customer_id: str
    teller: str | None
    business_type: str
    state: str
    end_reason: str | None
    queued_at: float
    ended_at: float | None
    flags: list[str]
    decision: str | None
    legal_hold: bool
    purged: bool
    outcome: str | None
    outcome_reason: str | None


class CallRepository:
    db: Database

    async def record_call(self, call_id: str, customer_id: str, state: str, queued_at: float,
                          business_type: str = "general", language: str = "en",
                          priority_class: str | None = None) -> None:
        await asyncio.to_thread(
            self.db.execute,
            "INSERT INTO calls (call_id, customer_id, state, queued_at, business_type, language,"
            " priority_class) VALUES (?,?,?,?,?,?,?)",
            (call_id, customer_id, state, queued_at, business_type, language, priority_class))

    def call_outcomes_since(self, since: float) -> list[Row]:
        """(queued_at, answered_at, ended_at, state, end_reason, priority_class) of calls
        that were answered or ended since `since` (wall time): to rebuild the service
        statistics of the last hour after a restart or a failover."""
        return self.db.execute(
            "SELECT queued_at, answered_at, ended_at, state, end_reason, priority_class "
            "FROM calls WHERE answered_at >= ? OR ended_at >= ?", (since, since))

    def unfinished_call_of(self, customer_id: str, waiting: bool = False
                           ) -> dict[str, Any] | None:
        """The customer's newest call that was offered or in progress (or, with
        `waiting`, still queued) and never ended (its node stopped): call_id, state,
        business_type, language, queued_at."""
        states = "'queued', 'offered'" if waiting else "'offered'"
        rows = self.db.execute(
            "SELECT call_id, state, business_type, language, queued_at FROM calls "
            f"WHERE customer_id=? AND state IN ({states}, 'connecting', 'active') "
            "AND ended_at IS NULL ORDER BY queued_at DESC LIMIT 1", (customer_id,))
        if not rows:
            return None
        return dict(zip(("call_id", "state", "business_type", "language", "queued_at"),
                        rows[0], strict=True))

    def settle_lost_calls(self, call_ids: list[str]) -> None:
        """Calls whose node stopped without ending them: `dropped` if a teller had
        answered, else `missed` (reason `node_stopped`); an outcome given already stays."""
        for call_id in call_ids:
            self.db.execute(
                "UPDATE calls SET outcome = CASE WHEN answered_at IS NULL THEN 'missed' "
                "ELSE 'dropped' END, outcome_reason = 'node_stopped' "
                "WHERE call_id=? AND outcome IS NULL", (call_id,))

    def calls_of_customer(self, customer_id: str, before: float, limit: int = 5
                          ) -> list[dict[str, Any]]:
        """The customer's earlier calls, newest first, for the teller's context: when,
        what for, how it ended."""
        rows = self.db.execute(
            "SELECT queued_at, business_type, outcome, outcome_reason FROM calls "
            "WHERE customer_id=? AND queued_at < ? ORDER BY queued_at DESC LIMIT ?",
            (customer_id, before, limit))
        return [{"at": r[0], "business_type": r[1], "outcome": r[2], "reason": r[3]}
                for r in rows]

    def flag_call(self, call_id: str, flag: str) -> None:
        """One rule for every flag (identity_mismatch, liveness_failed, consent_used,
        incomplete): a row in call_flags, written once."""
        self.db.execute("INSERT INTO call_flags VALUES (?,?) ON CONFLICT DO NOTHING",
                        (call_id, flag))

    async def add_call_flag(self, call_id: str, flag: str) -> None:
        await asyncio.to_thread(self.flag_call, call_id, flag)

    def call_flags(self, call_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT flag FROM call_flags WHERE call_id=? ORDER BY flag", (call_id,))]

    async def update_call(self, call_id: str, **fields: Any) -> None:
        if not fields or not set(fields) <= CALL_FIELDS:
            raise ValueError(f"bad call fields: {sorted(fields)}")
        cols = ", ".join(f"{k}=?" for k in fields)
        await asyncio.to_thread(self.db.execute, f"UPDATE calls SET {cols} WHERE call_id=?",
                                (*fields.values(), call_id))

    def set_call_ended_at(self, call_id: str, ended_at: float) -> None:
        self.db.execute("UPDATE calls SET ended_at=? WHERE call_id=?", (ended_at, call_id))

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        rows = await asyncio.to_thread(
            self.db.execute,
            "SELECT call_id, customer_id, teller, state, end_reason, queued_at, answered_at,"
            " ended_at, outcome, outcome_reason, disposition FROM calls WHERE call_id=?",
            (call_id,))
        keys = ("call_id", "customer_id", "teller", "state", "end_reason", "queued_at",
                "answered_at", "ended_at", "outcome", "outcome_reason", "disposition")
        return dict(zip(keys, rows[0], strict=True)) if rows else None

    async def add_recording(self, call_id: str, track: str, digest: str, packets: int) -> None:
        await asyncio.to_thread(
            self.db.execute,
            "INSERT INTO recordings VALUES (?,?,?,?) ON CONFLICT (call_id, track) DO UPDATE "
            "SET digest=excluded.digest, packets=excluded.packets",
            (call_id, track, digest, packets))

    def recordings(self, call_id: str) -> dict[str, tuple[str, int]]:
        rows = self.db.execute("SELECT track, digest, packets FROM recordings WHERE call_id=?",
                               (call_id,))
        return {r[0]: (r[1], r[2]) for r in rows}

    async def add_decision(self, call_id: str, business_type: str, teller: str, decision: str,
                           reason_code: str | None, notes: str, at: float) -> None:
        await asyncio.to_thread(self.db.execute,
                                "INSERT INTO decisions VALUES (?,?,?,?,?,?,?)",
                                (call_id, business_type, teller, decision, reason_code, notes,
                                 at))

    async def review_report(self, since: float, until: float) -> list[dict[str, Any]]:
        """Counts per business type and teller between two times (epoch seconds)."""
        rows = await asyncio.to_thread(
            self.db.execute,
            "SELECT business_type, teller, decision, COUNT(*) FROM decisions"
            " WHERE at>=? AND at<? GROUP BY business_type, teller, decision", (since, until))
        table: dict[tuple[str, str], dict[str, Any]] = {}
        for bt, teller, decision, n in rows:
            row = table.setdefault((bt, teller), {"business_type": bt, "teller": teller,
                                                  "approve": 0, "reject": 0, "incomplete": 0,
                                                  "reschedule": 0})
            row[decision] = n
        for row in table.values():
            total = row["approve"] + row["reject"] + row["incomplete"] + row["reschedule"]
            row["total"] = total
            row["pass_rate"] = row["approve"] / total if total else None
        return sorted(table.values(), key=lambda r: (r["business_type"], r["teller"]))

    async def add_survey(self, call_id: str, score: int, comment: str, at: float) -> None:
        await asyncio.to_thread(
            self.db.execute, "INSERT INTO surveys VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
            (call_id, score, comment, at))

    async def survey_report(self, since: float, until: float) -> list[dict[str, Any]]:
        """Satisfaction per business type for calls queued between two times."""
        rows = await asyncio.to_thread(
            self.db.execute,
            "SELECT c.business_type, COUNT(*), AVG(s.score), SUM(CASE WHEN s.score <= 2 "
            "THEN 1 ELSE 0 END) FROM surveys s JOIN calls c ON c.call_id = s.call_id "
            "WHERE c.queued_at>=? AND c.queued_at<? GROUP BY c.business_type "
            "ORDER BY c.business_type", (since, until))
        return [{"business_type": bt, "responses": int(n), "average": round(float(avg), 2),
                 "low": int(low)} for bt, n, avg, low in rows]

    async def outcome_report(self, since: float, until: float) -> list[dict[str, Any]]:
        """Calls per business type and outcome code queued between two times (epoch
        seconds); calls not over yet count as `open`."""
        rows = await asyncio.to_thread(
            self.db.execute,
            "SELECT business_type, COALESCE(outcome, 'open'), COUNT(*) FROM calls"
            " WHERE queued_at>=? AND queued_at<? GROUP BY business_type,"
            " COALESCE(outcome, 'open')", (since, until))
        table: dict[str, dict[str, Any]] = {}
        for bt, outcome, n in rows:
            row = table.setdefault(bt, {"business_type": bt, "total": 0})
            row[outcome] = n
            row["total"] += n
        return sorted(table.values(), key=lambda r: r["business_type"])

    def search_calls(self, q: CallSearch, page: int, page_size: int
                     ) -> tuple[int, list[CallRow]]:
        """(total matches, one page of them, newest first)."""
        where, args = ["1=1"], []
        for value, clause in ((q.queued_from, "c.queued_at >= ?"),
                              (q.queued_to, "c.queued_at < ?"),
                              (q.teller, "c.teller = ?"), (q.customer_id, "c.customer_id = ?"),
                              (q.business_type, "c.business_type = ?"),
                              (q.decision, "d.decision = ?"), (q.outcome, "c.outcome = ?"),
                              (q.flag, "EXISTS (SELECT 1 FROM call_flags f WHERE "
                                       "f.call_id = c.call_id AND f.flag = ?)")):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = (" FROM calls c LEFT JOIN decisions d ON d.call_id = c.call_id WHERE "
               + " AND ".join(where))
        with self.db.snapshot():
            total = self.db.execute("SELECT COUNT(*)" + sql, tuple(args))[0][0]
            rows = self.db.execute(
                "SELECT c.call_id, c.customer_id, c.teller, c.business_type, c.state,"
                " c.end_reason, c.queued_at, c.ended_at, d.decision,"
                " (SELECT 1 FROM legal_holds h WHERE h.session_id = c.call_id),"
                " (SELECT 1 FROM purged_sessions p WHERE p.session_id = c.call_id),"
                " c.outcome, c.outcome_reason"
                + sql + " ORDER BY c.queued_at DESC LIMIT ? OFFSET ?",
                (*args, page_size, (page - 1) * page_size))
            flags: dict[str, list[str]] = {}
            if rows:
                marks = ",".join("?" * len(rows))
                for call_id, flag in self.db.execute(
                        f"SELECT call_id, flag FROM call_flags WHERE call_id IN ({marks}) "
                        "ORDER BY flag", tuple(r[0] for r in rows)):
                    flags.setdefault(call_id, []).append(flag)
        return int(total), [CallRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                                    flags.get(r[0], []), r[8], bool(r[9]), bool(r[10]),
                                    r[11], r[12])
                            for r in rows]
