"""Routing simulation benchmark: `uv run python -m tests.bench.routing_sim` (~5 s).
Same as `uv run vteller sim`. Prints per-class waits, service level and abandonment
for the policy and for FIFO on the same arrivals, and decision latency."""

from vteller.routing.report import run

if __name__ == "__main__":
    run()
