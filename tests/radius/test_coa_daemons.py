"""The CoA/Disconnect server in a real kl2tp-lns, driven by FreeRADIUS's radclient, with live
sessions from kl2tp-lac --simulate: Disconnect-ACK and the session cleared, NAK 503 for an
unknown session, a CoA Session-Timeout that ends a session, strangers dropped and counted."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pyrad import packet as rp

from kl2tp.aaa.radius.dictionary import load_dictionary
from tests.daemon.harness import BIN, Daemon, ctl, free_udp_port, wait_for, write_configs
from tests.parts import missing

COA_SECRET = "coa-secret-1"


def require_radclient() -> None:
    """Skip without radclient, except where FreeRADIUS is required (CI, scripts/test's full
    run: scripts/lab-deps.sh installs both)."""
    if shutil.which("radclient") is None:
        message = "radclient is not installed (apt-get install freeradius-utils)"
        missing(message, "KL2TP_REQUIRE_FREERADIUS")


def radclient(
    port: int, command: str, attributes: str, secret: str = COA_SECRET, wait: float = 3.0
) -> str:
    """Send one request with radclient; its output (``Received ...`` and the reply)."""
    out = subprocess.run(
        ["radclient", "-x", "-r", "1", "-t", str(wait), f"127.0.0.1:{port}", command, secret],
        input=attributes,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout + out.stderr


def sessions(sock: Path) -> list[dict[str, Any]]:
    return [s for s in ctl(sock, "show", "sessions") if s.get("address")]


def coa_toml(coa_port: int, radius_extra: str = "") -> str:
    """``[radius]`` with a CoA server on ``coa_port`` that takes requests from 127.0.0.1."""
    return f"""
[radius]
coa_listen = "127.0.0.1:{coa_port}"
{radius_extra}
[[radius.coa_client]]
address = "127.0.0.1"
secret = "{COA_SECRET}"
"""


@contextmanager
def lns_with_subscribers(
    tmp_path: Path, lns_cfg: Path, lac_cfg: Path, lns_sock: Path, n: int
) -> Iterator[Daemon]:
    """A kl2tp-lns with ``n`` subscribers of a kl2tp-lac --simulate up (held 120 s); both
    stopped after the block."""
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    lac = None
    try:
        wait_for(lambda: lns_sock.exists(), "the LNS's control socket")
        lac_argv = ["--config", str(lac_cfg), "--simulate", str(n), "--hold", "120"]
        lac = Daemon([str(BIN / "kl2tp-lac"), *lac_argv], tmp_path / "lac.log")
        wait_for(lambda: len(sessions(lns_sock)) == n, f"{n} subscribers up at the LNS")
        yield lns
    finally:
        if lac is not None:
            lac.kill()
        lns.stop()


@pytest.fixture
def daemons(tmp_path: Path):  # type: ignore[no-untyped-def]
    require_radclient()
    coa_port = free_udp_port()
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(
        tmp_path, "tunnel-secret", lns_extra=coa_toml(coa_port)
    )
    with lns_with_subscribers(tmp_path, lns_cfg, lac_cfg, lns_sock, 3) as lns:
        yield coa_port, lns, lns_sock


def test_disconnect_coa_and_strangers(daemons, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, lns, sock = daemons
    live = {s["username"]: s for s in sessions(sock)}
    assert set(live) == {"user1", "user2", "user3"}
    victim = live["user1"]

    # Disconnect by Acct-Session-Id, with a Message-Authenticator: ACKed, session cleared.
    out = radclient(
        port,
        "disconnect",
        f'Acct-Session-Id = "{victim["acct_session_id"]}"\nMessage-Authenticator = 0x00\n',
    )
    assert "Received Disconnect-ACK" in out, out
    wait_for(lambda: "user1" not in {s["username"] for s in sessions(sock)}, "user1 cleared")

    # An unknown session: NAK with Error-Cause 503.
    out = radclient(port, "disconnect", 'User-Name = "nobody"\n')
    assert "Received Disconnect-NAK" in out and "Session-Context-Not-Found" in out, out

    # By User-Name and Framed-IP-Address that do not belong together: 503 too, nobody cleared.
    other = live["user3"]["address"]
    out = radclient(port, "disconnect", f'User-Name = "user2"\nFramed-IP-Address = {other}\n')
    assert "Received Disconnect-NAK" in out, out

    # CoA: a Session-Timeout shorter than user2's time up ends it (counted from its start).
    out = radclient(port, "coa", 'User-Name = "user2"\nSession-Timeout = 1\n')
    assert "Received CoA-ACK" in out, out
    wait_for(lambda: {s["username"] for s in sessions(sock)} == {"user3"}, "user2 timed out")

    # A wrong secret and a stranger (127.0.0.2 is not a coa_client): no answer at all.
    out = radclient(port, "disconnect", 'User-Name = "user3"\n', secret="wrong", wait=0.5)
    assert "Received" not in out, out
    stranger = rp.CoAPacket(
        rp.DisconnectRequest,
        id=9,
        secret=COA_SECRET.encode(),
        dict=load_dictionary(),
        User_Name="user3",
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        s.settimeout(1.0)
        s.sendto(stranger.RequestPacket(), ("127.0.0.1", port))
        with pytest.raises(TimeoutError):
            s.recv(4096)
    assert {s["username"] for s in sessions(sock)} == {"user3"}

    # CoA: an Idle-Timeout (from now) ends the idle user3 (LCP echoes are not traffic).
    out = radclient(
        port, "coa", f'Acct-Session-Id = "{live["user3"]["acct_session_id"]}"\nIdle-Timeout = 1\n'
    )
    assert "Received CoA-ACK" in out, out
    wait_for(lambda: not sessions(sock), "user3 idled out")

    summary = ctl(sock, "show", "summary")
    coa = summary["ppp"]["coa"]
    assert coa["disconnect_ack"] == 1 and coa["coa_ack"] == 2 and coa["nak_503"] == 2, coa
    assert coa["drop_unknown_client"] == 1 and coa["drop_bad_authenticator"] >= 1, coa
    assert summary["ppp"]["timeouts"] == {"session-timeout": 1, "idle-timeout": 1}
    log = lns.output()
    assert "RADIUS Disconnect-Request; clearing the session" in log
    assert "127.0.0.2" in log and COA_SECRET not in log


def test_disconnect_stop_record_says_admin_reset(tmp_path: Path) -> None:
    """With RADIUS AAA and accounting, FreeRADIUS gets the Stop of the disconnected session:
    its Acct-Session-Id, Acct-Terminate-Cause Admin-Reset."""
    require_radclient()
    from tests.radius.freeradius import FreeRadius

    users = "".join(f'user{n} Cleartext-Password := "pass{n}"\n' for n in (1, 2))
    radius = FreeRadius(tmp_path / "fr", users=users)
    coa_port = free_udp_port()
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(
        tmp_path,
        "tunnel-secret",
        lns_extra=coa_toml(
            coa_port,
            f"""accounting_spool = "{tmp_path / "spool"}"
[[radius.server]]
address = "127.0.0.1"
auth_port = {radius.auth_port}
acct_port = {radius.acct_port}
secret = "{radius.secret}"
""",
        ),
    )
    lns_cfg.write_text(lns_cfg.read_text().replace("[aaa]\n", '[aaa]\nbackend = "radius"\n'))
    try:
        radius.start()
        with lns_with_subscribers(tmp_path, lns_cfg, lac_cfg, lns_sock, 2):
            target = next(s for s in sessions(lns_sock) if s["username"] == "user2")
            out = radclient(coa_port, "disconnect", 'User-Name = "user2"\n')
            assert "Received Disconnect-ACK" in out, out
            stops = radius.wait_records(
                lambda r: r.get("Acct-Status-Type") == "Stop" and r.get("User-Name") == "user2"
            )
            assert len(stops) == 1, radius.detail_records()
            assert stops[0]["Acct-Session-Id"] == target["acct_session_id"]
            assert stops[0]["Acct-Terminate-Cause"] == "Admin-Reset"
            assert [s["username"] for s in sessions(lns_sock)] == ["user1"]
    finally:
        radius.stop()
