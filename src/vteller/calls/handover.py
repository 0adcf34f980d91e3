"""What another node needs to take a customer over when its node dies, sealed under a
key derived from the customer's resume secret: the database row (keyed by the secret's
SHA-256) tells nobody without the secret who the customer is."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AAD = b"vteller resume v1"


def _key(token: str) -> bytes:
    return hashlib.sha256(b"vteller resume key v1|" + token.encode()).digest()


@dataclass(frozen=True)
class Handover:
    party_key: str
    role: str
    principal: str
    display_name: str
    segments: frozenset[str]

    def seal(self, token: str) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps({"k": self.party_key, "r": self.role, "p": self.principal,
                            "n": self.display_name, "s": sorted(self.segments)}).encode()
        return nonce + AESGCM(_key(token)).encrypt(nonce, plain, AAD)

    @classmethod
    def open(cls, token: str, sealed: bytes) -> Handover | None:
        try:
            d = json.loads(AESGCM(_key(token)).decrypt(sealed[:12], sealed[12:], AAD))
        except (InvalidTag, ValueError):
            return None
        return cls(d["k"], d["r"], d["p"], d["n"], frozenset(d["s"]))
