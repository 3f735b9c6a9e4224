"""kl2tp-lac dials kl2tp-lns, both with the kernel data plane, inside the guest kernel.

Topology: three namespaces joined by two veth pairs::

    kl-sub (subscriber)          kl-lac (access network)        kl-lns
    kl2tp-lac, [lac] mode =      router, ip_forward on:         kl2tp-lns: tunnel secret,
    "client": the subscriber's   carries the tunnel's UDP        CHAP against a users file,
    own Linux box is its LAC     between the subscriber's line   addresses from a pool
    10.31.0.2 ------------------ 10.31.0.1 | 10.32.0.1 -------- 10.32.0.2

Why this shape: a Linux host that dials an LNS itself (xl2tpd + pppd, go-l2tp's kl2tpd) is
RFC 2661's "LAC Client": the subscriber and its LAC are one box, so kl2tp-lac in client mode
runs in the subscriber's namespace and its pppN is the subscriber's interface. What sits
between a subscriber and an LNS in a real network is the provider's access network, so the
middle namespace routes the tunnel's packets (they are routed, not bridged, as in a
deployment; a classic LAC would sit at that router, but in the client model its role is in
the subscriber's box). The pings go through the subscriber's pppN to the LNS's own PPP
address, i.e. through both kernels' L2TP sessions, and never through Python.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time
from collections.abc import Iterator

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
    nofile,
    one_session,
    ping_every_interface,
    ppp_addresses,
    start_lns,
    three_namespaces,
    wait_for,
)
from labutil import run

pytestmark = pytest.mark.lab

PINGS = 5
PING_WIRE_BYTES = 6 + 2 + 2 + 84
"""What the kernel counts per ping: L2TP header, ff 03, PPP protocol, IPv4 + ICMP + 56 bytes."""


@pytest.fixture
def topo() -> Iterator[Topology]:
    with three_namespaces() as t:
        yield t


def ping(ns: str, dst: str, count: int) -> str:
    return run("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2",
               "-W", "5", dst, check=False).stdout  # fmt: skip


def test_client_dials_pings_through_both_kernels_and_hangs_up(
    topo: Topology, tmp_path: pathlib.Path
) -> None:
    lns = start_lns(tmp_path, lns_config(tmp_path, users={"alice": "wonderland"}))
    lac_cfg = lac_config(
        tmp_path, mode="client", subscriber='username = "alice"\npassword = "wonderland"'
    )
    lns_sock, lac_sock = tmp_path / "lns.sock", tmp_path / "lac.sock"
    lac = Daemon(SUB, [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg), "-d", "l2tp,kernel,daemon"],
                 tmp_path / "lac.log")  # fmt: skip
    try:
        lns_sess = wait_for(lambda: one_session(lns_sock), "the call up on the LNS")
        lac_sess = wait_for(
            lambda: lac_sock.exists() and one_session(lac_sock), "the call up on the LAC"
        )
        address = lns_sess["address"]
        assert lns_sess["username"] == "alice"
        assert lns_sess["auth"] == "chap"
        assert lac_sess["address"] == address
        assert (lac_sess["local_id"], lac_sess["peer_id"]) == (
            lns_sess["peer_id"],
            lns_sess["local_id"],
        )
        # The LAC programmed its kernel session before its ICCN let the LNS speak (and the
        # LNS programs its own before it speaks): no PPP frame can reach Python on either side.
        tid, sid = lac_sess["tunnel_id"], lac_sess["local_id"]
        lac_log = lac.output()
        assert lac_log.index(f"Se {tid}/{sid}: kernel session on") < lac_log.index(
            f"Tnl/Cl {tid}/{sid} L2TP: O ICCN"
        ), lac_log
        lns_if, sub_if = lns_sess["interface"], lac_sess["interface"]
        assert isinstance(lns_if, str) and lns_if.startswith("lns")
        assert isinstance(sub_if, str) and sub_if.startswith("sub")

        # Both ends have their pppN addressed from IPCP and a host route to the other end.
        assert ppp_addresses(SUB) == {sub_if: (address, PPP_LOCAL)}
        assert ppp_addresses(LNS) == {lns_if: (PPP_LOCAL, address)}
        assert f"dev {sub_if}" in run("ip", "-n", SUB, "route", "get", PPP_LOCAL).stdout
        assert f"dev {lns_if}" in run("ip", "-n", LNS, "route", "get", str(address)).stdout

        before = {name: one_session(sock) for name, sock in (("lns", lns_sock), ("lac", lac_sock))}
        out = ping(SUB, PPP_LOCAL, PINGS)
        assert f"{PINGS} packets transmitted, {PINGS} received" in out, out
        after = {name: one_session(sock) for name, sock in (("lns", lns_sock), ("lac", lac_sock))}
        for name in ("lns", "lac"):
            b, a = before[name], after[name]
            assert b is not None and a is not None
            delta = {k: a["kernel"][k] - b["kernel"][k] for k in a["kernel"]}
            assert delta == {
                "tx_packets": PINGS,
                "tx_bytes": PINGS * PING_WIRE_BYTES,
                "tx_errors": 0,
                "rx_packets": PINGS,
                "rx_bytes": PINGS * PING_WIRE_BYTES,
                "rx_errors": 0,
            }, name
        # Not one data packet reached Python on either side, from the call's first LCP frame
        # on; the kernel totals are shown.
        for sock in (lns_sock, lac_sock):
            summary = ctl(sock, "show", "summary")
            assert summary["dataplane"] == "kernel"
            assert summary["counters"].get("data_rx", 0) == 0, summary["counters"]
            assert summary["counters"].get("data_early", 0) == 0, summary["counters"]
            assert summary["kernel"]["rx_packets"] >= PINGS
            tunnels = ctl(sock, "show", "tunnels")
            assert tunnels[0]["kernel"]["tx_packets"] >= PINGS

        # The LNS clears the call while the subscriber's box is frozen (so it cannot redial
        # yet): the LNS removes its session at once and, after the 1 s idle timeout, starts
        # closing the tunnel; once the box runs again both kernels are clean of that call.
        old_lns, old_sub = kernel_objects(LNS), kernel_objects(SUB)
        assert len(old_lns["tunnels"]) == len(old_sub["tunnels"]) == 1
        assert len(old_lns["sessions"]) == len(old_sub["sessions"]) == 1
        lac.signal(signal.SIGSTOP)
        try:
            ctl(lns_sock, "clear", "session", str(lns_sess["tunnel_id"]), str(lns_sess["local_id"]))
            wait_for(lambda: kernel_objects(LNS)["sessions"] == [], "the LNS session to go")
            now = kernel_objects(LNS)
            assert now["ppp"] == {}
            assert now["ppp_routes"] == []
            assert now["tunnels"] == old_lns["tunnels"]  # still there: StopCCN not yet acked
            wait_for(
                lambda: ctl(lns_sock, "show", "tunnels")[0]["state"] == "shutting-down",
                "the idle timeout to close the tunnel",
            )
        finally:
            lac.signal(signal.SIGCONT)

        def old_call_gone() -> bool:
            lns_now, sub_now = kernel_objects(LNS), kernel_objects(SUB)
            return (
                not set(old_lns["tunnels"]) & set(lns_now["tunnels"])
                and not set(old_sub["tunnels"]) & set(sub_now["tunnels"])
                and not set(old_sub["sessions"]) & set(sub_now["sessions"])
                and not set(old_sub["ppp"].values()) & set(sub_now["ppp"].values())
            )

        wait_for(old_call_gone, "the old tunnel and session to leave both kernels")
        # The client redials: a new tunnel and call, and traffic flows again.
        new_sess = wait_for(
            lambda: (s := one_session(lns_sock)) and s["tunnel_id"] != lns_sess["tunnel_id"] and s,
            "the client to redial",
        )
        wait_for(lambda: one_session(lac_sock), "the new call up on the LAC")
        out = ping(SUB, PPP_LOCAL, 2)
        assert "2 packets transmitted, 2 received" in out, out
        assert new_sess["username"] == "alice"

        # SIGTERM: the client clears its call (CDN) and tunnel (StopCCN) and exits 0.
        assert lac.stop() == 0
        wait_for(lambda: ctl(lns_sock, "show", "tunnels") == [], "the LNS to drop the tunnel")
        for ns in (SUB, LNS):
            wait_for(
                lambda ns=ns: (
                    kernel_objects(ns)
                    == {"tunnels": [], "sessions": [], "ppp": {}, "ppp_routes": []}
                ),
                f"nothing left in {ns}",
            )
        assert not pathlib.Path("/run/kl2tp/kl2tp-lac.journal").exists()
        log = lac.output()
        assert log.index("O CDN") < log.index("O StopCCN")
        summary = ctl(lns_sock, "show", "summary")
        assert summary["counters"].get("data_rx", 0) == 0
    finally:
        lac.kill()
        rc = lns.stop()
    assert rc == 0, lns.output()
    assert not pathlib.Path("/run/kl2tp/kl2tp-lns.journal").exists()


SESSIONS = 200


def test_200_sessions_over_one_tunnel_all_pass_traffic_and_leave_nothing(
    topo: Topology, tmp_path: pathlib.Path
) -> None:
    """kl2tp-lac --simulate with the kernel data plane: 200 subscribers, each with its own
    kernel session and pppN on the LAC side, against kl2tp-lns with the kernel data plane."""
    users = {f"user{n}": f"pass{n}" for n in range(1, SESSIONS + 1)}
    lns = start_lns(tmp_path, lns_config(tmp_path, users=users))
    lns_sock = tmp_path / "lns.sock"
    lac_cfg = lac_config(tmp_path, mode="simulate", subscriber="rate = 0")
    lac = Daemon(
        SUB,
        [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg), "--simulate", str(SESSIONS),
         "--hold", "600", "--json"],
        tmp_path / "lac.log",
    )  # fmt: skip
    t0 = time.monotonic()
    try:
        sessions = wait_for(
            lambda: (
                (s := ctl(lns_sock, "show", "sessions"))
                and len(s) == SESSIONS
                and all("interface" in x for x in s)
                and s
            ),
            f"{SESSIONS} calls up on the LNS",
            bound=300,
        )
        interfaces = wait_for(
            lambda: len(a := ppp_addresses(SUB)) == SESSIONS and a,
            f"{SESSIONS} interfaces up on the LAC side",
        )
        setup = time.monotonic() - t0
        assert len(ctl(lns_sock, "show", "tunnels")) == 1
        by_address = {s["address"]: s for s in sessions}
        assert sorted(by_address) == sorted(local for local, _ in interfaces.values())
        assert {peer for _, peer in interfaces.values()} == {PPP_LOCAL}

        data_rx_when_up = ctl(lns_sock, "show", "summary")["counters"].get("data_rx", 0)
        answered = ping_every_interface(SUB, PPP_LOCAL, interfaces)
        assert answered == set(interfaces)
        after = {s["local_id"]: s for s in ctl(lns_sock, "show", "sessions")}
        for s in sessions:
            # Each session carried exactly its own echo request and reply, in the kernel.
            grew = {
                k: after[s["local_id"]]["kernel"][k] - s["kernel"][k]
                for k in ("rx_packets", "tx_packets", "rx_bytes")
            }
            assert grew == {"rx_packets": 1, "tx_packets": 1, "rx_bytes": PING_WIRE_BYTES}
        # Each LAC session was in the kernel before its ICCN went, and the subscribers wait
        # for the LNS to speak, which it does once its own kernel session exists: not one
        # data packet reached the LNS's Python, during setup or since.
        assert data_rx_when_up == 0
        counters = ctl(lns_sock, "show", "summary")["counters"]
        assert counters.get("data_rx", 0) == 0, counters

        # The kernel's share of the setup was counted, once per session and operation.
        cost = ctl(lns_sock, "show", "summary")["kernel_cost"]
        assert cost["open_session"]["count"] == cost["session_up"]["count"] == SESSIONS
        assert cost["open_tunnel"]["count"] == 1
        assert cost["close_session"]["count"] == 0
        for op in ("open_session", "session_up"):
            parts = sum(cost[op][f"{kind}_us"] for kind in ("genl", "rtnl", "ppp"))
            assert 0 < parts <= cost[op]["cpu_us"] + 3, cost[op]
        # Three descriptors per session; the daemon raised its soft limit to the hard one.
        fds = len(os.listdir(f"/proc/{lns.proc.pid}/fd"))
        assert 3 * SESSIONS < fds < 3 * SESSIONS + 100
        soft, hard = nofile(lns.proc.pid)
        assert soft == hard
        assert "open files" in lns.output()

        t1 = time.monotonic()
        assert lac.stop() == 0, lac.output()
        result = json.loads(lac.output().strip().splitlines()[-1])
        assert result["established"] == SESSIONS
        assert result["failed"] == {}
        # ...nor the LAC's (LCP echoes are off, so teardown sends no PPP frame either).
        assert result["counters"].get("data_rx", 0) == 0, result["counters"]
        for ns in (SUB, LNS):
            wait_for(
                lambda ns=ns: (
                    kernel_objects(ns)
                    == {"tunnels": [], "sessions": [], "ppp": {}, "ppp_routes": []}
                ),
                f"nothing left in {ns}",
            )
        print(f"{SESSIONS} kernel sessions: up in {setup:.1f} s, down in "
              f"{time.monotonic() - t1:.1f} s")  # fmt: skip
        # The LNS's tables are empty, its pool whole, and each session's removal counted.
        summary = ctl(lns_sock, "show", "summary")
        assert summary["tunnels"]["total"] == summary["sessions"]["total"] == 0
        assert summary["ppp"]["pools"]["default"]["in_use"] == 0
        assert summary["kernel_cost"]["close_session"]["count"] == SESSIONS
        assert summary["kernel_cost"]["close_tunnel"]["count"] == 1
    finally:
        lac.kill()
        rc = lns.stop()
    assert rc == 0, lns.output()


def test_lns_killed_with_a_call_up_restarts_clean_and_takes_new_calls(
    topo: Topology, tmp_path: pathlib.Path
) -> None:
    journal = pathlib.Path("/run/kl2tp/kl2tp-lns.journal")
    lns_cfg = lns_config(tmp_path, users={"bob": "builder"})
    lns = start_lns(tmp_path, lns_cfg)
    lns_sock, lac_sock = tmp_path / "lns.sock", tmp_path / "lac.sock"
    # The client notices a dead LNS quickly: Hello after 1 s of silence, few retries.
    lac_cfg = lac_config(
        tmp_path,
        mode="client",
        subscriber='username = "bob"\npassword = "builder"',
        extra="hello_interval = 1\nretransmit_initial = 0.5\nretransmit_cap = 1\nmax_retries = 3",
    )
    lac = Daemon(SUB, [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg), "-d", "daemon"],
                 tmp_path / "lac.log")  # fmt: skip
    lns2: Daemon | None = None
    try:
        first = wait_for(lambda: one_session(lns_sock), "the call up on the LNS")
        before = kernel_objects(LNS)
        assert len(before["tunnels"]) == len(before["sessions"]) == len(before["ppp"]) == 1
        recorded = journal.read_text()
        assert '"op":"+tunnel"' in recorded
        assert '"op":"+link"' in recorded

        # The client is frozen meanwhile: its redial must not bring a new call (the pool
        # gives the same address again, so the same host route) before we look.
        lac.signal(signal.SIGSTOP)
        try:
            lns.kill()  # SIGKILL: no CDN, no StopCCN, no cleanup
            lns2 = start_lns(tmp_path, lns_cfg, name="lns2")
            # The new instance replayed the journal: nothing of the killed one is left (its
            # closed fds took most with them; the journal names whatever could remain).
            after = kernel_objects(LNS)
        finally:
            lac.signal(signal.SIGCONT)
        assert after == {"tunnels": [], "sessions": [], "ppp": {}, "ppp_routes": []}
        # ...and its journal now lists only what the new instance made.
        records = [json.loads(line) for line in journal.read_text().splitlines()]
        assert first["tunnel_id"] not in {r["id"] for r in records if r["op"] == "+tunnel"}

        # The client finds its tunnel dead (Hello unanswered), dials again, and the new LNS
        # takes the call: traffic passes through the new kernel objects.
        second = wait_for(
            lambda: (s := one_session(lns_sock)) and s["tunnel_id"] != first["tunnel_id"] and s,
            "the client's new call on the restarted LNS",
        )
        wait_for(lambda: one_session(lac_sock), "the new call up on the LAC")
        assert second["username"] == "bob"
        # The client tore its dead tunnel down (Hello failure) before dialling again.
        sub = kernel_objects(SUB)
        assert len(sub["tunnels"]) == len(sub["sessions"]) == len(sub["ppp"]) == 1
        out = ping(SUB, PPP_LOCAL, 2)
        assert "2 packets transmitted, 2 received" in out, out
        assert lac.stop() == 0
    finally:
        lac.kill()
        lns.kill()
        rc = lns2.stop() if lns2 is not None else 0
    assert rc == 0
    for ns in (SUB, LNS):
        assert kernel_objects(ns) == {"tunnels": [], "sessions": [], "ppp": {}, "ppp_routes": []}
