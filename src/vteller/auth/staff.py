"""Staff login: argon2id password hashes, opaque session cookies, rate limiting."""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vteller.auth.errors import AuthError
from vteller.auth.roles import STAFF_ROLES
from vteller.store import StaffUser, Store

USERNAME_PATTERN = r"^[a-z0-9_.-]{2,64}$"
MIN_PASSWORD = 12
T = TypeVar("T")
log = structlog.get_logger("vteller.auth")


def _pseudonym(username: str) -> str:
    """A username as logged: enough to correlate attempts, not to read the name."""
    return hashlib.sha256(b"vteller login log|" + username.encode()).hexdigest()[:16]


def hash_token(token: str) -> str:
    """Session tokens are stored only as SHA-256 (a DB leak does not leak sessions)."""
    return hashlib.sha256(token.encode()).hexdigest()


class LoginRateLimiter:
    """Sliding windows of login attempts per account and per client address.

    An attempt is counted the moment it starts (before any await), as a failure; a
    success takes it back. So a burst of concurrent guesses is limited exactly like a
    sequence of them. The per-account limit is the tight one; the per-address limit is
    `address_factor` times looser, so one NAT'd office is not locked out by one user.
    """

    def __init__(self, max_failures: int, window_s: float, address_factor: int = 10) -> None:
        self._max = {"user": max_failures, "addr": max_failures * address_factor}
        self._window = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._next_prune = 0.0

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
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
            if len(q) >= self._max[key.split(":", 1)[0]]:
                waits.append(q[0] + self._window - now)
        return max(waits, default=0.0)

    def begin(self, keys: list[str], now: float | None = None) -> tuple[float, float]:
        """Start an attempt: (seconds to wait, or 0 and the attempt is counted; stamp)."""
        now = time.monotonic() if now is None else now
        if now >= self._next_prune:  # guesses at random usernames must not pile up
            for key in list(self._failures):
                self._recent(key, now)
            self._next_prune = now + self._window
        wait = self.retry_after(keys, now)
        if wait <= 0:
            self.failed(keys, now)
        return wait, now

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._failures[key].append(now)

    def succeeded(self, keys: list[str], stamp: float) -> None:
        """The attempt begun at `stamp` succeeded: the account's failures are forgiven,
        the address keeps its other attempts."""
        self._failures.pop(keys[0], None)
        for key in keys[1:]:
            q = self._failures.get(key)
            if q is not None and stamp in q:
                q.remove(stamp)


class LoginLimiter(Protocol):
    """Counts an attempt before the password is checked; forgives it on success."""

    async def attempt(self, keys: list[str]) -> tuple[float, Any]:
        """(seconds to wait, or 0 and the attempt is counted; a stamp for `forgive`)."""
        ...

    async def forgive(self, keys: list[str], stamp: Any) -> None: ...


class LocalLoginLimiter(LoginRateLimiter):
    """One process's limiter (the embedded default): counted with no await at all."""

    async def attempt(self, keys: list[str]) -> tuple[float, Any]:
        return self.begin(keys)

    async def forgive(self, keys: list[str], stamp: Any) -> None:
        self.succeeded(keys, stamp)


class SharedLoginLimiter:
    """The same limits over every node, counted in the shared database (one
    transaction per attempt that all nodes queue for)."""

    def __init__(self, store: Store, max_failures: int, window_s: float,
                 address_factor: int = 10) -> None:
        self._store = store
        self._max = {"user": max_failures, "addr": max_failures * address_factor}
        self._window = window_s

    async def attempt(self, keys: list[str]) -> tuple[float, Any]:
        stamp = secrets.token_hex(8)
        limits = {key: self._max[key.split(":", 1)[0]] for key in keys}
        wait = await asyncio.to_thread(self._store.login_attempt, limits, self._window, stamp)
        return wait, stamp

    async def forgive(self, keys: list[str], stamp: Any) -> None:
        await asyncio.to_thread(self._store.login_forgive, keys[0], keys[1:], stamp)


class HashPool:
    """Password hashing on its own small thread pool, never the default one (which
    the store uses): a burst of logins cannot stall the database. Bounded: when
    `max_pending` verifications are queued, a new login is refused at once."""

    def __init__(self, workers: int = 2, max_pending: int = 8) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="argon2")
        self._max = max_pending
        self._pending = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pending >= self._max:
            raise AuthError("rate_limited", "the login service is busy; retry in 1 s",
                            retry_after_s=1)
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class StaffAuth:
    """Password login and cookie sessions for tellers, supervisors and auditors."""

    def __init__(self, store: Store, limiter: LoginLimiter, session_ttl_s: int,
                 hashing: HashPool | None = None) -> None:
        self._store = store
        self._limiter = limiter
        self._ttl = session_ttl_s
        self._hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory)
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        self._hashing = hashing or HashPool()

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
        wait, stamp = await self._limiter.attempt(keys)  # counted before the password is
        if wait > 0:
            secs = math.ceil(wait)
            log.warning("staff_login_refused", user=_pseudonym(username), address=client)
            raise AuthError("rate_limited", f"too many failed logins; retry in {secs} s",
                            retry_after_s=secs)
        user = await self._store.aget_user(username)
        # Verify against a dummy hash for unknown users so timing does not reveal them.
        ok = await self._hashing.run(
            self._verify, user.password_hash if user else self._dummy_hash, password)
        if not ok or user is None or user.disabled or user.role not in STAFF_ROLES:
            log.warning("staff_login_failed", user=_pseudonym(username), address=client)
            raise AuthError("login_failed", "wrong username or password, or account disabled")
        await self._limiter.forgive(keys, stamp)
        if self._hasher.check_needs_rehash(user.password_hash):
            new_hash = await self._hashing.run(self._hasher.hash, password)
            await asyncio.to_thread(self._store.set_password_hash, username, new_hash)
        token = secrets.token_urlsafe(32)
        await self._store.add_session(hash_token(token), username, time.time() + self._ttl)
        return user, token

    async def user_for_session(self, token: str | None) -> StaffUser | None:
        if not token or len(token) > 128:
            return None
        return await self._store.session_user(hash_token(token))

    async def logout(self, token: str) -> None:
        await self._store.delete_session(hash_token(token))
