"""Staff users, their login sessions, and the bank backend's service credentials."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from vteller.store.db import Database, IntegrityError


@dataclass(frozen=True)
class StaffUser:
    username: str
    display_name: str
    role: str
    password_hash: str
    disabled: bool
    profile: dict[str, Any] = field(default_factory=dict)


_USER = "username, display_name, role, password_hash, disabled, profile"


def _user(row: tuple[Any, ...]) -> StaffUser:
    return StaffUser(row[0], row[1], row[2], row[3], bool(row[4]), json.loads(row[5] or "{}"))


class StaffRepository:
    db: Database

    # users ----------------------------------------------------------------------------
    def add_user(self, username: str, display_name: str, role: str, password_hash: str,
                 profile: dict[str, Any] | None = None) -> None:
        try:
            self.db.execute("INSERT INTO staff_users VALUES (?,?,?,?,0,?,?)",
                            (username, display_name, role, password_hash, time.time(),
                             json.dumps(profile or {})))
        except IntegrityError:
            raise KeyError(f"user {username!r} already exists") from None

    def get_user(self, username: str) -> StaffUser | None:
        rows = self.db.execute(f"SELECT {_USER} FROM staff_users WHERE username=?", (username,))
        return _user(rows[0]) if rows else None

    async def aget_user(self, username: str) -> StaffUser | None:
        return await asyncio.to_thread(self.get_user, username)

    def list_users(self) -> list[StaffUser]:
        return [_user(r) for r in self.db.execute(
            f"SELECT {_USER} FROM staff_users ORDER BY username")]

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disabling also ends every login session of the user."""
        with self.db.atomic():
            changed = self.db.rowcount("UPDATE staff_users SET disabled=? WHERE username=?",
                                       (int(disabled), username))
            if disabled:
                self.db.execute("DELETE FROM staff_sessions WHERE username=?", (username,))
        return changed == 1

    def set_profile(self, username: str, profile: dict[str, Any]) -> bool:
        return self.db.rowcount("UPDATE staff_users SET profile=? WHERE username=?",
                                (json.dumps(profile), username)) == 1

    def set_password_hash(self, username: str, password_hash: str) -> None:
        self.db.execute("UPDATE staff_users SET password_hash=? WHERE username=?",
                        (password_hash, username))

    # login sessions (only the SHA-256 of the cookie is stored) --------------------------
    async def add_session(self, token_hash: str, username: str, expires_at: float) -> None:
        await asyncio.to_thread(self.db.execute, "INSERT INTO staff_sessions VALUES (?,?,?)",
                                (token_hash, username, expires_at))

    async def session_user(self, token_hash: str) -> StaffUser | None:
        rows = await asyncio.to_thread(
            self.db.execute,
            "SELECT u.username, u.display_name, u.role, u.password_hash, u.disabled, u.profile"
            " FROM staff_sessions s JOIN staff_users u ON u.username = s.username"
            " WHERE s.token_hash=? AND s.expires_at>? AND u.disabled=0",
            (token_hash, time.time()))
        return _user(rows[0]) if rows else None

    async def delete_session(self, token_hash: str) -> None:
        await asyncio.to_thread(self.db.execute, "DELETE FROM staff_sessions WHERE token_hash=?",
                                (token_hash,))

    async def purge_sessions(self) -> None:
        await asyncio.to_thread(self.db.execute,
                                "DELETE FROM staff_sessions WHERE expires_at<=?", (time.time(),))

    # service credentials (the bank backend; only key hashes) ----------------------------
    def add_service_credential(self, name: str, key_hash: str) -> None:
        try:
            self.db.execute("INSERT INTO service_credentials VALUES (?,?,?,0)",
                            (name, key_hash, time.time()))
        except IntegrityError:
            raise KeyError(f"service credential {name!r} already exists") from None

    def service_by_hash(self, key_hash: str) -> str | None:
        rows = self.db.execute(
            "SELECT name FROM service_credentials WHERE key_hash=? AND disabled=0", (key_hash,))
        return rows[0][0] if rows else None

    def list_service_credentials(self) -> list[tuple[str, float, bool]]:
        return [(r[0], r[1], bool(r[2])) for r in self.db.execute(
            "SELECT name, created_at, disabled FROM service_credentials ORDER BY name")]

    def revoke_service_credential(self, name: str) -> bool:
        return self.db.rowcount("UPDATE service_credentials SET disabled=1 WHERE name=?",
                                (name,)) == 1
