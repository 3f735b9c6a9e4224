"""Small helpers shared by the bench scripts: timing, memory, table printing.

Benchmarks print figures; they assert nothing about timing.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = Path(os.environ.get("KL2TP_BENCH_SRC", REPO))
"""Where kl2tp/ and ppp/ are imported from: the repository, or KL2TP_BENCH_SRC (e.g. an
older tree from ``git archive``, to compare before and after a change)."""
if str(SOURCE) not in sys.path:
    sys.path.insert(0, str(SOURCE))


def machine() -> str:
    """One line naming the interpreter and machine the figures come from."""
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} cpus, {platform.machine()}, {platform.system()} {platform.release()}"
    )


class Stopwatch:
    """Accumulates the perf_counter time of the blocks run under ``with sw:`` (cheap enough to
    wrap every core call of one side, to split a run's time between LAC and LNS)."""

    __slots__ = ("_t0", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t0


class CpuWatch:
    """Process CPU time and wall time of the block run under ``with cw:``."""

    __slots__ = ("_cpu0", "_wall0", "cpu", "wall")

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def __enter__(self) -> CpuWatch:
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += time.process_time() - self._cpu0
        self.wall += time.perf_counter() - self._wall0


@contextmanager
def no_gc() -> Iterator[None]:
    """Run a timed block with the cyclic GC off (collected before), as a long-lived daemon
    mostly sees it; the figures are then about the code, not about GC pauses."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def best_of(repeat: int, fn: Callable[[], float]) -> float:
    """The smallest of `repeat` runs of fn (which returns seconds)."""
    return min(fn() for _ in range(repeat))


def per_call_us(fn: Callable[[], object], *, min_time: float = 0.2, repeat: int = 5) -> float:
    """Microseconds per call of fn: best of `repeat` batches of at least `min_time` s each."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time / 4:
            break
        n *= 4
    n = max(1, int(n * (min_time / max(elapsed, 1e-9))))
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n)
    return min(runs) * 1e6


@contextmanager
def traced_memory() -> Iterator[Callable[[], int]]:
    """tracemalloc running; yields a function returning the bytes currently traced."""
    gc.collect()
    tracemalloc.start()
    try:

        def current() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        yield current
    finally:
        tracemalloc.stop()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, right-aligned numbers."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
