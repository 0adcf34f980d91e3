"""Short-lived TURN credentials (the "TURN REST API" scheme coturn implements with
`use-auth-secret`): the server and the TURN server share a secret; each client gets a
username `<expiry>:<opaque id>` and the password base64(HMAC-SHA1(secret, username)),
so no long-lived TURN password ever reaches a phone, and a leaked one stops working
at its expiry. The opaque id is a keyed hash of the party, never its customer id (TURN
servers log usernames)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator

SECRET_MIN_CHARS = 32


class TurnConfig(BaseModel):
    """`[turn]` / VTELLER_TURN__*: a TURN server sharing `secret` (unset: none offered)."""

    model_config = {"frozen": True, "extra": "forbid"}

    urls: list[str] = Field(default_factory=list, description="e.g. turn:turn.bank.example:"
                            "3478?transport=udp, turns:turn.bank.example:5349?transport=tcp")
    secret: SecretStr | None = Field(None, description="coturn's static-auth-secret "
                                     f"(>= {SECRET_MIN_CHARS} characters)")
    ttl_s: int = Field(4 * 3600, ge=60, le=7 * 86400, description="credential lifetime: "
                       "longer than the longest call (a relay is refreshed with it)")

    @model_validator(mode="after")
    def _complete(self) -> TurnConfig:
        if bool(self.urls) != (self.secret is not None):
            raise ValueError("turn needs both urls and secret (or neither)")
        if self.secret is not None and len(self.secret.get_secret_value()) < SECRET_MIN_CHARS:
            raise ValueError(f"turn.secret needs at least {SECRET_MIN_CHARS} characters")
        for url in self.urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"turn.urls: {url!r} is not a turn: or turns: URL")
        return self

    def ice_server(self, party: str, now: float | None = None) -> dict[str, Any] | None:
        """The `iceServers` entry for one party, valid for `ttl_s` from now."""
        if self.secret is None:
            return None
        key = self.secret.get_secret_value().encode()
        who = hmac.new(key, b"vteller turn user|" + party.encode(), hashlib.sha256)
        expiry = int((time.time() if now is None else now) + self.ttl_s)
        username = f"{expiry}:{who.hexdigest()[:16]}"
        password = base64.b64encode(hmac.new(key, username.encode(), hashlib.sha1).digest())
        return {"urls": list(self.urls), "username": username, "credential": password.decode()}
