"""The bank backend, called by vteller: decisions (and later one-time codes) delivered
to a configured HTTPS webhook, signed with HMAC, retried with backoff from a durable
outbox, idempotent by event id."""

from vteller.bank.outbox import OutboxWorker
from vteller.bank.webhook import BankWebhook, WebhookConfig, sign, verify_signature

__all__ = ["BankWebhook", "OutboxWorker", "WebhookConfig", "sign", "verify_signature"]
