"""Running kl2tp-lns / kl2tp-lac inside lab namespaces (imported as ``labdaemons``).

The topology is the one ``test_daemons_kernel`` documents: three namespaces joined by two
veth pairs, the middle one routing. Daemons run as operators run them, through
``ip netns exec NS kl2tp-...``; kl2tpctl talks to their control sockets (Unix sockets live
in the file system, so any namespace reaches them).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from labutil import netns, run

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


def query(sock: pathlib.Path, *args: str) -> Any:
    """What ``kl2tpctl ARGS --json`` prints, without starting a Python process per call
    (that costs a second or two in the guest): kl2tpctl's own parser and request."""
    from kl2tp.cli import _ctl_parser, _ctl_request
    from kl2tp.daemon.control import request

    req = _ctl_request(_ctl_parser().parse_args(["--socket", str(sock), *args]))
    assert req is not None
    return request(str(sock), req, timeout=BOUND)


def ctl(sock: pathlib.Path, *args: str) -> Any:
    """kl2tpctl ARGS --json against one daemon."""
    proc = run(str(BIN / "kl2tpctl"), "--socket", str(sock), *args, "--json", timeout=BOUND)
    return json.loads(proc.stdout)


class Daemon:
    """A kl2tp daemon in a namespace, its output in a file."""

    def __init__(
        self, ns: str, argv: list[str], log: pathlib.Path, *, private: bool = False
    ) -> None:
        self.log = log
        self._logf = log.open("w")
        argv = private_run(argv) if private else argv
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


def lns_config(
    tmp: pathlib.Path, *, users: dict[str, str], extra: str = "", pool: str = "10.40.0.0/23"
) -> pathlib.Path:
    users_file = tmp / "users"
    users_file.write_text("".join(f"{u} {p}\n" for u, p in users.items()))
    path = tmp / "lns.toml"
    path.write_text(
        f"""
[l2tp]
listen = "{LNS_ADDR}:1701"
hostname = "lab-lns"
workers = 1
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
pool = "{pool}"
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


def _kernel_state(ns: str) -> tuple[list[int], list[int], list[Any], list[Any]]:
    """Kernel L2TP tunnel and session ids, links and routes of ``ns``."""
    tunnels = run("ip", "-n", ns, "l2tp", "show", "tunnel").stdout
    sessions = run("ip", "-n", ns, "l2tp", "show", "session").stdout
    links = json.loads(run("ip", "-n", ns, "-j", "link", "show").stdout)
    routes = json.loads(run("ip", "-n", ns, "-j", "route", "show").stdout)

    def ids(text: str, word: str) -> list[int]:
        return [int(w.split()[1].rstrip(",")) for w in text.splitlines() if w.startswith(word)]

    return ids(tunnels, "Tunnel "), ids(sessions, "Session "), links, routes


def kernel_objects(ns: str) -> dict[str, Any]:
    """What the kernel of ``ns`` holds that a kl2tp could have made."""
    tunnels, sessions, links, routes = _kernel_state(ns)
    return {
        "tunnels": tunnels,
        "sessions": sessions,
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


def private_run(argv: list[str]) -> list[str]:
    """``argv`` in a mount namespace of its own with a fresh tmpfs on /run/kl2tp.

    A kl2tp daemon keeps its journal of kernel objects in /run/kl2tp/<role>.journal and locks
    it, so two kl2tp-lns (or kl2tp-lac) on one box need state directories of their own:
    several in one guest (the interop matrix runs six clients at once) each get a private one.
    """
    pathlib.Path("/run/kl2tp").mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs kl2tp-state /run/kl2tp && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


def netns_pids(ns: str) -> dict[int, str]:
    """pid -> command line of every process in namespace ``ns``."""
    out: dict[int, str] = {}
    for word in run("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            cmdline = pathlib.Path(f"/proc/{word}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        out[int(word)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


class Xl2tpd:
    """Debian's xl2tpd in the foreground inside a namespace, its files in one directory.

    ``sections`` is the text after ``[global]``; ``@DIR@`` in it (and in the pppd option
    files given as ``options``, name -> text, written to ``DIR/NAME.options``) is that
    directory. pppd reads its CHAP/PAP secrets from /etc/ppp, which in the guest is the
    overlay: the caller writes them there (see ``ppp_secrets``).
    """

    def __init__(
        self, ns: str, d: pathlib.Path, listen: str, sections: str, options: dict[str, str]
    ) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        self.control = d / "control"
        for name, text in options.items():
            (d / f"{name}.options").write_text(text.replace("@DIR@", str(d)))
        (d / "l2tp-secrets").write_text(f"* * {SECRET}\n")
        (d / "l2tp-secrets").chmod(0o600)
        conf = (
            f"[global]\nlisten-addr = {listen}\nport = 1701\n"
            f"auth file = {d / 'l2tp-secrets'}\n{sections}"
        ).replace("@DIR@", str(d))
        (d / "xl2tpd.conf").write_text(conf)
        self.log = d / "log"
        with self.log.open("wb") as logf:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "xl2tpd", "-D", "-c", str(d / "xl2tpd.conf"),
                 "-p", str(d / "pid"), "-C", str(self.control)],
                stdout=logf, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def command(self, text: str) -> None:
        """One line to xl2tpd's control pipe (``d NAME`` hangs up a LAC section's call)."""
        wait_for(self.control.exists, "xl2tpd's control pipe")
        fd = os.open(self.control, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, text.encode() + b"\n")
        finally:
            os.close(fd)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def ppp_secrets(entries: dict[str, str]) -> None:
    """/etc/ppp/chap-secrets and pap-secrets with ``user * password *`` lines (guest only:
    /etc there is the guest's overlay, not the host's)."""
    if not os.environ.get("KL2TP_LAB"):
        pytest.fail("refusing to write /etc/ppp outside the lab guest")
    text = "".join(f'"{user}" * "{password}" *\n' for user, password in entries.items())
    for name in ("chap-secrets", "pap-secrets"):
        path = pathlib.Path("/etc/ppp") / name
        path.write_text(text)
        path.chmod(0o600)


def leftovers(ns: str) -> dict[str, Any]:
    """Everything of a call that could outlive it in ``ns``: kernel L2TP tunnels and
    sessions, PPP interfaces, routes through them, pppd processes."""
    tunnels, sessions, links, routes = _kernel_state(ns)
    ppp = {x["ifname"] for x in links if x.get("link_type") == "ppp"}
    return {
        "tunnels": tunnels,
        "sessions": sessions,
        "ppp": sorted(ppp),
        "routes": [r["dst"] for r in routes if r.get("dev") in ppp],
        "pppd": sorted(
            pid for pid, cmd in netns_pids(ns).items() if cmd.split(" ")[0].endswith("pppd")
        ),
    }


NOTHING = {"tunnels": [], "sessions": [], "ppp": [], "routes": [], "pppd": []}
"""``leftovers`` of a namespace no call ever touched."""


METHODS = ("chap", "pap", "mschapv2")
"""The PPP authentication methods the interop matrix runs."""


@attrs.frozen
class Case:
    """One call of the interop matrix (tests/lab/test_interop_*): a method, plain or hidden."""

    method: str
    """``chap``, ``pap`` or ``mschapv2``."""
    hidden: bool
    """Both ends hide AVPs (kl2tp's ``hide_avps``, xl2tpd's ``hidden bit``)."""

    def __str__(self) -> str:
        return self.method + ("-hidden" if self.hidden else "")

    @property
    def index(self) -> int:
        return CASES.index(self)

    @property
    def name(self) -> str:
        """User name, xl2tpd section, interface prefix: ``pch``, ``hms``."""
        return ("h" if self.hidden else "p") + self.method[:2]

    @property
    def password(self) -> str:
        return f"{self.name}-secret"

    @property
    def address(self) -> str:
        """The subscriber namespace's address this call's LAC (xl2tpd or kl2tp-lac) uses:
        one per call, since each tunnel needs its own address pair (docs/INTEROP.md)."""
        return f"10.31.0.{3 + self.index}"


CASES = [Case(m, h) for h in (False, True) for m in METHODS]
"""The six calls: each method plain, then each hidden."""


IP_PKTINFO = 8
"""linux/in.h (the socket module does not export it)."""
SO_RCVBUFFORCE = 33
"""asm-generic/socket.h (the socket module does not export it either)."""


def echo_request(ident: int, seq: int) -> bytes:
    """An ICMP echo request with ping's default 56 bytes of data."""
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + bytes(range(56))
    total = sum(struct.unpack(f"!{len(body) // 2}H", body))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]


def ping_every_interface(
    ns: str, dst: str, interfaces: dict[str, tuple[str, str]], wait: float = 30.0
) -> set[str]:
    """One echo request out of each interface, from its own address (IP_PKTINFO picks both,
    as ``ping -I`` would); returns the interfaces whose reply came back."""
    ident = os.getpid() & 0xFFFF
    names = sorted(interfaces)
    with netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        # Every reply may arrive before the first is read: the default receive buffer holds
        # ~270 of them (bench_lab_scale pings 500); root may force a larger one.
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1024 * len(interfaces) + (1 << 20))
        indexes = [socket.if_nametoindex(name) for name in names]
    answered: set[str] = set()
    with sock:
        for seq, (name, index) in enumerate(zip(names, indexes, strict=True)):
            local = socket.inet_aton(interfaces[name][0])
            pktinfo = struct.pack("@i4s4s", index, local, bytes(4))
            sock.sendmsg(
                [echo_request(ident, seq)],
                [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)],
                0,
                (dst, 0),
            )
        deadline = time.monotonic() + wait
        while len(answered) < len(names) and time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                packet = sock.recv(2048)
            except TimeoutError:
                break
            icmp = packet[(packet[0] & 0x0F) * 4 :]
            kind, _, _, got_ident, seq = struct.unpack("!BBHHH", icmp[:8])
            if kind == 0 and got_ident == ident and seq < len(names):
                answered.add(names[seq])
    return answered


def one_session(sock: pathlib.Path) -> dict[str, Any] | None:
    """The daemon's only session once it has an address and an interface."""
    sessions = ctl(sock, "show", "sessions")
    if len(sessions) == 1 and "address" in sessions[0] and "interface" in sessions[0]:
        return dict(sessions[0])
    return None


@attrs.frozen
class Call:
    """One subscriber's call up through both kernels (``client_call``)."""

    lns: Daemon
    """kl2tp-lns in the LNS namespace."""
    lac: Daemon
    """kl2tp-lac in client mode in the subscriber's namespace."""
    lns_sock: pathlib.Path
    lac_sock: pathlib.Path
    address: str
    """The subscriber's address (IPCP); the LNS end is PPP_LOCAL."""
    lns_if: str
    """The call's pppN on the LNS."""
    sub_if: str
    """The call's pppN in the subscriber's namespace."""


@contextmanager
def client_call(tmp: pathlib.Path) -> Iterator[Call]:
    """kl2tp-lac (client mode, kernel data plane) dials kl2tp-lns (kernel data plane) in
    ``three_namespaces``; yields once the call is up on both sides, stops both after."""
    lns = start_lns(tmp, lns_config(tmp, users={"alice": "wonderland"}))
    lac_cfg = lac_config(
        tmp, mode="client", subscriber='username = "alice"\npassword = "wonderland"'
    )
    lns_sock, lac_sock = tmp / "lns.sock", tmp / "lac.sock"
    lac = Daemon(SUB, [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg)], tmp / "lac.log")
    try:
        lns_sess = wait_for(lambda: one_session(lns_sock), "the call up on the LNS")
        lac_sess = wait_for(
            lambda: lac_sock.exists() and one_session(lac_sock), "the call up on the LAC"
        )
        yield Call(
            lns, lac, lns_sock, lac_sock, str(lns_sess["address"]),
            str(lns_sess["interface"]), str(lac_sess["interface"]),
        )  # fmt: skip
    finally:
        lac.kill()
        lns.stop()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (the netlink worker thread too)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def iperf3_server(ns: str, log: pathlib.Path) -> Iterator[None]:
    """``iperf3 -s`` in ``ns`` (port 5201) for the block."""
    with log.open("w") as logf:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "iperf3", "-s", "--forceflush"],
            stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: "listening" in log.read_text() or proc.poll() is not None,
                 "iperf3 -s listening")  # fmt: skip
        if proc.poll() is not None:
            pytest.fail(f"iperf3 -s exited {proc.returncode}: {log.read_text()}")
        yield
    finally:
        proc.kill()
        proc.wait()


def iperf3(ns: str, dst: str, *args: str, bound: float = BOUND) -> dict[str, Any]:
    """``iperf3 -c DST ARGS -J`` from ``ns``: its JSON report."""
    proc = run("ip", "netns", "exec", ns, "iperf3", "-c", dst, "-J", *args, timeout=bound)
    report: dict[str, Any] = json.loads(proc.stdout)
    if "error" in report:
        pytest.fail(f"iperf3 -c {dst} {' '.join(args)}: {report['error']}")
    return report


def session_kernel(sock: pathlib.Path) -> dict[str, int]:
    """The kernel counters of the daemon's only session."""
    [session] = ctl(sock, "show", "sessions")
    return dict(session["kernel"])


def data_counters(sock: pathlib.Path) -> dict[str, int]:
    """The daemon's ``data_rx`` and ``data_early``: PPP frames that reached its Python."""
    counters = ctl(sock, "show", "summary")["counters"]
    return {k: counters.get(k, 0) for k in ("data_rx", "data_early")}


def nofile(pid: int) -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of a process."""
    for line in pathlib.Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise ValueError(f"no open-files limit in /proc/{pid}/limits")
