"""The real daemons on 127.0.0.1: kl2tp-lac dials kl2tp-lns, calls come up, show, clear, stop.

These run the installed console scripts as subprocesses, exactly as an operator would, with
random ports and temporary control sockets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import BIN, BOUND, Daemon, ctl, wait_for, write_configs


@pytest.fixture
def lns_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path, Path, Path]]:
    lns_cfg, lac_cfg, lns_sock, lac_sock = write_configs(tmp_path, "s3cret")
    daemon = Daemon(
        [str(BIN / "kl2tp-lns"), "--config", str(lns_cfg), "--debug", "l2tp"], tmp_path / "lns.log"
    )
    try:
        wait_for(lambda: lns_sock.exists(), "the LNS control socket")
        yield daemon, lac_cfg, lns_sock, lac_sock
    finally:
        daemon.kill()


def test_control_socket_is_private(lns_daemon: tuple[Daemon, Path, Path, Path]) -> None:
    _, _, lns_sock, _ = lns_daemon
    assert os.stat(lns_sock).st_mode & 0o777 == 0o600


def test_simulated_calls_through_real_daemons(
    lns_daemon: tuple[Daemon, Path, Path, Path], tmp_path: Path
) -> None:
    lns, lac_cfg, lns_sock, _ = lns_daemon
    out_path = tmp_path / "lac.out"
    with out_path.open("w") as out:
        lac = subprocess.Popen(
            [
                str(BIN / "kl2tp-lac"),
                "--config",
                str(lac_cfg),
                "--simulate",
                "100",
                # Held until the test has looked (SIGTERM below ends the hold): a fixed hold
                # could run out before a busy machine got to the checks.
                "--hold",
                "600",
                "--json",
            ],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        # While the LAC holds its calls, the LNS shows all 100 of them, established and
        # with an address (the LAC holds until every subscriber's IPCP is open, then until
        # SIGTERM ends the hold: no race with the checks however slow the host).
        sessions = wait_for(
            lambda: (
                (s := ctl(lns_sock, "show", "sessions"))
                and len(s) == 100
                and all("address" in x for x in s)
                and s
            ),
            "100 subscribers up on the LNS",
        )
        assert {s["state"] for s in sessions} == {"established"}
        assert len({s["local_id"] for s in sessions}) == 100
        # PPP ran on every session: CHAP with the subscriber template, addresses from the pool.
        assert {s["username"] for s in sessions} == {f"user{n}" for n in range(1, 101)}
        assert {s["auth"] for s in sessions} == {"chap"}
        addresses = {s["address"] for s in sessions}
        assert len(addresses) == 100
        assert all(a.startswith("10.20.0.") and a != "10.20.0.1" for a in addresses)
        tunnels = ctl(lns_sock, "show", "tunnels")
        assert len(tunnels) == 1
        assert tunnels[0]["peer_hostname"] == "test-lac"
        assert tunnels[0]["sessions"] == 100
        summary = ctl(lns_sock, "show", "summary")
        assert summary["sessions"]["total"] == 100
        lac.send_signal(signal.SIGTERM)
        _, err = lac.communicate(timeout=BOUND)
    assert lac.returncode == 0, err
    result = json.loads(out_path.read_text())
    assert result["requested"] == 100
    assert result["established"] == 100
    assert result["failed"] == {}
    assert result["cps"] > 0
    assert result["setup_ms"]["p50"] <= result["setup_ms"]["p99"]
    # Every call cleared, and the tunnel goes with the last one.
    wait_for(lambda: ctl(lns_sock, "show", "tunnels") == [], "the tunnel to close")
    assert lns.stop() == 0
    log = lns.output()
    assert "L2TP: I SCCRQ" in log
    assert "Tunnel Authentication success" in log


def test_wrong_secret_fails_the_tunnel(tmp_path: Path) -> None:
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(tmp_path, "right", lac_secret="wrong")
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    try:
        wait_for(lambda: lns_sock.exists(), "the LNS control socket")
        out = subprocess.run(
            [str(BIN / "kl2tp-lac"), "--config", str(lac_cfg), "--simulate", "3", "--json"],
            capture_output=True,
            text=True,
            timeout=BOUND,
        )
        assert out.returncode == 1
        result = json.loads(out.stdout)
        assert result["established"] == 0
        assert result["failed"] == {"tunnel setup failed": 3}
        assert ctl(lns_sock, "show", "tunnels") == []
    finally:
        rc = lns.stop()
    assert rc == 0


def test_sigterm_clears_everything(tmp_path: Path) -> None:
    # The LAC keeps a tunnel without calls: the LNS would clear it after idle_timeout.
    lns_cfg, lac_cfg, lns_sock, lac_sock = write_configs(tmp_path, "s3cret", idle_timeout=600)
    lns = Daemon(
        [str(BIN / "kl2tp-lns"), "--config", str(lns_cfg), "--debug", "l2tp"], tmp_path / "lns.log"
    )
    wait_for(lambda: lns_sock.exists(), "the LNS control socket")
    lac = Daemon(
        [str(BIN / "kl2tp-lac"), "--config", str(lac_cfg), "--debug", "l2tp"], tmp_path / "lac.log"
    )
    try:
        wait_for(lambda: lac_sock.exists(), "the LAC control socket")
        tunnels = wait_for(
            lambda: [t for t in ctl(lns_sock, "show", "tunnels") if t["state"] == "established"],
            "the LAC's tunnel on the LNS",
        )
        lac_tunnels = ctl(lac_sock, "show", "tunnels")
        assert lac_tunnels[0]["peer_id"] == tunnels[0]["local_id"]
        assert lac_tunnels[0]["local_id"] == tunnels[0]["peer_id"]
        # The LAC stops: it sends StopCCN, and the LNS forgets the tunnel.
        assert lac.stop() == 0
        wait_for(lambda: ctl(lns_sock, "show", "tunnels") == [], "the LNS to drop the tunnel")
        assert "O StopCCN" in lac.output()
    finally:
        lac.kill()
    try:
        assert lns.stop() == 0
    finally:
        lns.kill()
    assert not lns_sock.exists()


def test_clear_commands(lns_daemon: tuple[Daemon, Path, Path, Path], tmp_path: Path) -> None:
    lns, lac_cfg, lns_sock, _ = lns_daemon
    lac = subprocess.Popen(
        [
            str(BIN / "kl2tp-lac"),
            "--config",
            str(lac_cfg),
            "--simulate",
            "5",
            "--hold",
            "30",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sessions = wait_for(
            lambda: (s := ctl(lns_sock, "show", "sessions")) and len(s) == 5 and s, "5 sessions"
        )
        victim = sessions[0]
        res = ctl(lns_sock, "clear", "session", str(victim["tunnel_id"]), str(victim["local_id"]))
        assert res == {"cleared": [victim["tunnel_id"], victim["local_id"]]}
        wait_for(lambda: len(ctl(lns_sock, "show", "sessions")) == 4, "one session cleared")
        ctl(lns_sock, "clear", "tunnel", str(victim["tunnel_id"]))
        wait_for(lambda: ctl(lns_sock, "show", "tunnels") == [], "the tunnel cleared")
        bad = subprocess.run(
            [str(BIN / "kl2tpctl"), "--socket", str(lns_sock), "clear", "tunnel", "1"],
            capture_output=True,
            text=True,
            timeout=BOUND,
        )
        assert bad.returncode == 1
        assert "no tunnel 1" in bad.stderr
    finally:
        lac.kill()
        lac.communicate()
    assert lns.stop() == 0
