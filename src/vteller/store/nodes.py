"""Nodes and their leases, and which node owns each open audit session.

Lease times are the database's clock (one clock for every node, whatever their own
say): a node renews `lease_until = now + ttl`; a lease is expired when `now` has
passed it. Eviction is a conditional update, so of several survivors exactly one
decides a node is gone, and the evicted node's next renewal fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vteller.store.db import Database


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    host: str
    pid: int
    started_at: float
    lease_until: float
    evicted: bool
    expired: bool  # by the database's clock, when read
    load: dict[str, Any]


_NOW = {"sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
        "postgres": "EXTRACT(EPOCH FROM clock_timestamp())::double precision"}


class NodeRepository:
    db: Database

    def _now(self) -> str:
        return _NOW[self.db.dialect]

    def register_node(self, node_id: str, host: str, pid: int, ttl_s: float) -> None:
        now = self._now()
        self.db.execute(f"INSERT INTO nodes VALUES (?,?,?,{now},{now} + ?,0,'{{}}')",
                        (node_id, host, pid, ttl_s))

    def renew_node(self, node_id: str, ttl_s: float, load: dict[str, Any]) -> bool:
        """Extend this node's lease. False: it was evicted (or removed): the node must
        stop, its sessions are being sealed by a survivor."""
        return self.db.rowcount(
            f"UPDATE nodes SET lease_until={self._now()} + ?, load=? "
            "WHERE node_id=? AND evicted=0", (ttl_s, json.dumps(load), node_id)) == 1

    def leave_node(self, node_id: str) -> None:
        """A clean stop: its sessions are closed; the row goes."""
        self.db.execute("DELETE FROM nodes WHERE node_id=?", (node_id,))

    def nodes(self) -> list[NodeRow]:
        rows = self.db.execute(
            f"SELECT node_id, host, pid, started_at, lease_until, evicted, load, "
            f"CASE WHEN lease_until < {self._now()} THEN 1 ELSE 0 END FROM nodes "
            "ORDER BY started_at")
        return [NodeRow(r[0], r[1], int(r[2]), float(r[3]), float(r[4]), bool(r[5]),
                        bool(r[7]), json.loads(r[6])) for r in rows]

    def evict_node(self, node_id: str, only_if_expired: bool) -> bool:
        """Mark a node gone; True if this call did it (so one survivor acts). With
        `only_if_expired`, only when its lease has run out by the database's clock."""
        cond = f" AND lease_until < {self._now()}" if only_if_expired else ""
        return self.db.rowcount(f"UPDATE nodes SET evicted=1 WHERE node_id=? AND evicted=0{cond}",
                                (node_id,)) == 1

    def forget_node(self, node_id: str) -> None:
        """An evicted node whose sessions are all sealed."""
        self.db.execute("DELETE FROM nodes WHERE node_id=? AND evicted=1", (node_id,))

    # session owners ------------------------------------------------------------------
    def own_session(self, session_id: str, node_id: str) -> None:
        self.db.execute("INSERT INTO session_owners VALUES (?,?)", (session_id, node_id))

    def release_session(self, session_id: str) -> None:
        self.db.execute("DELETE FROM session_owners WHERE session_id=?", (session_id,))

    def sessions_owned_by(self, node_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT session_id FROM session_owners WHERE node_id=? ORDER BY session_id",
            (node_id,))]

    def session_owner(self, session_id: str) -> str | None:
        rows = self.db.execute("SELECT node_id FROM session_owners WHERE session_id=?",
                               (session_id,))
        return rows[0][0] if rows else None
