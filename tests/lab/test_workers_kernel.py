"""kl2tp-lns with ``[l2tp] workers = 2`` and the kernel data plane, in the guest kernel: two
subscriber boxes (kl2tp-lac in client mode, each its own tunnel) until each worker owns one
tunnel; each worker programmed its own tunnel and session, pings go through both kernels and
never through Python, and kl2tpctl sees one LNS.

Topology: test_daemons_kernel's three namespaces; both subscribers run in kl-sub.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from labdaemons import (
    BIN,
    LNS,
    PPP_LOCAL,
    SUB,
    Daemon,
    Topology,
    ctl,
    kernel_objects,
    lac_config,
    lns_config,
    start_lns,
    three_namespaces,
    wait_for,
)
from labutil import run

pytestmark = pytest.mark.lab

ATTEMPTS = 12
"""Subscribers started at most, one after the other, until both workers own a tunnel: an
SCCRQ goes to a worker by a hash of the LAC's random tunnel id, a coin toss each (all twelve
on one worker: once in 2,048 runs)."""
USERS = {f"sub{n}": f"pass{n}" for n in range(ATTEMPTS)}


@pytest.fixture
def topo() -> Iterator[Topology]:
    with three_namespaces() as t:
        yield t


def sessions_up(sock: pathlib.Path, count: int) -> list[dict[str, Any]] | None:
    rows = ctl(sock, "show", "sessions")
    if len(rows) == count and all("address" in r and "interface" in r for r in rows):
        return list(rows)
    return None


def ping(dst: str, interface: str) -> str:
    return run("ip", "netns", "exec", SUB, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "5",
               "-I", interface, dst, check=False).stdout  # fmt: skip


def test_two_workers_each_program_their_tunnels(topo: Topology, tmp_path: pathlib.Path) -> None:
    cfg = lns_config(tmp_path, users=USERS)
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    lns = start_lns(tmp_path, cfg)
    lns_sock = tmp_path / "lns.sock"
    lacs: list[Daemon] = []
    try:
        wait_for(
            lambda: all(w["up"] for w in ctl(lns_sock, "show", "summary")["workers"]),
            "both workers up",
        )
        workers_used: set[int] = set()
        for n, (user, password) in enumerate(USERS.items()):
            if workers_used == {0, 1}:
                break
            home = tmp_path / user
            home.mkdir()
            lac_cfg = lac_config(
                home, mode="client", subscriber=f'username = "{user}"\npassword = "{password}"'
            )
            lacs.append(
                Daemon(  # its own /run/kl2tp: one kernel journal per kl2tp-lac
                    SUB,
                    [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg)],
                    home / "lac.log",
                    private=True,
                )
            )
            rows = wait_for(lambda n=n: sessions_up(lns_sock, n + 1), f"{n + 1} calls up")
            workers_used = {r["worker"] for r in rows}
        assert workers_used == {0, 1}

        rows = ctl(lns_sock, "show", "sessions")
        tunnels = ctl(lns_sock, "show", "tunnels")
        assert all(t["local_id"] % 2 == t["worker"] for t in tunnels)
        # Each worker's own kernel objects: the kernel holds exactly the tunnels and
        # sessions kl2tpctl lists, whichever worker made them.
        kernel = kernel_objects(LNS)
        assert sorted(kernel["tunnels"]) == sorted(t["local_id"] for t in tunnels)
        assert sorted(kernel["sessions"]) == sorted(r["local_id"] for r in rows)
        addresses = [r["address"] for r in rows]
        assert len(set(addresses)) == len(addresses)
        # Through every subscriber's own pppN (both workers' kernel sessions).
        for home in (tmp_path / user for user in list(USERS)[: len(lacs)]):
            (sub,) = ctl(home / "lac.sock", "show", "sessions")
            out = ping(PPP_LOCAL, sub["interface"])
            assert "3 packets transmitted, 3 received" in out, (sub, out)
        summary = ctl(lns_sock, "show", "summary")
        assert summary["dataplane"] == "kernel"
        assert summary["counters"].get("data_rx", 0) == 0, summary["counters"]
        assert summary["kernel"]["rx_packets"] >= 3 * len(rows)

        for lac in lacs:
            assert lac.stop() == 0
        assert lns.stop() == 0
        assert kernel_objects(LNS) == {"tunnels": [], "sessions": [], "ppp": {}, "ppp_routes": []}
        assert not run("ls", "/run/kl2tp", check=False).stdout.count(".journal")
    finally:
        for lac in lacs:
            lac.kill()
        lns.kill()
