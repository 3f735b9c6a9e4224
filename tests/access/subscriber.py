"""A PPPoE subscriber for tests: Discovery by hand, then our own ``ppp.Link`` as the host.

Runs on any :class:`kl2tp.access.port.Port` (a real interface through ``PacketPort``, or an
in-memory one), and records what a test asserts on: every PPP packet it received, its link
events, a PADT.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable

import attrs
import trio

from kl2tp.access.port import Port
from kl2tp.access.pppoe import (
    BROADCAST,
    Code,
    Packet,
    PppoeDecodeError,
    Tag,
    decode,
    encode_discovery,
    encode_session,
)
from ppp.config import AuthMethod, IpcpConfig, LcpConfig, LinkConfig
from ppp.events import PppEvent
from ppp.frame import PppDecodeError, decode_frame, decode_packet
from ppp.link import Link


def subscriber_link_config(
    username: str = "user1",
    password: str = "pass1",
    accept: tuple[AuthMethod, ...] = (AuthMethod.CHAP, AuthMethod.PAP),
) -> LinkConfig:
    """A host dialling PPPoE: MRU 1492, asks for an address, no ff 03."""
    return LinkConfig(
        lcp=LcpConfig(mru=1492, max_peer_mru=1492, echo_interval=0),
        username=username,
        password=password,
        accept_auth=accept,
        ipcp=IpcpConfig(),
        send_address_control=False,
    )


@attrs.define(eq=False)
class Subscriber:
    """One subscriber on ``port``."""

    port: Port
    link: Link
    host_uniq: bytes = b"kl2tp-test"
    session_id: int = 0
    ac: bytes = b""
    received: list[tuple[int, int, int]] = attrs.field(factory=list)
    """(protocol, code, identifier) of every PPP packet from the network, in order."""
    events: list[PppEvent] = attrs.field(factory=list)
    padt: trio.Event = attrs.field(factory=trio.Event)
    _cookie: bytes = b""
    _inbox: tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]] = attrs.field(
        factory=lambda: trio.open_memory_channel[bytes](256)
    )

    @classmethod
    def make(cls, port: Port, config: LinkConfig, seed: int = 1) -> Subscriber:
        return cls(port, Link(config, rng=random.Random(seed), name="subscriber"))

    def deliver(self, frame: bytes) -> None:
        """For ``port.run``."""
        with contextlib.suppress(trio.WouldBlock):
            self._inbox[0].send_nowait(frame)

    async def _next(self) -> bytes:
        return await self._inbox[1].receive()

    async def discover(self, service: bytes = b"", tries: int = 10) -> int:
        """PADI until a PADO comes, then PADR until the PADS: the session id."""
        base = [(int(Tag.SERVICE_NAME), service), (int(Tag.HOST_UNIQ), self.host_uniq)]
        for code, dst, extra in ((Code.PADI, BROADCAST, None), (Code.PADR, None, True)):
            for _ in range(tries):
                tags = list(base)
                if extra:
                    tags.append((int(Tag.AC_COOKIE), self._cookie))
                self.port.send(encode_discovery(dst or self.ac, self.port.mac, code, 0, tags))
                with trio.move_on_after(1.0):
                    while True:
                        packet = _decode(await self._next())
                        if packet is None or packet.dst != self.port.mac:
                            continue
                        if code is Code.PADI and packet.code == Code.PADO:
                            self.ac = packet.src
                            self._cookie = dict(packet.tags())[Tag.AC_COOKIE]
                            break
                        if code is Code.PADR and packet.code == Code.PADS:
                            if packet.session_id == 0:
                                raise AssertionError(f"PADS refused: {packet.tags()}")
                            self.session_id = packet.session_id
                            return self.session_id
                    break
            else:
                raise AssertionError(f"no answer to {code.name}")
        raise AssertionError("unreachable")

    async def run(self, until: Callable[[Subscriber], bool]) -> None:
        """Drive the link (open it first) until ``until(self)`` or a PADT."""
        link = self.link
        while not until(self) and not self.padt.is_set():
            for frame in link.frames_to_send():
                self.port.send(encode_session(self.ac, self.port.mac, self.session_id, frame))
            while (event := link.next_event()) is not None:
                self.events.append(event)
            if until(self):
                return
            deadline = link.get_timer()
            with trio.move_on_at(deadline if deadline is not None else math.inf) as scope:
                frame = await self._next()
            if scope.cancelled_caught:
                link.handle_timer(trio.current_time())
                continue
            packet = _decode(frame)
            if packet is None or packet.src != self.ac or packet.session_id != self.session_id:
                continue
            if packet.code == Code.PADT:
                self.padt.set()
            elif packet.code == Code.SESSION:
                self._record(packet.payload)
                link.receive_frame(packet.payload, trio.current_time())

    def _record(self, ppp: bytes) -> None:
        try:
            protocol, information = decode_frame(ppp)
            packet = decode_packet(information)
        except PppDecodeError:
            return
        self.received.append((protocol, packet.code, packet.identifier))

    def hang_up(self) -> None:
        """PADT to the access concentrator."""
        self.port.send(encode_discovery(self.ac, self.port.mac, Code.PADT, self.session_id, []))


def _decode(frame: bytes) -> Packet | None:
    try:
        return decode(frame)
    except PppoeDecodeError:
        return None
