"""Running the real daemons in tests: processes, configs, kl2tpctl, bounded waits."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
BOUND = 60.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, bound: float = BOUND) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def ctl(sock: Path, *args: str) -> Any:
    out = subprocess.run(
        [str(BIN / "kl2tpctl"), "--socket", str(sock), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def simulate(lac_cfg: Path, calls: int) -> subprocess.CompletedProcess[str]:
    """``kl2tp-lac --config LAC_CFG --simulate CALLS --json``, run to the end (bounded); the
    JSON summary is its stdout."""
    return subprocess.run(
        [str(BIN / "kl2tp-lac"), "--config", str(lac_cfg), "--simulate", str(calls), "--json"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )


def holding_lac(lac_cfg: Path, calls: int, log: Path) -> Daemon:
    """``kl2tp-lac --simulate CALLS`` placing every call at once and holding it (600 s)."""
    return Daemon(
        [
            str(BIN / "kl2tp-lac"),
            "-c",
            str(lac_cfg),
            "--simulate",
            str(calls),
            "--rate",
            "0",
            "--hold",
            "600",
            "--json",
        ],
        log,
    )


class Daemon:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.logf = log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=BOUND)
        self.logf.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()

    def output(self) -> str:
        if not self.logf.closed:
            self.logf.flush()
        return self.log.read_text()


def write_configs(
    tmp: Path,
    secret: str,
    lac_secret: str | None = None,
    *,
    lns_extra: str = "",
    lac_extra: str = "",
    pool: str = "10.20.0.0/24",
    users: int = 200,
    idle_timeout: float = 1,
    workers: int = 1,
) -> tuple[Path, Path, Path, Path]:
    """LNS and LAC configs on a random port; ``*_extra`` is appended TOML. The LNS clears a
    tunnel ``idle_timeout`` seconds after its last session, or after it came up if it never
    carries one."""
    port = free_udp_port()
    lns_sock, lac_sock = tmp / "lns.sock", tmp / "lac.sock"
    users_file = tmp / "users"
    users_file.write_text("".join(f"user{n} pass{n}\n" for n in range(1, users + 1)))
    lns = tmp / "lns.toml"
    lns.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:{port}"
hostname = "test-lns"
secret = "{secret}"
idle_timeout = {idle_timeout}
workers = {workers}
[dataplane]
kind = "null"
[control]
socket = "{lns_sock}"
[aaa]
users_file = "{users_file}"
[ppp]
pool = "{pool}"
local_address = "10.20.0.1"
{lns_extra}
"""
    )
    lac = tmp / "lac.toml"
    lac.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "test-lac"
secret = "{lac_secret or secret}"
[dataplane]
kind = "null"
[control]
socket = "{lac_sock}"
[[lac.lns]]
address = "127.0.0.1:{port}"
{lac_extra}
"""
    )
    return lns, lac, lns_sock, lac_sock
