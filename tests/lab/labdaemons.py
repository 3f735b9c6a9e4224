"""Running kl2tp-lns / kl2tp-lac inside lab namespaces (imported as ``labdaemons``).

The topology is the one ``test_daemons_kernel`` documents: three namespaces joined by two
veth pairs, the middle one routing. Daemons run as operators run them, through
``ip netns exec NS kl2tp-...``; kl2tpctl talks to their control sockets (Unix sockets live
in the file system, so any namespace reaches them).
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from labutil import run

BIN = pathlib.Path(sys.executable).parent
BOUND = 120.0
"""Seconds any wait may take in the guest (syscalls there are ~30x slower than on a host)."""

SUB, MID, LNS = "kl-sub", "kl-lac", "kl-lns"
SUB_ADDR, MID_SUB_ADDR = "10.31.0.2", "10.31.0.1"
MID_LNS_ADDR, LNS_ADDR = "10.32.0.1", "10.32.0.2"
PPP_LOCAL = "10.40.0.1"
"""The LNS's own PPP address (IPCP)."""
SECRET = "lab-tunnel-secret"


@attrs.frozen
class Topology:
    """The three namespaces."""

    subscriber: str = SUB
    """Where kl2tp-lac runs (the subscriber's box)."""
    access: str = MID
    """The access network's router."""
    lns: str = LNS
    """Where kl2tp-lns runs."""


@contextmanager
def three_namespaces() -> Iterator[Topology]:
    """subscriber 10.31.0.2 -- 10.31.0.1 router 10.32.0.1 -- 10.32.0.2 lns."""
    topo = Topology()
    for ns in (SUB, MID, LNS):
        run("ip", "netns", "add", ns)
    try:
        run("ip", "link", "add", "v-sub", "netns", SUB, "type", "veth",
            "peer", "name", "v-mid-sub", "netns", MID)  # fmt: skip
        run("ip", "link", "add", "v-lns", "netns", LNS, "type", "veth",
            "peer", "name", "v-mid-lns", "netns", MID)  # fmt: skip
        for ns, dev, addr in (
            (SUB, "v-sub", SUB_ADDR),
            (MID, "v-mid-sub", MID_SUB_ADDR),
            (MID, "v-mid-lns", MID_LNS_ADDR),
            (LNS, "v-lns", LNS_ADDR),
        ):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "netns", "exec", MID, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        # Only the tunnel's outer addresses are routed across the access network.
        run("ip", "-n", SUB, "route", "add", "10.32.0.0/24", "via", MID_SUB_ADDR)
        run("ip", "-n", LNS, "route", "add", "10.31.0.0/24", "via", MID_LNS_ADDR)
        yield topo
    finally:
        for ns in (SUB, MID, LNS):
            run("ip", "netns", "del", ns, check=False)


def wait_for(predicate: Callable[[], Any], what: str, bound: float = BOUND) -> Any:
    """Poll until ``predicate`` returns something true; fail the test after ``bound`` s."""
    deadline = time.monotonic() + bound
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {bound:.0f} s waiting for {what}")
        time.sleep(0.1)


def ctl(sock: pathlib.Path, *args: str) -> Any:
    """kl2tpctl ARGS --json against one daemon."""
    proc = run(str(BIN / "kl2tpctl"), "--socket", str(sock), *args, "--json", timeout=BOUND)
    return json.loads(proc.stdout)


class Daemon:
    """A kl2tp daemon in a namespace, its output in a file."""

    def __init__(self, ns: str, argv: list[str], log: pathlib.Path) -> None:
        self.log = log
        self._logf = log.open("w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=self._logf, stderr=subprocess.STDOUT
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=BOUND)
        self._logf.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._logf.close()

    def output(self) -> str:
        if not self._logf.closed:
            self._logf.flush()
        return self.log.read_text()


def lns_config(tmp: pathlib.Path, *, users: dict[str, str], extra: str = "") -> pathlib.Path:
    users_file = tmp / "users"
    users_file.write_text("".join(f"{u} {p}\n" for u, p in users.items()))
    path = tmp / "lns.toml"
    path.write_text(
        f"""
[l2tp]
listen = "{LNS_ADDR}:1701"
hostname = "lab-lns"
secret = "{SECRET}"
idle_timeout = 1
[dataplane]
kind = "kernel"
interface_template = "lns%d"
[control]
socket = "{tmp / "lns.sock"}"
[aaa]
users_file = "{users_file}"
[ppp]
auth = ["chap"]
local_address = "{PPP_LOCAL}"
pool = "10.40.0.0/23"
lcp_echo_interval = 0
{extra}
"""
    )
    return path


def lac_config(tmp: pathlib.Path, *, mode: str, subscriber: str, extra: str = "") -> pathlib.Path:
    path = tmp / "lac.toml"
    path.write_text(
        f"""
[l2tp]
hostname = "lab-subscriber"
secret = "{SECRET}"
{extra}
[dataplane]
kind = "kernel"
interface_template = "sub%d"
[control]
socket = "{tmp / "lac.sock"}"
[ppp]
lcp_echo_interval = 0
[lac]
mode = "{mode}"
[[lac.lns]]
address = "{LNS_ADDR}"
[subscriber]
{subscriber}
"""
    )
    return path


def start_lns(tmp: pathlib.Path, config: pathlib.Path, name: str = "lns") -> Daemon:
    sock = tmp / "lns.sock"
    sock.unlink(missing_ok=True)
    daemon = Daemon(LNS, [str(BIN / "kl2tp-lns"), "-c", str(config), "-d", "kernel,daemon"],
                    tmp / f"{name}.log")  # fmt: skip
    wait_for(lambda: sock.exists() or daemon.proc.poll() is not None, "the LNS control socket")
    if daemon.proc.poll() is not None:
        pytest.fail(f"kl2tp-lns exited {daemon.proc.returncode}:\n{daemon.output()}")
    return daemon


def kernel_objects(ns: str) -> dict[str, Any]:
    """What the kernel of ``ns`` holds that a kl2tp could have made."""
    tunnels = run("ip", "-n", ns, "l2tp", "show", "tunnel").stdout
    sessions = run("ip", "-n", ns, "l2tp", "show", "session").stdout
    links = json.loads(run("ip", "-n", ns, "-j", "link", "show").stdout)
    routes = json.loads(run("ip", "-n", ns, "-j", "route", "show").stdout)

    def ids(text: str, word: str) -> list[int]:
        return [int(w.split()[1].rstrip(",")) for w in text.splitlines() if w.startswith(word)]

    return {
        "tunnels": ids(tunnels, "Tunnel "),
        "sessions": ids(sessions, "Session "),
        "ppp": {x["ifname"]: x["ifindex"] for x in links if x.get("link_type") == "ppp"},
        "ppp_routes": [r["dst"] for r in routes if r.get("dev", "").startswith(("sub", "lns"))],
    }


def ppp_addresses(ns: str) -> dict[str, tuple[str, str]]:
    """interface -> (local, peer) of every point-to-point IPv4 address in ``ns``."""
    out: dict[str, tuple[str, str]] = {}
    for link in json.loads(run("ip", "-n", ns, "-j", "-4", "addr", "show").stdout):
        for a in link.get("addr_info", []):
            if "address" in a and a["address"] != a["local"]:
                out[link["ifname"]] = (a["local"], a["address"])
    return out
