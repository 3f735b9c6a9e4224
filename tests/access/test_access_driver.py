"""The access driver in memory: a subscriber on a wire, the LAC's access side, a fake tunnel
and an LNS link at the far end of the relay. Time is trio's MockClock: no sockets, no root."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from kl2tp.access.lac import AccessSettings, PppoeAccess, access_link_config
from kl2tp.access.pppoe import AcConfig, PppoeServer
from kl2tp.daemon.handle import SessionInfo
from kl2tp.l2tp.constants import CdnResult
from kl2tp.l2tp.events import CallClosed, CallParams, ConnectInfo
from kl2tp.lac.tunnels import NoTunnel
from ppp.config import AuthMethod
from ppp.events import AddressRequest, AuthRequest, NetworkUp
from ppp.link import Link
from ppp.proxy import ProxyAuth, ProxyLcp
from tests.access.subscriber import Subscriber, subscriber_link_config
from tests.daemon.fake_tunnel import FakeTunnel
from tests.ppp.helpers import Aaa, lns_config

AC_MAC = bytes.fromhex("020000000001")
SUB_MAC = bytes.fromhex("020000000002")


@attrs.define(eq=False)
class WireEnd:
    """One end of an in-memory Ethernet wire (a :class:`kl2tp.access.port.Port`)."""

    mac: bytes
    peer: WireEnd | None = None
    deliver: Any = None
    sent: list[bytes] = attrs.field(factory=list)

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        assert self.peer is not None
        if self.peer.deliver is not None:
            self.peer.deliver(frame)

    async def run(self, deliver: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.deliver = deliver
        task_status.started()
        await trio.sleep_forever()


async def until(condition: Callable[[], object]) -> None:
    """Let (mock) time pass until ``condition`` holds; bounded by the test's fail_after."""
    with trio.fail_after(60):
        for _ in itertools.count():
            if condition():
                return
            await trio.sleep(0.1)


def wire() -> tuple[WireEnd, WireEnd]:
    ac, sub = WireEnd(AC_MAC), WireEnd(SUB_MAC)
    ac.peer, sub.peer = sub, ac
    return ac, sub


@attrs.define(eq=False)
class Pipe:
    """The L2TP session as the relay sees it (a PppChannel); the far end is the test's."""

    to_lns: tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]] = attrs.field(
        factory=lambda: trio.open_memory_channel[bytes](64)
    )
    from_lns: tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]] = attrs.field(
        factory=lambda: trio.open_memory_channel[bytes](64)
    )

    async def send(self, frame: bytes) -> None:
        await self.to_lns[0].send(frame)

    async def receive(self) -> bytes:
        return await self.from_lns[1].receive()

    def deliver(self, frame: bytes) -> bool:
        return False

    async def aclose(self) -> None:
        pass


@attrs.define(eq=False)
class RecordingTunnel(FakeTunnel):
    """A FakeTunnel that keeps each call's parameters and ICCN values."""

    placed: list[tuple[CallParams, ConnectInfo | None, SessionInfo]] = attrs.field(factory=list)

    def place_call(
        self, call: CallParams, connect: ConnectInfo | None = None, *, defer_connect: bool = False
    ) -> SessionInfo:
        info = super().place_call(call, connect, defer_connect=defer_connect)
        self.placed.append((call, connect, info))
        return info


def make_access(port: WireEnd, tunnel_for: Any, timeout: float = 10.0) -> PppoeAccess:
    server = PppoeServer(AcConfig(ac_name="mem-ac"), port.mac, rng=random.Random(1))
    settings = AccessSettings(
        link=access_link_config(AuthMethod.CHAP, "mem-lac", timeout=timeout),
        setup_timeout=timeout,
    )
    return PppoeAccess(
        server, port, tunnel_for, settings, defer_connect=False, rng=random.Random(2)
    )


async def dial(nursery: trio.Nursery, sub_end: WireEnd, **kw: Any) -> Subscriber:
    sub = Subscriber.make(sub_end, subscriber_link_config(**kw), seed=3)
    await nursery.start(sub_end.run, sub.deliver)
    await sub.discover(service=b"internet")
    sub.link.open(trio.current_time())
    return sub


def proxy_of(connect: ConnectInfo) -> tuple[ProxyLcp, ProxyAuth]:
    assert connect.last_sent_lcp_confreq is not None and connect.last_rx_lcp_confreq is not None
    assert connect.proxy_authen_type is not None and connect.proxy_authen_name is not None
    return (
        ProxyLcp(
            connect.last_sent_lcp_confreq,
            connect.last_rx_lcp_confreq,
            connect.initial_rx_lcp_confreq,
        ),
        ProxyAuth(
            type=connect.proxy_authen_type,
            name=connect.proxy_authen_name,
            challenge=connect.proxy_authen_challenge or b"",
            ident=connect.proxy_authen_id,
            response=connect.proxy_authen_response or b"",
        ),
    )


async def play_lns(pipe: Pipe, connect: ConnectInfo) -> list[object]:
    """An LNS link over the relay, opened with the LAC's proxy values; its events."""
    lns = Link(lns_config(AuthMethod.CHAP), rng=random.Random(4), name="lns")
    aaa = Aaa()
    lcp, auth = proxy_of(connect)
    lns.open(trio.current_time(), proxy_lcp=lcp, proxy_auth=auth)
    events: list[object] = []
    while True:
        for frame in lns.frames_to_send():
            await pipe.from_lns[0].send(frame[2:] if frame[:2] == b"\xff\x03" else frame)
        while (event := lns.next_event()) is not None:
            events.append(event)
            if isinstance(event, AuthRequest):
                aaa.decide(lns, event, trio.current_time())
            elif isinstance(event, AddressRequest):
                aaa.address(lns, event, trio.current_time())
            elif isinstance(event, NetworkUp):
                return events
        deadline = lns.get_timer()
        with trio.move_on_at(deadline if deadline is not None else float("inf")) as scope:
            frame = await pipe.to_lns[1].receive()
            lns.receive_frame(frame, trio.current_time())
        if scope.cancelled_caught:
            lns.handle_timer(trio.current_time())


async def test_subscriber_is_proxied_and_relayed(autojump_clock: trio.testing.MockClock) -> None:
    ac_end, sub_end = wire()
    async with trio.open_nursery() as nursery:
        tunnel = RecordingTunnel(nursery)

        async def tunnel_for(username: str, call: CallParams) -> RecordingTunnel:
            assert username == "alice"
            return tunnel

        access = make_access(ac_end, tunnel_for)
        await nursery.start(access.serve)
        sub = await dial(nursery, sub_end, username="alice", password="wonderland")
        nursery.start_soon(sub.run, lambda s: any(isinstance(e, NetworkUp) for e in s.events))
        await until(lambda: tunnel.placed)
        call, connect, info = tunnel.placed[0]
        assert call.calling_number == "02:00:00:00:00:02" and call.called_number == "internet"
        assert connect is not None and connect.proxy_authen_name == "alice"
        assert info.extra["username"] == "alice" and info.extra["mac"] == "02:00:00:00:00:02"
        # The LNS answers: established, and the handler's session task relays.
        info.established = trio.current_time()
        info.done.set()
        pipe = Pipe()
        (relay_call,) = access.relays.values()
        nursery.start_soon(relay_call.relay, pipe)
        with trio.fail_after(60):
            events = await play_lns(pipe, connect)
        assert any(isinstance(e, AuthRequest) and e.proxy for e in events)
        await until(lambda: any(isinstance(e, NetworkUp) for e in sub.events))
        assert access.counters["calls_up"] == 1
        # The subscriber hangs up: a CDN for the call.
        sub.hang_up()
        await until(lambda: tunnel.hangups())
        assert tunnel.hangups()[0][1] == CdnResult.ADMINISTRATIVE
        assert not access.calls and not access.relays and not access.server.sessions
        nursery.cancel_scope.cancel()


async def test_no_tunnel_ends_the_session_with_a_padt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ac_end, sub_end = wire()
    async with trio.open_nursery() as nursery:

        async def tunnel_for(username: str, call: CallParams) -> RecordingTunnel:
            raise NoTunnel("no tunnel")

        access = make_access(ac_end, tunnel_for)
        await nursery.start(access.serve)
        sub = await dial(nursery, sub_end)
        with trio.fail_after(30):
            await sub.run(lambda s: False)
        assert sub.padt.is_set()
        assert access.failures["tunnel"] == 1 and not access.calls
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("stuck", ["tunnel", "lcp"])
async def test_setup_timeout_ends_the_session(
    autojump_clock: trio.testing.MockClock, stuck: str
) -> None:
    ac_end, sub_end = wire()
    async with trio.open_nursery() as nursery:

        async def tunnel_for(username: str, call: CallParams) -> RecordingTunnel:
            await trio.sleep_forever()
            raise AssertionError

        access = make_access(ac_end, tunnel_for, timeout=5.0)
        await nursery.start(access.serve)
        if stuck == "lcp":
            # A subscriber that never speaks PPP after Discovery.
            sub = Subscriber.make(sub_end, subscriber_link_config(), seed=3)
            await nursery.start(sub_end.run, sub.deliver)
            await sub.discover()
            with trio.fail_after(30):
                await until(lambda: access.failures)
        else:
            sub = await dial(nursery, sub_end)
            with trio.fail_after(30):
                await sub.run(lambda s: False)
            assert sub.padt.is_set()
        assert access.failures[stuck] == 1 and not access.server.sessions
        nursery.cancel_scope.cancel()


async def placed_call(nursery: trio.Nursery) -> tuple[PppoeAccess, RecordingTunnel, Subscriber]:
    """A subscriber whose call the LAC has placed (the LNS has not answered yet)."""
    ac_end, sub_end = wire()
    tunnel = RecordingTunnel(nursery)

    async def tunnel_for(username: str, call: CallParams) -> RecordingTunnel:
        return tunnel

    access = make_access(ac_end, tunnel_for)
    await nursery.start(access.serve)
    sub = await dial(nursery, sub_end)
    nursery.start_soon(sub.run, lambda s: False)
    await until(lambda: tunnel.placed)
    return access, tunnel, sub


async def test_padt_while_the_call_is_set_up_clears_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        access, tunnel, sub = await placed_call(nursery)
        sub.hang_up()
        await until(lambda: tunnel.hangups())
        assert tunnel.hangups()[0][1] == CdnResult.ADMINISTRATIVE
        assert not access.calls and access.failures["tunnel"] == 1
        nursery.cancel_scope.cancel()


async def test_cdn_from_the_lns_sends_a_padt(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        access, tunnel, sub = await placed_call(nursery)
        _call, _connect, info = tunnel.placed[0]
        info.established = trio.current_time()
        info.done.set()
        await trio.sleep(1)
        info.closed = CallClosed(info.local_sid, 3, 0, "cleared", None, True)
        info.done.set()
        with trio.fail_after(10):
            await sub.padt.wait()
        assert not tunnel.hangups(), "the call is already gone: no CDN back"
        assert not access.calls and not access.server.sessions
        nursery.cancel_scope.cancel()
