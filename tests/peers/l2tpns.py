"""Debian's l2tpns (a production LNS in C) for interop tests and side-by-side benchmarks.

l2tpns authenticates only through RADIUS, owns a TUN device and routes for its address pool,
reads its pool from a compiled-in path and kills its whole process group on SIGTERM, so it
never runs in the host's own networking (facts in ../shared/PEERS.md):

- :class:`Netns` makes a network namespace of its own joined to the host by a veth pair
  (``host_address`` on the host side, ``address`` inside), with loopback up;
- :class:`L2tpns` runs it in that namespace and in a private mount namespace whose
  ``/etc/l2tpns/ip_pool`` is a bind mount of the test's own pool file, in a session of its
  own (its ``kill(0, SIGTERM)`` reaches nobody else), and waits until it serves calls
  (``I am declaring myself the master!``, ~15 s after start);
- :func:`l2tpns_with_radius` starts a :class:`~tests.radius.freeradius.FreeRadius` that also
  listens on the veth's host side, then l2tpns pointed at it, and tears both down (and the
  namespace) whatever happens::

      with l2tpns_with_radius(tmp, users='DEFAULT Cleartext-Password := "pw"\\n') as peer:
          dial(peer.lns.address, 1701)  # from the host

Everything it starts is stopped on the way out, on failure too. Missing l2tpns (or no
root, no ``ip``): :func:`require_l2tpns` skips the test, or fails it in the full run.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs

from tests.parts import missing
from tests.radius.freeradius import FreeRadius, free_udp_port

__all__ = [
    "L2tpns",
    "L2tpnsPeer",
    "Netns",
    "l2tpns_with_radius",
    "radius_listen",
    "require_l2tpns",
]

READY = "I am declaring myself the master!"
"""l2tpns's log line once its (always-on) cluster code lets it serve calls."""

POOL_PATH = "/etc/l2tpns/ip_pool"
"""Where l2tpns reads its address pool (compiled in)."""


def require_l2tpns() -> str:
    """The l2tpns binary; skips the test without it, root or ``ip`` (fails it in the full
    run: scripts/lab-deps.sh installs it)."""
    binary = shutil.which("l2tpns")
    if binary is None:
        missing("l2tpns is not installed (apt-get install l2tpns)", "KL2TP_REQUIRE_L2TPNS")
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        missing("l2tpns needs root, ip and unshare (its own namespaces)", "KL2TP_REQUIRE_L2TPNS")
    if not Path("/dev/net/tun").exists():
        missing("l2tpns needs /dev/net/tun", "KL2TP_REQUIRE_L2TPNS")
    return binary


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Netns:
    """A named network namespace joined to the host by a veth pair (a /30 of 198.18.0.0/15,
    the benchmarking range, picked so that concurrent tests do not collide).

    Use as a context manager (or ``open()`` / ``close()``); ``close`` removes the namespace
    and the veth pair. Processes still running inside must be stopped first.
    """

    def __init__(self, prefix: str = "kl2tp") -> None:
        tag = f"{os.getpid() & 0xFFFF:04x}{random.SystemRandom().randrange(0x10000):04x}"
        self.name = f"{prefix}-{tag}"
        self.host_ifname = f"kv{tag}h"  # 11 characters: within IFNAMSIZ
        self.peer_ifname = f"kv{tag}p"
        self.host_address = ""
        """The host side of the veth pair (reachable from inside)."""
        self.address = ""
        """The namespace's side (reachable from the host)."""
        self.opened = False

    def _pick_subnet(self) -> tuple[str, str]:
        taken = subprocess.run(
            ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=30
        ).stdout
        rng = random.SystemRandom()
        for _ in range(200):
            third, fourth = rng.randrange(0, 512), rng.randrange(0, 64) * 4
            octets = f"198.{18 + third // 256}.{third % 256}."
            if f" {octets}{fourth + 1}/" not in taken:
                return f"{octets}{fourth + 1}", f"{octets}{fourth + 2}"
        raise RuntimeError("no free /30 in 198.18.0.0/15")

    def open(self) -> Netns:
        """Create the namespace and the veth pair, addresses up."""
        self.host_address, self.address = self._pick_subnet()
        _ip("netns", "add", self.name)
        self.opened = True
        try:
            _ip("link", "add", self.host_ifname, "type", "veth", "peer", "name", self.peer_ifname)
            _ip("link", "set", self.peer_ifname, "netns", self.name)
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_ifname)
            _ip("link", "set", self.host_ifname, "up")
            _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.peer_ifname)
            _ip("-n", self.name, "link", "set", self.peer_ifname, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove the namespace (its veth end goes with it, taking the host end along)."""
        if not self.opened:
            return
        self.opened = False
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _ip("netns", "del", self.name)
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _ip("link", "del", self.host_ifname)  # normally gone already

    def argv(self, command: list[str]) -> list[str]:
        """``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def __enter__(self) -> Netns:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def radius_listen(address: str, auth_port: int, acct_port: int | None = None) -> str:
    """FreeRADIUS ``listen`` sections (for ``FreeRadius(extra_site=...)``) that serve
    ``address`` too: the veth's host side, where l2tpns in its namespace sends requests."""
    text = f"listen {{\n\ttype = auth\n\tipaddr = {address}\n\tport = {auth_port}\n}}\n"
    if acct_port is not None:
        text += f"listen {{\n\ttype = acct\n\tipaddr = {address}\n\tport = {acct_port}\n}}\n"
    return text


class L2tpns:
    """One l2tpns in ``netns``, pointed at a RADIUS server.

    Args:
        tmp: a directory of its own (config, pool file, log, pid file).
        netns: the namespace it runs in (opened; its ``address`` is the LNS's address).
        radius_address, radius_port, radius_secret: the RADIUS server (accounting, when
            ``accounting``, on ``radius_port + 1``: l2tpns's rule).
        authtypes: ``radius_authtypes``, in l2tpns's order of preference.
        l2tp_secret: the tunnel secret (None: no tunnel authentication).
        pool: the address pool (one CIDR per line of ``ip_pool``).
        settings: further ``set KEY VALUE`` lines (values written as given: quote strings).
        debug: l2tpns's ``debug`` level (3 shows every call's PPP in its log).
    """

    def __init__(
        self,
        tmp: Path,
        netns: Netns,
        *,
        radius_address: str,
        radius_port: int,
        radius_secret: str,
        authtypes: tuple[str, ...] = ("chap", "pap"),
        l2tp_secret: str | None = None,
        pool: tuple[str, ...] = ("10.200.0.0/18",),
        accounting: bool = False,
        settings: Mapping[str, str] | None = None,
        debug: int = 3,
    ) -> None:
        self.binary = require_l2tpns()
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.netns = netns
        self.log_path = self.tmp / "l2tpns.log"
        self.output_path = self.tmp / "l2tpns.out"
        self.config_path = self.tmp / "startup-config"
        self.pool_path = self.tmp / "ip_pool"
        lines = {
            "debug": str(debug),
            "log_file": f'"{self.log_path}"',
            "pid_file": f'"{self.tmp / "l2tpns.pid"}"',
            "bind_address": netns.address,
            "primary_radius": radius_address,
            "primary_radius_port": str(radius_port),
            "radius_secret": f'"{radius_secret}"',
            "radius_authtypes": f'"{",".join(authtypes)}"',
            "radius_accounting": "yes" if accounting else "no",
            "primary_dns": "192.0.2.53",
            "secondary_dns": "192.0.2.54",
            "iftun_address": "192.0.2.1",
            "peer_address": "192.0.2.2",
            "send_garp": "no",
            "cluster_interface": '"lo"',
            "cli_bind_address": "127.0.0.1",
            "allow_duplicate_users": "yes",
        }
        if l2tp_secret is not None:
            lines["l2tp_secret"] = f'"{l2tp_secret}"'
        lines.update(settings or {})
        self.config_path.write_text("".join(f"set {k} {v}\n" for k, v in lines.items()))
        self.pool_path.write_text("".join(f"{cidr}\n" for cidr in pool))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """Where it takes tunnels (UDP port 1701)."""
        return self.netns.address

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until it serves calls; RuntimeError (with its log) if not."""
        self.log_path.write_text("")
        script = f'mount --bind "$1" {POOL_PATH} && exec "$2" -c "$3"'
        argv = self.netns.argv(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "l2tpns",
                str(self.pool_path),
                self.binary,
                str(self.config_path),
            ]
        )
        with self.output_path.open("wb") as out:
            # A session of its own: l2tpns's kill(0, SIGTERM) must reach only itself.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while READY not in self.log:
            if self.proc.poll() is not None:
                raise RuntimeError(f"l2tpns exited ({self.proc.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"l2tpns did not become ready:\n{self.output}")
            time.sleep(0.2)

    def stop(self, grace: float = 10.0) -> None:
        """Stop it (SIGTERM: it clears its tunnels; SIGKILL after ``grace``); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        """Its log file so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def output(self) -> str:
        """What it printed (the config it read, start-up errors) and its log."""
        try:
            printed = self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            printed = ""
        return printed + self.log

    def __enter__(self) -> L2tpns:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@attrs.frozen
class L2tpnsPeer:
    """What :func:`l2tpns_with_radius` yields."""

    lns: L2tpns
    """l2tpns, serving calls at ``lns.address`` port 1701."""
    radius: FreeRadius
    """The FreeRADIUS it authenticates against (on 127.0.0.1 for the host's own daemons
    too: ``radius.auth_port``, ``radius.secret``)."""
    netns: Netns
    """l2tpns's namespace."""


@contextlib.contextmanager
def l2tpns_with_radius(
    tmp: Path,
    *,
    users: str,
    radius_secret: str = "testing123",
    **l2tpns_options: object,
) -> Iterator[L2tpnsPeer]:
    """A FreeRADIUS with ``users`` (its ``mods-config/files/authorize`` text) and an l2tpns
    in a namespace of its own that authenticates against it; both stopped and the namespace
    removed on the way out, whatever happens. ``l2tpns_options`` go to :class:`L2tpns`."""
    require_l2tpns()
    tmp = Path(tmp)
    with Netns() as netns:
        auth_port = free_udp_port()
        radius = FreeRadius(
            tmp / "freeradius",
            users=users,
            secret=radius_secret,
            clients=[(netns.address, radius_secret)],
            extra_site=radius_listen(netns.host_address, auth_port),
            auth_port=auth_port,
        )
        lns = L2tpns(
            tmp / "l2tpns",
            netns,
            radius_address=netns.host_address,
            radius_port=auth_port,
            radius_secret=radius_secret,
            **l2tpns_options,  # type: ignore[arg-type]
        )
        try:
            radius.start()
            lns.start()
            yield L2tpnsPeer(lns, radius, netns)
        finally:
            lns.stop()
            radius.stop()
