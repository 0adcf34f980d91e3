"""Staff login: argon2id password hashes, opaque session cookies, rate limiting."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import defaultdict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vteller.auth.errors import AuthError
from vteller.auth.roles import STAFF_ROLES
from vteller.store import SqliteStore, StaffUser

USERNAME_PATTERN = r"^[a-z0-9_.-]{2,64}$"
MIN_PASSWORD = 12


def hash_token(token: str) -> str:
    """Session tokens are stored only as SHA-256 (a DB leak does not leak sessions)."""
    return hashlib.sha256(token.encode()).hexdigest()


class LoginRateLimiter:
    """Sliding window of failed logins per key (username and client address)."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self._max = max_failures
        self._window = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self._window:
            q.popleft()
        if not q:
            del self._failures[key]
            return deque()
        return q

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        waits = []
        for key in keys:
            q = self._recent(key, now)
            if len(q) >= self._max:
                waits.append(q[0] + self._window - now)
        return max(waits, default=0.0)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._failures[key].append(now)

    def succeeded(self, username_key: str) -> None:
        self._failures.pop(username_key, None)


class StaffAuth:
    """Password login and cookie sessions for tellers, supervisors and auditors."""

    def __init__(self, store: SqliteStore, limiter: LoginRateLimiter, session_ttl_s: int) -> None:
        self._store = store
        self._limiter = limiter
        self._ttl = session_ttl_s
        self._hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory)
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    @staticmethod
    def hash_password(password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password must have at least {MIN_PASSWORD} characters")
        return PasswordHasher().hash(password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def login(self, username: str, password: str, client: str) -> tuple[StaffUser, str]:
        """Returns (user, session token) or raises AuthError."""
        keys = [f"user:{username}", f"addr:{client}"]
        wait = self._limiter.retry_after(keys)
        if wait > 0:
            raise AuthError("rate_limited", f"too many failed logins; retry in {int(wait) + 1} s")
        user = await self._store.aget_user(username)
        # Verify against a dummy hash for unknown users so timing does not reveal them.
        ok = await asyncio.to_thread(
            self._verify, user.password_hash if user else self._dummy_hash, password
        )
        if not ok or user is None or user.disabled or user.role not in STAFF_ROLES:
            self._limiter.failed(keys)
            raise AuthError("login_failed", "wrong username or password, or account disabled")
        self._limiter.succeeded(keys[0])
        if self._hasher.check_needs_rehash(user.password_hash):
            self._store.set_password_hash(username, self._hasher.hash(password))
        token = secrets.token_urlsafe(32)
        await self._store.add_session(hash_token(token), username, time.time() + self._ttl)
        return user, token

    async def user_for_session(self, token: str | None) -> StaffUser | None:
        if not token or len(token) > 128:
            return None
        return await self._store.session_user(hash_token(token))

    async def logout(self, token: str) -> None:
        await self._store.delete_session(hash_token(token))
