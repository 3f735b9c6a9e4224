"""A latency histogram kept as plain counts: O(log buckets) per observation, no lock, no
clock, nothing but numbers, so any layer (the session code, the RADIUS client) can keep one
and the metrics endpoint can read it at scrape time without touching what was measured."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

SETUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) for call setup times: a local call on loopback takes a few ms, a
RADIUS-authenticated one tens, a retransmitted one seconds."""

AAA_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) for one AAA request/reply round trip."""


class Histogram:
    """Counts of observations by upper bound (the last slot is +Inf), their sum and count.

    Args:
        bounds: increasing upper bounds, without +Inf.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be increasing")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        """Observations per bucket (not cumulative): ``counts[i]`` are those <= ``bounds[i]``
        and > ``bounds[i-1]``; the last one, those above every bound."""
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) for every bound and +Inf, as Prometheus wants."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def summary(self) -> dict[str, object]:
        """JSON-friendly figures for ``kl2tpctl show summary``."""
        return {
            "count": self.count,
            "sum": round(self.sum, 6),
            "buckets": {_label(b): n for b, n in self.cumulative()},
        }


def _label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"
