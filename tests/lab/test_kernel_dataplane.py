"""KernelDataPlane (the async back end the daemons use) against a peer in another namespace.

The data plane under test runs in the guest's initial namespace; its peer is programmed with
the synchronous KernelMechanics inside namespace lab-p. PPP control frames travel through the
kernel session both ways, pings pass once the session is up, counters agree, control packets
(and only they) reach the tunnel socket, and teardown leaves nothing.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import socket
import struct

import pytest
import trio
import trio.lowlevel
from labutil import Link, netns, run

from kl2tp.dataplane.base import NetworkSpec, SessionSpec, TunnelSpec
from kl2tp.dataplane.kernel import KernelDataPlane, KernelMechanics
from kl2tp.dataplane.netlink import L2tpNetlink, RtNetlink
from kl2tp.values import FramedRoute

pytestmark = pytest.mark.lab

PINGS = 4
LCP_CONFREQ = bytes.fromhex("c021 01 07 0004".replace(" ", ""))
IPCP_CONFREQ = bytes.fromhex("8021 01 09 000a 0306 0ac9 0001".replace(" ", ""))


def zlb(peer_tunnel_id: int) -> bytes:
    """An L2TP control ZLB (T, L, S bits, version 2) addressed to ``peer_tunnel_id``."""
    return struct.pack("!HHHHHH", 0xC802, 12, peer_tunnel_id, 0, 0, 0)


async def read_fd(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd)


async def test_sessions_frames_pings_counters_and_teardown(
    peer_ns: Link, tmp_path: pathlib.Path
) -> None:
    dp = await KernelDataPlane.open(
        instance="lab-lns", state_dir=str(tmp_path), ifname_template="kl%d"
    )
    with netns(peer_ns.b):
        peer = KernelMechanics(instance="lab-lac", state_dir=str(tmp_path / "peer"))
        peer_sock = peer.open_tunnel(
            TunnelSpec(20, 10, (peer_ns.b_addr, 1701), (peer_ns.a_addr, 1701))
        )
    try:
        assert await dp.cleanup_stale() == 0
        handle = await dp.open_tunnel(
            TunnelSpec(10, 20, (peer_ns.a_addr, 1701), (peer_ns.b_addr, 1701))
        )
        tsock = handle.socket
        assert isinstance(tsock, trio.socket.SocketType)

        # Control packets still reach userspace on the tunnel socket.
        peer_sock.send(zlb(10))
        with trio.fail_after(10):
            assert await tsock.recv(2048) == zlb(10)

        channel = await dp.open_session(
            SessionSpec(10, 20, 100, 200, lns_mode=True, ifname=None, mru=1450),
            sink=lambda frame: None,
        )
        with netns(peer_ns.b):
            peer_session = peer.open_session(SessionSpec(20, 10, 200, 100, lns_mode=False))

        # An LCP frame written on the peer's channel fd arrives on our channel...
        os.write(peer_session.ppp.channel_fd, LCP_CONFREQ)
        with trio.fail_after(10):
            assert await channel.receive() == LCP_CONFREQ
        # ...and an IPCP frame we send arrives on the peer's unit fd (NCPs go to the unit).
        await channel.send(IPCP_CONFREQ)
        with trio.fail_after(10):
            assert await read_fd(peer_session.ppp.unit_fd) == IPCP_CONFREQ

        lns_ip, lac_ip = ipaddress.IPv4Address("10.201.0.1"), ipaddress.IPv4Address("10.201.0.2")
        ifname = await dp.session_up(10, 100, NetworkSpec(lns_ip, lac_ip, mtu=1400))
        assert ifname is not None
        assert ifname.startswith("kl")
        assert ifname[2:].isdigit()
        with netns(peer_ns.b):
            peer.session_up(20, 200, NetworkSpec(lac_ip, lns_ip, mtu=1400))
        show = run("ip", "-o", "-4", "addr", "show", "dev", ifname).stdout
        assert f"inet {lns_ip} peer {lac_ip}/32" in show
        assert f"dev {ifname}" in run("ip", "route", "show", f"{lac_ip}/32").stdout
        assert "mtu 1400" in run("ip", "link", "show", ifname).stdout

        proc = await trio.run_process(
            ["ip", "netns", "exec", peer_ns.b, "ping", "-n", "-q", "-c", str(PINGS),
             "-i", "0.2", "-W", "3", str(lns_ip)],
            capture_stdout=True, check=False,
        )  # fmt: skip
        assert f"{PINGS} packets transmitted, {PINGS} received" in proc.stdout.decode()

        counters = await dp.session_counters(10, 100)
        assert counters is not None
        # One control frame each way plus the pings.
        assert (counters.rx_packets, counters.tx_packets) == (PINGS + 1, PINGS + 1)
        assert counters.rx_errors == counters.tx_errors == 0
        tunnel_counters = await dp.tunnel_counters(10)
        assert tunnel_counters is not None
        assert tunnel_counters.rx_packets == PINGS + 1
        # No data packet reached userspace: only the ZLB was ever readable.
        with pytest.raises(BlockingIOError):
            dp.mechanics.tunnels[10].sock.recv(2048, socket.MSG_DONTWAIT)

        # Hang up: the channel ends, the interface and the kernel session go.
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                with pytest.raises(trio.EndOfChannel), trio.fail_after(10):
                    await channel.receive()

            nursery.start_soon(reader)
            await trio.lowlevel.checkpoint()
            await dp.close_session(10, 100)
        assert await dp.session_counters(10, 100) is None
        with L2tpNetlink() as nl, RtNetlink() as rt:
            assert nl.list_sessions() == []
            assert rt.link_by_name(ifname) is None
            await dp.close_tunnel(10)
            assert nl.list_tunnels() == []
    finally:
        await dp.aclose()
        with netns(peer_ns.b):
            peer.close()
    assert not (tmp_path / "lab-lns.journal").exists()


def test_ipv6cp_session_gets_link_local_addresses_and_passes_ipv6(
    veth_pair: Link, tmp_path: pathlib.Path
) -> None:
    ifid = {veth_pair.a: bytes.fromhex("0200000000000001"),
            veth_pair.b: bytes.fromhex("0200000000000002")}  # fmt: skip
    mechs: dict[str, KernelMechanics] = {}
    # No Router Solicitations on the interfaces made below: they would race the counters.
    for ns in (veth_pair.a, veth_pair.b):
        run("ip", "netns", "exec", ns, "sysctl", "-qw",
            "net.ipv6.conf.default.router_solicitations=0")  # fmt: skip
    try:
        for ns, local, peer, tid, ptid, sid, psid in (
            (veth_pair.a, veth_pair.a_addr, veth_pair.b_addr, 1, 2, 10, 20),
            (veth_pair.b, veth_pair.b_addr, veth_pair.a_addr, 2, 1, 20, 10),
        ):
            with netns(ns):
                mech = mechs[ns] = KernelMechanics(
                    instance=ns, state_dir=str(tmp_path), ifname_template="v6l%d"
                )
                mech.open_tunnel(TunnelSpec(tid, ptid, (local, 1701), (peer, 1701)))
                mech.open_session(SessionSpec(tid, ptid, sid, psid, lns_mode=ns == veth_pair.a))
        other = {veth_pair.a: veth_pair.b, veth_pair.b: veth_pair.a}
        ifnames = {}
        for ns, (tid, sid) in ((veth_pair.a, (1, 10)), (veth_pair.b, (2, 20))):
            net = NetworkSpec(None, None, mtu=1400, local_ifid=ifid[ns], peer_ifid=ifid[other[ns]])
            with netns(ns):
                ifnames[ns] = mechs[ns].session_up(tid, sid, net)
        a_if = ifnames[veth_pair.a]
        show = run("ip", "-n", veth_pair.a, "-6", "-o", "addr", "show", "dev", a_if).stdout
        assert "inet6 fe80::200:0:0:1 peer fe80::200:0:0:2/128" in show
        proc = run("ip", "netns", "exec", veth_pair.a, "ping", "-6", "-n", "-q", "-c", "3",
                   "-i", "0.2", "-W", "3", f"fe80::200:0:0:2%{a_if}")  # fmt: skip
        assert "3 packets transmitted, 3 received" in proc.stdout
        # The kernel session counted exactly what IPv6 sent and received on the interface:
        # the three pings and their replies.
        counters = mechs[veth_pair.a].session_counters(1, 10)
        assert counters is not None
        snmp6 = run("ip", "netns", "exec", veth_pair.a, "cat", f"/proc/net/dev_snmp6/{a_if}").stdout
        stats = {k: int(v) for k, v in (line.split() for line in snmp6.splitlines() if line)}
        assert stats["Icmp6OutEchos"] == 3 and stats["Icmp6InEchoReplies"] == 3, snmp6
        assert (stats["Ip6OutRequests"], stats["Ip6InReceives"]) == (3, 3), snmp6
        assert (counters.tx_packets, counters.rx_packets) == (3, 3), snmp6
    finally:
        for ns, mech in mechs.items():
            with netns(ns):
                mech.close()


async def test_framed_routes_go_out_of_the_interface_and_leave_with_it(
    peer_ns: Link, tmp_path: pathlib.Path
) -> None:
    """Framed routes point at the session's interface with their metric; one whose prefix and
    metric another route holds is skipped, that route untouched; closing the session leaves
    no route behind."""
    held = ipaddress.IPv4Network("10.203.0.0/24")
    run("ip", "route", "add", str(held), "dev", "veth-r", "metric", "5")
    dp = await KernelDataPlane.open(
        instance="lab-routes", state_dir=str(tmp_path), ifname_template="rt%d"
    )
    try:
        await dp.open_tunnel(TunnelSpec(30, 40, (peer_ns.a_addr, 1701), (peer_ns.b_addr, 1701)))
        await dp.open_session(SessionSpec(30, 40, 300, 400, lns_mode=True), sink=lambda frame: None)
        routes = (
            FramedRoute(ipaddress.IPv4Network("10.202.0.0/24"), 1),
            FramedRoute(ipaddress.IPv4Network("10.202.8.0/21")),
            FramedRoute(held, 5),
        )
        lns_ip, peer_ip = ipaddress.IPv4Address("10.201.1.1"), ipaddress.IPv4Address("10.201.1.2")
        ifname = await dp.session_up(30, 300, NetworkSpec(lns_ip, peer_ip, mtu=1400, routes=routes))
        assert ifname is not None
        shown = run("ip", "-o", "route", "show", "dev", ifname).stdout
        assert "10.202.0.0/24 proto static scope link metric 1" in shown, shown
        assert "10.202.8.0/21 proto static scope link" in shown, shown
        assert f"{peer_ip} proto static scope link" in shown, shown
        assert str(held) not in shown, shown
        # IPCP reopening (same routes again) is no error and adds nothing.
        await dp.session_up(30, 300, NetworkSpec(lns_ip, peer_ip, mtu=1400, routes=routes))
        assert run("ip", "-o", "route", "show", "dev", ifname).stdout == shown
        await dp.close_session(30, 300)
        everything = run("ip", "-o", "route", "show", "table", "all").stdout
        assert ifname not in everything and "10.202." not in everything, everything
        assert "dev veth-r" in run("ip", "route", "show", str(held)).stdout  # untouched
    finally:
        await dp.aclose()
        run("ip", "route", "del", str(held), "dev", "veth-r", check=False)
