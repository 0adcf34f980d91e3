"""Metrics (Prometheus) and structured logs (structlog, JSON). No PII, no secrets."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily


class Metrics:
    """All vteller metrics, in their own registry (several apps per test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("vteller_ws_connections", "Open signaling connections",
                                 ["role"], registry=r)
        self.errors = Counter("vteller_signaling_errors_total", "Typed errors sent", ["code"],
                              registry=r)
        self.calls = Counter("vteller_calls_total", "Calls by final outcome", ["outcome"],
                             registry=r)
        self.waiting = Gauge("vteller_queue_waiting", "Requests waiting for a teller", registry=r)
        self.answer_s = Histogram("vteller_answer_seconds", "Queue join to teller accept",
                                  buckets=(1, 3, 5, 10, 20, 30, 60, 120, 300), registry=r)
        self.logins = Counter("vteller_staff_logins_total", "Staff login attempts", ["result"],
                              registry=r)
        self.loop_lag = LoopLagMonitor(r)


class LoopLagMonitor:
    """Measures how late the event loop wakes a 100 ms timer; keeps the last minute.

    Exposed as ``vteller_event_loop_lag_seconds{quantile="0.5"|"0.99"|"max"}``.
    """

    INTERVAL_S = 0.1

    def __init__(self, registry: CollectorRegistry, window: int = 600) -> None:
        self.samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None
        registry.register(self)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.INTERVAL_S)
            self.samples.append(max(0.0, time.monotonic() - t0 - self.INTERVAL_S))

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def collect(self):  # type: ignore[no-untyped-def]
        g = GaugeMetricFamily("vteller_event_loop_lag_seconds",
                              "Event-loop lag over the last minute", labels=["quantile"])
        for label, value in (("0.5", self.quantile(0.5)), ("0.99", self.quantile(0.99)),
                             ("max", max(self.samples, default=0.0))):
            g.add_metric([label], value)
        yield g


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr; stdlib logging (aiohttp, aiortc) goes through the same output."""
    lvl = getattr(logging, level.upper())
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s", force=True)
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
