"""PPPoL2TP sockets and /dev/ppp channels and units (l2tp_ppp.ko, ppp_generic.ko).

After generic netlink has created a tunnel and a PPP session (:mod:`.netlink`), this module
attaches PPP to the session, following what pppd's pppol2tp plugin does:

1. ``socket(AF_PPPOX, SOCK_DGRAM, PX_PROTO_OL2TP)`` and ``connect()`` it with a packed
   ``struct sockaddr_pppol2tp`` naming the tunnel socket and the tunnel/session ids (38 bytes
   for IPv4; 50 bytes, ``sockaddr_pppol2tpin6``, for IPv6). Python's ``socket.connect`` does
   not know AF_PPPOX addresses, so libc's ``connect`` is called through ctypes.
2. ``PPPIOCGCHAN`` on that socket: it returns the PPP channel index and marks the socket bound
   (without this call no data flows).
3. ``open("/dev/ppp")`` + ``PPPIOCATTCHAN``: the *channel* fd.
4. ``open("/dev/ppp")`` + ``PPPIOCNEWUNIT``: the *unit* fd and the pppN interface;
   ``PPPIOCCONNECT`` on the channel fd joins channel and unit; ``PPPIOCSMRU`` sets the MRU.
5. ``PPPIOCSNPMODE``: network protocols (IP, IPv6) are dropped until the NCP is open, then
   passed (:func:`set_npmode`).

Framing on the /dev/ppp fds: one ``read``/``write`` is one PPP frame that starts with the
2-byte PPP protocol field, with no address/control bytes (ff 03) and no FCS; the kernel adds
ff 03 on the L2TP side. Frames whose protocol is >= 0xc000 (LCP, PAP, CHAP, ...) arrive on the
channel fd; NCP frames (IPCP 0x8021, IPv6CP 0x8057, CCP, ...) and anything else the unit does
not pass to the network stack arrive on the unit fd. Either fd accepts writes; by convention
link-level frames go to the channel fd and NCP frames to the unit fd (:func:`fd_for_protocol`).
Both fds are non-blocking; ``read`` returning ``b""`` means the channel was torn down.

Every call here is a quick syscall (no netlink); the interface rename, MTU and addresses are
rtnetlink work in :mod:`.netlink`.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import fcntl
import ipaddress
import os
import socket
import struct

import attrs

AF_PPPOX = 24
PX_PROTO_OL2TP = 1
PPP_DEVICE = "/dev/ppp"

# PPP protocol numbers the unit's NP modes are keyed on.
PPP_IP = 0x0021
PPP_IPV6 = 0x0057
PPP_LINK_PROTOCOLS = 0xC000
"""Protocols at or above this value travel on the channel fd."""


def _ioc(direction: int, nr: int, size: int) -> int:
    # asm-generic/ioctl.h on x86, arm, ...: dir(2) size(14) type(8) nr(8); 't' is ppp's type.
    return (direction << 30) | (size << 16) | (ord("t") << 8) | nr


_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
PPPIOCGCHAN = _ioc(_IOC_READ, 55, 4)
PPPIOCATTCHAN = _ioc(_IOC_WRITE, 56, 4)
PPPIOCDISCONN = _ioc(_IOC_NONE, 57, 0)
PPPIOCCONNECT = _ioc(_IOC_WRITE, 58, 4)
PPPIOCNEWUNIT = _ioc(_IOC_READ | _IOC_WRITE, 62, 4)
PPPIOCSNPMODE = _ioc(_IOC_WRITE, 75, 8)
PPPIOCGNPMODE = _ioc(_IOC_READ | _IOC_WRITE, 76, 8)
PPPIOCSMRU = _ioc(_IOC_WRITE, 82, 4)
PPPIOCGUNIT = _ioc(_IOC_READ, 86, 4)


class NpMode(enum.IntEnum):
    """What a PPP unit does with a network protocol's packets (enum NPmode)."""

    PASS = 0
    """Pass them (the NCP is open)."""
    DROP = 1
    """Silently drop them."""
    ERROR = 2
    """Drop them and return an error to the sender."""
    QUEUE = 3
    """Hold them until the mode changes."""


_INT = struct.Struct("=i")
_NPIOCTL = struct.Struct("=ii")
# struct sockaddr_pppol2tp (__packed): sa_family u16, sa_protocol u32, then pppol2tp_addr:
# pid i32, fd i32, struct sockaddr_in (family u16 host order, port u16 net order, 4-byte
# address, 8 zero bytes), s_tunnel, s_session, d_tunnel, d_session u16 host order.
_SOCKADDR_PPPOL2TP = struct.Struct("=HIii H2s4s8x HHHH")
# struct sockaddr_pppol2tpin6 (__packed): the ids come before a struct sockaddr_in6
# (family, port, flowinfo, 16-byte address, scope id).
_SOCKADDR_PPPOL2TPIN6 = struct.Struct("=HIii HHHH H2sI16sI")
assert _SOCKADDR_PPPOL2TP.size == 38
assert _SOCKADDR_PPPOL2TPIN6.size == 50

_libc = ctypes.CDLL(None, use_errno=True)
_libc.connect.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.connect.restype = ctypes.c_int


def sockaddr_pppol2tp(
    tunnel_fd: int,
    peer: tuple[str, int],
    tunnel_id: int,
    session_id: int,
    peer_tunnel_id: int,
    peer_session_id: int,
) -> bytes:
    """The packed address ``connect()`` takes for an L2TPv2 session (IPv4 or IPv6 peer)."""
    address = ipaddress.ip_address(peer[0])
    port = struct.pack("!H", peer[1])
    if address.version == 4:
        return _SOCKADDR_PPPOL2TP.pack(
            AF_PPPOX,
            PX_PROTO_OL2TP,
            0,
            tunnel_fd,
            socket.AF_INET,
            port,
            address.packed,
            tunnel_id,
            session_id,
            peer_tunnel_id,
            peer_session_id,
        )
    return _SOCKADDR_PPPOL2TPIN6.pack(
        AF_PPPOX,
        PX_PROTO_OL2TP,
        0,
        tunnel_fd,
        tunnel_id,
        session_id,
        peer_tunnel_id,
        peer_session_id,
        socket.AF_INET6,
        port,
        0,
        address.packed,
        0,
    )


def _ioctl_int_out(fd: int, request: int) -> int:
    (value,) = _INT.unpack(fcntl.ioctl(fd, request, bytes(_INT.size)))
    return int(value)


def _ioctl_int_in(fd: int, request: int, value: int) -> None:
    fcntl.ioctl(fd, request, _INT.pack(value))


def set_npmode(unit_fd: int, protocol: int, mode: NpMode) -> None:
    """Pass, drop or queue one network protocol (PPP_IP, PPP_IPV6) on a PPP unit."""
    fcntl.ioctl(unit_fd, PPPIOCSNPMODE, _NPIOCTL.pack(protocol, mode))


def get_npmode(unit_fd: int, protocol: int) -> NpMode:
    """The unit's current mode for a network protocol."""
    _, mode = _NPIOCTL.unpack(fcntl.ioctl(unit_fd, PPPIOCGNPMODE, _NPIOCTL.pack(protocol, 0)))
    return NpMode(mode)


def set_mru(unit_fd: int, mru: int) -> None:
    """Largest frame the unit accepts from the peer (the MRU we advertised in LCP)."""
    _ioctl_int_in(unit_fd, PPPIOCSMRU, mru)


def fd_for_protocol(channel: PppoL2tpChannel, protocol: int) -> int:
    """The fd a frame of ``protocol`` is written to: link level on the channel, NCPs on the unit."""
    return channel.channel_fd if protocol >= PPP_LINK_PROTOCOLS else channel.unit_fd


@attrs.define(slots=True)
class PppoL2tpChannel:
    """The PPP side of one L2TP session: PPPoL2TP socket, /dev/ppp channel and unit.

    Owns three file descriptors; :meth:`close` releases them in reverse order, which makes the
    kernel remove the pppN interface and detach the session.
    """

    sock: socket.socket
    """The connected PPPoL2TP socket (keeps the session attached)."""
    channel_fd: int
    """/dev/ppp fd attached to the channel: LCP and authentication frames."""
    unit_fd: int
    """/dev/ppp fd owning the unit: NCP frames; the pppN interface lives while it is open."""
    channel_index: int
    """PPP channel index (PPPIOCGCHAN)."""
    unit: int
    """PPP unit number; the kernel names the interface ppp<unit> until renamed."""

    @property
    def kernel_ifname(self) -> str:
        """The interface name the kernel gave the unit."""
        return f"ppp{self.unit}"

    def close(self) -> None:
        """Close unit, channel and socket (idempotent)."""
        for attr in ("unit_fd", "channel_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.sock.close()


def connect_pppol2tp(
    tunnel_fd: int,
    peer: tuple[str, int],
    tunnel_id: int,
    session_id: int,
    peer_tunnel_id: int,
    peer_session_id: int,
) -> socket.socket:
    """A PPPoL2TP socket connected to an existing kernel session.

    Raises:
        OSError: from socket() when the kernel has no l2tp_ppp, or from connect() (for
            example ENOENT when the session does not exist, EEXIST when it already has a socket).
    """
    sock = socket.socket(AF_PPPOX, socket.SOCK_DGRAM, PX_PROTO_OL2TP)
    try:
        addr = sockaddr_pppol2tp(
            tunnel_fd, peer, tunnel_id, session_id, peer_tunnel_id, peer_session_id
        )
        if _libc.connect(sock.fileno(), addr, len(addr)) != 0:
            err = ctypes.get_errno()
            raise OSError(
                err,
                f"PPPoL2TP connect to session {tunnel_id}/{session_id}: {os.strerror(err)}",
            )
    except BaseException:
        sock.close()
        raise
    return sock


def open_session_channel(
    tunnel_fd: int,
    peer: tuple[str, int],
    tunnel_id: int,
    session_id: int,
    peer_tunnel_id: int,
    peer_session_id: int,
    *,
    mru: int = 1500,
    npmode: NpMode = NpMode.DROP,
    ppp_device: str = PPP_DEVICE,
) -> PppoL2tpChannel:
    """Attach PPP to a kernel L2TP session: steps 1-5 of the module docstring.

    Args:
        tunnel_fd: the tunnel's UDP socket (the one given to TUNNEL_CREATE).
        peer: the peer's address and UDP port.
        tunnel_id, session_id: our ids.
        peer_tunnel_id, peer_session_id: the peer's ids.
        mru: initial MRU of the unit.
        npmode: initial mode for IP and IPv6: DROP until the NCPs are open.
        ppp_device: path of /dev/ppp.

    Raises:
        OSError: any step failed; everything opened so far is closed again.
    """
    sock = connect_pppol2tp(tunnel_fd, peer, tunnel_id, session_id, peer_tunnel_id, peer_session_id)
    channel_fd = unit_fd = -1
    try:
        channel_index = _ioctl_int_out(sock.fileno(), PPPIOCGCHAN)
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK
        channel_fd = os.open(ppp_device, flags)
        _ioctl_int_in(channel_fd, PPPIOCATTCHAN, channel_index)
        unit_fd = os.open(ppp_device, flags)
        (unit,) = _INT.unpack(fcntl.ioctl(unit_fd, PPPIOCNEWUNIT, _INT.pack(-1)))
        # The NP modes are set before the channel is connected so not one packet slips past.
        set_npmode(unit_fd, PPP_IP, npmode)
        set_npmode(unit_fd, PPP_IPV6, npmode)
        _ioctl_int_in(channel_fd, PPPIOCCONNECT, unit)
        set_mru(unit_fd, mru)
    except BaseException:
        for fd in (unit_fd, channel_fd):
            if fd >= 0:
                os.close(fd)
        sock.close()
        raise
    return PppoL2tpChannel(
        sock=sock,
        channel_fd=channel_fd,
        unit_fd=unit_fd,
        channel_index=channel_index,
        unit=int(unit),
    )
