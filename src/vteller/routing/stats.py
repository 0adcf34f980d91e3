"""Service statistics over a rolling window: service level, speed of answer, handle
time, abandonment, answer rate, per priority class. Times are passed in (seconds
on any monotonic clock), so the simulator and the live server share this code.

Definitions (contact-centre conventions):
- service level = answered within T / (answered + abandoned after T)
- ASA = mean wait of answered requests; AHT = mean talk + wrap-up time
- abandonment rate = abandoned / (answered + abandoned); answer rate = answered / (answered + abandoned)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    at: float
    pclass: str
    answered: bool
    wait_s: float


class ServiceStats:
    def __init__(self, threshold_s: float, default_handle_s: float, window_s: float = 3600) -> None:
        self.threshold_s = threshold_s
        self.window_s = window_s
        self._outcomes: deque[Outcome] = deque()
        self._handles: deque[tuple[float, float]] = deque()
        self._default_handle_s = default_handle_s

    def _trim(self, now: float) -> None:
        while self._outcomes and self._outcomes[0].at < now - self.window_s:
            self._outcomes.popleft()
        while self._handles and self._handles[0][0] < now - self.window_s:
            self._handles.popleft()

    def answered(self, now: float, pclass: str, wait_s: float) -> None:
        self._outcomes.append(Outcome(now, pclass, True, wait_s))
        self._trim(now)

    def abandoned(self, now: float, pclass: str, wait_s: float) -> None:
        self._outcomes.append(Outcome(now, pclass, False, wait_s))
        self._trim(now)

    def handled(self, now: float, handle_s: float) -> None:
        self._handles.append((now, handle_s))
        self._trim(now)

    def offered(self, now: float, interval_s: float) -> int:
        """Calls answered or abandoned in the last `interval_s` (at most the window)."""
        return sum(1 for o in self._outcomes if o.at >= now - interval_s)

    @property
    def aht_measured(self) -> bool:
        """False while `aht()` is the configured default (no call handled in the window)."""
        return bool(self._handles)

    def aht(self) -> float:
        if not self._handles:
            return self._default_handle_s
        return sum(h for _, h in self._handles) / len(self._handles)

    def summary(self, now: float, pclass: str | None = None) -> dict[str, float | int | None]:
        self._trim(now)
        rows = [o for o in self._outcomes if pclass is None or o.pclass == pclass]
        answered = [o.wait_s for o in rows if o.answered]
        abandoned = [o.wait_s for o in rows if not o.answered]
        total = len(answered) + len(abandoned)
        in_sl = sum(1 for w in answered if w <= self.threshold_s)
        sl_base = len(answered) + sum(1 for w in abandoned if w > self.threshold_s)
        waits = sorted(answered)
        return {
            "answered": len(answered),
            "abandoned": len(abandoned),
            "service_level": in_sl / sl_base if sl_base else None,
            "asa_s": sum(answered) / len(answered) if answered else None,
            "wait_p90_s": waits[int(0.9 * (len(waits) - 1))] if waits else None,
            "abandon_rate": len(abandoned) / total if total else None,
            "answer_rate": len(answered) / total if total else None,
            "aht_s": self.aht(),
            "aht_measured": self.aht_measured,
        }

    def restore(self, rows: list[tuple[object, ...]], wall_now: float, now: float) -> None:
        """Rebuild the window from stored call records (a restart or a failover must not
        empty the dashboard): rows of (queued_at, answered_at, ended_at, state,
        end_reason, priority_class) in wall time. A call moved to another node (handed
        over, or its node stopped) is not an outcome: the call that continues it is.
        Handle time here is talk time (the record has no wrap-up end)."""
        events: list[tuple[float, str, str, float]] = []
        for queued, answered, ended, state, reason, pclass in rows:
            cls = str(pclass or "standard")
            if answered is not None:
                events.append((float(answered), "answered", cls,  # type: ignore[arg-type]
                               float(answered) - float(queued)))  # type: ignore[arg-type]
                if ended is not None:
                    events.append((float(ended), "handled", cls,  # type: ignore[arg-type]
                                   float(ended) - float(answered)))  # type: ignore[arg-type]
            elif state == "abandoned" and ended is not None \
                    and reason not in ("handed_over", "node_stopped"):
                events.append((float(ended), "abandoned", cls,  # type: ignore[arg-type]
                               float(ended) - float(queued)))  # type: ignore[arg-type]
        for at, kind, cls, value in sorted(events):
            mono = now - (wall_now - at)
            if kind == "handled":
                self.handled(mono, value)
            elif kind == "answered":
                self.answered(mono, cls, value)
            else:
                self.abandoned(mono, cls, value)
