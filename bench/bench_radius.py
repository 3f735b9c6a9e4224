"""Full calls per second with RADIUS authentication and accounting, beside local users.

The same run as ``bench_daemons.py`` (real kl2tp-lns on the null data plane, CHAP + IPCP,
``kl2tp-lac --simulate N --rate R --json`` on loopback), twice: once with the users file,
once with ``[aaa] backend = "radius"`` against a FreeRADIUS on loopback (started from a
private copy of /etc/freeradius/3.0 by tests/radius/freeradius.py; CHAP against its users
file, Start and Stop into its detail file). Prints calls/s, setup p50/p99, CPU of the LNS, the
LAC and FreeRADIUS, and checks that every call left a Start and a Stop record.

Usage: python bench/bench_radius.py [-n 2000] [--rate 0] [--tunnels 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _util import REPO, machine, median, table
from bench_daemons import cpu_of, free_udp_port, lac_summary, stop, wait_listening, write_configs

sys.path.insert(0, str(REPO))
from tests.radius.freeradius import FreeRadius

BIN = Path(sys.executable).parent
PROFILED = Path(__file__).resolve().parent / "_profiled.py"


def radius_config(lns_cfg: Path, fr: FreeRadius, spool: Path) -> None:
    text = lns_cfg.read_text().replace("[aaa]\n", '[aaa]\nbackend = "radius"\n', 1)
    text += f"""
[radius]
timeout = 2
retries = 2
accounting_spool = "{spool}"

[[radius.server]]
address = "127.0.0.1"
auth_port = {fr.auth_port}
acct_port = {fr.acct_port}
secret = "{fr.secret}"
"""
    lns_cfg.write_text(text)


def run_once(
    n: int, *, radius: bool, rate: float, tunnels: int, profile: Path | None = None
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kl2tp-bench-radius-"))
    fr: FreeRadius | None = None
    try:
        port = free_udp_port()
        lns_cfg, lac_cfg = write_configs(
            tmp, tunnels=tunnels, users=n, secret="bench", port=port, queue_depth=4096
        )
        if radius:
            users = "".join(f'user{i} Cleartext-Password := "pass{i}"\n' for i in range(1, n + 1))
            fr = FreeRadius(tmp / "fr", users=users)
            fr.start()
            radius_config(lns_cfg, fr, tmp / "spool")
        lns_log = tmp / "lns.log"
        with lns_log.open("w") as logf:
            argv = [str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)]
            if profile is not None:
                argv = [sys.executable, str(PROFILED), str(profile), "lns", *argv[1:]]
            lns = subprocess.Popen(
                argv,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            try:
                wait_listening(port, lns, lns_log)
                time.sleep(0.5)  # Accounting-On answered
                lns_cpu0 = cpu_of(lns.pid)
                fr_cpu0 = cpu_of(fr.proc.pid) if fr and fr.proc else 0.0
                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                lac = subprocess.run(
                    [
                        str(BIN / "kl2tp-lac"),
                        *("--config", str(lac_cfg), "--simulate", str(n)),
                        *("--rate", str(rate), "--hold", "0", "--json"),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=900,
                    cwd=REPO,
                )
                wall = time.monotonic() - t0
                records = 0
                summary = lac_summary(lac)
                up = summary["established"]
                if fr is not None:
                    # every call that came up leaves a Start and a Stop in the detail file
                    found = fr.wait_records(
                        lambda r: r.get("Acct-Status-Type") in ("Start", "Stop"), 2 * up, 60
                    )
                    records = len(found)
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                lns_cpu = cpu_of(lns.pid) - lns_cpu0
                fr_cpu = (cpu_of(fr.proc.pid) - fr_cpu0) if fr and fr.proc else 0.0
            finally:
                stop(lns)
        summary.update(
            wall_s=wall,
            lns_cpu_s=lns_cpu,
            lac_cpu_s=(ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
            fr_cpu_s=fr_cpu,
            acct_records=records,
        )
        return summary
    finally:
        if fr is not None:
            fr.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="calls per run")
    p.add_argument("--rate", type=float, default=0.0, help="calls/s to place; 0: unlimited")
    p.add_argument("--tunnels", type=int, default=4, help="tunnels the LAC opens")
    p.add_argument("--repeat", type=int, default=1, help="runs per back end (medians)")
    p.add_argument(
        "--profile", type=Path, metavar="DIR", help="cProfile the LNS: DIR/lns-{local,radius}.prof"
    )
    args = p.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"# kl2tp-lns + kl2tp-lac --simulate on loopback, null data plane  ({machine()})")
    print(f"# {args.n} calls, {args.tunnels} tunnels, rate {args.rate or 'unlimited'}, CHAP")
    rows = []
    for radius in (False, True):
        runs = [
            run_once(
                args.n,
                radius=radius,
                rate=args.rate,
                tunnels=args.tunnels,
                profile=(
                    args.profile / f"lns-{'radius' if radius else 'local'}.prof"
                    if args.profile
                    else None
                ),
            )
            for _ in range(args.repeat)
        ]
        up = min(r["established"] for r in runs)

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return median([float(r[key]) for r in runs])

        rows.append(
            (
                "RADIUS auth+acct" if radius else "local users",
                up,
                ",".join(
                    f"{k}={v}"
                    for k, v in sorted(
                        (k, sum(r["failed"].get(k, 0) for r in runs))
                        for k in {k for r in runs for k in r["failed"]}
                    )
                )
                or "0",
                median([r["setup_ms"]["p50"] or 0.0 for r in runs]),
                median([r["setup_ms"]["p99"] or 0.0 for r in runs]),
                med("cps"),
                1000 * med("lns_cpu_s") / max(up, 1),
                1000 * med("fr_cpu_s") / max(up, 1),
                1000 * med("lac_cpu_s") / max(up, 1),
                (f"{min(r['acct_records'] for r in runs)}/{2 * up}" if radius else "-"),
            )
        )
    print(
        table(
            ("AAA", "up", "failed", "p50 ms", "p99 ms", "calls/s", "LNS ms/call",
             "FreeRADIUS ms/call", "LAC ms/call", "Start+Stop / expected"),
            rows,
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
