"""Routing time: wall-clock seconds. Enqueue times, teller idle-since and decline memory
are compared across processes and, in a cluster, across machines, so they cannot use a
process's monotonic clock; nodes keep their clocks in step with NTP (an error of a few
milliseconds shifts a wait by as much). Durations inside one process (ring and wrap-up
timers, service statistics windows) stay on the monotonic clock."""

from __future__ import annotations

import time


def now() -> float:
    return time.time()
