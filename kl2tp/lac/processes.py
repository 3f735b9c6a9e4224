"""``kl2tp-lac --simulate N --processes P``: the load generator spread over P processes.

One Python process tops out at one core, and the simulator runs the same PPP glue as the
LNS, so a single generator process, not the LNS, is the limit long before 100,000 calls.
The parent starts P copies of itself (``--part I/P``), each with its own UDP port, its own
share of the tunnels and a contiguous slice of the call numbers (subscriber names stay
unique), and the rate and the cap on calls in setup divided between them. It takes no part
in the calls: it relays signals, lines up the holds and merges the summaries.

The protocol between parent and part is a line each way over the part's stdout and stdin:

- the part prints ``{"part": I, "up": ...}`` once every call of its slice is up or failed,
  then waits for a line on stdin (or its end) before it starts its hold, so all P holds
  begin together: "all N calls up at once" holds across processes as in one;
- at the end it prints its summary with ``raw`` (:meth:`SimulationResult.raw`), from which
  the parent computes one summary over all calls (percentiles over every call, the setup
  span from the earliest start to the latest establishment on the machine's monotonic
  clock, CPU of all parts summed), with the per-part figures under ``parts``.

SIGTERM/SIGINT to the parent end every part's hold early (the calls are cleared and
reported, as with one process).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from types import FrameType
from typing import Any

import attrs

log = logging.getLogger("kl2tp.daemon")

UP_KEY = "up"
"""The key of a part's "my calls are up" line."""

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a process gets when its parent dies."""

_CHILD = "import sys; from kl2tp.cli import lac_main; sys.exit(lac_main())"


@attrs.frozen
class Part:
    """What part ``index`` of ``of`` places."""

    index: int
    """0-based."""
    of: int
    """Number of parts."""
    first: int
    """Number of its first call (calls are numbered from 1)."""
    count: int
    """Calls it places."""
    first_tunnel: int
    """Index of its first tunnel among all parts' (tunnel ``k`` goes to LNS ``k`` modulo
    their number, as with one process)."""
    tunnels: int
    """Tunnels it opens."""
    rate: float
    """Calls per second it starts (0: as fast as possible)."""
    max_outstanding: int
    """Calls it has in setup at once (0: any)."""


def split(total: int, parts: int, index: int) -> tuple[int, int]:
    """The (offset, size) of share ``index`` when ``total`` is cut into ``parts`` shares whose
    sizes differ by at most one."""
    base, extra = divmod(total, parts)
    offset = index * base + min(index, extra)
    return offset, base + (1 if index < extra else 0)


def part_of(
    index: int, of: int, *, calls: int, tunnels: int, rate: float, max_outstanding: int
) -> Part:
    """Part ``index`` of ``of``: its slice of the calls and of the tunnels (at least one
    each), its share of the rate and of the setup cap."""
    offset, count = split(calls, of, index)
    tunnel_offset, share = split(max(tunnels, of), of, index)
    cap = 0
    if max_outstanding > 0:
        cap = max(1, split(max_outstanding, of, index)[1])
    return Part(index, of, 1 + offset, count, tunnel_offset, share, rate / of if rate else 0.0, cap)


def parse_part(text: str) -> tuple[int, int]:
    """``"I/P"`` -> (I, P), with 0 <= I < P; ValueError otherwise."""
    index_text, _, of_text = text.partition("/")
    index, of = int(index_text), int(of_text)
    if not 0 <= index < of:
        raise ValueError(f"part {text!r}: needs 0 <= I < P")
    return index, of


def end_with_parent() -> None:
    """A part: get SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``), so a parent
    killed with SIGKILL leaves no part placing calls; SIGTERM clears them as usual."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def merge(parts: Sequence[dict[str, Any] | None], requested: Sequence[int]) -> dict[str, Any]:
    """One summary from every part's (``None``: the part died without one; its calls count
    as failed, ``generator process exited``)."""
    from kl2tp.daemon.service import SimulationResult

    raws: list[dict[str, Any]] = []
    for summary, asked in zip(parts, requested, strict=True):
        if summary is None:
            raws.append(
                {
                    "requested": asked,
                    "established": 0,
                    "failed": {"generator process exited": asked},
                    "setup_ms": [],
                    "first_started": None,
                    "last_established": None,
                    "cleared_by_peer": 0,
                    "tunnels": 0,
                    "cpu_s": None,
                }
            )
        else:
            raws.append(summary["raw"])
    out = SimulationResult.merged(raws).summary()
    counters: Counter[str] = Counter()
    selection: dict[str, int] = {}
    for summary in parts:
        if summary is None:
            continue
        counters.update(summary.get("counters", {}))
        for key, value in summary.get("selection", {}).items():
            if isinstance(value, int):
                selection[key] = selection.get(key, 0) + value
    out["counters"] = dict(counters)
    if selection:
        out["selection"] = selection
    out["processes"] = len(parts)
    out["parts"] = [
        None
        if summary is None
        else {
            "requested": summary["requested"],
            "established": summary["established"],
            "tunnels": summary["tunnels"],
            "cpu_s": summary.get("cpu_s"),
        }
        for summary in parts
    ]
    return out


class _Child:
    """One part: its process and the lines it printed."""

    def __init__(self, argv: list[str], index: int, requested: int) -> None:
        self.index = index
        self.requested = requested
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.summary: dict[str, Any] | None = None
        self.up = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if UP_KEY in obj and "part" in obj:
                self.up.set()
            else:
                self.summary = obj
        self.up.set()  # exited: nothing more to wait for

    def go(self) -> None:
        stdin = self.proc.stdin
        if stdin is None:
            return
        try:
            stdin.write("go\n")
            stdin.flush()
            stdin.close()
        except OSError:  # the part is gone; its reader reports that
            pass


def run_parts(argv: Sequence[str], parts: Sequence[Part]) -> dict[str, Any]:
    """Start one ``kl2tp-lac`` per part (``argv``: the parent's own options, which the
    part's ``--part`` and ``--json`` follow), line up their holds, wait, return the merged
    summary. SIGTERM/SIGINT meanwhile are passed on to every part."""
    children: list[_Child] = []

    def relay(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)

    old = {sig: signal.signal(sig, relay) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for part in parts:
            child_argv = [
                sys.executable,
                "-c",
                _CHILD,
                *argv,
                "--part",
                f"{part.index}/{part.of}",
                "--json",
            ]
            children.append(_Child(child_argv, part.index, part.count))
        for child in children:
            child.up.wait()
        log.info("%d generator processes have their calls up: holding", len(children))
        for child in children:
            child.go()
        for child in children:
            child.proc.wait()
            child.reader.join()
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return merge([c.summary for c in children], [c.requested for c in children])
