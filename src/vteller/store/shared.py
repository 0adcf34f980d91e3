"""Short-lived state every node must see, in the one database they share: login
attempts (so N nodes behind a load balancer do not give a password guesser N times
the budget), used customer-token ids (a token opens one connection, on any node) and
auditors' replay grants (a grant opened on one node is honoured by every node the
media requests reach). Lease-like times are the database's clock; token expiry is
the token's own `exp`."""

from __future__ import annotations

import asyncio
import time

from vteller.store.db import Database
from vteller.store.nodes import _NOW

LOGIN_LOCK = "vteller login attempts"


class SharedStateRepository:
    db: Database

    # login attempts ------------------------------------------------------------------
    def login_attempt(self, limits: dict[str, int], window_s: float, stamp: str) -> float:
        """Begin an attempt under `limits` (key -> most attempts in the window): the
        seconds to wait, or 0 and the attempt is counted against every key (as a
        failure, until `login_forgive`). One transaction every node queues for."""
        with self.db.atomic(lock=LOGIN_LOCK):
            now = float(self.db.execute(f"SELECT {_NOW[self.db.dialect]}")[0][0])
            self.db.execute("DELETE FROM login_attempts WHERE at <= ?", (now - window_s,))
            wait = 0.0
            for key, most in limits.items():
                count, oldest = self.db.execute(
                    "SELECT COUNT(*), MIN(at) FROM login_attempts WHERE key=?", (key,))[0]
                if count >= most:
                    wait = max(wait, float(oldest) + window_s - now)
            if wait > 0:
                return wait
            for key in limits:
                self.db.execute("INSERT INTO login_attempts VALUES (?,?,?)", (key, stamp, now))
            return 0.0

    def login_forgive(self, account_key: str, other_keys: list[str], stamp: str) -> None:
        """The attempt `stamp` succeeded: the account's failures are forgiven; the other
        keys (the address) lose only this attempt."""
        with self.db.atomic():
            self.db.execute("DELETE FROM login_attempts WHERE key=?", (account_key,))
            for key in other_keys:
                self.db.execute("DELETE FROM login_attempts WHERE key=? AND stamp=?",
                                (key, stamp))

    # resume secrets ----------------------------------------------------------------------
    async def put_resume(self, token_hash: str, node_id: str, sealed: bytes,
                         replaces: str | None) -> None:
        """A party's current resume secret (hashed) with what another node needs to take
        the party over, sealed under a key only the secret's holder can derive (no
        customer data readable here); the secret it replaces goes."""
        def run() -> None:
            with self.db.atomic():
                if replaces:
                    self.db.execute("DELETE FROM resume_secrets WHERE token_hash=?", (replaces,))
                self.db.execute("INSERT INTO resume_secrets VALUES (?,?,?,?) "
                                "ON CONFLICT (token_hash) DO NOTHING",
                                (token_hash, node_id, sealed, time.time()))
        await asyncio.to_thread(run)

    async def drop_resume(self, token_hash: str) -> None:
        await asyncio.to_thread(self.db.execute,
                                "DELETE FROM resume_secrets WHERE token_hash=?", (token_hash,))

    def peek_resume(self, token_hash: str) -> tuple[str, bytes] | None:
        """(node id, sealed party) of a resume secret, left in place."""
        rows = self.db.execute("SELECT node_id, sealed FROM resume_secrets WHERE token_hash=?",
                               (token_hash,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def take_resume(self, token_hash: str, not_from: str) -> tuple[str, bytes] | None:
        """Claim a resume secret a node other than `not_from` wrote: (node id, sealed
        party), deleted as it is read (one taker). Rows of parties that ended are
        deleted by their node; those a dead node left go after a day."""
        with self.db.atomic():
            rows = self.db.execute("SELECT node_id, sealed FROM resume_secrets "
                                   "WHERE token_hash=? AND node_id<>?", (token_hash, not_from))
            if rows:
                self.db.execute("DELETE FROM resume_secrets WHERE token_hash=?", (token_hash,))
            self.db.execute("DELETE FROM resume_secrets WHERE at < ?", (time.time() - 86400,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    # customer token ids ----------------------------------------------------------------
    def consume_token_id(self, jti: str, expires_at: float) -> bool:
        """True the first time a token id is seen (kept until the token expires)."""
        with self.db.atomic():
            self.db.execute("DELETE FROM used_token_ids WHERE expires_at < ?", (time.time(),))
            return self.db.rowcount("INSERT INTO used_token_ids VALUES (?,?) "
                                    "ON CONFLICT DO NOTHING", (jti, expires_at)) == 1

    # replay grants -------------------------------------------------------------------
    def put_replay_grant(self, token_hash: str, username: str, session_id: str, reason: str,
                         ttl_s: float) -> None:
        now = _NOW[self.db.dialect]
        with self.db.atomic():
            self.db.execute(f"DELETE FROM replay_grant_tracks WHERE token_hash IN (SELECT "
                            f"token_hash FROM replay_grants WHERE expires_at < {now})")
            self.db.execute(f"DELETE FROM replay_grants WHERE expires_at < {now}")
            self.db.execute(f"INSERT INTO replay_grants VALUES (?,?,?,?,{now} + ?)",
                            (token_hash, username, session_id, reason, ttl_s))

    def replay_grant(self, token_hash: str) -> tuple[str, str, str] | None:
        """(username, session id, reason) of a grant that has not expired."""
        rows = self.db.execute(
            f"SELECT username, session_id, reason FROM replay_grants WHERE token_hash=? "
            f"AND expires_at >= {_NOW[self.db.dialect]}", (token_hash,))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def first_replay(self, token_hash: str, track: str) -> bool:
        """True the first time this grant fetches this track (on any node)."""
        return self.db.rowcount("INSERT INTO replay_grant_tracks VALUES (?,?) "
                                "ON CONFLICT DO NOTHING", (token_hash, track)) == 1

    def forget_replay(self, token_hash: str, track: str) -> None:
        self.db.execute("DELETE FROM replay_grant_tracks WHERE token_hash=? AND track=?",
                        (token_hash, track))
