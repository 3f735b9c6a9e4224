"""What the LNS tells its AAA back end about a session: the call's Calling and Called Number
(from the ICRQ, which the simulator fills from ``[subscriber]``) and the interface the data
plane named."""

from __future__ import annotations

import functools

import attrs
import trio

from kl2tp.aaa import base as aaa
from kl2tp.daemon.client import subscriber_call
from kl2tp.daemon.service import simulate
from kl2tp.dataplane.base import NetworkSpec
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig
from tests.daemon.inprocess import Aaa, endpoints, lns_sessions

BOUND = 60.0


@attrs.define
class NamingPlane(NullDataPlane):
    """Names each session's interface as the kernel back end would."""

    async def session_up(
        self, local_tunnel_id: int, local_session_id: int, net: NetworkSpec
    ) -> str | None:
        await super().session_up(local_tunnel_id, local_session_id, net)
        return f"ppp{local_session_id}"


async def test_aaa_sees_calling_and_called_number_and_the_interface() -> None:
    lns_plane, lac_plane = NamingPlane(), NullDataPlane()
    backend = Aaa()
    lns, lac = endpoints(lns_sessions(lns_plane, backend), lac_plane)
    calls = functools.partial(subscriber_call, calling_number="0170555{n}", called_number="614629")
    shown: list[dict[str, object]] = []
    stop = trio.Event()

    async def look_then_stop() -> None:
        await backend.wait_for_records(2)  # both accounting starts
        for runner in lns.tunnels.values():
            shown.extend(dict(info.extra) for info in runner.sessions.values())
        stop.set()

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            nursery.start_soon(look_then_stop)
            peers = [(lns_addr, TunnelConfig(hostname="lac", hello_interval=0))]
            result = await simulate(lac, peers, 2, hold=BOUND, call_factory=calls, stop=stop)
            await backend.wait_for_records(4)  # and both stops
            nursery.cancel_scope.cancel()
    assert result.established == 2
    assert {(r.context.calling_number, r.context.called_number) for r in backend.requests} == {
        ("01705551", "614629"),
        ("01705552", "614629"),
    }
    starts = [r for r in backend.records if r.kind is aaa.AccountingKind.START]
    assert {r.context.interface for r in starts} == {f"ppp{r.context.session_id}" for r in starts}
    assert all(r.context.peer_hostname == "lac" for r in starts)
    # kl2tpctl show sessions shows the numbers too.
    assert sorted((s["calling_number"], s["called_number"]) for s in shown) == [
        ("01705551", "614629"),
        ("01705552", "614629"),
    ]
    stops = [r for r in backend.records if r.kind is aaa.AccountingKind.STOP]
    assert len(stops) == 2
