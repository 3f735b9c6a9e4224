"""Overload protection (issue 12 item 2): the endpoint's session caps and the all-sources
SCCRQ bucket in the sans-IO core, then a burst of calls at 10x the admission cap against a
real LNS in one process: the sessions already up keep their Hellos and LCP echoes answered
and survive, every call beyond the cap is refused with CDN result 4 and counted by reason
(in show summary and in the metrics), and every call admitted completes."""

from __future__ import annotations

import random

import attrs
import pytest
import trio

from kl2tp.aaa import base as aaa
from kl2tp.aaa.pool import AddressPool
from kl2tp.daemon import oplog
from kl2tp.daemon.endpoint import Endpoint, TunnelRunner
from kl2tp.daemon.metrics import MetricsServer, Source
from kl2tp.daemon.ppp_session import PppSessions
from kl2tp.daemon.service import ControlApi, SimulationResult, simulate
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.endpoint import REFUSAL_COUNTERS, EndpointConfig, EndpointCore, Limits
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.policy import PolicyTable
from ppp.config import LcpConfig
from ppp.fsm import FsmConfig
from tests.daemon.inprocess import Aaa, endpoints, lns_link, lns_sessions
from tests.daemon.metrics_scrape import scrape, value
from tests.daemon.test_hostile_ppp import until
from tests.l2tp.test_endpoint_core import PEER, open_tunnel, sccrq

BOUND = 60.0

# --- the caps in the endpoint core ---------------------------------------------------------


def core(**limits: object) -> EndpointCore:
    return EndpointCore(
        EndpointConfig(lns=True, limits=Limits(**limits)),  # type: ignore[arg-type]
        TunnelConfig(hostname="lns", secret=b"shared"),
        rng=random.Random(1),
    )


def test_negotiating_cap_counts_calls_until_they_are_up_not_just_established() -> None:
    ep = core(max_negotiating_sessions=2)
    entry = open_tunnel(ep)
    assert ep.try_admit(entry) is None and ep.try_admit(entry) is None
    assert ep.try_admit(entry) == "max_negotiating_sessions"
    assert ep.counters["calls_refused_negotiating_limit"] == 1
    # The ICCN (L2TP established) does not free a slot: PPP still negotiates.
    ep.session_established(entry)
    assert ep.try_admit(entry) == "max_negotiating_sessions"
    ep.session_up(entry)  # PPP's network phase
    assert ep.negotiating == 1
    assert ep.try_admit(entry) is None
    # A call that fails before it is up frees its slot too.
    ep.release_session(entry, established=False, up=False)
    assert ep.negotiating == 1 and ep.session_count == 2
    assert ep.counters["calls_refused_negotiating_limit"] == 2


def test_session_up_counts_once_per_session() -> None:
    ep = core()
    entry = open_tunnel(ep)
    ep.try_admit(entry)
    ep.session_up(entry)
    ep.session_up(entry)  # IPCP reopening after an LCP restart
    assert ep.negotiating == 0 and entry.negotiating == 0


def test_per_tunnel_cap_leaves_other_tunnels_alone() -> None:
    ep = core(max_sessions_per_tunnel=1)
    first = open_tunnel(ep, tid=77)
    second = open_tunnel(ep, ("192.0.2.10", 1701), tid=78)
    assert ep.try_admit(first) is None
    assert ep.try_admit(first) == "max_sessions_per_tunnel"
    assert ep.try_admit(second) is None
    assert ep.counters == ep.counters | {"calls_refused_tunnel_session_limit": 1}


def test_every_cap_refuses_under_its_own_counter() -> None:
    caps = {
        "max_sessions": EndpointConfig(lns=True, max_sessions=1),
        "max_sessions_per_tunnel": EndpointConfig(
            lns=True, limits=Limits(max_sessions_per_tunnel=1)
        ),
        "max_setup_sessions": EndpointConfig(lns=True, limits=Limits(max_setup_sessions=1)),
        "max_negotiating_sessions": EndpointConfig(
            lns=True, limits=Limits(max_negotiating_sessions=1)
        ),
    }
    tunnel = TunnelConfig(secret=b"shared")
    # The default policy's own max_sessions (a [[peer]] table's limit, kept by name).
    caps["peer_max_sessions"] = EndpointConfig(lns=True)
    peer_limited = PolicyTable(attrs.evolve(PolicyTable.single(tunnel).default, max_sessions=1))
    assert set(caps) == set(REFUSAL_COUNTERS)
    for limit, config in caps.items():
        policies = peer_limited if limit == "peer_max_sessions" else None
        ep = EndpointCore(config, tunnel, rng=random.Random(1), policies=policies)
        entry = open_tunnel(ep)
        assert ep.try_admit(entry) is None
        assert ep.try_admit(entry) == limit
        assert ep.counters[REFUSAL_COUNTERS[limit]] == 1
        assert ep.session_count == 1  # the refused call left nothing behind
    assert ep.policy_refusals == {("default", "max_sessions"): 1}


def test_a_closed_tunnel_gives_back_its_negotiating_calls() -> None:
    ep = core(max_negotiating_sessions=3)
    entry = open_tunnel(ep)
    for _ in range(3):
        ep.try_admit(entry)
    ep.discard(entry)
    assert ep.negotiating == 0 and ep.session_count == 0 and ep.setup_count == 0


def test_sccrqs_from_many_sources_meet_the_total_rate() -> None:
    ep = core(sccrq_total_rate=10.0, sccrq_total_burst=5)
    # Each source is well within its own rate; together they exceed the total.
    for n in range(8):
        ep.receive_datagram(sccrq(100 + n), (f"198.51.100.{n}", 1701), 0.0)
    assert ep.half_open == 5
    assert ep.counters["drop_sccrq_total_rate"] == 3
    # A second later the bucket has 10 more tokens, up to its burst of 5.
    for n in range(8):
        ep.receive_datagram(sccrq(200 + n), (f"198.51.100.{n + 10}", 1701), 1.0)
    assert ep.half_open == 10
    assert ep.counters["drop_sccrq_total_rate"] == 6


def test_retransmitted_sccrqs_do_not_spend_the_total_rate() -> None:
    ep = core(sccrq_total_rate=1.0, sccrq_total_burst=1)
    data = sccrq(300)
    for _ in range(5):
        ep.receive_datagram(data, PEER, 0.0)
    assert ep.half_open == 1 and ep.counters["drop_sccrq_total_rate"] == 0


# --- a burst at 10x the admission cap ------------------------------------------------------

CAP = 8
"""max_negotiating_sessions of the LNS under the burst."""
HELD = 4
"""Sessions up before the burst, which must survive it."""
BURST = 10 * CAP
AUTH_DELAY = 0.2
"""Seconds each authentication takes (a RADIUS round trip): negotiation is the slow part."""


@attrs.define
class SlowAaa(Aaa):
    """Accepts everyone after ``AUTH_DELAY``."""

    async def authenticate(self, request: aaa.AuthRequest) -> aaa.AuthResult:
        await trio.sleep(AUTH_DELAY)
        return await super().authenticate(request)


def burst_lns() -> tuple[Endpoint, Endpoint, PppSessions]:
    link = lns_link(
        lcp=LcpConfig(
            fsm=FsmConfig(restart_timer=0.1, max_configure=4), echo_interval=0.5, echo_failure=3
        ),
        auth_timeout=5.0,
    )
    handler = lns_sessions(
        NullDataPlane(),
        SlowAaa(),
        link_config=lambda _n: link,
        pool=AddressPool("10.9.1.0/24"),
    )
    lns, lac = endpoints(handler)
    lns.core.config = attrs.evolve(lns.core.config, limits=Limits(max_negotiating_sessions=CAP))
    lns.tunnel_config = attrs.evolve(lns.tunnel_config, hello_interval=0.5)
    return lns, lac, handler


@pytest.fixture(autouse=True)
def fresh_events() -> None:
    oplog.EVENTS.set(oplog.EventLog())


async def test_a_burst_at_ten_times_the_cap_keeps_the_established_sessions() -> None:
    lns, lac, handler = burst_lns()
    tunnel = TunnelConfig(hostname="lac", hello_interval=0.5)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            metrics_addr = await nursery.start(
                MetricsServer(Source(lns, oplog.EVENTS.get())).serve, ("127.0.0.1", 0)
            )
            stop = trio.Event()
            held: list[SimulationResult] = []

            async def hold() -> None:
                held.append(await simulate(lac, [(lns_addr, tunnel)], HELD, hold=BOUND, stop=stop))

            nursery.start_soon(hold)
            await until(lambda: sum(lns.stats.successes.values()) == HELD)
            (held_runner,) = lns.tunnels.values()
            before = {key: state.link for key, state in handler.running.items()}
            assert len(before) == HELD

            started = trio.current_time()
            burst = await simulate(lac, [(lns_addr, tunnel)], BURST, rate=0, hold=0)
            elapsed = trio.current_time() - started

            # Long enough after the burst for several Hellos and LCP echoes each way.
            def kept_alive() -> bool:
                echoes = min(handler.running[k].link.lcp.echo_id for k in before)
                return echoes >= 6 and _hellos(held_runner) >= 4

            await until(kept_alive)

            summary = await ControlApi(lns, lns.dataplane).summary()
            samples = await scrape(metrics_addr)
            # The sessions up before the burst are the same sessions, still up.
            assert {k: s.link for k, s in handler.running.items() if k in before} == before
            assert all(handler.running[k].info.established is not None for k in before)  # type: ignore[union-attr]
            assert not held_runner.closed.is_set()
            stop.set()
            await until(lambda: bool(held))
            nursery.cancel_scope.cancel()

    refused = lns.counters["calls_refused_negotiating_limit"]
    print(
        f"\nburst of {BURST} calls at cap {CAP}: {burst.established} completed, {refused} "
        f"refused, in {elapsed:.2f}s ({burst.established / elapsed:.1f} calls/s completed, "
        f"sustainable ~{CAP / AUTH_DELAY:.0f}/s)"
    )
    # Every call of the burst came up or was refused at once: none timed out or collapsed.
    assert refused > 0
    assert burst.established + refused == BURST
    assert sum(burst.failed.values()) == refused
    # Every refusal is counted, under its limit, the same in every view.
    assert lns.stats.failures == {("default", "max_negotiating_sessions"): refused}
    assert summary["setup"]["failures"] == {"max_negotiating_sessions": refused}
    assert value(samples, "kl2tp_refusals_total", limit="max_negotiating_sessions") == refused
    assert summary["setup"]["attempts"] == HELD + BURST
    assert summary["setup"]["successes"] == HELD + burst.established
    # Keepalives: answered in time on both layers, nothing lost.
    assert held[0].established == HELD and not held[0].failed
    assert handler.echo_timeouts == 0
    assert summary["counters"].get("retries_exhausted", 0) == 0
    assert value(samples, "kl2tp_keepalive_failures_total", kind="lcp_echo") == 0
    assert lns.core.negotiating == 0


def _hellos(runner: TunnelRunner) -> int:
    counters = runner.core.counters
    return counters.get("in_HELLO", 0) + counters.get("out_HELLO", 0)


async def test_calls_offered_at_ten_times_the_sustainable_rate_complete_at_that_rate() -> None:
    """Offered over 10x what the cap lets through (CAP calls per setup time), the LNS keeps
    completing calls about as fast as the cap allows, refusing the rest at once: no call
    waits until it times out."""
    lns, lac, _handler = burst_lns()
    offered = 10 * CAP / AUTH_DELAY  # at least 10x: a call takes longer than AUTH_DELAY
    calls = int(offered * 2)  # two seconds of offered load
    tunnel = TunnelConfig(hostname="lac", hello_interval=0.5)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            result = await simulate(lac, [(lns_addr, tunnel)], calls, rate=offered, hold=0)
            nursery.cancel_scope.cancel()
    refused = lns.counters["calls_refused_negotiating_limit"]
    assert result.first_started is not None and result.last_established is not None
    span = result.last_established - result.first_started
    p50 = sorted(result.setup_ms)[len(result.setup_ms) // 2] / 1000
    print(
        f"\noffered {offered:.0f} calls/s ({calls} calls), cap {CAP}: {result.established} "
        f"completed at {result.established / span:.1f}/s (cap / p50 setup time = "
        f"{CAP / p50:.1f}/s, p50 {p50 * 1000:.0f} ms), {refused} refused"
    )
    assert result.established + refused == calls
    assert result.established > CAP  # calls kept completing after the first wave
    assert lns.stats.failures == {("default", "max_negotiating_sessions"): refused}
