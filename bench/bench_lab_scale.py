"""Kernel sessions at scale, in the lab guest: the real daemons, the kernel data plane.

``kl2tp-lac --simulate N`` (kernel data plane: a kernel session and a pppN per subscriber)
dials kl2tp-lns (kernel data plane: a kernel session and a pppN per call, addressed and
routed) across the lab's three namespaces (tests/lab/labdaemons.py). Prints, as text and as
one JSON line:

- setup: time until all N are up on both sides, CPU of each daemon per session;
- the kernel's share of that: ``kernel_cost`` from each daemon's ``show summary`` (time in
  L2TP genl, rtnetlink and the PPPoL2TP socket + /dev/ppp calls, per session), against the
  daemon's CPU per session;
- limits: pppN interfaces and open fds of each daemon (and its RLIMIT_NOFILE), the guest
  kernel's memory per session (MemAvailable before vs with all up, both sides' sessions);
- a sample of the sessions pass traffic (one echo request out of each of ``--ping`` pppN);
- teardown of all at once (``kl2tpctl clear all`` on the LNS: StopCCN on every tunnel, every
  session with it): time until neither namespace holds an L2TP tunnel, session or pppN, the
  LNS's tables empty and its pool whole.

The daemons inherit the bench's RLIMIT_NOFILE hard limit, raised here to ``--nofile`` (what an
operator sets with systemd's LimitNOFILE=); each daemon raises its soft limit to that itself.

Runs inside the guest only (memory is the guest's: raise KL2TP_LAB_MEM for large N):

    KL2TP_LAB_MEM=3G KL2TP_LAB_TIMEOUT=3000 \\
        tests/lab/run -- .venv/bin/python bench/bench_lab_scale.py -n 5000

Benchmarks print figures; nothing here asserts timing.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import resource
import sys
import tempfile
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "lab"))

from labdaemons import (  # noqa: E402
    BIN,
    LNS,
    PPP_LOCAL,
    SUB,
    Daemon,
    cpu_seconds,
    ctl,
    kernel_objects,
    lac_config,
    lns_config,
    nofile,
    ping_every_interface,
    ppp_addresses,
    start_lns,
    three_namespaces,
    wait_for,
)
from labutil import run as run_cmd  # noqa: E402


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def meminfo_kb(key: str) -> int:
    """A /proc/meminfo figure (MemAvailable, MemTotal) in kB."""
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/meminfo")


def ppp_count(ns: str) -> int:
    """pppN interfaces in ``ns`` (one-line output: cheaper than ``kernel_objects`` at 5,000)."""
    return len(run_cmd("ip", "-n", ns, "-o", "link", "show", "type", "ppp").stdout.splitlines())


def l2tp_count(ns: str) -> int:
    """L2TP tunnels and sessions in ``ns``."""
    out = run_cmd("ip", "-n", ns, "l2tp", "show", "session").stdout
    out += run_cmd("ip", "-n", ns, "l2tp", "show", "tunnel").stdout
    return sum(1 for line in out.splitlines() if line.startswith(("Tunnel ", "Session ")))


def slowly(predicate: Any) -> Any:
    """``predicate`` polled every 2 s (each poll lists thousands of objects in the guest)."""

    def poll() -> Any:
        time.sleep(2)
        return predicate()

    return poll


def per_session(cost: dict[str, dict[str, float]], ops: tuple[str, ...], n: int) -> dict[str, Any]:
    """Microseconds per session of ``ops`` summed, by kind of kernel call."""
    out: dict[str, Any] = {}
    for kind in ("genl", "rtnl", "ppp", "cpu", "total"):
        out[kind] = round(sum(cost[op].get(f"{kind}_us", 0) for op in ops) / max(n, 1), 1)
    out["kernel"] = round(out["genl"] + out["rtnl"] + out["ppp"], 1)
    return out


def run(args: argparse.Namespace, tmp: pathlib.Path) -> dict[str, Any]:
    n = args.sessions
    users = {f"user{i}": f"pass{i}" for i in range(1, n + 1)}
    # Room for every subscriber (the labdaemons default /23 holds 510).
    lns = start_lns(tmp, lns_config(tmp, users=users, pool="10.64.0.0/16"))
    lns_sock, lac_sock = tmp / "lns.sock", tmp / "lac.sock"
    lac_cfg = lac_config(tmp, mode="simulate", subscriber="rate = 0")
    mem0 = meminfo_kb("MemAvailable")
    lns_cpu0 = cpu_seconds(lns.proc.pid)
    t0 = time.monotonic()
    lac = Daemon(
        SUB,
        [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg), "--simulate", str(n), "--hold", "100000",
         "--tunnels", str(args.tunnels), "--max-outstanding", str(args.max_outstanding),
         "--json"],
        tmp / "lac.log",
    )  # fmt: skip
    out: dict[str, Any] = {"sessions": n, "tunnels": args.tunnels}
    try:
        last = [-1.0, 0, time.monotonic()]  # last print, last count, when it last grew

        def settled() -> bool:
            # One summary (O(tunnels) in the daemon) every 2 s: polling `show sessions`
            # would cost the LNS O(N) per poll and slow the run it measures.
            time.sleep(2)
            summary = ctl(lns_sock, "show", "summary")
            up = summary["sessions"]["by_state"].get("established", 0)
            now = time.monotonic()
            if now - last[0] >= 30:
                last[0] = now
                print(f"  {now - t0:6.0f} s: {up} established on the LNS", flush=True)
            if up != last[1]:
                last[1], last[2] = up, now
            # All up, or no progress for --stall s (calls the generator gave up on under
            # load are not redialled: the run goes on with those that are up).
            return bool(up >= n or now - last[2] > args.stall)

        wait_for(settled, f"{n} sessions established on the LNS", bound=args.bound)
        setup = last[2] - t0
        up = int(last[1])
        out["established"] = up
        if up < n:
            out["lac_summary_when_settled"] = {
                k: v
                for k, v in ctl(lac_sock, "show", "summary").items()
                if k in ("sessions", "tunnels", "counters", "events")
            }
        wait_for(slowly(lambda: ppp_count(SUB) >= up), f"{up} pppN on the LAC side",
                 bound=args.bound)  # fmt: skip
        n = up
        lns_cpu = cpu_seconds(lns.proc.pid) - lns_cpu0
        lac_cpu = cpu_seconds(lac.proc.pid)
        mem1 = meminfo_kb("MemAvailable")
        lns_summary = ctl(lns_sock, "show", "summary")
        lac_summary = ctl(lac_sock, "show", "summary")
        lns_k, sub_k = kernel_objects(LNS), kernel_objects(SUB)
        out["setup_s"] = round(setup, 1)
        out["setup_per_s"] = round(n / setup, 1)
        out["lns_cpu_ms_per_session"] = round(lns_cpu * 1000 / n, 2)
        out["lac_cpu_ms_per_session"] = round(lac_cpu * 1000 / n, 2)
        out["kernel_objects"] = {
            ns: {k: len(v) for k, v in objs.items()}
            for ns, objs in (("lns", lns_k), ("lac", sub_k))
        }
        out["guest_kb_per_session_both_sides"] = round((mem0 - mem1) / n, 1)
        out["lns_fds"], out["lac_fds"] = open_fds(lns.proc.pid), open_fds(lac.proc.pid)
        out["lns_nofile"] = "{}/{}".format(*nofile(lns.proc.pid))
        out["lac_nofile"] = "{}/{}".format(*nofile(lac.proc.pid))
        out["lns_rss_kb"] = _rss_kb(lns.proc.pid)
        setup_ops = ("open_session", "session_up")
        for name, summary in (("lns", lns_summary), ("lac", lac_summary)):
            cost = summary.get("kernel_cost", {})
            out[f"{name}_kernel_cost_setup_us_per_session"] = per_session(cost, setup_ops, n)
            out[f"{name}_data_rx"] = summary["counters"].get("data_rx", 0)
            out[f"{name}_counters"] = {
                k: v for k, v in summary["counters"].items() if v and not k.startswith("rx_")
            }
            out[f"{name}_events"] = summary.get("events", {})
        out["lns_kernel_share_of_cpu"] = round(
            out["lns_kernel_cost_setup_us_per_session"]["kernel"]
            / 1000
            / max(out["lns_cpu_ms_per_session"], 1e-9),
            3,
        )

        # A sample of the subscribers pass traffic through both kernels.
        interfaces = ppp_addresses(SUB)
        sample = dict(random.Random(1).sample(sorted(interfaces.items()), min(args.ping, n)))
        answered = ping_every_interface(SUB, PPP_LOCAL, sample, wait=60)
        out["ping_answered"] = f"{len(answered)}/{len(sample)}"

        # All at once: the operator clears everything on the LNS (StopCCN on every tunnel).
        t1 = time.monotonic()
        ctl(lns_sock, "clear", "all", "--yes")
        for ns in (LNS, SUB):
            wait_for(slowly(lambda ns=ns: ppp_count(ns) == l2tp_count(ns) == 0),
                     f"nothing left in {ns}", bound=args.bound)  # fmt: skip
            out[f"teardown_s_{'lns' if ns == LNS else 'lac'}"] = round(time.monotonic() - t1, 1)
        empty = {"tunnels": [], "sessions": [], "ppp": {}, "ppp_routes": []}
        out["left_after_teardown"] = {
            ns: objs for ns in (LNS, SUB) if (objs := kernel_objects(ns)) != empty
        }
        after = ctl(lns_sock, "show", "summary")
        out["lns_after"] = {
            "tunnels": after["tunnels"]["total"],
            "sessions": after["sessions"]["total"],
            "pools": after["ppp"].get("pools", after["ppp"].get("addresses")),
        }
        cost = after.get("kernel_cost", {})
        out["lns_kernel_cost_teardown_us_per_session"] = per_session(cost, ("close_session",), n)
        out["lns_kernel_cost"] = cost
        try:
            result = json.loads(lac.output().strip().splitlines()[-1])
            out["lac_result"] = {
                k: result.get(k) for k in ("established", "failed", "report") if k in result
            }
        except (ValueError, IndexError):
            out["lac_result"] = "no JSON summary"
        out["lns_log_open_files"] = [
            line.split("kl2tp.kernel", 1)[-1].strip()
            for line in lns.output().splitlines()
            if "open files" in line
        ]
    finally:
        try:
            out["lac_exit"] = lac.stop()
        finally:
            lac.kill()
            out["lns_exit"] = lns.stop()
    return out


def _rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", "--sessions", type=int, default=5000)
    parser.add_argument("--tunnels", type=int, default=1)
    parser.add_argument("--max-outstanding", type=int, default=200)
    parser.add_argument("--ping", type=int, default=200, help="sessions pinged through")
    parser.add_argument("--bound", type=float, default=2400, help="seconds any wait may take")
    parser.add_argument("--nofile", type=int, default=1 << 20, help="hard RLIMIT_NOFILE")
    parser.add_argument(
        "--stall",
        type=float,
        default=120,
        help="stop waiting once the LNS's count has not grown for this long",
    )
    parser.add_argument("--keep", type=pathlib.Path, help="keep the daemons' logs here")
    args = parser.parse_args()
    if not os.environ.get("KL2TP_LAB"):
        print("run this inside the lab guest: tests/lab/run -- .venv/bin/python " + sys.argv[0])
        return 2
    # The operator's part (LimitNOFILE=): the daemons inherit this hard limit.
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, args.nofile))
    print(f"guest: {os.cpu_count()} cpu, MemTotal {meminfo_kb('MemTotal')} kB, "
          f"kernel {os.uname().release}", flush=True)  # fmt: skip
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kl2tp-scale-", dir=args.keep))
    with three_namespaces():
        out = run(args, tmp)
    print(json.dumps(out, sort_keys=True))
    lns_c = out.get("lns_kernel_cost_setup_us_per_session", {})
    print(
        f"{out['sessions']} sessions: up in {out.get('setup_s')} s ({out.get('setup_per_s')}/s), "
        f"down in {out.get('teardown_s_lac')} s; LNS CPU {out.get('lns_cpu_ms_per_session')} ms "
        f"per session, of which kernel calls {lns_c.get('kernel', 0) / 1000:.2f} ms "
        f"(genl {lns_c.get('genl')} us, rtnl {lns_c.get('rtnl')} us, ppp {lns_c.get('ppp')} us)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
