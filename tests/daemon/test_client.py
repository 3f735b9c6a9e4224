"""kl2tp-lac in client mode on the host (null data plane): one call, redial, SIGTERM.

The kernel side of client mode (its own pppN, routes, counters) is proven in the lab
(tests/lab/test_daemons_kernel.py); here the same daemon runs PPP in userspace.
"""

from __future__ import annotations

from pathlib import Path

from tests.daemon.harness import BIN, Daemon, ctl, wait_for, write_configs

CLIENT = '[lac]\nmode = "client"\n[subscriber]\nusername = "user{n}"\npassword = "pass{n}"\n'


def test_client_keeps_one_call_up_redials_and_clears_on_sigterm(tmp_path: Path) -> None:
    lns_cfg, lac_cfg, lns_sock, lac_sock = write_configs(tmp_path, "s3cret", lac_extra=CLIENT)
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    lac = Daemon(
        [str(BIN / "kl2tp-lac"), "--config", str(lac_cfg), "--debug", "l2tp,daemon"],
        tmp_path / "lac.log",
    )
    try:

        def up(sock: Path) -> dict[str, object] | None:
            sessions = ctl(sock, "show", "sessions") if sock.exists() else []
            if len(sessions) == 1 and "address" in sessions[0]:
                return dict(sessions[0])
            return None

        first = wait_for(lambda: up(lns_sock), "the client's call on the LNS")
        client = wait_for(lambda: up(lac_sock), "the call up on the client")
        # One subscriber: n = 1 in the templates, CHAP, an address from the pool.
        assert first["username"] == "user1"
        assert first["auth"] == "chap"
        assert client["address"] == first["address"]
        assert len(ctl(lns_sock, "show", "tunnels")) == 1

        # The LNS clears the call: the client calls again.
        ctl(lns_sock, "clear", "session", str(first["tunnel_id"]), str(first["local_id"]))
        second = wait_for(
            lambda: (s := up(lns_sock)) and s["local_id"] != first["local_id"] and s,
            "the client to call again",
        )
        assert second["username"] == "user1"

        # SIGTERM: CDN, then StopCCN, exit 0; the LNS forgets everything.
        assert lac.stop() == 0
        wait_for(lambda: ctl(lns_sock, "show", "tunnels") == [], "the LNS to drop the tunnel")
        log = lac.output()
        last_cdn = log.rindex("O CDN")
        assert last_cdn < log.rindex("O StopCCN")
        assert "call down" in log
    finally:
        lac.kill()
        rc = lns.stop()
    assert rc == 0
