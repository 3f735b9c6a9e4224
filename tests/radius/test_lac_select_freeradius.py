"""A LAC picks its LNS from a real FreeRADIUS's reply: a salted Tunnel-Password, two
preferences, the better one dead; the LAC fails over and the calls come up on the live one
(kl2tp-lac --simulate into kl2tp-lns, both real processes)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon.harness import BIN, Daemon, ctl, wait_for, write_configs
from tests.radius.freeradius import FreeRadius, free_udp_port

TUNNEL_SECRET = "tunnel secret from RADIUS, 3 blocks long"  # salted over several MD5 blocks
LOOKUP_PASSWORD = "vpdn-lookup"


def users(dead_port: int, live_port: int) -> str:
    return f"""\
dnis:614629 Cleartext-Password := "{LOOKUP_PASSWORD}"
	Service-Type = Outbound-User,
	Tunnel-Type:1 = L2TP,
	Tunnel-Medium-Type:1 = IPv4,
	Tunnel-Server-Endpoint:1 = "127.0.0.1:{dead_port}",
	Tunnel-Password:1 = "not the one",
	Tunnel-Preference:1 = 1,
	Tunnel-Type:2 = L2TP,
	Tunnel-Medium-Type:2 = IPv4,
	Tunnel-Server-Endpoint:2 = "127.0.0.1:{live_port}",
	Tunnel-Password:2 = "{TUNNEL_SECRET}",
	Tunnel-Preference:2 = 2,
	Tunnel-Client-Auth-ID:2 = "lac-named-by-radius"
"""


def lac_config(tmp: Path, radius: FreeRadius, sock: Path) -> Path:
    path = tmp / "lac-radius.toml"
    path.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "test-lac"
secret = "the default secret, not the one RADIUS gives"
[dataplane]
kind = "null"
[control]
socket = "{sock}"
[lac]
lookup = "radius"
lookup_password = "{LOOKUP_PASSWORD}"
failover_timeout = 2
[[radius.server]]
address = "127.0.0.1"
auth_port = {radius.auth_port}
acct_port = {radius.acct_port}
secret = "{radius.secret}"
[subscriber]
called_number = "614629"
calling_number = "555{{n}}"
"""
    )
    return path


def lns_port(lns_cfg: Path) -> int:
    """The UDP port the LNS's config listens on."""
    return int(lns_cfg.read_text().split('listen = "127.0.0.1:')[1].split('"')[0])


def simulate(tmp: Path, cfg: Path, calls: int) -> Daemon:
    """kl2tp-lac --simulate ``calls`` with ``cfg``, each call held 3 s, JSON summary."""
    argv = ["--config", str(cfg), "--simulate", str(calls), "--hold", "3", "--json"]
    return Daemon([str(BIN / "kl2tp-lac"), *argv], tmp / "lac.log")


def test_lac_fails_over_to_the_live_lns_a_radius_reply_names(tmp_path: Path) -> None:
    lns_cfg, _, lns_sock, lac_sock = write_configs(tmp_path, TUNNEL_SECRET)
    live_port = lns_port(lns_cfg)
    dead_port = free_udp_port()
    radius = FreeRadius(tmp_path / "fr", users=users(dead_port, live_port))
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    lac = None
    try:
        radius.start()
        wait_for(lambda: lns_sock.exists(), "the LNS's control socket")
        lac = simulate(tmp_path, lac_config(tmp_path, radius, lac_sock), 4)
        # While the calls are held: the LNS sees the Host Name RADIUS gave (Client-Auth-ID).
        tunnels = wait_for(
            lambda: [t for t in ctl(lns_sock, "show", "tunnels") if t["sessions"] >= 4],
            "four calls on one tunnel at the LNS",
        )
        assert tunnels[0]["peer_hostname"] == "lac-named-by-radius"
        assert lac.proc.wait(timeout=60) == 0, lac.output()
        out = lac.output()
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["requested"] == 4 and summary["established"] == 4, out
        assert summary["selection"]["lookups"] == 1, summary
        assert summary["selection"]["dial_failures"] == 1, summary
        # The preferred LNS was tried once and failed over; one lookup served the burst.
        assert out.count(f"tunnel to 127.0.0.1:{dead_port} failed") == 1, out
        assert out.count("RADIUS tunnel lookup dnis:614629: 127.0.0.1") == 1, out
        assert TUNNEL_SECRET not in out and LOOKUP_PASSWORD not in out
    finally:
        if lac is not None:
            lac.kill()
        lns.stop()
        radius.stop()


def test_cisco_avpair_reply_and_a_rejected_dnis(tmp_path: Path) -> None:
    """A server set up for Cisco LACs (the reference trace's VSAs) works unchanged; a DNIS the
    server rejects gets no tunnel."""
    lns_cfg, _, lns_sock, lac_sock = write_configs(tmp_path, "hello")
    live_port = lns_port(lns_cfg)
    users_text = f"""\
dnis:614631 Cleartext-Password := "{LOOKUP_PASSWORD}"
	Service-Type = Outbound-User,
	Cisco-AVPair = "vpdn:tunnel-type=l2tp",
	Cisco-AVPair += "vpdn:tunnel-id=hgw",
	Cisco-AVPair += "vpdn:ip-addresses=127.0.0.1:{live_port}",
	Cisco-AVPair += "vpdn:l2tp-tunnel-password=hello"
"""
    radius = FreeRadius(tmp_path / "fr", users=users_text)
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    lac = None
    try:
        radius.start()
        wait_for(lambda: lns_sock.exists(), "the LNS's control socket")
        cfg = lac_config(tmp_path, radius, lac_sock)
        cfg.write_text(
            cfg.read_text().replace('called_number = "614629"', 'called_number = "61463{n}"')
        )
        lac = simulate(tmp_path, cfg, 2)
        tunnels = wait_for(
            lambda: [t for t in ctl(lns_sock, "show", "tunnels") if t["sessions"] >= 1],
            "the call of subscriber 1 at the LNS",
        )
        assert tunnels[0]["peer_hostname"] == "hgw"  # vpdn:tunnel-id
        assert lac.proc.wait(timeout=60) == 1, lac.output()  # one call failed
        out = lac.output()
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["established"] == 1 and summary["failed"] == {"no tunnel": 1}, out
        assert "RADIUS tunnel lookup dnis:614632: rejected" in out
        assert f"127.0.0.1:{live_port} (preference 1, cisco)" in out
    finally:
        if lac is not None:
            lac.kill()
        lns.stop()
        radius.stop()
