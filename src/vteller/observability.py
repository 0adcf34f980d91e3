"""Metrics (Prometheus) and structured logs (structlog, JSON). No PII, no secrets."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily


class Metrics:
    """All vteller metrics, in their own registry (several apps per test process).
    Exposed with a `node` label on every sample (one scrape target per node)."""

    def __init__(self, node: str = "") -> None:
        self.node = node
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
        self.appointments = Counter("vteller_appointments_total", "Video appointments booked, "
                                    "cancelled and kept", ["event"], registry=r)
        self.enrollments = Counter("vteller_reference_uploads_total",
                                   "Reference photo uploads by result", ["result"], registry=r)
        self.identity_verdicts = Counter("vteller_identity_verdicts_total",
                                         "Face verification verdicts", ["verdict"], registry=r)
        self.liveness_results = Counter("vteller_liveness_results_total",
                                        "Liveness check results", ["state"], registry=r)
        self.bank_events = Counter("vteller_bank_events_total", "Bank webhook deliveries "
                                   "(delivered, retry, failed: given up)", ["result"],
                                   registry=r)
        self.loop_lag = LoopLagMonitor(r)
        self.service = ServiceCollector(r)


    def exposition(self) -> bytes:
        """The Prometheus text format, each sample labelled with this node."""
        return generate_latest(_NodeLabelled(self.registry, self.node))  # type: ignore[arg-type]


class _NodeLabelled:
    """A registry seen with `node="..."` added to every sample."""

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self._registry = registry
        self._node = node

    def collect(self) -> Any:
        for metric in self._registry.collect():  # fresh objects on every collection
            metric.samples = [s._replace(labels={**s.labels, "node": self._node})
                              for s in metric.samples]
            yield metric


class LoopLagMonitor:
    """Measures how late the event loop wakes a 100 ms timer; keeps the last minute.

    Exposed as ``vteller_event_loop_lag_seconds{quantile="0.5"|"0.99"|"max"}`` and, for
    any window a scraper chooses (the difference of two scrapes), as the histogram
    ``vteller_event_loop_delay_seconds``.
    """

    INTERVAL_S = 0.1
    BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0,
                 2.0, 5.0)

    def __init__(self, registry: CollectorRegistry, window: int = 600) -> None:
        self.samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None
        registry.register(self)
        self.histogram = Histogram("vteller_event_loop_delay_seconds",
                                   "How late the event loop woke a 100 ms timer",
                                   buckets=self.BUCKETS_S, registry=registry)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.INTERVAL_S)
            lag = max(0.0, time.monotonic() - t0 - self.INTERVAL_S)
            self.samples.append(lag)
            self.histogram.observe(lag)

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


class ServiceCollector:
    """Queue and service figures on /metrics, from the same source as the dashboard."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.source: Any = None  # set to a callable returning the dashboard message
        registry.register(self)

    def collect(self):  # type: ignore[no-untyped-def]
        if self.source is None:
            return
        board = self.source()
        queue = GaugeMetricFamily("vteller_queue_by_class", "Waiting requests by class",
                                  labels=["pclass"])
        for pclass, n in board.queue.items():
            queue.add_metric([pclass], n)
        yield queue
        tellers = GaugeMetricFamily("vteller_tellers", "Tellers by state", labels=["state"])
        counts: dict[str, int] = {}
        for t in board.tellers:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        for state, n in counts.items():
            tellers.add_metric([state], n)
        yield tellers
        yield GaugeMetricFamily("vteller_longest_wait_seconds", "Longest current wait",
                                value=board.longest_wait_s)
        for key, name, text in (
                ("service_level", "vteller_service_level", "Answered within threshold (1 h)"),
                ("asa_s", "vteller_asa_seconds", "Average speed of answer (1 h)"),
                ("aht_s", "vteller_aht_seconds", "Average handle time (1 h)"),
                ("abandon_rate", "vteller_abandon_rate", "Abandoned / offered (1 h)"),
                ("answer_rate", "vteller_answer_rate", "Answered / offered (1 h)")):
            value = board.service.get(key)
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)


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
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
