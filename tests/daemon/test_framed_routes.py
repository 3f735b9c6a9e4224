"""The LNS hands the routes of an Access-Accept (Framed-Route, Framed-IP-Netmask) to the data
plane with the session's network, skipping (and logging, escaped) the ones that do not parse."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network

import attrs
import pytest
import trio

from kl2tp.aaa import base as aaa
from kl2tp.aaa.radius import ATTR_FRAMED_NETMASK, ATTR_FRAMED_ROUTES
from kl2tp.daemon.service import _ppp_detail, simulate
from kl2tp.dataplane.base import NetworkSpec
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.values import FramedRoute
from tests.daemon.inprocess import Aaa, endpoints, lns_sessions

BOUND = 60.0
ROUTES = (
    "10.1.0.0/24 0.0.0.0 1",
    "10.1.0.0/24 0.0.0.0 1",  # twice: installed once
    "bogus\x1b[2J route",
    "172.16.0.0 255.255.0.0 0.0.0.0 5",
)


@attrs.define
class RoutingAaa(Aaa):
    """Accepts everyone with Framed-Routes and a Framed-IP-Netmask."""

    async def authenticate(self, request: aaa.AuthRequest) -> aaa.AuthResult:
        self.requests.append(request)
        return aaa.AuthResult(
            True,
            "Welcome",
            attributes={
                ATTR_FRAMED_ROUTES: ROUTES,
                ATTR_FRAMED_NETMASK: IPv4Address("255.255.255.248"),
            },
        )


@attrs.define
class KeepingPlane(NullDataPlane):
    """Keeps every NetworkSpec (the null plane forgets them when the session closes)."""

    kept: list[NetworkSpec] = attrs.field(factory=list)

    async def session_up(
        self, local_tunnel_id: int, local_session_id: int, net: NetworkSpec
    ) -> str | None:
        self.kept.append(net)
        return await super().session_up(local_tunnel_id, local_session_id, net)


async def test_accept_routes_reach_the_data_plane(caplog: pytest.LogCaptureFixture) -> None:
    lns_plane, lac_plane = KeepingPlane(), NullDataPlane()
    backend = RoutingAaa()
    handler = lns_sessions(lns_plane, backend)
    lns, lac = endpoints(handler, lac_plane)
    shown: list[object] = []
    stop = trio.Event()

    async def look_then_stop() -> None:
        await backend.wait_for_records(1)  # the accounting Start: IPCP is open
        shown.extend(_ppp_detail(handler, *key).get("routes") for key in handler.running)
        stop.set()

    caplog.set_level(logging.WARNING)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            nursery.start_soon(look_then_stop)
            peers = [(lns_addr, TunnelConfig(hostname="lac", hello_interval=0))]
            result = await simulate(lac, peers, 1, hold=BOUND, stop=stop)
            await backend.wait_for_records(2)
            nursery.cancel_scope.cancel()
    assert result.established == 1
    [net] = [n for n in lns_plane.kept if n.local_ip is not None]
    assert net.peer_ip is not None and net.peer_ip in IPv4Network("10.9.0.0/29")
    expected = (
        FramedRoute(IPv4Network("10.9.0.0/29")),  # Framed-IP-Netmask around the address
        FramedRoute(IPv4Network("10.1.0.0/24"), 1),
        FramedRoute(IPv4Network("172.16.0.0/16"), 5),
    )
    assert net.routes == expected
    # kl2tpctl show session TID SID
    assert shown == [["10.9.0.0/29 metric 0", "10.1.0.0/24 metric 1", "172.16.0.0/16 metric 5"]]
    [warning] = [r.getMessage() for r in caplog.records if "Framed-Route" in r.getMessage()]
    assert "\x1b" not in warning and "bogus" in warning and "bad prefix" in warning
