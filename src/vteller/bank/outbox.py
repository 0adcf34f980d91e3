"""Delivers the durable outbox to the bank's webhook: each node claims due events for a
short while (so two nodes never post one event at once), posts them, and marks them
delivered or due again after an exponential backoff. An event is written in the same
store as the decision it reports, so a crash between the two loses neither."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time

import structlog

from vteller.bank.webhook import BankWebhook, WebhookConfig
from vteller.observability import Metrics
from vteller.store import Store

log = structlog.get_logger("vteller.bank")
POLL_S = 1.0
BATCH = 20


class OutboxWorker:
    def __init__(self, store: Store, config: WebhookConfig, node: str,
                 metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._store = store
        self._config = config
        self._node = node
        self._hook = BankWebhook(config)
        self._task: asyncio.Task[None] | None = None
        self._next_retry = math.inf

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bank-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._hook.close()

    def _backoff(self, attempts: int) -> float:
        delay = min(self._config.retry_max_s, self._config.retry_base_s * 2 ** (attempts - 1))
        return delay * random.uniform(0.8, 1.0)  # spread retries of many events

    async def _run(self) -> None:
        while True:
            self._next_retry = math.inf
            try:
                await self.deliver_due()
            except Exception:  # noqa: BLE001 - the store may be down: try again later
                log.exception("outbox_round_failed")
            # new events are found by polling; a retry of this node's is not late
            await asyncio.sleep(min(POLL_S, max(0.0, self._next_retry - time.time())))

    async def deliver_due(self) -> int:
        """One round; returns how many were delivered."""
        claim_s = self._config.timeout_s * 2 + 5
        due = await asyncio.to_thread(self._store.claim_outbox, self._node, time.time(),
                                      claim_s, BATCH)
        delivered = 0
        for event_id, kind, payload, attempts in due:
            result = await self._hook.post(event_id, kind, json.loads(payload))
            attempts += 1
            outcome = "delivered" if result.ok else (
                "failed" if attempts >= self._config.max_attempts else "retry")
            if self._metrics is not None:
                self._metrics.bank_events.labels(result=outcome).inc()
            if result.ok:
                await asyncio.to_thread(self._store.outbox_delivered, event_id, time.time())
                delivered += 1
                log.info("bank_event_delivered", kind=kind, attempts=attempts)
            elif attempts >= self._config.max_attempts:
                await asyncio.to_thread(self._store.outbox_failed, event_id, attempts,
                                        result.error or "")
                log.error("bank_event_failed", kind=kind, attempts=attempts,
                          error=result.error)
            else:
                next_at = time.time() + self._backoff(attempts)
                self._next_retry = min(self._next_retry, next_at)
                await asyncio.to_thread(self._store.outbox_retry, event_id, attempts,
                                        next_at, result.error or "")
                log.warning("bank_event_retry", kind=kind, attempts=attempts,
                            error=result.error)
        return delivered
