"""kl2tp-lns side by side with Debian's l2tpns (+ FreeRADIUS) and xl2tpd, one load generator.

One invocation, one machine: the same ``kl2tp-lac --simulate`` load (full calls: LCP, CHAP,
IPCP; null data plane on the LAC) against

- ``l2tpns``: Debian's l2tpns, a production LNS in C, in a network namespace of its own
  (tests/peers/l2tpns.py), authenticating every call against a FreeRADIUS on the host;
- ``kl2tp``: kl2tp-lns, null data plane, local users file;
- ``kl2tp-radius``: kl2tp-lns authenticating against the same FreeRADIUS (no accounting,
  as l2tpns here);
- ``xl2tpd``: xl2tpd at the L2TP level only (ICRQ/ICRP/ICCN; ``[subscriber] ppp = false``):
  on the host its pppd cannot start (no /dev/ppp) and it clears each call with a CDN soon
  after, so its calls are counted as connected when the LAC's ICCN went out.

For each case (burst: ``--rate 0`` with at most ``--max-outstanding`` calls in setup; paced:
``--rate R``; 1 and 8 tunnels) every LNS runs ``--repeat`` times, the LNSs alternating, and
the table gives medians: calls/s (BNG Blaster's setup rate), setup p50/p99, CPU per call of
the LNS process (utime + stime from /proc; xl2tpd with its reaped pppd children shown
apart), of FreeRADIUS, and of the load generator, and RSS per held session (the LNS's peak
RSS while all calls are held, minus its RSS before the run, per call; kl2tp-lns starts fresh
for every run, l2tpns and xl2tpd run throughout: l2tpns pre-allocates its session table at
start, ~93 MB). Then the ratios of kl2tp-lns to l2tpns + its FreeRADIUS.

Needs root (namespaces), l2tpns, freeradius, xl2tpd (``--install`` apt-gets the missing
ones). Prints figures; asserts nothing about them.

Usage: python bench/bench_side_by_side.py [-n 2000] [--rate 500] [--tunnels 1,8]
       [--repeat 3] [--lns l2tpns,kl2tp,kl2tp-radius,xl2tpd] [--hold 2] [--install]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _util import REPO, machine, median, table
from bench_daemons import (
    RssSampler,
    cpu_of,
    free_udp_port,
    lac_summary,
    rss_kb,
    sleeps_of,
    stop,
    wait_listening,
    write_configs,
)
from bench_radius import radius_config

sys.path.insert(0, str(REPO))
from tests.peers.l2tpns import l2tpns_with_radius

BIN = Path(sys.executable).parent
SECRET = "bench"
DEBIAN_PACKAGES = {"l2tpns": "l2tpns", "freeradius": "freeradius", "xl2tpd": "xl2tpd"}


def install_missing() -> None:
    """apt-get the Debian packages the peers come from, when missing."""
    missing = [pkg for binary, pkg in DEBIAN_PACKAGES.items() if shutil.which(binary) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)


def cpu_with_children(pid: int) -> tuple[float, float]:
    """(own utime + stime, reaped children's cutime + cstime) of a live process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def child_named(pid: int, name: str) -> int:
    """The pid of the first descendant of ``pid`` (or ``pid`` itself) whose comm is ``name``."""
    todo = [pid]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        todo, seen = [pid], []
        while todo:
            p = todo.pop()
            seen.append(p)
            with contextlib.suppress(OSError):
                if Path(f"/proc/{p}/comm").read_text().strip() == name:
                    return p
                for task in Path(f"/proc/{p}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
        time.sleep(0.1)
    raise SystemExit(f"no {name} process under {pid}")


def lac_config(tmp: Path, address: str, port: int, *, secret: str | None, ppp: bool) -> Path:
    path = tmp / "lac.toml"
    secret_line = f'secret = "{secret}"' if secret else ""
    path.write_text(
        f"""
[l2tp]
listen = "0.0.0.0:0"
hostname = "bench-lac"
{secret_line}
[dataplane]
kind = "null"
[log]
level = "warning"
[subscriber]
auth = "chap"
ppp = {"true" if ppp else "false"}
[[lac.lns]]
address = "{address}:{port}"
"""
    )
    return path


class Target:
    """One LNS under test: where the LAC dials, which processes to measure."""

    name = ""
    ppp = True
    secret: str | None = SECRET
    address = "127.0.0.1"
    port = 1701
    lns_pid = 0
    radius_pid: int | None = None

    @contextlib.contextmanager
    def run(self, tmp: Path) -> Iterator[None]:
        """Whatever this LNS needs around one run (kl2tp-lns: a fresh process)."""
        yield

    def cpu(self) -> tuple[float, float]:
        """(LNS CPU s, reaped children's CPU s)."""
        return cpu_with_children(self.lns_pid)


class L2tpnsTarget(Target):
    name = "l2tpns"

    def __init__(self, lns: Any, radius_pid: int) -> None:
        self.address = lns.address
        self.lns_pid = child_named(lns.proc.pid, "l2tpns")
        self.radius_pid = radius_pid


class Kl2tpTarget(Target):
    def __init__(self, users: int, radius: Any | None) -> None:
        self.name = "kl2tp-radius" if radius is not None else "kl2tp"
        self.users = users
        self.radius = radius
        self.radius_pid = radius.proc.pid if radius is not None else None

    @contextlib.contextmanager
    def run(self, tmp: Path) -> Iterator[None]:
        self.port = free_udp_port()
        lns_cfg, _ = write_configs(tmp, tunnels=1, users=self.users, secret=SECRET, port=self.port)
        if self.radius is not None:
            radius_config(lns_cfg, self.radius, tmp / "spool")
            text = lns_cfg.read_text().replace("[radius]\n", "[radius]\naccounting = false\n", 1)
            lns_cfg.write_text(text)
        log = tmp / "lns.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            try:
                wait_listening(self.port, proc, log)
                self.lns_pid = proc.pid
                yield
            finally:
                stop(proc)


class Xl2tpdTarget(Target):
    name = "xl2tpd"
    ppp = False
    secret = None

    def __init__(self, tmp: Path) -> None:
        self.port = free_udp_port()
        conf = tmp / "xl2tpd.conf"
        conf.write_text(
            f"""[global]
listen-addr = 127.0.0.1
port = {self.port}
[lns default]
ip range = 10.99.0.2-10.99.250.254
local ip = 10.99.0.1
require authentication = no
length bit = yes
pppoptfile = {tmp / "options"}
"""
        )
        (tmp / "options").write_text("noauth\n")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "xl2tpd", "-D", "-c", str(conf),
             "-p", str(tmp / "xl2tpd.pid"), "-C", str(tmp / "control")],
            stdout=(tmp / "xl2tpd.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.lns_pid = child_named(self.proc.pid, "xl2tpd")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def run_once(target: Target, n: int, *, rate: float, tunnels: int, hold: float,
             max_outstanding: int) -> dict[str, Any]:  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix=f"kl2tp-side-{target.name}-"))
    try:
        with target.run(tmp):
            lac_cfg = lac_config(
                tmp, target.address, target.port, secret=target.secret, ppp=target.ppp
            )
            cpu0, children0 = target.cpu()
            radius0 = cpu_of(target.radius_pid) if target.radius_pid else 0.0
            sleeps0 = sleeps_of(target.lns_pid)
            rss0 = rss_kb(target.lns_pid)
            sampler = RssSampler(target.lns_pid)
            sampler.start()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            lac = subprocess.run(
                [str(BIN / "kl2tp-lac"), "--config", str(lac_cfg), "--simulate", str(n),
                 "--rate", str(rate), "--hold", str(hold), "--tunnels", str(tunnels),
                 "--max-outstanding", str(max_outstanding), "--json"],
                capture_output=True, text=True, timeout=1200, cwd=REPO,
            )  # fmt: skip
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            time.sleep(0.5)  # the LNS's last CDN acks
            cpu1, children1 = target.cpu()
            sleeps1 = sleeps_of(target.lns_pid)
            radius1 = cpu_of(target.radius_pid) if target.radius_pid else 0.0
            sampler.stop.set()
            sampler.join()
        s = lac_summary(lac)
        report = s["report"]
        # xl2tpd clears each call once its pppd fails: count calls that were connected.
        up = s["established"] + (report["sessions-flapped"] if not target.ppp else 0)
        span_ms = report["setup-time"] or 0
        return {
            "up": up,
            "failed": sum(s["failed"].values()) - (0 if target.ppp else report["sessions-flapped"]),
            "cps": up / (span_ms / 1000) if span_ms else 0.0,
            "p50": s["setup_ms"]["p50"] or 0.0,
            "p99": s["setup_ms"]["p99"] or 0.0,
            "lns_ms": (cpu1 - cpu0) * 1000 / max(up, 1),
            "children_ms": (children1 - children0) * 1000 / max(up, 1),
            "wakes": (sleeps1 - sleeps0) / max(up, 1),
            "radius_ms": (radius1 - radius0) * 1000 / max(up, 1),
            # The generator's own figure (from its first call to its end), else the whole
            # process's, start-up included.
            "lac_ms": s.get("cpu_ms_per_call") or (
                ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))
                * 1000 / max(up, 1)
            ),
            "kb_per_session": (sampler.peak - rss0) / max(up, 1),
            "summary": s,
        }  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def vcpus(runs: list[dict[str, Any]]) -> float:
    """The vCPUs these runs kept busy: CPU per call of the LNS, its helpers, its RADIUS
    server and the generator, times calls/s (teardown included, so an upper bound)."""
    keys = ("lns_ms", "children_ms", "radius_ms", "lac_ms")
    return median([sum(r[k] for k in keys) * r["cps"] / 1000 for r in runs])


def print_case(title: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    def med(name: str, key: str) -> float:
        return median([r[key] for r in runs[name]])

    rows = []
    for name, got in runs.items():
        if not got:
            continue
        rows.append(
            (name, len(got), f"{med(name, 'up'):.0f}", f"{med(name, 'failed'):.0f}",
             med(name, "cps"), med(name, "p50"), med(name, "p99"), med(name, "lns_ms"),
             med(name, "wakes"), med(name, "children_ms"), med(name, "radius_ms"),
             med(name, "lac_ms"), med(name, "kb_per_session"), vcpus(got))
        )  # fmt: skip
    print(f"\n## {title} (medians)")
    print(
        table(
            ("LNS", "runs", "up", "failed", "calls/s", "p50 ms", "p99 ms", "LNS ms/call",
             "LNS wakes/call", "children ms", "RADIUS ms", "LAC ms/call", "KB/session",
             "vCPUs"),
            rows,
        )
    )  # fmt: skip
    cpus = os.cpu_count() or 1
    for name, got in runs.items():
        need = vcpus(got) if got else 0.0
        if need >= 0.9 * cpus:
            print(
                f"# {name}: the LNS, its RADIUS server and the generator need {need:.1f} of "
                f"the machine's {cpus} vCPUs at this rate; its latencies measure how they "
                "share them"
            )
    if runs.get("l2tpns"):
        c_ref = med("l2tpns", "lns_ms") + med("l2tpns", "radius_ms")
        for name in ("kl2tp", "kl2tp-radius"):
            if not runs.get(name):
                continue
            cpu = med(name, "lns_ms") + med(name, "radius_ms")
            print(
                f"{name} / (l2tpns + FreeRADIUS): CPU per call {cpu / c_ref:.2f}x, "
                f"p99 {med(name, 'p99') / max(med('l2tpns', 'p99'), 1e-9):.2f}x, "
                f"calls/s {med(name, 'cps') / max(med('l2tpns', 'cps'), 1e-9):.2f}x"
            )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="calls per run")
    p.add_argument("--rate", type=float, default=500.0, help="calls/s of the paced runs")
    p.add_argument("--tunnels", default="1,8", help="tunnel counts, comma separated")
    p.add_argument("--modes", default="burst,paced", help="burst and/or paced")
    p.add_argument("--repeat", type=int, default=3, help="runs per LNS and case")
    p.add_argument("--lns", default="l2tpns,kl2tp,kl2tp-radius,xl2tpd", help="LNSs to run")
    p.add_argument("--hold", type=float, default=2.0, help="seconds all calls are held")
    p.add_argument(
        "--max-outstanding", type=int, default=800, help="calls in setup at once (burst)"
    )
    p.add_argument("--install", action="store_true", help="apt-get missing peers first")
    p.add_argument("--json", type=Path, help="write every run's figures here")
    args = p.parse_args(argv)
    if args.install:
        install_missing()
    names = [s for s in args.lns.split(",") if s]
    users = "".join(f'user{k} Cleartext-Password := "pass{k}"\n' for k in range(1, args.n + 1))
    print(f"# side by side, {args.n} calls per run  ({machine()})")
    print(f"# hold {args.hold}s, burst with at most {args.max_outstanding} in setup, "
          f"paced at {args.rate}/s; load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    every: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kl2tp-side-")))
        peer = stack.enter_context(
            l2tpns_with_radius(tmp, users=users, l2tp_secret=SECRET, authtypes=("chap",),
                               debug=1, pool=("10.200.0.0/16",))
        )  # fmt: skip
        targets: dict[str, Callable[[], Target]] = {
            "l2tpns": lambda: L2tpnsTarget(peer.lns, peer.radius.proc.pid),
            "kl2tp": lambda: Kl2tpTarget(args.n, None),
            "kl2tp-radius": lambda: Kl2tpTarget(args.n, peer.radius),
        }
        if "xl2tpd" in names:
            (tmp / "xl2tpd").mkdir()
            xl2tpd = Xl2tpdTarget(tmp / "xl2tpd")
            stack.callback(xl2tpd.close)
            targets["xl2tpd"] = lambda: xl2tpd
        made = {name: targets[name]() for name in names}
        for mode in args.modes.split(","):
            for tunnels in (int(t) for t in args.tunnels.split(",")):
                rate = 0.0 if mode == "burst" else args.rate
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
                for _ in range(args.repeat):
                    for name in names:
                        r = run_once(
                            made[name],
                            args.n,
                            rate=rate,
                            tunnels=tunnels,
                            hold=args.hold,
                            max_outstanding=args.max_outstanding,
                        )
                        runs[name].append(r)
                        every.append({"lns": name, "mode": mode, "tunnels": tunnels, **r})
                title = f"{mode}, {tunnels} tunnel{'s' if tunnels > 1 else ''}" + (
                    f", {args.rate:g} calls/s offered" if rate else ""
                )
                # The machine may be shared: the ratios hold within a case, not across.
                title += f"; load average {os.getloadavg()[0]:.1f} at its end"
                print_case(title, runs)
                sys.stdout.flush()
    if args.json is not None:
        args.json.write_text(json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
