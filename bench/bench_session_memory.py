"""Where the bytes of a held session go in kl2tp-lns (issue 13, memory per session).

Starts kl2tp-lns (null data plane, local users, CHAP + IPCP: `bench_scale.write_configs`)
under tracemalloc, brings N full calls up with ``kl2tp-lac --simulate`` and holds them; takes
one snapshot before the calls and one while all N are held (SIGUSR2 makes the LNS write a
snapshot), and prints the difference per held session by source line, and the RSS per held
session. ``--no-trace`` runs the LNS without tracemalloc (RSS only, what operators see).

Usage: python bench/bench_session_memory.py [--sessions 3000] [--tunnels 4] [--top 30]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from _util import machine
from bench_daemons import free_udp_port, rss_kb
from bench_scale import Lns, start_generator, wait_setup_done, write_configs

BIN = Path(sys.executable).parent

_TRACED_LNS = """
import gc, signal, sys, tracemalloc
tracemalloc.start()
def _dump(signum, frame):
    gc.collect()
    snap = tracemalloc.take_snapshot()
    snap.dump(sys.argv[1] + ".tmp")
    import os; os.replace(sys.argv[1] + ".tmp", sys.argv[1])
signal.signal(signal.SIGUSR2, _dump)
from kl2tp.cli import lns_main
sys.exit(lns_main(sys.argv[2:]))
"""


class TracedLns(Lns):
    """kl2tp-lns under tracemalloc: SIGUSR2 writes a snapshot to ``snapshot_path``."""

    def __init__(self, cfg: Path, port: int, sock: Path, log: Path, snapshot: Path) -> None:
        self.snapshot_path = snapshot
        # The snapshot's path goes first: the wrapper takes it off before kl2tp-lns's options.
        super().__init__(cfg, port, sock, log, [sys.executable, "-c", _TRACED_LNS, str(snapshot)])

    def snapshot(self) -> tracemalloc.Snapshot:
        self.snapshot_path.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 300
        while not self.snapshot_path.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the LNS wrote no snapshot")
            time.sleep(0.2)
        return tracemalloc.Snapshot.load(str(self.snapshot_path))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=3000, help="calls to bring up and hold")
    p.add_argument("--tunnels", type=int, default=4, help="tunnels")
    p.add_argument("--processes", type=int, default=1, help="generator processes")
    p.add_argument("--max-outstanding", type=int, default=200, help="calls in setup at once")
    p.add_argument("--top", type=int, default=30, help="source lines to print")
    p.add_argument("--no-trace", action="store_true", help="RSS only, no tracemalloc")
    args = p.parse_args(argv)

    print(f"# {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="kl2tp-mem-"))
    port = free_udp_port()
    lns_cfg, lac_cfg = write_configs(tmp, port=port, users=args.sessions)
    if args.no_trace:
        lns: Lns = Lns(lns_cfg, port, tmp / "lns.sock", tmp / "lns.log")
    else:
        lns = TracedLns(lns_cfg, port, tmp / "lns.sock", tmp / "lns.log", tmp / "snap")
    try:
        time.sleep(2)
        before = lns.snapshot() if isinstance(lns, TracedLns) else None
        rss0 = rss_kb(lns.proc.pid)
        lac, _ = start_generator(args, lac_cfg, tmp, 3600)
        try:
            up = wait_setup_done(lns, lac, args.sessions, every=3.0)
            held = up["sessions"]
            time.sleep(2)
            rss1 = rss_kb(lns.proc.pid)
            after = lns.snapshot() if isinstance(lns, TracedLns) else None
        finally:
            lac.send_signal(signal.SIGTERM)
            lac.wait(timeout=600)
    finally:
        lns.stop()
    print(f"held {held:,}: RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB, "
          f"{(rss1 - rss0) * 1024 / max(held, 1):,.0f} B per held session")  # fmt: skip
    if before is not None and after is not None:
        stats = after.compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"traced: {total / max(held, 1):,.0f} B per held session; by source line:")
        print(f"{'B/session':>10} {'objs/session':>12}  where")
        for s in stats[: args.top]:
            frame = s.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            if "site-packages" in frame.filename:
                where = f"{Path(frame.filename).parent.name}/{where}"
            per = max(held, 1)
            print(f"{s.size_diff / per:10.0f} {s.count_diff / per:12.2f}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
