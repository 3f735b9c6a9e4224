"""The kernel recipe, step by step, with the typed adapters: two L2TP ends in two namespaces.

Each end: a UDP socket bound to its address and connected to the peer, a managed L2TPv2
tunnel on it, a PPP session, a PPPoL2TP socket with /dev/ppp channel and unit, and the pppN
interface renamed, addressed point-to-point and routed. No LCP/IPCP runs: the units are told
to pass IP directly (what the daemon does once IPCP is open). Pings cross, the kernel's
session counters agree with them, and teardown leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator

import attrs
import pytest
from labutil import Link, netns, run

from kl2tp.dataplane.netlink import L2tpNetlink, RtNetlink
from kl2tp.dataplane.pppox import (
    PPP_IP,
    NpMode,
    PppoL2tpChannel,
    get_npmode,
    open_session_channel,
    set_npmode,
)

pytestmark = pytest.mark.lab

L2TP_PORT = 1701
PINGS = 5


@attrs.define
class End:
    """One end of the tunnel, living in one namespace."""

    ns: str
    tunnel_id: int
    session_id: int
    ifname: str
    inner_ip: ipaddress.IPv4Address
    udp: socket.socket
    l2tp: L2tpNetlink
    rt: RtNetlink
    ppp: PppoL2tpChannel | None = None
    ifindex: int = 0

    def close(self) -> None:
        if self.ppp is not None:
            self.ppp.close()
        self.l2tp.delete_tunnel(self.tunnel_id)
        self.udp.close()
        self.l2tp.close()
        self.rt.close()


def open_end(
    ns: str, local: str, peer: str, tunnel_id: int, peer_tunnel_id: int
) -> tuple[socket.socket, L2tpNetlink, RtNetlink]:
    """Recipe steps 1-2 inside ``ns``: connected UDP socket, managed L2TPv2 tunnel on it."""
    with netns(ns):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        udp.bind((local, L2TP_PORT))
        udp.connect((peer, L2TP_PORT))
        l2tp = L2tpNetlink()
        rt = RtNetlink()
    l2tp.create_tunnel(udp.fileno(), tunnel_id, peer_tunnel_id)
    return udp, l2tp, rt


def attach_session(end: End, peer: str, peer_tunnel_id: int, peer_session_id: int) -> None:
    """Recipe steps 3-6: session, PPPoL2TP socket, channel and unit, interface configured."""
    end.l2tp.create_session(end.tunnel_id, end.session_id, peer_session_id, lns_mode=True)
    with netns(end.ns):
        # PPPoL2TP sockets and PPP units belong to the namespace they are created in.
        end.ppp = open_session_channel(
            end.udp.fileno(),
            (peer, L2TP_PORT),
            end.tunnel_id,
            end.session_id,
            peer_tunnel_id,
            peer_session_id,
        )
        end.ifindex = socket.if_nametoindex(end.ppp.kernel_ifname)
    end.rt.set_link(end.ifindex, name=end.ifname, mtu=1400)


@pytest.fixture
def ends(veth_pair: Link) -> Iterator[tuple[End, End]]:
    a_sock, a_nl, a_rt = open_end(veth_pair.a, veth_pair.a_addr, veth_pair.b_addr, 101, 202)
    b_sock, b_nl, b_rt = open_end(veth_pair.b, veth_pair.b_addr, veth_pair.a_addr, 202, 101)
    a = End(veth_pair.a, 101, 1001, "l2tp-a0", ipaddress.IPv4Address("10.200.0.1"), a_sock,
            a_nl, a_rt)  # fmt: skip
    b = End(veth_pair.b, 202, 2002, "l2tp-b0", ipaddress.IPv4Address("10.200.0.2"), b_sock,
            b_nl, b_rt)  # fmt: skip
    try:
        attach_session(a, veth_pair.b_addr, 202, 2002)
        attach_session(b, veth_pair.a_addr, 101, 1001)
        for end, other in ((a, b), (b, a)):
            end.rt.add_address(end.ifindex, end.inner_ip, other.inner_ip)
            end.rt.set_link(end.ifindex, up=True)
            end.rt.add_host_route(end.ifindex, other.inner_ip)
        yield a, b
    finally:
        for end in (a, b):
            end.close()


def test_kernel_objects_are_what_was_asked_for(ends: tuple[End, End]) -> None:
    a, b = ends
    tunnel = a.l2tp.get_tunnel(a.tunnel_id)
    assert tunnel is not None
    assert (tunnel.peer_tunnel_id, tunnel.version) == (202, 2)
    assert tunnel.local == ("10.99.0.1", L2TP_PORT)
    assert tunnel.peer == ("10.99.0.2", L2TP_PORT)
    session = a.l2tp.get_session(a.tunnel_id, a.session_id)
    assert session is not None
    assert (session.peer_session_id, session.pw_type, session.lns_mode) == (2002, 7, True)
    assert [(s.tunnel_id, s.session_id) for s in b.l2tp.list_sessions()] == [(202, 2002)]
    link = a.rt.link_by_name("l2tp-a0")
    assert link is not None
    assert (link.index, link.mtu, link.up) == (a.ifindex, 1400, True)
    addr = run("ip", "-n", a.ns, "-4", "-o", "addr", "show", "dev", "l2tp-a0").stdout
    assert "inet 10.200.0.1 peer 10.200.0.2/32" in addr
    route = run("ip", "-n", a.ns, "route", "show", "10.200.0.2/32").stdout
    assert "dev l2tp-a0" in route


def test_ip_is_dropped_until_npmode_pass_then_pings_match_the_counters(
    ends: tuple[End, End],
) -> None:
    a, b = ends
    assert a.ppp is not None
    assert b.ppp is not None
    # IPCP not open yet: the unit drops IP before it reaches the L2TP session.
    assert get_npmode(a.ppp.unit_fd, PPP_IP) is NpMode.DROP
    blocked = run("ip", "netns", "exec", a.ns, "ping", "-n", "-c", "1", "-W", "1",
                  str(b.inner_ip), check=False)  # fmt: skip
    assert blocked.returncode != 0
    stats = a.l2tp.get_session_stats(a.tunnel_id, a.session_id)
    assert stats is not None
    assert stats.tx_packets == 0

    for end in (a, b):
        assert end.ppp is not None
        set_npmode(end.ppp.unit_fd, PPP_IP, NpMode.PASS)
    proc = run("ip", "netns", "exec", a.ns, "ping", "-n", "-q", "-c", str(PINGS), "-i", "0.2",
               "-W", "3", str(b.inner_ip))  # fmt: skip
    assert f"{PINGS} packets transmitted, {PINGS} received" in proc.stdout

    a_stats = a.l2tp.get_session_stats(a.tunnel_id, a.session_id)
    b_stats = b.l2tp.get_session_stats(b.tunnel_id, b.session_id)
    assert a_stats is not None
    assert b_stats is not None
    assert (a_stats.tx_packets, a_stats.rx_packets) == (PINGS, PINGS)
    assert (b_stats.tx_packets, b_stats.rx_packets) == (PINGS, PINGS)
    # Bytes count what the session puts on the wire after the UDP header: the 6-byte L2TPv2
    # header (no length, no sequence numbers), ff 03, the PPP protocol, the 84-byte IP packet.
    assert a_stats.tx_bytes == b_stats.rx_bytes == PINGS * (6 + 2 + 2 + 84)
    assert a_stats.rx_bytes == b_stats.tx_bytes == PINGS * (6 + 2 + 2 + 84)
    assert a_stats.tx_errors == a_stats.rx_errors == a_stats.rx_invalid == 0
    tunnel_stats = a.l2tp.get_tunnel_stats(a.tunnel_id)
    assert tunnel_stats is not None
    assert (tunnel_stats.tx_packets, tunnel_stats.rx_packets) == (PINGS, PINGS)


def test_teardown_leaves_no_tunnel_session_or_interface(veth_pair: Link) -> None:
    a_sock, a_nl, a_rt = open_end(veth_pair.a, veth_pair.a_addr, veth_pair.b_addr, 101, 202)
    a = End(veth_pair.a, 101, 1001, "l2tp-a0", ipaddress.IPv4Address("10.200.0.1"), a_sock,
            a_nl, a_rt)  # fmt: skip
    attach_session(a, veth_pair.b_addr, 202, 2002)
    assert a.rt.link_by_name("l2tp-a0") is not None
    assert len(a.l2tp.list_sessions()) == 1
    with netns(a.ns):
        l2tp = L2tpNetlink()
        rt = RtNetlink()
    try:
        a.close()
        # The kernel frees a deleted tunnel from a workqueue: give it a bounded moment.
        for _ in range(200):
            if not l2tp.list_tunnels():
                break
            time.sleep(0.01)
        assert l2tp.list_tunnels() == []
        assert l2tp.list_sessions() == []
        assert rt.link_by_name("l2tp-a0") is None
        assert not [link.name for link in rt.list_links() if link.name.startswith("ppp")]
    finally:
        l2tp.close()
        rt.close()
