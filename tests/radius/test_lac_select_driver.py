"""The LAC's tunnel picker in the real driver, on the fake network under MockClock: static
routes with preferences, a dead LNS failed over, equal preferences spread, a RADIUS-style
answer kept while its tunnel lives."""

from __future__ import annotations

import functools
import random
from collections import Counter

import trio
import trio.testing

from kl2tp.config import Config, parse_config
from kl2tp.daemon.client import subscriber_call
from kl2tp.daemon.endpoint import Address, Endpoint
from kl2tp.daemon.service import simulate
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.events import CallParams
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.lac.selection import LnsCandidate, ReplyTunnels, RouteKey
from kl2tp.lac.tunnels import TunnelPicker
from kl2tp.values import Secret
from tests.daemon.test_fakenet import FakeNetwork, until

LNS_A = ("192.0.2.1", 1701)
LNS_B = ("192.0.2.2", 1701)
DEAD = ("192.0.2.99", 1701)
LAC = ("198.51.100.7", 1701)

LAC_TOML = """
[l2tp]
hostname = "lac"
hello_interval = 0
idle_timeout = 0
[lac]
failover_timeout = 3
dead_time = 600
[[lac.route]]
dnis = "100"
lns = "192.0.2.99"
secret = "dead"
preference = 1
[[lac.route]]
dnis = "100"
lns = "192.0.2.1"
secret = "secret-a"
preference = 2
[[lac.route]]
domain = "isp.example"
lns = "192.0.2.1"
secret = "secret-a"
[[lac.route]]
domain = "isp.example"
lns = "192.0.2.2"
secret = "secret-b"
hostname = "lac-for-b"
"""

# A LAC that asks RADIUS for its routes; each test passes its own lookup function.
RADIUS_LAC_TOML = """
[l2tp]
hello_interval = 0
idle_timeout = 0
[lac]
lookup = "radius"
[[radius.server]]
address = "127.0.0.1"
secret = "r"
"""


def lns(network: FakeNetwork, addr: Address, secret: bytes, seed: int) -> Endpoint:
    return Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(
            hostname=f"lns{seed}", secret=secret, hello_interval=0, idle_timeout=0
        ),
        dataplane=NullDataPlane(),
        listen=addr,
        rng=random.Random(seed),
        transport=network.attach(addr),
    )


def lac_endpoint(network: FakeNetwork, cfg: Config, seed: int) -> Endpoint:
    return Endpoint(
        role="lac",
        tunnel_config=cfg.tunnel_config(),
        dataplane=NullDataPlane(),
        listen=LAC,
        rng=random.Random(seed),
        transport=network.attach(LAC),
    )


async def serve(nursery: trio.Nursery, network: FakeNetwork, *endpoints: Endpoint) -> None:
    """The fake network and the endpoints, running in ``nursery``."""
    nursery.start_soon(network.run)
    for endpoint in endpoints:
        await nursery.start(endpoint.serve)


def call(n: int) -> CallParams:
    # odd subscribers dialled 100, even ones come by their domain
    return subscriber_call(n, called_number="100" if n % 2 else "")


async def test_routes_failover_and_spread(autojump_clock: trio.testing.MockClock) -> None:
    cfg = parse_config(LAC_TOML, "lac.toml", "lac")
    network = FakeNetwork(seed=3)
    lns_a = lns(network, LNS_A, b"secret-a", 1)
    lns_b = lns(network, LNS_B, b"secret-b", 2)
    lac = lac_endpoint(network, cfg, 4)
    picker = TunnelPicker.from_config(lac, cfg)
    picker.rng = random.Random(5)
    where: dict[int, Address] = {}
    names: dict[Address, set[str]] = {}
    pick = picker.tunnel_for

    async def recording(username: str, params: CallParams):  # type: ignore[no-untyped-def]
        runner = await pick(username, params)
        where[params.serial] = runner.peer_addr
        names.setdefault(runner.peer_addr, set()).add(runner.core.config.hostname)
        return runner

    picker.tunnel_for = recording  # type: ignore[method-assign]
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            await serve(nursery, network, lns_a, lns_b, lac)
            result = await simulate(
                lac,
                [],
                40,
                hold=1.0,
                call_factory=call,
                picker=picker,
                username_of=lambda n: f"user{n}@ISP.example",
            )
            nursery.cancel_scope.cancel()
    assert result.established == 40, result.summary()
    # DNIS 100: preference 1 is dead; every one of its calls failed over to A, and the dead
    # LNS cost one dial (the calls behind it joined that dial, later ones tried A first).
    assert {where[n] for n in range(1, 41, 2)} == {LNS_A}
    assert picker.counters.dial_failures == 1
    assert picker.health.is_dead(DEAD, trio.current_time())
    assert network.stats["unreachable"] >= 1
    # The domain's two equal-preference LNSs shared its calls.
    by_lns = Counter(where[n] for n in range(2, 41, 2))
    assert set(by_lns) == {LNS_A, LNS_B} and min(by_lns.values()) >= 5, by_lns
    # One tunnel per LNS and tunnel key (A's routes share one), B with its own host name.
    assert picker.counters.dials == 3
    assert names == {LNS_A: {"lac"}, LNS_B: {"lac-for-b"}}


async def test_radius_answer_is_kept_while_its_tunnel_lives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = parse_config(RADIUS_LAC_TOML, "lac.toml", "lac")
    network = FakeNetwork(seed=1)
    lns_a = lns(network, LNS_A, b"from-radius", 1)
    lac = lac_endpoint(network, cfg, 2)
    asked: list[str] = []

    async def lookup(key: RouteKey, params: CallParams) -> ReplyTunnels | None:
        asked.append(key.lookup_name)
        if key.value == "unknown.example":
            return None
        return ReplyTunnels((LnsCandidate(*LNS_A, secret=Secret(b"from-radius"), source="radius"),))

    picker = TunnelPicker.from_config(lac, cfg, lookup)
    assert picker.default == ()  # with RADIUS, [[lac.lns]] is no fallback
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await serve(nursery, network, lns_a, lac)
            first = await picker.tunnel_for("a@isp.example", CallParams(serial=1))
            again = await picker.tunnel_for("b@isp.example", CallParams(serial=2))
            assert again is first and asked == ["isp.example"]
            try:
                await picker.tunnel_for("c@unknown.example", CallParams(serial=3))
            except Exception as exc:
                assert str(exc) == "no tunnel"
            else:
                raise AssertionError("a rejected lookup gave a tunnel")
            first.close()
            await first.closed.wait()
            await trio.sleep(1)
            await picker.tunnel_for("d@isp.example", CallParams(serial=4))
            assert asked == ["isp.example", "unknown.example", "isp.example"]
            assert picker.counters.lookup_failures == 1
            nursery.cancel_scope.cancel()


async def test_concurrent_subscribers_of_one_key_share_one_lookup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = parse_config(RADIUS_LAC_TOML, "lac.toml", "lac")
    network = FakeNetwork(seed=2)
    lns_a = lns(network, LNS_A, b"s", 1)
    lac = lac_endpoint(network, cfg, 2)
    asked: list[str] = []

    async def slow_lookup(key: RouteKey, params: CallParams) -> ReplyTunnels | None:
        asked.append(key.lookup_name)
        await trio.sleep(2)
        return ReplyTunnels((LnsCandidate(*LNS_A, secret=Secret(b"s")),))

    picker = TunnelPicker.from_config(lac, cfg, slow_lookup)
    got: list[Endpoint | object] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await serve(nursery, network, lns_a, lac)

            async def one(n: int) -> None:
                got.append(await picker.tunnel_for(f"u{n}@isp.example", CallParams(serial=n)))

            async with trio.open_nursery() as calls:
                for n in range(5):
                    calls.start_soon(one, n)
            nursery.cancel_scope.cancel()
    assert asked == ["isp.example"] and picker.counters.lookups == 1
    assert len(got) == 5 and len({id(r) for r in got}) == 1 and picker.counters.dials == 1


async def test_an_lns_with_another_host_name_than_radius_said_is_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = parse_config("[l2tp]\nhello_interval = 0\nidle_timeout = 0\n", "lac.toml", "lac")
    network = FakeNetwork(seed=4)
    impostor = lns(network, LNS_A, b"s", 1)  # calls itself "lns1"
    genuine = lns(network, LNS_B, b"s", 2)  # "lns2"
    lac = lac_endpoint(network, cfg, 2)
    answer = ReplyTunnels(
        (
            LnsCandidate(*LNS_A, preference=1, secret=Secret(b"s"), server_name="lns2"),
            LnsCandidate(*LNS_B, preference=2, secret=Secret(b"s"), server_name="lns2"),
        )
    )

    async def lookup(key: RouteKey, params: CallParams) -> ReplyTunnels | None:
        return answer

    picker = TunnelPicker.from_config(lac, cfg, lookup)
    picker.search_order = ("domain",)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await serve(nursery, network, impostor, genuine, lac)
            runner = await picker.tunnel_for("a@isp.example", CallParams(serial=1))
            assert runner.peer_addr == LNS_B and runner.peer_hostname == "lns2"
            nursery.cancel_scope.cancel()
    assert picker.counters.dials == 2 and picker.counters.dial_failures == 1


async def test_a_closing_tunnel_is_not_reused(autojump_clock: trio.testing.MockClock) -> None:
    cfg = parse_config(
        '[l2tp]\nhello_interval = 0\nidle_timeout = 0\nsecret = "s"\n'
        '[[lac.route]]\ndomain = "isp.example"\nlns = "192.0.2.1"\n',
        "lac.toml",
        "lac",
    )
    network = FakeNetwork(seed=5)
    lns_a = lns(network, LNS_A, b"s", 1)
    lac = lac_endpoint(network, cfg, 2)
    picker = TunnelPicker.from_config(lac, cfg)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await serve(nursery, network, lns_a, lac)
            first = await picker.tunnel_for("a@isp.example", CallParams(serial=1))
            again = await picker.tunnel_for("b@isp.example", CallParams(serial=2))
            assert again is first and picker.counters.reused == 1
            first.close()  # shutting down until the LNS acks the StopCCN
            second = await picker.tunnel_for("c@isp.example", CallParams(serial=3))
            assert second is not first and picker.counters.dials == 2
            second.place_call(CallParams(serial=3))  # it takes calls
            await first.closed.wait()
            assert picker.live_tunnels() == [second]
            nursery.cancel_scope.cancel()


async def test_client_mode_calls_through_the_picker(autojump_clock: trio.testing.MockClock) -> None:
    from kl2tp.daemon.client import ClientState, keep_call

    cfg = parse_config(LAC_TOML, "lac.toml", "lac")
    network = FakeNetwork(seed=6)
    lns_a = lns(network, LNS_A, b"secret-a", 1)
    lac = lac_endpoint(network, cfg, 2)
    picker = TunnelPicker.from_config(lac, cfg)
    state = ClientState()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await serve(nursery, network, lns_a, lac)
            nursery.start_soon(
                functools.partial(
                    keep_call, lac, [], call(1), state=state, picker=picker, username="me"
                )
            )
            await until(lambda: state.up > 0)
            # DNIS 100: preference 1 (dead) was tried first, the call is up on A.
            assert [r.peer_addr for r in lns_a.tunnels.values()] == [LAC]
            assert picker.counters.dial_failures == 1 and picker.counters.dials == 2
            nursery.cancel_scope.cancel()
