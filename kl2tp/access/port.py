"""The access interface: PPPoE frames in and out of one Ethernet interface (AF_PACKET).

Two raw packet sockets bound to the interface, one per PPPoE ethertype (Discovery 0x8863,
Session 0x8864), so the kernel hands us nothing else; frames are whole Ethernet frames
(14-byte header, no FCS) both ways. Sending never blocks the event loop: a frame the
kernel's queue cannot take is dropped and counted (PPP retransmits what matters).
"""

from __future__ import annotations

import errno
import socket
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import trio

from kl2tp.access.pppoe import ETH_P_PPP_DISC, ETH_P_PPP_SES

__all__ = ["PacketPort", "Port", "PortError"]

_MAX_FRAME = 65536


class PortError(Exception):
    """The interface cannot be used (missing, down, no permission): one line for the log."""


class Port(Protocol):
    """Where the access side's Ethernet frames go and come from."""

    @property
    def mac(self) -> bytes:
        """The interface's MAC address."""

    def send(self, frame: bytes) -> None:
        """Send one Ethernet frame now, or drop and count it (never blocks)."""

    async def run(
        self,
        deliver: Callable[[bytes], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``deliver`` with every PPPoE frame received, until cancelled."""


class PacketPort:
    """:class:`Port` over AF_PACKET sockets on one interface."""

    def __init__(self, sockets: list[socket.socket], mac: bytes, name: str) -> None:
        self._sockets = sockets
        self._mac = mac
        self.name = name
        """The interface name."""
        self.counters: Counter[str] = Counter()
        """``tx_dropped`` (kernel queue full or interface down), ``rx_frames``, ``tx_frames``."""

    @classmethod
    def open(cls, ifname: str) -> PacketPort:
        """Bind the two PPPoE ethertypes on ``ifname`` (needs CAP_NET_RAW).

        Raises:
            PortError: the interface is missing or the sockets cannot be made.
        """
        sockets: list[socket.socket] = []
        try:
            for proto in (ETH_P_PPP_DISC, ETH_P_PPP_SES):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
                sockets.append(sock)
                sock.bind((ifname, proto))
                sock.setblocking(False)
        except OSError as exc:
            for sock in sockets:
                sock.close()
            raise PortError(f"PPPoE on {ifname}: {exc.strerror or exc}") from None
        mac = sockets[0].getsockname()[4]
        if len(mac) != 6:
            for sock in sockets:
                sock.close()
            raise PortError(f"PPPoE on {ifname}: not an Ethernet interface")
        return cls(sockets, bytes(mac), ifname)

    @property
    def mac(self) -> bytes:
        """The interface's MAC address."""
        return self._mac

    def send(self, frame: bytes) -> None:
        """Send one frame on the interface, dropping it if the kernel cannot take it now."""
        try:
            self._sockets[0].send(frame)
            self.counters["tx_frames"] += 1
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO):
                raise
            self.counters["tx_dropped"] += 1

    async def run(
        self,
        deliver: Callable[[bytes], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """One reader per socket, each handing frames to ``deliver`` in arrival order."""
        async with trio.open_nursery() as nursery:
            for sock in self._sockets:
                nursery.start_soon(self._read, sock, deliver)
            task_status.started()

    async def _read(self, sock: socket.socket, deliver: Callable[[bytes], None]) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(_MAX_FRAME)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            self.counters["rx_frames"] += 1
            deliver(data)
            await trio.lowlevel.checkpoint()  # a busy interface must not starve the rest

    def close(self) -> None:
        """Close the sockets."""
        for sock in self._sockets:
            sock.close()
