"""The data-plane interface: what the daemons ask of whatever carries subscriber traffic.

Two back ends implement it: :mod:`kl2tp.dataplane.kernel` programs l2tp_core / l2tp_ppp and
the daemons never see a data packet again; :mod:`kl2tp.dataplane.null` records what it would
program and carries PPP frames as L2TP data messages over the tunnel's UDP socket, so the
whole control plane runs (and is tested) on machines without L2TP in the kernel.

Every method is async: the kernel back end does blocking netlink work in a worker thread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs

from kl2tp.values import FramedRoute

Address = tuple[str, int]


@attrs.frozen(slots=True)
class TunnelSpec:
    """One L2TP control connection, as the kernel needs it."""

    local_tunnel_id: int
    """Our Assigned Tunnel ID (what the peer puts in the header)."""
    peer_tunnel_id: int
    """The peer's Assigned Tunnel ID (what we put in the header)."""
    local_addr: Address
    """Our UDP address and port for this tunnel."""
    peer_addr: Address
    """The peer's UDP address and port, fixed for the tunnel's life."""


@attrs.frozen(slots=True)
class SessionSpec:
    """One L2TP session carrying PPP."""

    local_tunnel_id: int
    """Tunnel the session belongs to (our id)."""
    peer_tunnel_id: int
    """The peer's id of that tunnel."""
    local_session_id: int
    """Our Assigned Session ID."""
    peer_session_id: int
    """The peer's Assigned Session ID."""
    lns_mode: bool
    """True on the LNS (the kernel then drives data sequencing, RFC 2661 5.4)."""
    data_sequencing: bool = False
    """Send Ns/Nr on data messages."""
    ifname: str | None = None
    """Interface name for the pppN netdev; None lets the back end pick from its template."""
    ifname_template: str | None = None
    """That template for this session (a ``[[peer]]``'s ``interface_template``); None: the
    back end's own."""
    mru: int = 1500
    """MRU for the PPP unit before LCP has negotiated one."""
    ppp_unit: bool = True
    """Attach the session to a PPP channel and unit (pppN) for PPP run here. False: a LAC
    relaying the session's frames to its access side (PPPoE) reads and writes them on the
    session's own PPPoL2TP socket, and no interface is made (``session_up`` is not called)."""


@attrs.frozen(slots=True)
class NetworkSpec:
    """What IPCP / IPv6CP agreed for a session's interface."""

    local_ip: ipaddress.IPv4Address | None
    """Our end of the point-to-point link."""
    peer_ip: ipaddress.IPv4Address | None
    """The subscriber's address (a host route is installed to it)."""
    mtu: int
    """Interface MTU (the peer's negotiated MRU)."""
    local_ifid: bytes | None = None
    """IPv6CP interface identifier (8 bytes) for our link-local address."""
    peer_ifid: bytes | None = None
    """IPv6CP interface identifier of the peer."""
    routes: tuple[FramedRoute, ...] = ()
    """Networks behind the subscriber (RADIUS Framed-Route / Framed-IP-Netmask), routed out
    of the session's interface. One that cannot be installed is logged and skipped: the
    session goes on without it."""


@attrs.frozen(slots=True)
class Counters:
    """Packet and byte counters of a kernel tunnel or session."""

    tx_packets: int = 0
    """Packets sent."""
    tx_bytes: int = 0
    """Bytes sent."""
    tx_errors: int = 0
    """Transmit errors."""
    rx_packets: int = 0
    """Packets received."""
    rx_bytes: int = 0
    """Bytes received."""
    rx_errors: int = 0
    """Receive errors (includes sequence errors)."""

    def as_dict(self) -> dict[str, int]:
        """Counters as a JSON-friendly dict."""
        return attrs.asdict(self)


FrameSink = Callable[[bytes], None]
"""Where a session's outgoing PPP frames go when they travel in userspace (null data plane):
the tunnel task wraps them into L2TP data messages."""


class PppChannel(Protocol):
    """One session's PPP control-frame source and sink.

    Frames start with the PPP protocol field (no ff03 address/control prefix).
    """

    async def send(self, frame: bytes) -> None:
        """Send one PPP frame to the peer."""

    async def receive(self) -> bytes:
        """Wait for the next PPP frame from the peer. Raises trio.EndOfChannel when closed."""

    def deliver(self, frame: bytes) -> bool:
        """Hand a frame that arrived as an L2TP data message to the channel.

        The null data plane's channel gets every frame this way; a kernel channel only the few
        that reached userspace before the kernel session existed. Returns False when the frame
        was dropped (queue full or channel closed).
        """

    async def aclose(self) -> None:
        """Close the channel's file descriptors."""


@runtime_checkable
class InlineChannel(PppChannel, Protocol):
    """A channel whose frames travel in userspace and that can hand them over without a
    task in between (the null data plane): the session's PPP runs in the tunnel task."""

    receiver: Callable[[bytes], None] | None
    """Set: every frame `deliver` gets goes to it at once, none is queued for `receive`."""

    def send_nowait(self, frame: bytes) -> None:
        """Send one PPP frame to the peer, without waiting (`send` without the await)."""


_INLINE_TYPES: dict[type, bool] = {}


def as_inline(channel: PppChannel) -> InlineChannel | None:
    """``channel`` when it is an `InlineChannel`, else None (checked once per class: a
    protocol check costs ~10 us, more than the rest of a frame's handling)."""
    kind = type(channel)
    inline = _INLINE_TYPES.get(kind)
    if inline is None:
        inline = _INLINE_TYPES[kind] = isinstance(channel, InlineChannel)
    return channel if inline else None  # type: ignore[return-value]


class TunnelHandle(Protocol):
    """What a data plane hands back for a tunnel it programmed."""

    @property
    def socket(self) -> object | None:
        """A trio UDP socket the kernel owns data on; control packets for the tunnel arrive
        there, and the tunnel task reads and writes it. None when the shared socket serves."""


class DataPlane(Protocol):
    """A data-plane back end."""

    name: str
    """"kernel" or "null", for logs and ``kl2tpctl show summary`` (decide by the
    capabilities below, never by the name)."""

    carries_frames: bool
    """True when every PPP frame travels through userspace as an L2TP data message (the
    null back end); False when the kernel carries them and userspace sees only frames that
    arrive before a session is programmed. Without it the LAC must program its session
    before its ICCN lets the LNS speak (``defer_connect``)."""

    kernel_counters: bool
    """True when tunnels and sessions have kernel packet counters (``tunnel_counters`` and
    ``session_counters`` answer for programmed ones)."""

    async def open_tunnel(self, spec: TunnelSpec) -> TunnelHandle:
        """Program a tunnel once its control connection is established."""

    async def close_tunnel(self, local_tunnel_id: int) -> None:
        """Remove a tunnel and any sessions left in it. Idempotent."""

    async def open_session(self, spec: SessionSpec, sink: FrameSink) -> PppChannel:
        """Program a session and return its PPP channel.

        ``sink`` carries outgoing frames when they travel in userspace.
        """

    async def set_mru(self, local_tunnel_id: int, local_session_id: int, mru: int) -> None:
        """Set the MRU LCP negotiated for us on the session's PPP unit (once LCP opens)."""

    async def session_up(
        self, local_tunnel_id: int, local_session_id: int, net: NetworkSpec
    ) -> str | None:
        """Configure the session's interface once an NCP is up.

        Called once per NCP that opens (IPCP, then IPv6CP, in either order): each call sets
        the MTU, brings the interface up and adds what ``net`` names (IPv4 address and host
        route when ``local_ip`` is set, link-local IPv6 addresses when ``local_ifid`` is set,
        the ``routes``), then lets that protocol through. A route that does not install is
        logged (with what to check) and skipped, never an error. Returns the interface name,
        or None where there is no interface.
        """

    async def close_session(self, local_tunnel_id: int, local_session_id: int) -> None:
        """Remove a session, its interface, addresses and routes. Idempotent."""

    async def tunnel_counters(self, local_tunnel_id: int) -> Counters | None:
        """Kernel counters of a tunnel, or None if the back end has none."""

    async def session_counters(
        self, local_tunnel_id: int, local_session_id: int
    ) -> Counters | None:
        """Kernel counters of a session, or None if the back end has none."""

    async def sessions_counters(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Counters]:
        """Kernel counters of several ``(local_tunnel_id, local_session_id)`` sessions in one
        query (``kl2tpctl show sessions``); sessions without counters are left out."""

    async def cleanup_stale(self) -> int:
        """Remove objects a killed earlier instance left behind; returns how many."""

    async def aclose(self) -> None:
        """Release everything the back end holds."""


class DataPlaneError(Exception):
    """A data-plane operation failed; the message says what to do about it."""
