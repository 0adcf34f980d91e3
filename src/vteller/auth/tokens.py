"""Customer tokens: short-lived JWTs signed by the bank backend.

Claims: ``sub`` customer id, ``name`` display name, ``birth_year``, ``segments``
(segment flags), ``ref_photo`` reference-photo id, ``iat``/``exp``; ``iss`` and
``aud`` must match the settings. The algorithm is fixed by configuration (never
taken from the token header), which closes the classic alg-confusion attacks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import BaseModel, Field, ValidationError

from vteller.auth.errors import AuthError
from vteller.store import Store
from vteller.tls import write_private

DEV_TOKEN_KEY = "dev-customer-token.key"


class CustomerClaims(BaseModel):
    """The verified identity of a customer for one connection."""

    model_config = {"frozen": True, "extra": "ignore"}

    sub: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    name: str = Field(min_length=1, max_length=128)
    birth_year: int = Field(ge=1900, le=2100)
    segments: tuple[str, ...] = Field(default=(), max_length=16)
    ref_photo: str | None = Field(default=None, max_length=128)
    exp: int
    iat: int
    jti: str = Field(min_length=8, max_length=128)

    def age(self, today: dt.date | None = None) -> int:
        return (today or dt.date.today()).year - self.birth_year


class UsedTokens:
    """Token ids (`jti`) already used, each kept until its token expires: a customer
    token opens one connection, so a copied token cannot take over a live call."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._next_prune = 0.0

    async def consume(self, jti: str, expires_at: float) -> bool:
        """True the first time (counted with no await: two racing hellos cannot both
        pass)."""
        now = time.time()
        if now >= self._next_prune:
            self._until = {j: t for j, t in self._until.items() if t > now}
            self._next_prune = now + 60
        if self._until.get(jti, 0.0) > now:
            return False
        self._until[jti] = expires_at
        return True


class SharedUsedTokens:
    """The same, in the database every node shares: a token used on one node is
    refused on all of them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def consume(self, jti: str, expires_at: float) -> bool:
        return await asyncio.to_thread(self._store.consume_token_id, jti, expires_at)


class CustomerTokenVerifier:
    """Verifies customer tokens with one configured algorithm and key."""

    def __init__(
        self, algorithm: str, key: Any, issuer: str, audience: str, max_ttl_s: int, leeway_s: int,
        used: UsedTokens | SharedUsedTokens | None = None,
    ) -> None:
        self._algorithm = algorithm
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._max_ttl_s = max_ttl_s
        self._leeway_s = leeway_s
        self._used = used or UsedTokens()

    @classmethod
    def from_key_file(cls, algorithm: str, path: Path, **kw: Any) -> CustomerTokenVerifier:
        data = path.read_bytes()
        if algorithm == "HS256":
            key: Any = data.strip()
            if len(key) < 32:
                raise ValueError("HS256 secret must be at least 32 bytes")
        else:
            key = serialization.load_pem_public_key(data)
        return cls(algorithm, key, **kw)

    def verify(self, token: str) -> CustomerClaims:
        if not isinstance(token, str) or len(token) > 8192:
            raise AuthError("token_invalid", "customer token is malformed")
        try:
            raw = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "customer token has expired") from None
        except jwt.InvalidTokenError:
            raise AuthError("token_invalid", "customer token is not valid") from None
        try:
            claims = CustomerClaims.model_validate(raw)
        except ValidationError:
            raise AuthError("token_invalid", "customer token claims are incomplete") from None
        if claims.exp - claims.iat > self._max_ttl_s:
            raise AuthError("token_invalid", "customer token lifetime exceeds the allowed maximum")
        if claims.iat > time.time() + self._leeway_s:
            raise AuthError("token_invalid", "customer token is issued in the future")
        return claims

    async def admit(self, token: str) -> CustomerClaims:
        """Verify a token and use it up: a customer token opens one connection."""
        claims = self.verify(token)
        if not await self._used.consume(claims.jti, claims.exp + self._leeway_s):
            raise AuthError("token_reused", "this customer token was already used; the app "
                            "must issue a new one (or resume with the session's secret)")
        return claims


class DevTokenIssuer:
    """Stands in for the bank backend in dev mode and for `vteller token issue`.

    Signs EdDSA tokens with a local key made on first run (0600).
    """

    def __init__(self, key: ed25519.Ed25519PrivateKey, issuer: str, audience: str) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def load_or_create(cls, keys_dir: Path, issuer: str, audience: str) -> DevTokenIssuer:
        path = keys_dir / DEV_TOKEN_KEY
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), None)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise ValueError(f"{path} is not an Ed25519 key")
        else:
            key = ed25519.Ed25519PrivateKey.generate()
            write_private(
                path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        return cls(key, issuer, audience)

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._key.public_key()

    def issue(
        self,
        customer_id: str,
        name: str,
        birth_year: int,
        segments: tuple[str, ...] = (),
        ref_photo: str | None = None,
        ttl_s: int = 600,
        now: float | None = None,
    ) -> str:
        now = int(now if now is not None else time.time())
        claims = {
            "sub": customer_id,
            "name": name,
            "birth_year": birth_year,
            "segments": list(segments),
            "ref_photo": ref_photo,
            "iat": now,
            "exp": now + ttl_s,
            "iss": self._issuer,
            "aud": self._audience,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA")
