"""Real kl2tp-lns (RADIUS back end) and kl2tp-lac --simulate against a test FreeRADIUS."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.daemon.harness import BIN, BOUND, Daemon, free_udp_port, wait_for
from tests.radius.freeradius import FreeRadius

__all__ = ["Lns", "radius_servers", "run_lac"]


def radius_servers(*servers: FreeRadius | tuple[int, int, str]) -> str:
    """``[[radius.server]]`` tables; a tuple is (auth_port, acct_port, secret) of a server
    that is not running."""
    out = []
    for s in servers:
        auth, acct, secret = (
            (s.auth_port, s.acct_port, s.secret) if isinstance(s, FreeRadius) else s
        )
        out.append(
            f'[[radius.server]]\naddress = "127.0.0.1"\nauth_port = {auth}\n'
            f'acct_port = {acct}\nsecret = "{secret}"\n'
        )
    return "\n".join(out)


class Lns:
    """kl2tp-lns with ``[aaa] backend = "radius"`` on a free port."""

    def __init__(
        self,
        tmp: Path,
        servers: str,
        *,
        radius: str = "timeout = 1\nretries = 1\n",
        ppp: str = "",
        extra: str = "",
        auth: Sequence[str] = ("chap", "mschapv2", "pap"),
    ) -> None:
        self.tmp = tmp
        self.port = free_udp_port()
        self.sock = tmp / "lns.sock"
        self.spool = tmp / "acct.spool"
        self.config = tmp / "lns.toml"
        methods = ", ".join(f'"{m}"' for m in auth)
        self.config.write_text(
            f"""
[l2tp]
listen = "127.0.0.1:{self.port}"
hostname = "radius-lns"
workers = 1
idle_timeout = 1
[dataplane]
kind = "null"
[control]
socket = "{self.sock}"
[aaa]
backend = "radius"
[ppp]
auth = [{methods}]
pool = "10.20.0.2-10.20.0.250"
local_address = "10.20.0.1"
{ppp}
[radius]
accounting_spool = "{self.spool}"
{radius}
{servers}
{extra}
"""
        )
        self.daemon: Daemon | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.daemon = Daemon(
            [str(BIN / "kl2tp-lns"), "--config", str(self.config), "--debug", "aaa"],
            self.tmp / f"lns-{self.runs}.log",
        )
        wait_for(self.sock.exists, "the LNS control socket")

    def stop(self) -> int:
        assert self.daemon is not None
        rc = self.daemon.stop()
        wait_for(lambda: not self.sock.exists(), "the LNS socket to go", 10)
        return rc

    def output(self) -> str:
        return self.daemon.output() if self.daemon is not None else ""

    def __enter__(self) -> Lns:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.kill()


def lac_config(tmp: Path, lns: Lns, subscriber: str) -> Path:
    path = tmp / "lac.toml"
    path.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "radius-lac"
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lac.sock"}"
[[lac.lns]]
address = "127.0.0.1:{lns.port}"
[subscriber]
{subscriber}
"""
    )
    return path


def run_lac(
    tmp: Path,
    lns: Lns,
    calls: int,
    *,
    subscriber: str = "",
    hold: float = 0.0,
    background: bool = False,
) -> Any:
    """``kl2tp-lac --simulate CALLS``: the JSON summary (or the Popen when ``background``)."""
    argv = [
        str(BIN / "kl2tp-lac"),
        "--config",
        str(lac_config(tmp, lns, subscriber)),
        "--simulate",
        str(calls),
        "--hold",
        str(hold),
        "--json",
    ]
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=BOUND * 2)
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr
    return json.loads(lines[-1])


def finish(proc: subprocess.Popen[str]) -> Any:
    """The summary of a background ``run_lac``."""
    stdout, stderr = proc.communicate(timeout=BOUND * 2)
    lines = stdout.strip().splitlines()
    assert lines, stderr
    return json.loads(lines[-1])
