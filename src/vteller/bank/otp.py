"""A one-time code for the second factor inside a call (BaFin's TAN): made here, sent
by the bank to the customer's registered phone, typed by the customer in the call.

Only a salted hash is kept (in the call's memory, never stored or logged); a code
expires and allows a few attempts; checking is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from enum import StrEnum


class CodeCheck(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"  # attempts remain
    FAILED = "failed"  # no attempts left
    EXPIRED = "expired"


def _digest(salt: bytes, code: str) -> bytes:
    return hashlib.sha256(salt + code.encode()).digest()


@dataclass
class OneTimeCode:
    digest: bytes
    salt: bytes
    expires_at: float
    attempts_left: int
    used: bool = field(default=False)

    @classmethod
    def issue(cls, digits: int, ttl_s: float, attempts: int, now: float
              ) -> tuple[str, OneTimeCode]:
        code = f"{secrets.randbelow(10 ** digits):0{digits}d}"
        salt = secrets.token_bytes(16)
        return code, cls(_digest(salt, code), salt, now + ttl_s, attempts)

    def check(self, code: str, now: float) -> CodeCheck:
        if self.used or self.attempts_left <= 0:
            return CodeCheck.FAILED
        if now > self.expires_at:
            return CodeCheck.EXPIRED
        if hmac.compare_digest(_digest(self.salt, code), self.digest):
            self.used = True
            return CodeCheck.VERIFIED
        self.attempts_left -= 1
        return CodeCheck.WRONG if self.attempts_left > 0 else CodeCheck.FAILED
