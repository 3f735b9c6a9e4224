"""The UDP endpoint on real loopback sockets: port rules of RFC 2661 8.1, peer filters, drops.

A hand-driven LNS core stands on the far side so the test controls which socket answers.
"""

from __future__ import annotations

import ipaddress
import random
import socket as stdlib_socket
from collections.abc import Callable

import trio

from kl2tp.daemon.endpoint import Endpoint, TunnelSetupError
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.constants import AvpType
from kl2tp.l2tp.message import ControlMessage, decode
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig

BOUND = 20.0


def udp() -> trio.socket.SocketType:
    return trio.socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM)


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll (the endpoint's tasks run in between) until ``predicate`` holds."""
    for _ in range(int(BOUND / 0.01)):
        if predicate():
            return
        await trio.sleep(0.01)
    raise AssertionError("condition never held")


def lac_endpoint(**kwargs: object) -> Endpoint:
    return Endpoint(
        role="lac",
        tunnel_config=TunnelConfig(hostname="lac", hello_interval=0),
        dataplane=NullDataPlane(),
        listen=("127.0.0.1", 0),
        rng=random.Random(5),
        **kwargs,  # type: ignore[arg-type]
    )


class FakeLns:
    """An LNS core on two sockets: it hears on ``first`` and answers from ``second``."""

    def __init__(self, first: trio.socket.SocketType, second: trio.socket.SocketType) -> None:
        self.first, self.second = first, second
        self.core: Tunnel | None = None
        self.peer: tuple[str, int] | None = None

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen, self.first)
            nursery.start_soon(self._listen, self.second)
            while True:
                await trio.sleep(0.01)
                if self.core is not None:
                    now = trio.current_time()
                    timer = self.core.get_timer()
                    if timer is not None and timer <= now:
                        self.core.handle_timer(now)
                    await self._flush()

    async def _listen(self, sock: trio.socket.SocketType) -> None:
        while True:
            data, addr = await sock.recvfrom(65536)
            now = trio.current_time()
            if self.core is None:
                self.core = Tunnel(
                    TunnelConfig(hostname="fake-lns", hello_interval=0),
                    4242,
                    initiator=False,
                    rng=random.Random(9),
                    now=now,
                )
                self.peer = addr
            self.core.receive_datagram(data, now)
            await self._flush()

    async def _flush(self) -> None:
        assert self.core is not None and self.peer is not None
        for data in self.core.datagrams_to_send(trio.current_time()):
            await self.second.sendto(data, self.peer)
        while self.core.next_event() is not None:
            pass


async def test_initiator_accepts_a_reply_from_another_port_and_pins_it() -> None:
    first, second, stranger = udp(), udp(), udp()
    lns = FakeLns(first, second)
    endpoint = lac_endpoint()
    with first, second, stranger, trio.fail_after(BOUND):
        await first.bind(("127.0.0.1", 0))
        await second.bind(("127.0.0.1", 0))
        await stranger.bind(("127.0.0.1", 0))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lns.serve)
            lac_addr = await nursery.start(endpoint.serve)
            runner = await endpoint.dial(first.getsockname(), setup_timeout=BOUND)
            # The SCCRP came from the second port: the tunnel is up and pinned to it.
            assert runner.core.state == "established"
            assert runner.peer_addr == second.getsockname()
            # From then on, the tunnel's datagrams from any other port are dropped, counted.
            assert lns.core is not None
            hello = lns.core.datagrams_to_send(trio.current_time())  # nothing pending
            assert hello == []
            zlb = bytes.fromhex("c802000c") + runner.local_tunnel_id.to_bytes(2, "big")
            zlb += bytes(6)
            await stranger.sendto(zlb, lac_addr)
            await first.sendto(zlb, lac_addr)
            await trio.testing.wait_all_tasks_blocked()
            await eventually(lambda: endpoint.counters["drop_wrong_peer"] == 2)
            assert runner.core.state == "established"
            nursery.cancel_scope.cancel()


async def test_lns_refuses_peers_outside_allowed_peers() -> None:
    lns = Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(hostname="lns"),
        dataplane=NullDataPlane(),
        listen=("127.0.0.1", 0),
        allowed_peers=[ipaddress.ip_network("192.0.2.0/24")],
    )
    lac = lac_endpoint()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            lac.tunnel_config = TunnelConfig(hostname="lac", retransmit_initial=0.05, max_retries=2)
            try:
                await lac.dial(lns_addr, setup_timeout=5)
            except TunnelSetupError:
                pass
            else:
                raise AssertionError("the tunnel came up from a refused peer")
            assert lns.counters["drop_peer_not_allowed"] >= 1
            assert lns.tunnels == {}
            nursery.cancel_scope.cancel()


async def test_junk_and_foreign_versions_are_counted_not_fatal() -> None:
    lns = Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(hostname="lns"),
        dataplane=NullDataPlane(),
        listen=("127.0.0.1", 0),
    )
    junk = udp()
    with junk, trio.fail_after(BOUND):
        await junk.bind(("127.0.0.1", 0))
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(lns.serve)
            await junk.sendto(b"\x01", addr)  # too short
            await junk.sendto(bytes.fromhex("c801000c0000000000000000"), addr)  # L2F
            await junk.sendto(bytes.fromhex("c803000c0000000000000000"), addr)  # L2TPv3
            await junk.sendto(bytes.fromhex("c802000c1234000000000000"), addr)  # no such tunnel
            await junk.sendto(bytes.fromhex("c802000c0000000000000000"), addr)  # ZLB, tunnel 0
            await eventually(lambda: lns.counters["rx_datagrams"] == 5)
            c = lns.counters
            assert c["drop_malformed"] == 1
            assert c["drop_version_1"] == 1
            assert c["drop_version_3"] == 1
            assert c["drop_unknown_tunnel"] == 1
            assert c["drop_not_sccrq_for_tunnel_0"] == 1
            assert lns.tunnels == {}
            nursery.cancel_scope.cancel()


async def test_full_tunnel_queue_drops_and_counts() -> None:
    lns = Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(hostname="lns"),
        dataplane=NullDataPlane(),
        listen=("127.0.0.1", 0),
        queue_depth=4,
    )
    peer = ("127.0.0.1", 9)
    lac = Tunnel(TunnelConfig(hostname="lac"), 33, initiator=True, rng=random.Random(1), now=0.0)
    lac.connect(0.0)
    # No task runs: the receive path alone routes (the endpoint itself answers a half-open
    # tunnel), and once the tunnel is up nothing drains its inbox.
    for data in lac.datagrams_to_send(0.0):
        lns.core.receive_datagram(data, peer, 0.0)
    for data, _ in lns.core.datagrams_to_send(0.0):
        lac.receive_datagram(data, 0.0)
    for data in lac.datagrams_to_send(0.0):  # the SCCCN
        lns.core.receive_datagram(data, peer, 0.0)
    (tid,) = lns.core.tunnels
    lns.core.feed(lns.core.tunnels[tid], 0.0)
    zlb = bytes.fromhex("c802000c") + tid.to_bytes(2, "big") + bytes(6)
    for _ in range(10):
        lns.core.receive_datagram(zlb, peer, 0.0)
    assert lns.counters["drop_queue_full"] == 6
    assert len(lns.core.tunnels[tid].inbox) == 4


def sccrq_from(peer_tid: int) -> bytes:
    core = Tunnel(
        TunnelConfig(hostname="lac"), peer_tid, initiator=True, rng=random.Random(1), now=0.0
    )
    core.connect(0.0)
    (sccrq,) = core.datagrams_to_send(0.0)
    return sccrq


def test_sccrq_decodes_for_reference() -> None:
    """The SCCRQ a LAC endpoint sends carries its host name (sanity for the tests above)."""
    core = Tunnel(TunnelConfig(hostname="lac"), 7, initiator=True, rng=random.Random(1), now=0.0)
    core.connect(0.0)
    (sccrq,) = core.datagrams_to_send(0.0)
    msg = decode(sccrq)
    assert isinstance(msg, ControlMessage)
    assert msg.get(AvpType.HOST_NAME) == "lac"
