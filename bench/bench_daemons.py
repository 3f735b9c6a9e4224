"""The real daemons on loopback: kl2tp-lns (null data plane, local users, CHAP + IPCP) and
``kl2tp-lac --simulate N --rate R --json``; prints the LAC's summary and both processes' CPU.

Each ``[[lac.lns]]`` entry of the LAC config is one tunnel, so ``--tunnels T`` lists the same
LNS T times. ``--profile DIR`` runs both daemons under cProfile and writes ``DIR/lns.prof`` and
``DIR/lac.prof`` (read them with ``python -m pstats``); figures taken under the profiler are
slower than without it.

Usage: python bench/bench_daemons.py [-n 1000,5000] [--tunnels 1] [--rate 0] [--hold 0]
       [--secret S] [--profile DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _util import REPO, machine, table

BIN = Path(sys.executable).parent
PROFILED = Path(__file__).resolve().parent / "_profiled.py"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_configs(
    tmp: Path,
    *,
    tunnels: int,
    users: int,
    secret: str | None,
    port: int,
    queue_depth: int | None = None,
    workers: bool = True,
) -> tuple[Path, Path]:
    """The LNS's and the LAC's configs; ``workers`` False leaves out ``[l2tp] workers`` (an
    older LNS tree, ``--lns-src``, does not know the key)."""
    users_file = tmp / "users"
    users_file.write_text("".join(f"user{n} pass{n}\n" for n in range(1, users + 1)))
    secret_line = f'secret = "{secret}"' if secret else ""
    if queue_depth is not None:
        secret_line += f"\nqueue_depth = {queue_depth}"
    lns = tmp / "lns.toml"
    lns.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:{port}"
hostname = "bench-lns"
{"workers = 1" if workers else ""}
{secret_line}
idle_timeout = 5
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
"""
    )
    lac = tmp / "lac.toml"
    peers = f'\n[[lac.lns]]\naddress = "127.0.0.1:{port}"\n'
    lac.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "bench-lac"
{secret_line}
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lac.sock"}"
[subscriber]
auth = "chap"
[log]
# The load generator's two info lines per call cost it ~10% of its CPU.
level = "warning"
{peers}
"""
    )
    return lns, lac


def command(role: str, args: list[str], profile: Path | None) -> list[str]:
    if profile is None:
        return [str(BIN / f"kl2tp-{role}"), *args]
    return [sys.executable, str(PROFILED), str(profile / f"{role}.prof"), role, *args]


def source_env(src: Path | None) -> dict[str, str] | None:
    """The environment that makes a daemon import kl2tp/ and ppp/ from ``src`` (an older
    tree from ``git archive``), or None to use this checkout."""
    if src is None:
        return None
    return {**os.environ, "PYTHONPATH": str(src)}


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until something is bound to the LNS's UDP port."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"kl2tp-lns exited: {log.read_text()[-2000:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise SystemExit("kl2tp-lns did not start listening")


def cpu_of(pid: int) -> float:
    """utime + stime of a live process, seconds (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def sleeps_of(pid: int) -> int:
    """Times a live process's threads went to sleep (voluntary context switches): at a
    paced rate, its wake-ups. 0 once it is gone."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def rss_kb(pid: int) -> int:
    """Resident set size of a live process, KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def lac_summary(lac: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last JSON line ``kl2tp-lac --simulate --json`` printed."""
    lines = [line for line in lac.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"kl2tp-lac printed no summary (rc {lac.returncode}):\n{lac.stderr}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


class RssSampler(threading.Thread):
    """Samples a process's RSS every 50 ms and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_kb(self.pid))


def run_once(
    n: int,
    *,
    tunnels: int,
    rate: float,
    hold: float,
    secret: str | None,
    profile: Path | None,
    keep: Path | None,
    queue_depth: int | None = None,
    max_outstanding: int = 0,
    pyspy: Path | None = None,
    lns_src: Path | None = None,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kl2tp-bench-"))
    try:
        port = free_udp_port()
        lns_cfg, lac_cfg = write_configs(
            tmp,
            tunnels=tunnels,
            users=max(n, 1),
            secret=secret,
            port=port,
            queue_depth=queue_depth,
            workers=lns_src is None or (lns_src / "kl2tp/daemon/workers.py").exists(),
        )
        lns_log = tmp / "lns.log"
        with lns_log.open("w") as logf:
            lns = subprocess.Popen(
                command("lns", ["--config", str(lns_cfg)], profile),
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=source_env(lns_src),
            )
            try:
                wait_listening(port, lns, lns_log)
                lns_cpu0 = cpu_of(lns.pid)
                lns_sleeps0 = sleeps_of(lns.pid)
                rss0 = rss_kb(lns.pid)
                sampler = RssSampler(lns.pid)
                sampler.start()
                lac_args = [
                    "--config",
                    str(lac_cfg),
                    "--simulate",
                    str(n),
                    "--rate",
                    str(rate),
                    "--hold",
                    str(hold),
                    "--tunnels",
                    str(tunnels),
                    "--max-outstanding",
                    str(max_outstanding),
                    "--json",
                ]
                spy = None
                if pyspy is not None:
                    spy = subprocess.Popen(
                        [str(BIN / "py-spy"), "record", "--pid", str(lns.pid), "--format", "raw",
                         "--rate", "200", "--nonblocking", "--output", str(pyspy)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                t0 = time.monotonic()
                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                lac = subprocess.run(
                    command("lac", lac_args, profile),
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=REPO,
                )
                wall = time.monotonic() - t0
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                lns_cpu = cpu_of(lns.pid) - lns_cpu0
                lns_sleeps = sleeps_of(lns.pid) - lns_sleeps0
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                    spy.wait(timeout=60)
                sampler.stop.set()
                sampler.join()
            finally:
                stop(lns)
        summary = lac_summary(lac)
        summary["wall_s"] = wall
        summary["lac_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        summary["lns_cpu_s"] = lns_cpu
        summary["lns_wakeups"] = lns_sleeps
        summary["lns_rss_start_kb"] = rss0
        summary["lns_rss_peak_kb"] = sampler.peak
        return summary
    finally:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for f in tmp.iterdir():
                if f.is_file():
                    shutil.copy(f, keep / f.name)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", default="1000,5000", help="calls per run, comma separated")
    p.add_argument("--tunnels", type=int, default=1, help="tunnels the LAC opens")
    p.add_argument("--rate", type=float, default=0.0, help="calls/s to place; 0: unlimited")
    p.add_argument("--hold", type=float, default=0.0, help="seconds calls are held once all up")
    p.add_argument("--secret", default="bench", help="tunnel secret ('' for none)")
    p.add_argument(
        "--queue-depth", type=int, help="[l2tp] queue_depth for both daemons (default 256)"
    )
    p.add_argument(
        "--max-outstanding", type=int, default=0, help="LAC: most calls in setup at once (0: any)"
    )
    p.add_argument("--profile", type=Path, metavar="DIR", help="cProfile both daemons")
    p.add_argument(
        "--lns-src",
        type=Path,
        metavar="DIR",
        help="run the LNS from the kl2tp/ and ppp/ in DIR (e.g. an older tree); the LAC "
        "stays this checkout's",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="sample the LNS with py-spy (raw format) during the run; read it with "
        "bench/pyspy_top.py",
    )
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep configs and logs here")
    p.add_argument("--verbose", action="store_true", help="print each JSON summary")
    args = p.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"# daemons on loopback, null data plane  ({machine()})")
    print(
        f"# tunnels {args.tunnels}, rate {args.rate or 'unlimited'}, hold {args.hold}s, "
        f"secret {'yes' if args.secret else 'no'}, queue_depth {args.queue_depth or 256}, "
        f"max outstanding {args.max_outstanding or 'any'}" + (", PROFILED" if args.profile else "")
    )
    rows = []
    for n in (int(s) for s in args.n.split(",") if s):
        s = run_once(
            n,
            tunnels=args.tunnels,
            rate=args.rate,
            hold=args.hold,
            secret=args.secret or None,
            profile=args.profile,
            keep=args.keep,
            queue_depth=args.queue_depth,
            max_outstanding=args.max_outstanding,
            pyspy=args.py_spy,
            lns_src=args.lns_src,
        )
        if args.verbose:
            print(json.dumps(s))
        failed = sum(s["failed"].values())
        drops = {k: v for k, v in s.get("counters", {}).items() if "drop" in k and v}
        rows.append(
            (
                n,
                s["established"],
                failed,
                s["setup_ms"]["p50"],
                s["setup_ms"]["p99"],
                s["cps"],
                s["lac_cpu_s"],
                s["lns_cpu_s"],
                s["lns_cpu_s"] * 1000 / max(s["established"], 1),
                s["lns_wakeups"] / max(s["established"], 1),
                s["wall_s"],
                s["lns_rss_peak_kb"] / 1024,
                (s["lns_rss_peak_kb"] - s["lns_rss_start_kb"]) / max(s["established"], 1),
                ",".join(f"{k}={v}" for k, v in sorted(drops.items())) or "-",
            )
        )
    print(
        table(
            ("N", "up", "failed", "p50 ms", "p99 ms", "calls/s", "LAC cpu s", "LNS cpu s",
             "LNS ms/call", "LNS wakes/call", "wall s", "LNS RSS MB", "KB/call", "LAC drops"),
            rows,
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
