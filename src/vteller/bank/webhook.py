"""One signed POST to the bank's webhook.

Signature: header `Vteller-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">` with the shared secret (the receiver rejects old `t` to stop replays);
`Idempotency-Key: <event id>` is the same on every retry of one event, so the bank
applies each event once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel, Field, SecretStr, model_validator

SIGNATURE_HEADER = "Vteller-Signature"
MAX_SKEW_S = 300


class WebhookConfig(BaseModel):
    """`[bank]` / VTELLER_BANK__*: the bank backend's webhook (unset: nothing is sent)."""

    model_config = {"frozen": True, "extra": "forbid"}

    webhook_url: str | None = Field(None, pattern=r"^https://[^\s/]+(/\S*)?$",
                                    description="HTTPS only: decisions carry customer ids")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key, >= 32 chars")
    webhook_ca_file: Path | None = Field(None, description="PEM CA bundle of the bank's "
                                         "internal CA (default: the system's)")
    timeout_s: float = Field(10.0, gt=0, le=120)
    retry_base_s: float = Field(2.0, gt=0, le=600, description="first retry after this; "
                                "doubles per attempt")
    retry_max_s: float = Field(600.0, gt=0, le=86400)
    max_attempts: int = Field(50, ge=1, le=1000, description="then the event is kept as "
                              "failed (metrics, log) for an operator to replay")
    otp_digits: int = Field(6, ge=4, le=8, description="one-time codes (second factor)")
    otp_ttl_s: float = Field(300.0, ge=30, le=1800)
    otp_attempts: int = Field(3, ge=1, le=10, description="wrong entries allowed per code")
    otp_codes_per_call: int = Field(3, ge=1, le=10, description="codes a teller may "
                                    "request in one call (each one is an SMS)")

    @model_validator(mode="after")
    def _secret_with_url(self) -> WebhookConfig:
        if self.webhook_url and (self.webhook_secret is None
                                 or len(self.webhook_secret.get_secret_value()) < 32):
            raise ValueError("webhook_url needs a webhook_secret of at least 32 characters")
        return self

    @property
    def enabled(self) -> bool:
        return self.webhook_url is not None


def sign(body: bytes, secret: str, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify_signature(header: str, body: bytes, secret: str, now: float,
                     max_skew_s: float = MAX_SKEW_S) -> bool:
    """What a receiver checks (the tests' receiver uses it too)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        at = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - at) > max_skew_s:
        return False
    return hmac.compare_digest(sign(body, secret, at), header)


@dataclass(frozen=True)
class Delivery:
    ok: bool
    error: str | None = None  # short, no payload: it is logged


class BankWebhook:
    def __init__(self, config: WebhookConfig) -> None:
        assert config.webhook_url and config.webhook_secret
        self._url = config.webhook_url
        self._secret = config.webhook_secret.get_secret_value()
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._ssl = ssl.create_default_context(
            cafile=str(config.webhook_ca_file) if config.webhook_ca_file else None)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, event_id: str, kind: str, payload: dict[str, Any]) -> Delivery:
        body = json.dumps({"id": event_id, "type": kind, "data": payload},
                          separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": event_id,
                   SIGNATURE_HEADER: sign(body, self._secret, int(time.time()))}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._url, data=body, headers=headers,
                                          ssl=self._ssl, allow_redirects=False) as r:
                if 200 <= r.status < 300:
                    return Delivery(True)
                return Delivery(False, f"HTTP {r.status}")
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            return Delivery(False, type(exc).__name__)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
