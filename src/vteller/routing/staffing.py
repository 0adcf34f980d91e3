"""Staffing forecast by Erlang C: how many tellers an interval needs to answer the
target share of calls within the threshold, and how many to schedule once shrinkage
(breaks, training, absence) takes its share.

Traffic A = calls per interval x handle time / interval length (Erlangs). With N
tellers (N > A), the chance that a call waits is Erlang C(N, A), and the service level
is SL = 1 - C(N, A) x exp(-(N - A) x T / AHT) for threshold T. Erlang C is computed
from the Erlang B recursion B(k) = A B(k-1) / (k + A B(k-1)), which stays stable for
hundreds of tellers: C = N B / (N - A (1 - B)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_TELLERS = 10_000


def erlang_c(tellers: int, traffic: float) -> float:
    """The probability that a call has to wait (1.0 when the tellers cannot keep up)."""
    if tellers <= traffic:
        return 1.0
    b = 1.0
    for k in range(1, tellers + 1):
        b = traffic * b / (k + traffic * b)
    return tellers * b / (tellers - traffic * (1 - b))


def service_level(tellers: int, traffic: float, handle_s: float, threshold_s: float) -> float:
    """The share of calls answered within `threshold_s`."""
    if tellers <= traffic:
        return 0.0
    return 1 - erlang_c(tellers, traffic) * math.exp(
        -(tellers - traffic) * threshold_s / handle_s)


@dataclass(frozen=True)
class Staffing:
    traffic: float  # Erlangs
    tellers: int  # on the phones, answering
    scheduled: int  # on the rota, before shrinkage
    service_level: float  # expected with `tellers`


def tellers_needed(calls: float, interval_s: float, handle_s: float, target: float,
                   threshold_s: float, shrinkage: float) -> Staffing:
    """The fewest tellers whose expected service level meets `target`."""
    if not (0 < target < 1 and 0 <= shrinkage < 1 and interval_s > 0 and handle_s > 0):
        raise ValueError("target in (0, 1), shrinkage in [0, 1), positive times")
    traffic = calls * handle_s / interval_s
    if calls <= 0:
        return Staffing(0.0, 0, 0, 1.0)
    n = max(1, math.floor(traffic) + 1)
    while (sl := service_level(n, traffic, handle_s, threshold_s)) < target:
        n += 1
        if n > MAX_TELLERS:
            raise ValueError(f"more than {MAX_TELLERS} tellers needed")
    return Staffing(traffic, n, math.ceil(n / (1 - shrinkage) - 1e-9), sl)
