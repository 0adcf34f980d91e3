"""Metrics (Prometheus) and structured logs (structlog, JSON). No PII, no secrets."""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
