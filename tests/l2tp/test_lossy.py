"""The cores over a seeded terrible network under trio's MockClock (autojump): loss,
duplication, reordering and delay. Nothing may get stuck or lost; retransmissions happen at
the configured times. Times are MockClock times, so the assertions are exact and fast."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
import trio
import trio.testing

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.message import ControlMessage, decode
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig

from .helpers import LAC_TID, LNS_TID, Driver, FakeNetwork


def make_pair(
    network: FakeNetwork, lac_config: TunnelConfig, lns_config: TunnelConfig, seed: int
) -> tuple[Driver, Driver]:
    now = trio.current_time()
    lac = Tunnel(lac_config, LAC_TID, initiator=True, rng=random.Random(seed), now=now)
    lns = Tunnel(lns_config, LNS_TID, initiator=False, rng=random.Random(seed + 1), now=now)
    return Driver("lac", "lns", lac, network), Driver("lns", "lac", lns, network)


def place(serial: int) -> Callable[[Tunnel, float], int]:
    return lambda t, now: t.place_call(now, ev.CallParams(serial=serial))


def hangup(sid: int) -> Callable[[Tunnel, float], None]:
    return lambda t, now: t.hangup(sid, now, 1)


def kind(data: bytes) -> str:
    msg = decode(data)
    assert isinstance(msg, ControlMessage)
    return "ZLB" if msg.msg_type is None else msg.msg_type.abbrev


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sessions_over_a_terrible_network(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    n = 300
    config = dict(secret=b"hello", receive_window=32, max_retries=10, idle_timeout=0)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            network = FakeNetwork(nursery, seed=seed, loss=0.15, duplicate=0.1, max_delay=0.4)
            lac, lns = make_pair(
                network,
                TunnelConfig(hostname="hgw", **config),  # type: ignore[arg-type]
                TunnelConfig(hostname="l2tp-gw", **config),  # type: ignore[arg-type]
                seed,
            )
            nursery.start_soon(lac.run)
            nursery.start_soon(lns.run)
            lac.command(lambda t, now: t.connect(now))
            sids = [lac.command(place(i)) for i in range(n)]

            await lac.wait_for(lambda: len(lac.of_type(ev.CallEstablished)) == n)
            await lns.wait_for(lambda: len(lns.of_type(ev.CallEstablished)) == n)
            assert sorted(e.sid for e in lac.of_type(ev.CallEstablished)) == sorted(sids)
            assert sorted(e.call.serial for e in lns.of_type(ev.IncomingCall)) == list(range(n))
            assert len(lns.tunnel.sessions) == n  # duplicates made no extra sessions

            for sid in sids:
                lac.command(hangup(sid))
            await lns.wait_for(lambda: len(lns.of_type(ev.CallClosed)) == n)
            assert all(e.by_peer and e.result == 1 for e in lns.of_type(ev.CallClosed))
            await lac.wait_for(lambda: lac.tunnel.transport.unacked == 0)

            lac.command(lambda t, now: t.close(now))
            await lac.wait_for(lambda: lac.tunnel.state == "closed")
            await lns.wait_for(lambda: lns.tunnel.state == "closed")
            nursery.cancel_scope.cancel()

    for driver in (lac, lns):
        assert driver.tunnel.sessions == {}
        (closed,) = driver.of_type(ev.TunnelClosed)
        assert closed.result == 1
    assert lac.of_type(ev.TunnelClosed)[0].by_peer is False
    # The network really was terrible, and the cores noticed.
    assert network.dropped > 100
    counters = [lac.tunnel.counters, lns.tunnel.counters]
    assert sum(c["retransmits"] for c in counters) > 50
    assert sum(c["duplicates"] for c in counters) > 50
    assert sum(c.get("reordered", 0) for c in counters) > 10


@pytest.mark.parametrize(
    ("initial", "cap", "retries", "gaps"),
    [
        (1.0, 8.0, 5, [1, 2, 4, 8, 8]),
        (0.5, 3.0, 4, [0.5, 1, 2, 3]),
        (2.0, 2.0, 3, [2, 2, 2]),
    ],
)
async def test_retransmissions_at_the_configured_times(
    initial: float,
    cap: float,
    retries: int,
    gaps: list[float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = TunnelConfig(
        hostname="hgw", retransmit_initial=initial, retransmit_cap=cap, max_retries=retries
    )
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            network = FakeNetwork(nursery, loss=1.0)  # the LNS is unreachable
            lac, _ = make_pair(network, config, TunnelConfig(), 0)
            nursery.start_soon(lac.run)
            start = trio.current_time()
            lac.command(lambda t, now: t.connect(now))
            await lac.wait_for(lambda: bool(lac.of_type(ev.TunnelClosed)))
            end = trio.current_time()
            nursery.cancel_scope.cancel()

    sent = [(t - start, kind(d)) for t, who, d in network.log if who == "lac"]
    assert [k for _, k in sent] == ["SCCRQ"] * (retries + 1)
    times = [t for t, _ in sent]
    assert [b - a for a, b in itertools.pairwise(times)] == gaps
    # Given up one more backoff interval after the last retransmission.
    assert end - start == sum(gaps) + gaps[-1]
    (closed,) = lac.of_type(ev.TunnelClosed)
    assert (closed.result, closed.by_peer) == (2, False)
    assert lac.tunnel.state == "closed" and lac.tunnel.counters["retransmits"] == retries


async def test_peer_going_silent_tears_down_tunnel_and_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = TunnelConfig(hostname="x", hello_interval=0)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            network = FakeNetwork(nursery)
            lac, lns = make_pair(network, cfg, cfg, 0)
            nursery.start_soon(lac.run)
            nursery.start_soon(lns.run)
            lac.command(lambda t, now: t.connect(now))
            sid = lac.command(lambda t, now: t.place_call(now, ev.CallParams(serial=1)))
            await lac.wait_for(lambda: bool(lac.of_type(ev.CallEstablished)))
            network.loss = 1.0
            lac.command(lambda t, now: t.hangup(sid, now, 1))  # the CDN goes unanswered
            lac.command(lambda t, now: t.place_call(now, ev.CallParams(serial=2)))
            await lac.wait_for(lambda: bool(lac.of_type(ev.TunnelClosed)))
            nursery.cancel_scope.cancel()
    assert lac.tunnel.state == "closed" and lac.tunnel.sessions == {}
    closed_calls = lac.of_type(ev.CallClosed)
    assert [e.message for e in closed_calls] == ["", "tunnel closed"]


async def test_hello_detects_a_dead_peer(autojump_clock: trio.testing.MockClock) -> None:
    cfg = TunnelConfig(hostname="x", hello_interval=60, idle_timeout=0)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            network = FakeNetwork(nursery)
            lac, lns = make_pair(network, cfg, cfg, 0)
            nursery.start_soon(lac.run)
            nursery.start_soon(lns.run)
            lac.command(lambda t, now: t.connect(now))
            await lac.wait_for(lambda: lac.tunnel.transport.unacked == 0)  # SCCCN acked
            up = trio.current_time()
            network.loss = 1.0
            await lac.wait_for(lambda: bool(lac.of_type(ev.TunnelClosed)))
            gone = trio.current_time() - up
            nursery.cancel_scope.cancel()
    hellos = [t for t, who, d in network.log if who == "lac" and kind(d) == "HELLO"]
    assert len(hellos) == 6  # first HELLO and its 5 retransmissions
    assert gone == pytest.approx(60 + 31, abs=0.5)
