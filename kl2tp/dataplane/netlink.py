"""Typed, synchronous adapter over the kernel's netlink interfaces the data plane needs.

Two small clients, each owning one netlink socket:

- :class:`L2tpNetlink`: the ``l2tp`` generic-netlink family (l2tp_netlink.ko): managed tunnels
  over a userspace UDP socket, PPP pseudowire sessions, their statistics, and dumps used to
  find stale objects.
- :class:`RtNetlink`: rtnetlink for the pppN interfaces: rename, MTU, up/down, point-to-point
  addresses and host routes.

Messages are built and parsed with pyroute2's message classes; the sockets are plain
``socket.socket`` objects so every call is an ordinary blocking syscall with no hidden event
loop or thread. The calls block: asynchronous callers run them in one worker thread (see
:mod:`kl2tp.dataplane.kernel`). A client is not thread-safe; use one per thread.

Errors surface as :class:`NetlinkError` (an ``OSError`` with the errno the kernel returned and
the operation in the message).

pyroute2 0.9.7 pitfalls avoided here: its ``L2tp.create_tunnel`` insists on addresses and ports
even with a file descriptor and drops fd 0 (``if fd:``), defaults to L2TPv3 and the Ethernet
pseudowire, ``create_session`` returns None, its dump ignores id filters, and statistics
attributes 10 and 11 (cookie discards, invalid) are not in its table.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import attrs
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, ctrlmsg, nla
from pyroute2.netlink.generic.l2tp import l2tpmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

Address = tuple[str, int]

# netlink.h / genetlink.h / rtnetlink.h constants (stable kernel ABI).
NETLINK_ROUTE = 0
NETLINK_GENERIC = 16
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
IFF_UP = 0x1
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200
RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTPROT_STATIC = 4

# l2tp.h
L2TP_GENL_NAME = "l2tp"
L2TP_GENL_VERSION = 1
L2TP_CMD_TUNNEL_CREATE = 1
L2TP_CMD_TUNNEL_DELETE = 2
L2TP_CMD_TUNNEL_GET = 4
L2TP_CMD_SESSION_CREATE = 5
L2TP_CMD_SESSION_DELETE = 6
L2TP_CMD_SESSION_GET = 8
L2TP_PWTYPE_PPP = 7
L2TP_ENCAPTYPE_UDP = 0
L2TP_ENCAPTYPE_IP = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NLMSGERR = struct.Struct("=i")
_RECV_BUFFER = 1 << 18


class NetlinkError(OSError):
    """The kernel refused a netlink request.

    ``errno`` is the kernel's error number (for example ``errno.EEXIST`` or ``errno.ENOENT``).
    """


class _L2tpStatsNla(nla):  # type: ignore[misc]
    """L2TP_ATTR_STATS with the two attributes pyroute2 0.9.7 does not know."""

    nla_map = (
        ("L2TP_ATTR_STATS_NONE", "none"),
        ("L2TP_ATTR_TX_PACKETS", "uint64"),
        ("L2TP_ATTR_TX_BYTES", "uint64"),
        ("L2TP_ATTR_TX_ERRORS", "uint64"),
        ("L2TP_ATTR_RX_PACKETS", "uint64"),
        ("L2TP_ATTR_RX_BYTES", "uint64"),
        ("L2TP_ATTR_RX_SEQ_DISCARDS", "uint64"),
        ("L2TP_ATTR_RX_OOS_PACKETS", "uint64"),
        ("L2TP_ATTR_RX_ERRORS", "uint64"),
        ("L2TP_ATTR_STATS_PAD", "none"),
        ("L2TP_ATTR_RX_COOKIE_DISCARDS", "uint64"),
        ("L2TP_ATTR_RX_INVALID", "uint64"),
    )


class _L2tpMsg(l2tpmsg):  # type: ignore[misc]
    """pyroute2's l2tp message with the complete statistics table."""

    nla_map = tuple(
        (name, "l2tp_stats_full") if name == "L2TP_ATTR_STATS" else (name, kind)
        for name, kind in l2tpmsg.nla_map
    )
    l2tp_stats_full = _L2tpStatsNla


@attrs.frozen(slots=True)
class L2tpStats:
    """Counters the kernel keeps per tunnel and per session."""

    tx_packets: int = 0
    """Data packets sent."""
    tx_bytes: int = 0
    """Payload bytes sent."""
    tx_errors: int = 0
    """Packets the kernel failed to send."""
    rx_packets: int = 0
    """Data packets received."""
    rx_bytes: int = 0
    """Payload bytes received."""
    rx_seq_discards: int = 0
    """Packets dropped for sequence number problems."""
    rx_oos_packets: int = 0
    """Packets received out of sequence."""
    rx_errors: int = 0
    """Receive errors."""
    rx_cookie_discards: int = 0
    """Packets dropped for a wrong cookie (L2TPv3 only)."""
    rx_invalid: int = 0
    """Packets dropped as malformed."""


@attrs.frozen(slots=True)
class TunnelInfo:
    """One kernel L2TP tunnel, as TUNNEL_GET reports it."""

    tunnel_id: int
    """Local tunnel id."""
    peer_tunnel_id: int
    """Peer's tunnel id."""
    version: int
    """L2TP protocol version (2 or 3)."""
    encap: int
    """Encapsulation: L2TP_ENCAPTYPE_UDP (0) or L2TP_ENCAPTYPE_IP (1)."""
    local: Address | None
    """Local address and UDP port of the tunnel socket, when the kernel reports them."""
    peer: Address | None
    """Peer address and UDP port."""
    stats: L2tpStats
    """Tunnel counters."""


@attrs.frozen(slots=True)
class SessionInfo:
    """One kernel L2TP session, as SESSION_GET reports it."""

    tunnel_id: int
    """Local tunnel id."""
    session_id: int
    """Local session id."""
    peer_tunnel_id: int
    """Peer's tunnel id."""
    peer_session_id: int
    """Peer's session id."""
    pw_type: int
    """Pseudowire type (7 = PPP)."""
    ifname: str | None
    """Interface the kernel associates with the session, if any."""
    lns_mode: bool
    """LNS mode (the kernel controls data sequencing)."""
    send_seq: bool
    """Data messages carry Ns/Nr."""
    recv_seq: bool
    """Data messages without sequence numbers are dropped."""
    stats: L2tpStats
    """Session counters."""


@attrs.frozen(slots=True)
class LinkInfo:
    """One network interface."""

    index: int
    """Interface index."""
    name: str
    """Interface name."""
    mtu: int
    """MTU."""
    up: bool
    """Administratively up (IFF_UP)."""


class _NetlinkSocket:
    """One netlink socket: request/response with sequence numbers and ACK handling."""

    def __init__(self, protocol: int) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((0, 0))
            self._pid = self._sock.getsockname()[0]
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def request(
        self, msg: Any, msg_type: int, flags: int, what: str, *, dump: bool = False
    ) -> list[Any]:
        """Send ``msg`` and collect the replies (decoded with ``type(msg)``).

        Raises:
            NetlinkError: the kernel answered with an error.
        """
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        header = msg["header"]
        header["type"] = msg_type
        header["flags"] = NLM_F_REQUEST | flags | (NLM_F_DUMP if dump else NLM_F_ACK)
        header["sequence_number"] = seq
        header["pid"] = self._pid
        msg.encode()
        self._sock.send(msg.data)
        replies: list[Any] = []
        cls = type(msg)
        while True:
            data = self._sock.recv(_RECV_BUFFER)
            for mtype, mseq, body, offset, length in _split(data):
                if mseq != seq:
                    continue  # a late reply to an earlier, interrupted request
                if mtype == NLMSG_DONE:
                    return replies
                if mtype == NLMSG_ERROR:
                    (code,) = _NLMSGERR.unpack_from(body, 0)
                    if code:
                        err = -code
                        raise NetlinkError(err, f"{what}: {os.strerror(err)}")
                    return replies  # ACK
                reply = cls(data[offset : offset + length])
                reply.decode()
                replies.append(reply)


def _split(data: bytes) -> Iterator[tuple[int, int, bytes, int, int]]:
    """Yield (type, seq, body, offset, length) per netlink message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, mtype, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        yield mtype, seq, data[offset + _NLMSGHDR.size : offset + length], offset, length
        offset += (length + 3) & ~3


def _family_id(sock: _NetlinkSocket, name: str) -> int:
    msg = ctrlmsg()
    msg["cmd"] = CTRL_CMD_GETFAMILY
    msg["version"] = 1
    msg["attrs"].append(["CTRL_ATTR_FAMILY_NAME", name])
    (reply,) = sock.request(msg, GENL_ID_CTRL, 0, f"resolve genl family {name!r}")[:1]
    return int(reply.get_attr("CTRL_ATTR_FAMILY_ID"))


def _stats(msg: Any) -> L2tpStats:
    nested = msg.get_attr("L2TP_ATTR_STATS")
    if nested is None:
        return L2tpStats()

    def get(name: str) -> int:
        return int(nested.get_attr(name) or 0)

    return L2tpStats(
        tx_packets=get("L2TP_ATTR_TX_PACKETS"),
        tx_bytes=get("L2TP_ATTR_TX_BYTES"),
        tx_errors=get("L2TP_ATTR_TX_ERRORS"),
        rx_packets=get("L2TP_ATTR_RX_PACKETS"),
        rx_bytes=get("L2TP_ATTR_RX_BYTES"),
        rx_seq_discards=get("L2TP_ATTR_RX_SEQ_DISCARDS"),
        rx_oos_packets=get("L2TP_ATTR_RX_OOS_PACKETS"),
        rx_errors=get("L2TP_ATTR_RX_ERRORS"),
        rx_cookie_discards=get("L2TP_ATTR_RX_COOKIE_DISCARDS"),
        rx_invalid=get("L2TP_ATTR_RX_INVALID"),
    )


def _tunnel_info(msg: Any) -> TunnelInfo:
    def endpoint(addr_v4: str, addr_v6: str, port: str) -> Address | None:
        addr = msg.get_attr(addr_v4) or msg.get_attr(addr_v6)
        udp_port = msg.get_attr(port)
        if addr is None or udp_port is None:
            return None
        return (str(addr), int(udp_port))

    return TunnelInfo(
        tunnel_id=int(msg.get_attr("L2TP_ATTR_CONN_ID")),
        peer_tunnel_id=int(msg.get_attr("L2TP_ATTR_PEER_CONN_ID") or 0),
        version=int(msg.get_attr("L2TP_ATTR_PROTO_VERSION") or 0),
        encap=int(msg.get_attr("L2TP_ATTR_ENCAP_TYPE") or 0),
        local=endpoint("L2TP_ATTR_IP_SADDR", "L2TP_ATTR_IP6_SADDR", "L2TP_ATTR_UDP_SPORT"),
        peer=endpoint("L2TP_ATTR_IP_DADDR", "L2TP_ATTR_IP6_DADDR", "L2TP_ATTR_UDP_DPORT"),
        stats=_stats(msg),
    )


def _session_info(msg: Any) -> SessionInfo:
    return SessionInfo(
        tunnel_id=int(msg.get_attr("L2TP_ATTR_CONN_ID")),
        session_id=int(msg.get_attr("L2TP_ATTR_SESSION_ID")),
        peer_tunnel_id=int(msg.get_attr("L2TP_ATTR_PEER_CONN_ID") or 0),
        peer_session_id=int(msg.get_attr("L2TP_ATTR_PEER_SESSION_ID") or 0),
        pw_type=int(msg.get_attr("L2TP_ATTR_PW_TYPE") or 0),
        ifname=msg.get_attr("L2TP_ATTR_IFNAME") or None,
        lns_mode=bool(msg.get_attr("L2TP_ATTR_LNS_MODE")),
        send_seq=bool(msg.get_attr("L2TP_ATTR_SEND_SEQ")),
        recv_seq=bool(msg.get_attr("L2TP_ATTR_RECV_SEQ")),
        stats=_stats(msg),
    )


class L2tpNetlink:
    """Client of the ``l2tp`` generic-netlink family.

    Raises:
        NetlinkError: on construction with ``errno.ENOENT`` when the kernel has no l2tp
            family (l2tp_netlink not loaded); see :mod:`kl2tp.dataplane.capability`.
    """

    def __init__(self) -> None:
        self._sock = _NetlinkSocket(NETLINK_GENERIC)
        try:
            self._family = _family_id(self._sock, L2TP_GENL_NAME)
        except BaseException:
            self._sock.close()
            raise

    def close(self) -> None:
        """Close the netlink socket."""
        self._sock.close()

    def __enter__(self) -> L2tpNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _msg(self, cmd: int, attrs_: list[tuple[str, Any]]) -> Any:
        msg = _L2tpMsg()
        msg["cmd"] = cmd
        msg["version"] = L2TP_GENL_VERSION
        msg["attrs"] = [list(a) for a in attrs_]
        return msg

    def _do(self, cmd: int, attrs_: list[tuple[str, Any]], what: str) -> list[Any]:
        return self._sock.request(self._msg(cmd, attrs_), self._family, 0, what)

    def create_tunnel(
        self,
        fd: int,
        tunnel_id: int,
        peer_tunnel_id: int,
        *,
        version: int = 2,
        udp_csum: bool = True,
    ) -> None:
        """Create a managed tunnel on an existing UDP socket.

        The socket must be bound to the local address and port and connected to the peer: the
        kernel sends data with the socket's destination. From now on the kernel consumes data
        packets arriving on it and passes control packets (and data for unknown sessions) up.

        Args:
            fd: the UDP socket's file descriptor (0 is a valid descriptor).
            tunnel_id: our tunnel id (what the peer puts in headers).
            peer_tunnel_id: the peer's tunnel id.
            version: L2TP version, 2 for RFC 2661.
            udp_csum: compute IPv4 UDP checksums on transmit.

        Raises:
            NetlinkError: EEXIST if the tunnel id is taken, EBADF/EINVAL for a bad socket.
        """
        self._do(
            L2TP_CMD_TUNNEL_CREATE,
            [
                ("L2TP_ATTR_CONN_ID", tunnel_id),
                ("L2TP_ATTR_PEER_CONN_ID", peer_tunnel_id),
                ("L2TP_ATTR_PROTO_VERSION", version),
                ("L2TP_ATTR_ENCAP_TYPE", L2TP_ENCAPTYPE_UDP),
                ("L2TP_ATTR_FD", fd),
                ("L2TP_ATTR_UDP_CSUM", int(udp_csum)),
            ],
            f"create tunnel {tunnel_id}",
        )

    def delete_tunnel(self, tunnel_id: int) -> bool:
        """Delete a tunnel and all its sessions. Returns False if it did not exist."""
        try:
            self._do(
                L2TP_CMD_TUNNEL_DELETE,
                [("L2TP_ATTR_CONN_ID", tunnel_id)],
                f"delete tunnel {tunnel_id}",
            )
        except NetlinkError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return False
            raise
        return True

    def create_session(
        self,
        tunnel_id: int,
        session_id: int,
        peer_session_id: int,
        *,
        pw_type: int = L2TP_PWTYPE_PPP,
        lns_mode: bool = False,
        send_seq: bool = False,
        recv_seq: bool = False,
        recv_timeout_ms: int | None = None,
    ) -> None:
        """Create a session in a tunnel (PPP pseudowire by default).

        A PPP session carries no traffic until a PPPoL2TP socket connects to it
        (:func:`kl2tp.dataplane.pppox.open_session_channel`).

        Raises:
            NetlinkError: ENOENT if the tunnel does not exist, EEXIST if the session does.
        """
        attrs_: list[tuple[str, Any]] = [
            ("L2TP_ATTR_CONN_ID", tunnel_id),
            ("L2TP_ATTR_SESSION_ID", session_id),
            ("L2TP_ATTR_PEER_SESSION_ID", peer_session_id),
            ("L2TP_ATTR_PW_TYPE", pw_type),
            ("L2TP_ATTR_LNS_MODE", int(lns_mode)),
            ("L2TP_ATTR_SEND_SEQ", int(send_seq)),
            ("L2TP_ATTR_RECV_SEQ", int(recv_seq)),
        ]
        if recv_timeout_ms is not None:
            attrs_.append(("L2TP_ATTR_RECV_TIMEOUT", recv_timeout_ms))
        self._do(L2TP_CMD_SESSION_CREATE, attrs_, f"create session {tunnel_id}/{session_id}")

    def delete_session(self, tunnel_id: int, session_id: int) -> bool:
        """Delete a session. Returns False if it did not exist."""
        try:
            self._do(
                L2TP_CMD_SESSION_DELETE,
                [("L2TP_ATTR_CONN_ID", tunnel_id), ("L2TP_ATTR_SESSION_ID", session_id)],
                f"delete session {tunnel_id}/{session_id}",
            )
        except NetlinkError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return False
            raise
        return True

    def get_tunnel(self, tunnel_id: int) -> TunnelInfo | None:
        """One tunnel with its counters, or None if it does not exist."""
        try:
            replies = self._do(
                L2TP_CMD_TUNNEL_GET, [("L2TP_ATTR_CONN_ID", tunnel_id)], f"get tunnel {tunnel_id}"
            )
        except NetlinkError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return None
            raise
        return _tunnel_info(replies[0]) if replies else None

    def get_session(self, tunnel_id: int, session_id: int) -> SessionInfo | None:
        """One session with its counters, or None if it does not exist."""
        try:
            replies = self._do(
                L2TP_CMD_SESSION_GET,
                [("L2TP_ATTR_CONN_ID", tunnel_id), ("L2TP_ATTR_SESSION_ID", session_id)],
                f"get session {tunnel_id}/{session_id}",
            )
        except NetlinkError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return None
            raise
        return _session_info(replies[0]) if replies else None

    def get_tunnel_stats(self, tunnel_id: int) -> L2tpStats | None:
        """Counters of one tunnel, or None if it does not exist."""
        info = self.get_tunnel(tunnel_id)
        return None if info is None else info.stats

    def get_session_stats(self, tunnel_id: int, session_id: int) -> L2tpStats | None:
        """Counters of one session, or None if it does not exist."""
        info = self.get_session(tunnel_id, session_id)
        return None if info is None else info.stats

    def list_tunnels(self) -> list[TunnelInfo]:
        """Every tunnel in this network namespace (the kernel's dump ignores filters)."""
        msg = self._msg(L2TP_CMD_TUNNEL_GET, [])
        replies = self._sock.request(msg, self._family, 0, "dump tunnels", dump=True)
        return [_tunnel_info(m) for m in replies]

    def list_sessions(self) -> list[SessionInfo]:
        """Every session of every tunnel in this network namespace."""
        msg = self._msg(L2TP_CMD_SESSION_GET, [])
        replies = self._sock.request(msg, self._family, 0, "dump sessions", dump=True)
        return [_session_info(m) for m in replies]


def _family_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


class RtNetlink:
    """rtnetlink client for the session interfaces: links, addresses, host routes."""

    def __init__(self) -> None:
        self._sock = _NetlinkSocket(NETLINK_ROUTE)

    def close(self) -> None:
        """Close the netlink socket."""
        self._sock.close()

    def __enter__(self) -> RtNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def link_by_name(self, name: str) -> LinkInfo | None:
        """The interface called ``name``, or None."""
        msg = ifinfmsg()
        msg["attrs"] = [["IFLA_IFNAME", name]]
        try:
            replies = self._sock.request(msg, RTM_GETLINK, 0, f"get link {name}")
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _link_info(replies[0]) if replies else None

    def link_by_index(self, index: int) -> LinkInfo | None:
        """The interface with ``index``, or None."""
        msg = ifinfmsg()
        msg["index"] = index
        try:
            replies = self._sock.request(msg, RTM_GETLINK, 0, f"get link #{index}")
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _link_info(replies[0]) if replies else None

    def list_links(self) -> list[LinkInfo]:
        """Every interface in this network namespace."""
        msg = ifinfmsg()
        return [
            _link_info(m) for m in self._sock.request(msg, RTM_GETLINK, 0, "dump links", dump=True)
        ]

    def set_link(
        self,
        index: int,
        *,
        name: str | None = None,
        mtu: int | None = None,
        up: bool | None = None,
    ) -> None:
        """Rename, set the MTU and/or bring an interface up or down (one request).

        A rename needs the interface down.
        """
        msg = ifinfmsg()
        msg["index"] = index
        if up is not None:
            msg["change"] = IFF_UP
            msg["flags"] = IFF_UP if up else 0
        if name is not None:
            msg["attrs"].append(["IFLA_IFNAME", name])
        if mtu is not None:
            msg["attrs"].append(["IFLA_MTU", mtu])
        self._sock.request(msg, RTM_NEWLINK, 0, f"set link #{index}")

    def delete_link(self, index: int) -> bool:
        """Delete an interface. Returns False if it did not exist."""
        msg = ifinfmsg()
        msg["index"] = index
        try:
            self._sock.request(msg, RTM_DELLINK, 0, f"delete link #{index}")
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    def add_address(
        self,
        index: int,
        local: ipaddress.IPv4Address | ipaddress.IPv6Address,
        peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    ) -> None:
        """Add a point-to-point address (``local peer PEER``, /32 or /128) to an interface.

        No prefix route is created; call :meth:`add_host_route` for the peer.
        """
        msg = ifaddrmsg()
        msg["family"] = _family_of(local)
        msg["prefixlen"] = local.max_prefixlen
        msg["index"] = index
        msg["attrs"] = [
            ["IFA_LOCAL", str(local)],
            ["IFA_ADDRESS", str(peer if peer is not None else local)],
            ["IFA_FLAGS", IFA_F_NOPREFIXROUTE | (IFA_F_NODAD if local.version == 6 else 0)],
        ]
        self._sock.request(
            msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, f"add address {local} to #{index}"
        )

    def add_route(
        self,
        index: int,
        network: ipaddress.IPv4Network | ipaddress.IPv6Network,
        metric: int | None = None,
        *,
        table: int = RT_TABLE_MAIN,
        protocol: int = RTPROT_STATIC,
        replace: bool = True,
    ) -> None:
        """Route ``network`` out of the interface, on-link (no gateway: point-to-point).

        Args:
            replace: replace a route with the same prefix and metric; False makes such a
                route an error (EEXIST) instead of taking it over.
        """
        msg = rtmsg()
        msg["family"] = _family_of(network.network_address)
        msg["dst_len"] = network.prefixlen
        msg["table"] = table if table < 256 else 252
        msg["proto"] = protocol
        msg["scope"] = RT_SCOPE_LINK
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [
            ["RTA_DST", str(network.network_address)],
            ["RTA_OIF", index],
            ["RTA_TABLE", table],
        ]
        if metric is not None:
            msg["attrs"].append(["RTA_PRIORITY", metric])
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._sock.request(msg, RTM_NEWROUTE, flags, f"add route {network} via #{index}")

    def add_host_route(
        self,
        index: int,
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
        *,
        table: int = RT_TABLE_MAIN,
        protocol: int = RTPROT_STATIC,
        metric: int | None = None,
    ) -> None:
        """Route ``dst``/32 (or /128) out of the interface (create or replace)."""
        self.add_route(index, ipaddress.ip_network(dst), metric, table=table, protocol=protocol)

    def delete_host_route(
        self,
        index: int,
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
        *,
        table: int = RT_TABLE_MAIN,
    ) -> bool:
        """Remove a host route added with :meth:`add_host_route`. False if it was gone."""
        msg = rtmsg()
        msg["family"] = _family_of(dst)
        msg["dst_len"] = dst.max_prefixlen
        msg["table"] = table if table < 256 else 252
        msg["attrs"] = [["RTA_DST", str(dst)], ["RTA_OIF", index], ["RTA_TABLE", table]]
        try:
            self._sock.request(msg, RTM_DELROUTE, 0, f"delete route {dst}")
        except NetlinkError as exc:
            if exc.errno in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                return False
            raise
        return True


def _link_info(msg: Any) -> LinkInfo:
    return LinkInfo(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME")),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        up=bool(msg["flags"] & IFF_UP),
    )
