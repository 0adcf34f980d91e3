"""Service credentials for the bank backend (reference photo uploads).

Separate from customer tokens and staff logins: a random key, shown once, sent as
``Authorization: Bearer vtb_...``; only its SHA-256 is stored. Revoked keys stop
working at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets

from vteller.store import Store

PREFIX = "vtb_"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{1,63}$"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ServiceAuth:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, name: str) -> str:
        """A new credential; returns the key (shown once, never stored)."""
        if not re.match(NAME_PATTERN, name):
            raise ValueError("credential names are 2-64 of a-z 0-9 _ . -")
        key = PREFIX + secrets.token_urlsafe(32)
        self._store.add_service_credential(name, _hash(key))
        return key

    async def authenticate(self, authorization: str | None) -> str | None:
        """The credential's name for a valid ``Bearer`` header, else None."""
        if not authorization or not authorization.startswith("Bearer " + PREFIX):
            return None
        key = authorization[len("Bearer "):].strip()
        if len(key) > 128:
            return None
        return await asyncio.to_thread(self._store.service_by_hash, _hash(key))
