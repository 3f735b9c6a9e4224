"""kl2tp-lns with ``[l2tp] workers = 2`` (null data plane) and kl2tp-lac holding calls
through it: one LNS to kl2tpctl and to a scrape, each tunnel in the worker of its id class,
no address handed out twice, a worker killed with SIGKILL restarted while the other's
sessions stay up, SIGTERM stopping everything."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import BIN, BOUND, Daemon, ctl, holding_lac, wait_for, write_configs
from tests.daemon.metrics_scrape import parse
from tests.daemon.test_metrics import check_against_summary

CALLS = 24
TUNNELS = 8


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def summary(sock: Path) -> dict[str, Any]:
    result: dict[str, Any] = ctl(sock, "show", "summary")
    return result


def test_two_workers_are_one_lns(tmp_path: Path) -> None:
    port = free_tcp_port()
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(
        tmp_path,
        "s3cret",
        workers=2,
        lns_extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n',
        lac_extra=f"[subscriber]\ntunnels = {TUNNELS}\n",
        idle_timeout=30,
    )
    lns = Daemon([str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp_path / "lns.log")
    lac: Daemon | None = None
    pids: list[int] = []
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        workers = wait_for(
            lambda: [w for w in summary(lns_sock)["workers"] if w["up"]], "two workers up"
        )
        pids = [w["pid"] for w in summary(lns_sock)["workers"]]
        assert len(pids) == 2 and all(pids) and lns.proc.pid not in pids, workers
        lac = holding_lac(lac_cfg, CALLS, tmp_path / "lac.log")
        wait_for(
            lambda: summary(lns_sock)["ppp"]["active"] == CALLS,
            f"{CALLS} sessions up",
        )

        # One LNS: every tunnel, in the worker its id's class names.
        tunnels = ctl(lns_sock, "show", "tunnels")
        assert len(tunnels) == TUNNELS
        assert all(t["local_id"] % 2 == t["worker"] for t in tunnels), tunnels
        sessions = ctl(lns_sock, "show", "sessions")
        assert len(sessions) == CALLS
        # No address handed out twice (each worker from the blocks it leased).
        addresses = [s["address"] for s in sessions]
        assert len(set(addresses)) == CALLS
        # NAS-Port (and the Acct-Session-Id made from it) numbered in the worker's class.
        for w in {s["worker"] for s in sessions}:
            row = next(s for s in sessions if s["worker"] == w)
            one_session = ctl(
                lns_sock, "show", "session", str(row["tunnel_id"]), str(row["local_id"])
            )
            assert (one_session["ppp"]["nas_port"] - 1) % 2 == w
        whole = summary(lns_sock)
        assert whole["ppp"]["pool"] == {"size": 253, "in_use": CALLS, "free": 253 - CALLS}
        assert whole["tunnels"]["total"] == TUNNELS
        assert whole["counters"].get("drop_unknown_tunnel", 0) == 0
        # A tunnel is asked of its owner only; so is a session.
        one = tunnels[0]
        detail = ctl(lns_sock, "show", "tunnel", str(one["local_id"]))
        assert detail["local_id"] == one["local_id"]

        # Reload and drain reach every worker.
        reloaded = ctl(lns_sock, "reload")
        assert reloaded["ok"] and [w["index"] for w in reloaded["workers"]] == [0, 1]
        assert ctl(lns_sock, "drain")["draining"] is True
        assert summary(lns_sock)["draining"] is True
        ctl(lns_sock, "undrain")

        # The merged scrape says what the merged summary says, at a quiet moment (the same
        # summary before and after the scrape: Hellos and echoes move the counters).
        for _ in range(20):
            before = summary(lns_sock)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=BOUND) as r:
                text = r.read().decode()
            if summary(lns_sock) == before:
                break
        else:
            pytest.fail("the workers' counters never held still around a scrape")
        check_against_summary(parse(text), before)

        # SIGKILL worker 0: it is restarted; worker 1's sessions stay up.
        survivors = {(s["tunnel_id"], s["local_id"]) for s in sessions if s["worker"] == 1}
        os.kill(pids[0], signal.SIGKILL)
        restarted = wait_for(
            lambda: [w for w in summary(lns_sock)["workers"] if w["restarts"] == 1 and w["up"]],
            "worker 0 restarted",
        )
        assert restarted[0]["index"] == 0 and restarted[0]["pid"] != pids[0]
        after = ctl(lns_sock, "show", "sessions")
        assert {(s["tunnel_id"], s["local_id"]) for s in after} == survivors
        assert "worker 0 (pid" in lns.output() and "SIGKILL" in lns.output()

        # SIGTERM: every worker clears its calls and exits, then the supervisor.
        new_pids = [w["pid"] for w in summary(lns_sock)["workers"]]
        assert lns.stop() == 0
        assert not any(alive(pid) for pid in new_pids)
        assert not lns_sock.exists()
    finally:
        if lac is not None:
            lac.kill()
        lns.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
