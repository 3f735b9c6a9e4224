"""N sessions in one kl2tp-lns (null data plane), held with Hello and LCP echo at their
defaults, then torn down (issue 14, item 2).

``kl2tp-lac --simulate N --processes P --tunnels K`` (full calls: LCP, CHAP, IPCP) brings
the calls up; once the LNS has every call through setup the hold begins (the parts start
their holds together), and the script measures on the LNS, from /proc and ``kl2tpctl show
summary``:

- setup: the generator's report (setup rate, p50/p99), the LNS's CPU per call;
- memory: the LNS's RSS per held session (RSS with all up minus RSS before the run);
- the hold: the LNS's CPU share of one core over the steady window (the hold minus a settle
  time at each end, no ``show`` request inside it), L2TP retransmissions and LCP echo
  timeouts in the window (both should be 0), sessions lost, and the PPP frames the LNS
  received against what the echo timers alone should produce (2 per session per
  ``lcp_echo_interval``: its own requests' replies and the subscriber's requests);
- teardown: the time from the first session going to the last, and whether the LNS ends
  with no tunnel, no session and a whole pool.

Usage: python bench/bench_scale.py [--sessions 100000] [--tunnels 32] [--processes 2]
       [--hold 300] [--max-outstanding 800] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _util import REPO, machine, table
from bench_daemons import cpu_of, free_udp_port, rss_kb, wait_listening

BIN = Path(sys.executable).parent
ECHO_INTERVAL = 30.0
"""``[ppp] lcp_echo_interval``'s default, on both sides."""


def write_configs(
    tmp: Path,
    *,
    port: int,
    users: int,
    echo_interval: float | None = None,
    max_negotiating: int = 0,
    workers: int = 1,
) -> tuple[Path, Path]:
    """An LNS (null data plane, local users, CHAP + IPCP, a pool far bigger than the run,
    Hello and LCP echo at their defaults) and a LAC that dials it."""
    users_file = tmp / "users"
    users_file.write_text("".join(f"user{n} pass{n}\n" for n in range(1, users + 1)))
    echo = "" if echo_interval is None else f"lcp_echo_interval = {echo_interval}"
    lns = tmp / "lns.toml"
    lns.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:{port}"
hostname = "scale-lns"
secret = "bench"
max_negotiating_sessions = {max_negotiating}
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
{echo}
"""
    )
    lac = tmp / "lac.toml"
    lac.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "scale-lac"
secret = "bench"
[dataplane]
kind = "null"
[subscriber]
auth = "chap"
[log]
level = "warning"
[ppp]
{echo}
[[lac.lns]]
address = "127.0.0.1:{port}"
"""
    )
    return lns, lac


class Lns:
    """A kl2tp-lns started from a config, asked through kl2tpctl."""

    def __init__(
        self, cfg: Path, port: int, sock: Path, log: Path, command: Sequence[str] = ()
    ) -> None:
        """``command``: how to start it, ``--config CFG`` excluded (default: kl2tp-lns)."""
        self.sock = sock
        self.log = log
        with log.open("w") as logf:
            self.proc = subprocess.Popen(
                [*(command or [str(BIN / "kl2tp-lns")]), "--config", str(cfg)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        wait_listening(port, self.proc, log)
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def summary(self) -> dict[str, Any]:
        out = subprocess.run(
            [str(BIN / "kl2tpctl"), "--socket", str(self.sock), "show", "summary", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise SystemExit(f"kl2tpctl show summary: {out.stderr}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def pids(self) -> list[int]:
        """The daemon's processes: the supervisor and its workers (``[l2tp] workers``)."""
        return [self.proc.pid, *part_pids(self.proc)]

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += cpu_of(pid)
        return total

    def rss_kb(self) -> int:
        return sum(rss_kb(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def figures(s: dict[str, Any]) -> dict[str, int]:
    """What the scale runs watch in a ``show summary``."""
    counters = s["counters"]
    ppp = s.get("ppp", {})
    pool = ppp.get("pool", {})
    return {
        "tunnels": s["tunnels"]["total"],
        "sessions": s["sessions"]["total"],
        "in_setup": counters.get("sessions_in_setup", 0) + counters.get("sessions_negotiating", 0),
        "retransmits": counters.get("retransmits", 0),
        "data_rx": counters.get("data_rx", 0),
        "echo_timeouts": int(ppp.get("echo_timeouts", 0)),
        "pool_in_use": int(pool.get("in_use", 0)),
        "pool_size": int(pool.get("size", 0)),
    }


def part_pids(proc: subprocess.Popen[Any]) -> list[int]:
    """A process's children: the generator's parts, the LNS's workers (none once gone)."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in children]


def udp_rcvbuf_errors() -> int:
    """The machine's UDP RcvbufErrors (every process's: a datagram lost to a full socket)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [line for line in lines if line and line[0] == "Udp:"]
    return int(udp[1][udp[0].index("RcvbufErrors")])


def lac_cpu(proc: subprocess.Popen[str]) -> float:
    """CPU seconds of the generator and its parts (live processes, from /proc)."""
    total = 0.0
    for pid in [proc.pid, *part_pids(proc)]:
        with contextlib.suppress(OSError):
            total += cpu_of(pid)
    return total


def start_lac(
    lac_cfg: Path,
    tmp: Path,
    sessions: int,
    *,
    tunnels: int,
    processes: int,
    hold: float,
    max_outstanding: int,
    rate: float = 0.0,
    name: str = "lac",
    extra: Sequence[str] = (),
) -> tuple[subprocess.Popen[str], Path]:
    """``kl2tp-lac --simulate``; its JSON summary goes to ``tmp/NAME.json``."""
    out = tmp / f"{name}.json"
    with out.open("w") as stdout, (tmp / f"{name}.log").open("w") as stderr:
        proc = subprocess.Popen(
            [
                str(BIN / "kl2tp-lac"),
                "--config",
                str(lac_cfg),
                "--simulate",
                str(sessions),
                "--processes",
                str(processes),
                "--tunnels",
                str(tunnels),
                "--rate",
                str(rate),
                "--hold",
                str(hold),
                "--max-outstanding",
                str(max_outstanding),
                "--json",
                *extra,
            ],
            stdout=stdout,
            stderr=stderr,
            text=True,
            cwd=REPO,
        )
    return proc, out


def start_generator(
    args: argparse.Namespace, lac_cfg: Path, tmp: Path, hold: float
) -> tuple[subprocess.Popen[str], Path]:
    """`start_lac` with the command line's ``--sessions``, ``--tunnels``, ``--processes``
    and ``--max-outstanding``."""
    return start_lac(
        lac_cfg,
        tmp,
        args.sessions,
        tunnels=args.tunnels,
        processes=args.processes,
        hold=hold,
        max_outstanding=args.max_outstanding,
    )


def lac_result(out: Path) -> dict[str, Any]:
    lines = [line for line in out.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the generator printed no summary; see {out.with_suffix('.log')}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def wait_setup_done(
    lns: Lns,
    lac: subprocess.Popen[str],
    target: int,
    *,
    every: float = 5.0,
    limit: float = float("inf"),
) -> dict[str, int]:
    """Poll the LNS until no call is in setup and the session count stops moving (or reaches
    ``target``), or ``limit`` seconds have passed; prints progress."""
    t0 = time.monotonic()
    last = -1
    still = 0
    peak = 0
    while True:
        time.sleep(every)
        f = figures(lns.summary())
        peak = max(peak, f["sessions"])
        f["peak"] = peak
        print(
            f"#   {time.monotonic() - t0:6.0f} s  sessions {f['sessions']:,}  "
            f"in setup {f['in_setup']:,}  LNS RSS {lns.rss_kb() / 1024:,.0f} MB",
            flush=True,
        )
        if f["in_setup"] == 0 and (f["sessions"] >= target or f["sessions"] == last):
            still += 1
            if f["sessions"] >= target or still >= 3:
                return f
        else:
            still = 0
        last = f["sessions"]
        if lac.poll() is not None or time.monotonic() - t0 > limit:
            return f
        if peak >= 1000 and f["sessions"] < 0.9 * peak:
            print(f"# collapse: {f['sessions']:,} sessions after a peak of {peak:,}", flush=True)
            f["collapsed"] = 1
            return f


def wait_torn_down(lns: Lns, held: int, timeout: float) -> tuple[dict[str, int], float | None]:
    """Poll (every second, from before the hold ends) until the LNS has no tunnel, no
    session and nothing leased from the pool; the time from the first poll that saw fewer
    than ``held`` sessions, or None if it never emptied within ``timeout``."""
    start: float | None = None
    first = held
    deadline = time.monotonic() + timeout
    while True:
        f = figures(lns.summary())
        now = time.monotonic()
        if start is None and f["sessions"] < first:
            start = now
        if f["tunnels"] == 0 and f["sessions"] == 0 and f["pool_in_use"] == 0:
            return f, (now - start) if start is not None else 0.0
        if now > deadline:
            return f, None
        time.sleep(1.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kl2tp-scale-"))
    try:
        port = free_udp_port()
        lns_cfg, lac_cfg = write_configs(
            tmp,
            port=port,
            users=args.sessions,
            echo_interval=args.lcp_echo_interval,
            workers=args.workers,
        )
        lns = Lns(lns_cfg, port, tmp / "lns.sock", tmp / "lns.log")
        try:
            # The idle LNS's own cost (its timers, no tunnel), for the steady figure below.
            i_cpu, i_wall = lns.cpu(), time.monotonic()
            time.sleep(args.settle / 2)
            idle_pct = 100 * (lns.cpu() - i_cpu) / (time.monotonic() - i_wall)
            rss0, cpu0 = lns.rss_kb(), lns.cpu()
            rcvbuf0 = udp_rcvbuf_errors()
            t0 = time.monotonic()
            lac, lac_out = start_generator(args, lac_cfg, tmp, args.hold)
            try:
                up = wait_setup_done(
                    lns,
                    lac,
                    args.sessions,
                    every=5.0 if args.sessions <= 20_000 else 15.0,
                    limit=args.setup_limit,
                )
                t_up = time.monotonic()
                if up.get("collapsed") or up["sessions"] < args.sessions:
                    # Not all up: stop placing calls, clear what is up, measure the teardown.
                    lac.send_signal(signal.SIGTERM)
                    down, teardown_s = wait_torn_down(lns, up["sessions"], timeout=1800)
                    lac.wait(timeout=900)
                    return {
                        "sessions": args.sessions,
                        "up": up["sessions"],
                        "peak": up["peak"],
                        "setup_wall_s": t_up - t0,
                        "lns_rss_up_mb": lns.rss_kb() / 1024,
                        "lac": lac_result(lac_out),
                        "teardown_s": teardown_s,
                        "end": down,
                        "lns_kb_per_session": 0.0,
                        "collapsed": True,
                    }
                setup_cpu = lns.cpu() - cpu0
                rss_up = lns.rss_kb()
                lac_rss = sum(rss_kb(pid) for pid in part_pids(lac))
                # The steady window: the hold minus a settle time at each end; no request to
                # the LNS inside it.
                settle = min(args.settle, args.hold / 4)
                time.sleep(settle)
                before = figures(lns.summary())
                spy = None
                if args.py_spy is not None:
                    spy = subprocess.Popen(
                        [str(BIN / "py-spy"), "record", "--pid", str(lns.proc.pid), "--format",
                         "raw", "--rate", "100", "--nonblocking", "--output", str(args.py_spy)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                a_cpu, a_lac, a_wall = lns.cpu(), lac_cpu(lac), time.monotonic()
                time.sleep(max(1.0, args.hold - 3 * settle))
                b_cpu, b_lac, b_wall = lns.cpu(), lac_cpu(lac), time.monotonic()
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                    spy.wait(timeout=120)
                after = figures(lns.summary())
                window = b_wall - a_wall
                down, teardown_s = wait_torn_down(lns, after["sessions"], timeout=3 * settle + 900)
                lac.wait(timeout=600)
            finally:
                if lac.poll() is None:
                    lac.send_signal(signal.SIGTERM)
                    lac.wait(timeout=600)
            total_cpu = lns.cpu() - cpu0
            rcvbuf = udp_rcvbuf_errors() - rcvbuf0
            rss_end = lns.rss_kb()
        finally:
            lns.stop()
        result = lac_result(lac_out)
        held = up["sessions"]
        interval = args.lcp_echo_interval if args.lcp_echo_interval is not None else ECHO_INTERVAL
        expected_rx = 2 * held * window / interval if interval else 0.0
        return {
            "sessions": args.sessions,
            "up": held,
            "lac": result,
            "setup_wall_s": t_up - t0,
            "lns_setup_cpu_ms_per_call": setup_cpu * 1000 / max(held, 1),
            "lns_rss0_mb": rss0 / 1024,
            "lns_rss_up_mb": rss_up / 1024,
            "lns_kb_per_session": (rss_up - rss0) / max(held, 1),
            "lac_rss_mb": lac_rss / 1024,
            "window_s": window,
            "lns_cpu_pct": 100 * (b_cpu - a_cpu) / window,
            "lns_idle_cpu_pct": idle_pct,
            "lac_cpu_pct": 100 * (b_lac - a_lac) / window,
            "retransmits": after["retransmits"] - before["retransmits"],
            "echo_timeouts": after["echo_timeouts"] - before["echo_timeouts"],
            "lost": before["sessions"] - after["sessions"],
            "lost_since_up": held - after["sessions"],
            "frames_rx": after["data_rx"] - before["data_rx"],
            "frames_expected": expected_rx,
            "teardown_s": teardown_s,
            "end": down,
            "lns_rss_end_mb": rss_end / 1024,
            "lns_total_cpu_s": total_cpu,
            "udp_rcvbuf_errors": rcvbuf,
        }
    finally:
        keep_and_remove(tmp, args.keep)


def keep_and_remove(tmp: Path, keep: Path | None) -> None:
    """Copy a run's configs, logs and summaries (not the users file) to ``keep``, if given,
    and remove the run's directory."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for kept in tmp.iterdir():
            if kept.is_file() and kept.name != "users":
                shutil.copy(kept, keep / kept.name)
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=100_000, help="calls to bring up and hold")
    p.add_argument("--tunnels", type=int, default=32, help="tunnels (at most ~60,000 calls each)")
    p.add_argument("--processes", type=int, default=2, help="generator processes")
    p.add_argument(
        "--workers", type=int, default=1, help="the LNS's [l2tp] workers (CPU and RSS summed)"
    )
    p.add_argument("--hold", type=float, default=300.0, help="seconds held once all are up")
    p.add_argument("--settle", type=float, default=15.0, help="seconds left out at each end")
    p.add_argument("--max-outstanding", type=int, default=800, help="calls in setup at once")
    p.add_argument(
        "--setup-limit", type=float, default=float("inf"), help="seconds to wait for setup"
    )
    p.add_argument(
        "--lcp-echo-interval",
        type=float,
        help="[ppp] lcp_echo_interval on both sides (default: the default, 30 s)",
    )
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep configs, logs, summaries")
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="sample the LNS with py-spy (raw) over the steady window; read with pyspy_top.py",
    )
    p.add_argument("--verbose", action="store_true", help="print the whole result as JSON")
    args = p.parse_args(argv)
    if args.hold < 2 * args.settle + 5:
        # The steady window is the hold minus a settle at each end, and the sessions are
        # counted every few seconds: a shorter hold ends before either sees them all up.
        p.error(f"--hold must be at least 2 * --settle + 5 s ({2 * args.settle + 5:g} s)")
    print(f"# scale: one kl2tp-lns, null data plane  ({machine()})")
    print(
        f"# {args.sessions:,} sessions, {args.tunnels} tunnels, LNS workers {args.workers}, "
        f"{args.processes} generator "
        f"processes, at most {args.max_outstanding} in setup, hold {args.hold:g} s, Hello "
        + (
            "and LCP echo at their defaults"
            if args.lcp_echo_interval is None
            else f"at its default, LCP echo every {args.lcp_echo_interval:g} s"
        ),
        flush=True,
    )
    r = run(args)
    if args.verbose:
        print(json.dumps(r))
    rep = r["lac"]["report"]
    if r.get("collapsed"):
        end = r["end"]
        print(
            f"# NOT ALL UP: peak {r['peak']:,} sessions, {r['up']:,} at the stop after "
            f"{r['setup_wall_s']:.0f} s; teardown {r['teardown_s']} s, at the end tunnels "
            f"{end['tunnels']}, sessions {end['sessions']}, pool in use {end['pool_in_use']}"
        )
        print("# failures: " + ", ".join(f"{k}={v}" for k, v in sorted(rep["failures"].items())))
        print(f"# generator counters: {json.dumps(r['lac'].get('counters', {}))}")
        return 1
    print(
        table(
            ("up", "failed", "setup s", "calls/s", "p50 ms", "p99 ms", "LNS ms/call",
             "LAC ms/call", "LNS KB/session", "LNS RSS MB", "LAC RSS MB"),
            [(r["up"], rep["sessions-failed"], r["setup_wall_s"], rep["setup-rate"],
              rep["setup-time-p50"], rep["setup-time-p99"], r["lns_setup_cpu_ms_per_call"],
              rep.get("cpu-ms-per-session") or 0.0, r["lns_kb_per_session"],
              r["lns_rss_up_mb"], r["lac_rss_mb"])],
        )
    )  # fmt: skip
    print()
    print(
        table(
            ("window s", "LNS CPU % of a core", "idle LNS %", "LAC CPU %", "retransmits",
             "echo timeouts", "lost", "frames rx", "expected"),
            [(r["window_s"], r["lns_cpu_pct"], r["lns_idle_cpu_pct"], r["lac_cpu_pct"],
              r["retransmits"],
              r["echo_timeouts"], r["lost"], r["frames_rx"], r["frames_expected"])],
        )
    )  # fmt: skip
    print()
    end = r["end"]
    print(
        table(
            ("teardown s", "tunnels", "sessions", "pool in use", "pool size", "flapped",
             "LNS RSS after MB"),
            [("never" if r["teardown_s"] is None else r["teardown_s"], end["tunnels"],
              end["sessions"], end["pool_in_use"], end["pool_size"],
              rep["sessions-flapped"], r["lns_rss_end_mb"])],
        )
    )  # fmt: skip
    print(f"# UDP RcvbufErrors during the run (whole machine): {r['udp_rcvbuf_errors']:,}")
    drops = {k: v for k, v in r["lac"].get("counters", {}).items() if v and "drop" in k}
    if drops:
        print("# generator drops: " + ", ".join(f"{k}={v}" for k, v in sorted(drops.items())))
    failures = rep.get("failures") or {}
    if failures:
        print("# failures: " + ", ".join(f"{k}={v}" for k, v in sorted(failures.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
