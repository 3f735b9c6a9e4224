"""Running ``kl2tp-lac --simulate`` against another vendor's LNS, and reading its summary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import attrs

from tests.daemon.harness import BIN

PASSWORD = "interop-pw"
"""Every simulated subscriber's password (RADIUS knows every ``user{n}`` with it)."""
TUNNEL_SECRET = "interop tunnel secret"
"""The tunnel secret on both ends (RFC 2661 tunnel authentication on)."""
BOUND = 180.0
"""Seconds any one simulation may take, start to exit."""


@attrs.frozen
class Run:
    """One finished ``kl2tp-lac --simulate --json``."""

    summary: dict[str, Any]
    """Its JSON summary."""
    output: str
    """Everything it printed besides the summary (its log)."""
    returncode: int


def lac_config(
    tmp: Path,
    lns: str,
    *,
    listen: str,
    auth: str = "chap",
    proxy: bool = False,
    tunnels: int = 1,
    extra: str = "",
) -> Path:
    """A LAC configuration: ``tunnels`` tunnels to ``lns`` (port 1701), the null data plane,
    subscribers ``user{n}`` authenticating with ``auth``."""
    path = tmp / "lac.toml"
    peers = "".join(f'[[lac.lns]]\naddress = "{lns}"\n' for _ in range(tunnels))
    path.write_text(
        f"""
[l2tp]
listen = "{listen}:0"
hostname = "kl2tp-lac"
secret = "{TUNNEL_SECRET}"
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lac.sock"}"
[lac]
{peers}
[subscriber]
username = "user{{n}}"
password = "{PASSWORD}"
auth = "{auth}"
proxy = {"true" if proxy else "false"}
{extra}
"""
    )
    return path


def simulate(config: Path, calls: int, *, rate: float, hold: float = 1.0) -> Run:
    """``kl2tp-lac --simulate CALLS`` at ``rate`` calls/s, each held ``hold`` s (bounded)."""
    argv = [str(BIN / "kl2tp-lac"), "--config", str(config), "--simulate", str(calls)]
    argv += ["--rate", str(rate), "--hold", str(hold), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BOUND)
    lines = done.stdout.strip().splitlines()
    assert lines, f"no summary (exit {done.returncode}):\n{done.stderr}"
    return Run(json.loads(lines[-1]), done.stderr, done.returncode)
