"""kl2tp-lns with ``[l2tp] workers = 1`` and ``= 2`` under the same load generator on this
machine: calls/s and the LNS's CPU per call (supervisor and workers together).

Each run starts a fresh kl2tp-lns (null data plane, local users, CHAP + IPCP) and one
``kl2tp-lac --simulate N --rate 0`` spreading the calls over T tunnels, at most M in setup at
once; the runs alternate between the worker counts and the medians are printed, with the
ratio 2 workers / 1 worker. The load generator shares the machine's cores with the LNS: on a
2-core machine it competes with the workers, which is what the figures then show.

Usage: python bench/bench_workers.py [-n 2000] [--tunnels 16] [--max-outstanding 200]
       [--repeat 3] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _util import REPO, machine, median, table
from bench_daemons import cpu_of, free_udp_port, lac_summary, stop, wait_listening

BIN = Path(sys.executable).parent


def write_configs(tmp: Path, port: int, workers: int, users: int) -> tuple[Path, Path]:
    users_file = tmp / "users"
    users_file.write_text("".join(f"user{n} pass{n}\n" for n in range(1, users + 1)))
    lns = tmp / "lns.toml"
    lns.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:{port}"
hostname = "bench-lns"
idle_timeout = 5
workers = {workers}
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lns.sock"}"
[aaa]
users_file = "{users_file}"
[ppp]
auth = ["chap"]
pool = "10.64.0.0/10"
local_address = "10.0.0.1"
[log]
level = "warning"
"""
    )
    lac = tmp / "lac.toml"
    lac.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "bench-lac"
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lac.sock"}"
[subscriber]
auth = "chap"
[log]
level = "warning"
[[lac.lns]]
address = "127.0.0.1:{port}"
"""
    )
    return lns, lac


def lns_pids(sock: Path, supervisor: int) -> list[int]:
    """The supervisor and its workers (just the one process with ``workers = 1``)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(
            [str(BIN / "kl2tpctl"), "--socket", str(sock), "show", "summary", "--json"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            workers = json.loads(out.stdout).get("workers")
            if workers is None:
                return [supervisor]
            if all(w["up"] for w in workers):
                return [supervisor, *(w["pid"] for w in workers)]
        time.sleep(0.2)
    raise SystemExit("kl2tp-lns did not come up")


def run_once(n: int, workers: int, tunnels: int, outstanding: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kl2tp-bench-workers-") as name:
        tmp = Path(name)
        port = free_udp_port()
        lns_cfg, lac_cfg = write_configs(tmp, port, workers, n)
        log = tmp / "lns.log"
        with log.open("w") as logf:
            lns = subprocess.Popen(
                [str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            try:
                wait_listening(port, lns, log)
                pids = lns_pids(tmp / "lns.sock", lns.pid)
                cpu0 = sum(cpu_of(pid) for pid in pids)
                lac = subprocess.run(
                    [
                        str(BIN / "kl2tp-lac"),
                        "--config",
                        str(lac_cfg),
                        "--simulate",
                        str(n),
                        "--rate",
                        "0",
                        "--hold",
                        "0",
                        "--tunnels",
                        str(tunnels),
                        "--max-outstanding",
                        str(outstanding),
                        "--json",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=REPO,
                )
                cpu = sum(cpu_of(pid) for pid in pids) - cpu0
            finally:
                stop(lns)
    summary = lac_summary(lac)
    established = summary["established"]
    return {
        "workers": workers,
        "established": established,
        "cps": summary["cps"],
        "lns_cpu_s": cpu,
        "lns_ms_per_call": cpu * 1000.0 / established if established else float("nan"),
        "lac_ms_per_call": summary.get("cpu_ms_per_call"),
        "p50_ms": summary["setup_ms"]["p50"],
        "p99_ms": summary["setup_ms"]["p99"],
        "failed": sum(summary["failed"].values()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="calls per run (default 2000)")
    p.add_argument("--tunnels", type=int, default=16, help="tunnels (default 16)")
    p.add_argument(
        "--max-outstanding", type=int, default=200, help="calls in setup at once (default 200)"
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per worker count (default 3)")
    p.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    args = p.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    print(machine())
    print(
        f"{args.n} calls, {args.tunnels} tunnels, at most {args.max_outstanding} in setup, "
        f"{args.repeat} alternating runs per worker count"
    )
    runs: dict[int, list[dict[str, Any]]] = {w: [] for w in counts}
    for r in range(args.repeat):
        for w in counts:
            result = run_once(args.n, w, args.tunnels, args.max_outstanding)
            runs[w].append(result)
            print(f"run {r + 1} workers={w}: {json.dumps(result)}", flush=True)
    keys = ("cps", "lns_ms_per_call", "lac_ms_per_call", "p50_ms", "p99_ms", "failed")
    rows = []
    for w in counts:
        rows.append([w, *(round(median([float(x[k] or 0) for x in runs[w]]), 3) for k in keys)])
    print(table(["workers", *keys], rows))
    if len(counts) >= 2:
        base, other = rows[0], rows[-1]
        print(
            f"ratio workers={counts[-1]} / workers={counts[0]}: "
            f"calls/s {other[1] / base[1]:.2f}x, LNS CPU per call {other[2] / base[2]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
