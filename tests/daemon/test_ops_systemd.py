"""deploy/systemd: the unit files pass ``systemd-analyze verify``, the daemon speaks the
sd_notify protocol (READY, RELOADING, STOPPING, WATCHDOG), and the modules-load.d and
sysctl.d files hold what the data plane needs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from kl2tp.daemon.endpoint import RECEIVE_BUFFER
from tests.daemon.harness import BIN, BOUND, write_configs
from tests.parts import missing

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = ("kl2tp-lns.service", "kl2tp-lac.service")


def _systemd_analyze() -> str:
    """The tool, or a skip with the reason, never silently: under CI (``CI`` set) a missing
    tool fails the test (scripts/test installs it as root; see scripts/bootstrap.sh)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        missing("systemd-analyze is not installed (apt-get install systemd)")
    return tool


@pytest.mark.parametrize("unit", UNITS)
def test_unit_files_verify_clean(unit: str, tmp_path: Path) -> None:
    tool = _systemd_analyze()
    # verify wants the ExecStart binaries to exist: point them at this checkout's.
    text = (DEPLOY / unit).read_text().replace("/usr/bin/kl2tp-", f"{BIN}/kl2tp-")
    path = tmp_path / unit
    path.write_text(text)
    out = subprocess.run(
        [tool, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=BOUND
    )
    complaints = [ln for ln in (out.stdout + out.stderr).splitlines() if str(tmp_path) in ln]
    assert out.returncode == 0 and complaints == [], out.stdout + out.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_files_say_what_the_issue_asks(unit: str) -> None:
    lines = {
        ln.split("=", 1)[0]: ln.split("=", 1)[1]
        for ln in (DEPLOY / unit).read_text().splitlines()
        if "=" in ln and not ln.startswith("#")
    }
    assert lines["Type"] == "notify"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["Restart"] == "on-failure"
    assert lines["CapabilityBoundingSet"] == "CAP_NET_ADMIN"
    assert lines["AmbientCapabilities"] == "CAP_NET_ADMIN"
    assert lines["RuntimeDirectory"] == "kl2tp"
    assert "WatchdogSec" in lines and "--check-config" in lines["ExecStartPre"]


def test_modules_and_sysctl_files() -> None:
    modules = [
        ln.strip()
        for ln in (DEPLOY / "modules-load.d" / "kl2tp.conf").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert modules == ["l2tp_netlink", "l2tp_ppp", "ppp_generic"]
    sysctl = {}
    for ln in (DEPLOY / "sysctl.d" / "90-kl2tp.conf").read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            key, value = (part.strip() for part in ln.split("=", 1))
            sysctl[key] = value
            assert Path("/proc/sys", *key.split(".")).exists(), key
    assert sysctl["net.ipv4.ip_forward"] == "1"
    assert int(sysctl["net.core.rmem_max"]) >= RECEIVE_BUFFER


def test_the_daemon_notifies_systemd(tmp_path: Path) -> None:
    lns_cfg, _lac, lns_sock, _ = write_configs(tmp_path, "notify-secret")
    notify = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(notify))
    server.settimeout(BOUND)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def next_message(*skip: str) -> str:
            while True:
                msg = server.recv(4096).decode()
                if not msg.startswith(skip):
                    return msg

        assert next_message("WATCHDOG=1").startswith("READY=1")
        assert lns_sock.exists()  # READY comes once the control socket answers
        assert next_message() == "WATCHDOG=1"  # at half of WATCHDOG_USEC, again and again
        assert next_message() == "WATCHDOG=1"
        proc.send_signal(signal.SIGHUP)
        assert next_message("WATCHDOG=1").startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert next_message("WATCHDOG=1").startswith("READY=1")
        proc.send_signal(signal.SIGTERM)
        assert next_message("WATCHDOG=1").startswith("STOPPING=1")
        assert proc.wait(timeout=BOUND) == 0
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
