"""``kl2tp-lac --simulate`` names each failed call from what its subscriber saw, never from
the LNS's CDN message text.

A kl2tp LNS clears a failed call with a CDN that usually overtakes the PPP frame that told the
subscriber (a CHAP Failure, a Terminate-Request). The LAC then names the failure from how far
its subscriber's PPP got and the CDN's Result Code. Here the real endpoints and PPP session
handlers run on loopback, the LNS with short timers, and each way a call can fail is provoked
(a refusing AAA back end, an empty pool, frames of one protocol kept from the subscriber).
"""

from __future__ import annotations

import random

import attrs
import pytest
import trio

from kl2tp.aaa.pool import AddressPool
from kl2tp.daemon.handle import SessionInfo
from kl2tp.daemon.ppp_session import (
    FAILURE_AT_CDN,
    FAILURE_NAME,
    PppSessions,
    Stage,
    failure_at_cdn,
)
from kl2tp.daemon.service import simulate
from kl2tp.dataplane.base import FrameSink, SessionSpec
from kl2tp.dataplane.null import NullChannel, NullDataPlane
from kl2tp.l2tp.constants import CdnResult
from kl2tp.l2tp.events import CallClosed
from kl2tp.l2tp.tunnel import TunnelConfig
from ppp.config import AuthMethod, LinkConfig
from ppp.events import DownReason
from tests.daemon.fake_tunnel import FakeTunnel
from tests.daemon.inprocess import Aaa, endpoints, lns_link, lns_sessions, subscriber_link

BOUND = 60.0
CHAP, IPCP, LCP = 0xC223, 0x8021, 0xC021


class DeafChannel(NullChannel):
    """A subscriber's channel that never hears frames of the given PPP protocols."""

    def __init__(self, sink: FrameSink, depth: int, deaf: frozenset[int]) -> None:
        super().__init__(sink, depth)
        self.deaf = deaf

    def deliver(self, frame: bytes) -> bool:
        if int.from_bytes(frame[:2], "big") in self.deaf:
            return True
        return super().deliver(frame)


@attrs.define
class DeafPlane(NullDataPlane):
    deaf: frozenset[int] = frozenset()

    async def open_session(self, spec: SessionSpec, sink: FrameSink) -> NullChannel:
        await super().open_session(spec, sink)
        channel = DeafChannel(sink, self.channel_depth, self.deaf)
        self.set_channel((spec.local_tunnel_id, spec.local_session_id), channel)
        return channel


@attrs.frozen
class Case:
    lns: LinkConfig = attrs.field(factory=lns_link)
    subscriber: LinkConfig = attrs.field(factory=subscriber_link)
    accept: bool = True
    pool: str | None = "10.9.0.2-10.9.0.9"
    deaf: frozenset[int] = frozenset()


CASES: dict[str, Case] = {
    "auth failed": Case(accept=False),
    "auth refused": Case(lns=lns_link(auth=(AuthMethod.PAP,))),
    "auth timeout": Case(deaf=frozenset({CHAP})),
    "no address": Case(pool=None),
    # The LNS's IPCP never hears back: its network phase times out before IPCP's
    # Max-Configure (4 x 0.1 s) is spent...
    "IPCP timeout": Case(lns=lns_link(network_timeout=0.2), deaf=frozenset({IPCP})),
    # ... or, given time, its IPCP gives up (no network protocol left).
    "IPCP failed": Case(lns=lns_link(network_timeout=30.0), deaf=frozenset({IPCP})),
    "LCP timeout": Case(deaf=frozenset({LCP})),
}


async def simulate_failures(case: Case, calls: int) -> dict[str, int]:
    lns_plane, lac_plane = NullDataPlane(), DeafPlane(deaf=case.deaf)
    pool = AddressPool(case.pool) if case.pool is not None else None
    handler = lns_sessions(lns_plane, Aaa(case.accept), link_config=lambda _n: case.lns, pool=pool)
    lns, lac = endpoints(handler, lac_plane, case.subscriber)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            peers = [(lns_addr, TunnelConfig(hostname="lac", hello_interval=0))]
            result = await simulate(lac, peers, calls, setup_timeout=BOUND / 2)
            nursery.cancel_scope.cancel()
    assert result.established == 0
    if pool is not None:
        assert pool.in_use == 0
    return dict(result.failed)


@pytest.mark.parametrize("name", list(CASES))
async def test_each_failure_is_named_against_a_kl2tp_lns(name: str) -> None:
    assert name in FAILURE_NAME.values()
    assert await simulate_failures(CASES[name], 2) == {name: 2}


# --- the CDN alone names the failure ----------------------------------------------------------


async def test_a_cdn_that_overtakes_every_frame_is_named_by_the_subscribers_stage() -> None:
    """A proxy subscriber the LAC took through LCP and CHAP itself, still waiting for the
    LNS's verdict: a CDN "general error" that arrives before any PPP frame is an auth
    failure, whatever its message says."""
    plane = NullDataPlane()
    handler = PppSessions(
        plane,
        lns=False,
        link_config=lambda _n: subscriber_link(),
        proxy=AuthMethod.CHAP,
        rng=random.Random(3),
    )
    assert handler.prepare_call(7) is not None
    async with trio.open_nursery() as nursery:
        tunnel = FakeTunnel(nursery)
        info = tunnel.sessions[1] = SessionInfo(1, 0.0, extra={"n": 7})
        cdn = CallClosed(1, CdnResult.GENERAL_ERROR, 0, "no prose is parsed", None, by_peer=True)
        handler.call_closed(tunnel, cdn)
    assert info.extra["failure"] == "auth failed"
    assert handler.prepared == {}  # the prepared subscriber went with its call


def test_failure_table_names_only_known_failures() -> None:
    names = set(FAILURE_NAME.values())
    assert set(FAILURE_AT_CDN.values()) <= names
    assert failure_at_cdn(Stage.AUTH, CdnResult.GENERAL_ERROR) == "auth failed"
    assert failure_at_cdn(Stage.UNAUTHENTICATED, CdnResult.GENERAL_ERROR) == "auth refused"
    assert failure_at_cdn(Stage.NETWORK, CdnResult.NO_FACILITIES_TEMPORARY) == "no address"
    # Administrative clears and result codes RFC 2661 does not define name nothing.
    assert failure_at_cdn(Stage.NETWORK, CdnResult.ADMINISTRATIVE) is None
    assert failure_at_cdn(Stage.LCP, 99) is None
    assert FAILURE_NAME[DownReason.PEER_TERMINATED] == "terminated by peer"
