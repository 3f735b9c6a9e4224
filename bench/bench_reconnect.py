"""Mass reconnect: N sessions up, the LAC killed (SIGKILL: no StopCCN, no CDN) and started
again, every subscriber redialling at once (issue 14, item 2).

The first ``kl2tp-lac --simulate N --processes P`` brings N calls up and holds them; the
script kills it and its parts, starts the same command again and measures, on the LNS
(``kl2tpctl show tunnels`` / ``show summary``) and in the new generator's report:

- the time from the restart until all N calls are up again on new tunnels (wall clock,
  polled every second) and the generator's own setup figures (rate, p50/p99);
- refusals and failures by reason (the generator's failure names; the LNS's setup
  counters);
- how long the LNS keeps the dead tunnels and their sessions (until Hello goes unanswered
  or LCP echo times out, at their defaults), the peak of sessions and pool leases while both
  generations are present, and that the LNS is empty once all is cleared.

After the restart every subscriber dials at once (``--max-outstanding 0``); the LNS admits
``--max-negotiating`` calls at a time (``[l2tp] max_negotiating_sessions``) and refuses the
rest with a CDN (result 4), and a refused subscriber redials after ~``--redial`` seconds
(jittered) until it is up: the refusals by reason are the generator's ``redials``.

Usage: python bench/bench_reconnect.py [--sessions 20000] [--tunnels 16] [--processes 2]
       [--max-outstanding 0] [--max-negotiating 200] [--redial 2] [--redial-max S]
       [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _util import machine, table
from bench_daemons import free_udp_port
from bench_scale import (
    BIN,
    Lns,
    figures,
    keep_and_remove,
    lac_result,
    part_pids,
    start_lac,
    udp_rcvbuf_errors,
    wait_setup_done,
    write_configs,
)


def ctl_json(lns: Lns, *args: str) -> Any:
    out = subprocess.run(
        [str(BIN / "kl2tpctl"), "--socket", str(lns.sock), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise SystemExit(f"kl2tpctl {' '.join(args)}: {out.stderr}")
    return json.loads(out.stdout)


def kill_generator(lac: subprocess.Popen[str]) -> None:
    """SIGKILL the parts and the parent: the LAC vanishes without a word to the LNS."""
    for pid in part_pids(lac):
        with_signal(pid, signal.SIGKILL)
    lac.kill()
    lac.wait()


def with_signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kl2tp-reconnect-"))
    try:
        port = free_udp_port()
        lns_cfg, lac_cfg = write_configs(
            tmp, port=port, users=args.sessions, max_negotiating=args.max_negotiating
        )
        lns = Lns(lns_cfg, port, tmp / "lns.sock", tmp / "lns.log")
        common = {"tunnels": args.tunnels, "processes": args.processes}
        try:
            first, _ = start_lac(
                lac_cfg,
                tmp,
                args.sessions,
                hold=3600,
                name="lac1",
                max_outstanding=args.first_outstanding,
                **common,
            )
            try:
                up = wait_setup_done(lns, first, args.sessions)
                print(f"# {up['sessions']:,} up; killing the generator", flush=True)
                old_ports = {t["peer_address"] for t in ctl_json(lns, "show", "tunnels")}
            finally:
                kill_generator(first)
            rcvbuf0 = udp_rcvbuf_errors()
            before = ctl_json(lns, "show", "summary")
            t_restart = time.monotonic()
            second, second_out = start_lac(
                lac_cfg,
                tmp,
                args.sessions,
                hold=args.hold,
                name="lac2",
                max_outstanding=args.max_outstanding,
                extra=["--redial", str(args.redial)]
                + ([] if args.redial_max is None else ["--redial-max", str(args.redial_max)]),
                **common,
            )
            all_up: float | None = None
            old_gone: float | None = None
            peak_sessions = peak_pool = 0
            try:
                while second.poll() is None:
                    time.sleep(1.0)
                    tunnels = ctl_json(lns, "show", "tunnels")
                    now = time.monotonic() - t_restart
                    new = sum(t["sessions"] for t in tunnels if t["peer_address"] not in old_ports)
                    old = [t for t in tunnels if t["peer_address"] in old_ports]
                    f = figures(ctl_json(lns, "show", "summary"))
                    peak_sessions = max(peak_sessions, f["sessions"])
                    peak_pool = max(peak_pool, f["pool_in_use"])
                    if int(now) % 10 == 0:
                        print(
                            f"#   {now:6.0f} s  new sessions {new:,}  old tunnels {len(old)} "
                            f"({sum(t['sessions'] for t in old):,} sessions)  "
                            f"in setup {f['in_setup']:,}",
                            flush=True,
                        )
                    if all_up is None and new >= up["sessions"] and f["in_setup"] == 0:
                        all_up = now
                    if old_gone is None and not old:
                        old_gone = now
                    if all_up is not None and old_gone is not None:
                        break
                second.send_signal(signal.SIGTERM)  # end the hold: clear and report
                second.wait(timeout=900)
            finally:
                if second.poll() is None:
                    kill_generator(second)
            end = figures(ctl_json(lns, "show", "summary"))
            deadline = time.monotonic() + 300
            while (end["sessions"] or end["tunnels"]) and time.monotonic() < deadline:
                time.sleep(2.0)
                end = figures(ctl_json(lns, "show", "summary"))
            after = ctl_json(lns, "show", "summary")
        finally:
            lns.stop()
        return {
            "sessions": args.sessions,
            "up_before": up["sessions"],
            "all_up_s": all_up,
            "old_gone_s": old_gone,
            "peak_sessions": peak_sessions,
            "peak_pool": peak_pool,
            "lac": lac_result(second_out),
            "echo_timeouts": after["ppp"].get("echo_timeouts", 0)
            - before["ppp"].get("echo_timeouts", 0),
            "lns_setup": after.get("setup", {}),
            "lns_refused": after["ppp"].get("logins_refused", {}),
            "end": end,
            "udp_rcvbuf_errors": udp_rcvbuf_errors() - rcvbuf0,
        }
    finally:
        keep_and_remove(tmp, args.keep)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=20_000, help="calls up before the restart")
    p.add_argument("--tunnels", type=int, default=16, help="tunnels per generator run")
    p.add_argument("--processes", type=int, default=2, help="generator processes")
    p.add_argument(
        "--first-outstanding", type=int, default=100, help="calls in setup while filling up"
    )
    p.add_argument(
        "--max-outstanding",
        type=int,
        default=0,
        help="calls in setup at once after the restart (0: all at once)",
    )
    p.add_argument("--redial", type=float, default=2.0, help="a refused call redials after ~S")
    p.add_argument(
        "--redial-max",
        type=float,
        help="each refusal of a call doubles its redial pause up to ~S (default: fixed)",
    )
    p.add_argument(
        "--max-negotiating",
        type=int,
        default=200,
        help="the LNS's [l2tp] max_negotiating_sessions (its admission control; 0: none)",
    )
    p.add_argument("--hold", type=float, default=3600.0, help="(the restarted run is stopped)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep configs, logs, summaries")
    p.add_argument("--verbose", action="store_true", help="print the whole result as JSON")
    args = p.parse_args(argv)
    print(f"# mass reconnect: one kl2tp-lns, null data plane  ({machine()})")
    print(
        f"# {args.sessions:,} sessions, {args.tunnels} tunnels, {args.processes} generator "
        f"processes; after the restart at most {args.max_outstanding or 'any'} in setup at the "
        f"generator, {args.max_negotiating or 'any'} negotiating at the LNS, refused calls "
        f"redial after ~{args.redial:g} s"
        + ("" if args.redial_max is None else f" doubling up to ~{args.redial_max:g} s")
        + "; LAC SIGKILLed and restarted; Hello and LCP echo at "
        "their defaults",
        flush=True,
    )
    r = run(args)
    if args.verbose:
        print(json.dumps(r))
    rep = r["lac"]["report"]
    print(
        table(
            ("up before", "all up again s", "old tunnels gone s", "setup-rate", "p50 ms",
             "p99 ms", "failed", "peak sessions", "peak pool", "echo timeouts"),
            [(r["up_before"], "never" if r["all_up_s"] is None else r["all_up_s"],
              "never" if r["old_gone_s"] is None else r["old_gone_s"], rep["setup-rate"],
              rep["setup-time-p50"], rep["setup-time-p99"], rep["sessions-failed"],
              r["peak_sessions"], r["peak_pool"], r["echo_timeouts"])],
        )
    )  # fmt: skip
    retries = rep.get("retry-reasons") or {}
    print("# refused/failed attempts that redialled: "
          + (", ".join(f"{k}={v}" for k, v in retries.items()) or "-"))  # fmt: skip
    failures = rep.get("failures") or {}
    print("# failures by reason: " + (", ".join(f"{k}={v}" for k, v in failures.items()) or "-"))
    refused = {k: v for k, v in r["lns_refused"].items() if v}
    print("# LNS logins refused: " + (", ".join(f"{k}={v}" for k, v in refused.items()) or "-"))
    print(f"# LNS setup: {json.dumps(r['lns_setup'])}")
    end = r["end"]
    print(
        f"# at the end: tunnels {end['tunnels']}, sessions {end['sessions']}, "
        f"pool in use {end['pool_in_use']}; UDP RcvbufErrors {r['udp_rcvbuf_errors']:,}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
