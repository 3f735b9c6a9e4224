"""Session-Timeout, Idle-Timeout and Interim-Update in the LNS session code, in process: the
configured defaults, values changed while the session runs (what a CoA-Request does), and
the Acct-Terminate-Cause each end gets."""

from __future__ import annotations

import attrs
import trio

from kl2tp.aaa import base as aaa
from kl2tp.daemon.ppp_session import PppSessions
from kl2tp.daemon.service import simulate
from kl2tp.dataplane.base import Counters
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig
from ppp.config import LcpConfig
from tests.daemon.inprocess import Aaa, endpoints, lns_link, lns_sessions, subscriber_link

BOUND = 60.0


async def run_calls(
    lns_handler: PppSessions, backend: Aaa, calls: int, act: object, **subscriber: object
) -> list[aaa.AccountingRecord]:
    """``calls`` subscribers against ``lns_handler``; ``act(handler)`` runs once all are up;
    returns when every session has its Stop."""
    lns, lac = endpoints(lns_handler, subscriber=subscriber_link(**subscriber))
    stop = trio.Event()

    async def drive() -> None:
        await backend.wait_for_records(calls)  # every Start
        act(lns_handler)  # type: ignore[operator]
        while sum(r.kind is aaa.AccountingKind.STOP for r in backend.records) < calls:
            await backend.recorded.wait()
        stop.set()

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            nursery.start_soon(drive)
            peers = [(lns_addr, TunnelConfig(hostname="lac", hello_interval=0))]
            await simulate(lac, peers, calls, hold=BOUND, stop=stop)
            nursery.cancel_scope.cancel()
    return backend.records


def handler(backend: Aaa, **limits: float) -> PppSessions:
    return lns_sessions(NullDataPlane(), backend, **limits)


async def test_configured_session_timeout_ends_the_session() -> None:
    backend = Aaa()
    lns = handler(backend, session_timeout=0.5)
    records = await run_calls(lns, backend, 1, lambda h: None)
    stops = [r for r in records if r.kind is aaa.AccountingKind.STOP]
    assert [r.terminate_cause for r in stops] == ["session-timeout"]
    assert stops[0].session_time >= 0.5
    assert lns.timeouts == {"session-timeout": 1}
    assert lns.summary()["timeouts"] == {"session-timeout": 1}


async def test_configured_idle_timeout_ends_a_silent_session() -> None:
    backend = Aaa()
    lns = handler(backend, idle_timeout=0.5)
    records = await run_calls(lns, backend, 1, lambda h: None)
    stops = [r for r in records if r.kind is aaa.AccountingKind.STOP]
    assert [r.terminate_cause for r in stops] == ["idle-timeout"]


async def test_limits_changed_while_the_session_runs() -> None:
    backend = Aaa()
    lns = handler(backend)  # no limits at all to begin with

    def coa(h: PppSessions) -> None:
        for state in h.running.values():
            state.set_limits(session_timeout=2.5, interim_interval=1)

    records = await run_calls(lns, backend, 2, coa)
    kinds = [r.kind for r in records]
    assert kinds.count(aaa.AccountingKind.START) == 2
    assert kinds.count(aaa.AccountingKind.INTERIM) >= 2  # at least one per session
    stops = [r for r in records if r.kind is aaa.AccountingKind.STOP]
    assert [r.terminate_cause for r in stops] == ["session-timeout"] * 2
    ids = {r.context.acct_session_id for r in records}
    assert len(ids) == 2  # one stable Acct-Session-Id per session, in every record


async def test_lcp_echoes_are_not_activity() -> None:
    # A subscriber that frames with ff 03 (as most LACs do) answers the LNS's LCP
    # Echo-Requests; those answers say the link is alive, not that the user is active.
    backend = Aaa()
    echoing = lns_link(lcp=LcpConfig(echo_interval=0.1))
    lns = lns_sessions(NullDataPlane(), backend, link_config=lambda _n: echoing, idle_timeout=0.5)
    records = await run_calls(lns, backend, 1, lambda h: None, send_address_control=True)
    stops = [r for r in records if r.kind is aaa.AccountingKind.STOP]
    assert [r.terminate_cause for r in stops] == ["idle-timeout"]


@attrs.define
class CountingPlane(NullDataPlane):
    """Kernel counters, and how often they were asked for."""

    kernel_counters: bool = True
    asked: int = 0

    async def session_counters(
        self, local_tunnel_id: int, local_session_id: int
    ) -> Counters | None:
        self.asked += 1
        return Counters(rx_packets=3, rx_bytes=1234, tx_packets=4, tx_bytes=5678)


async def test_a_session_without_limits_reads_the_kernel_counters_once() -> None:
    # Once, for the accounting Stop; the "session down" line reuses that read, and with
    # no Idle-Timeout nothing asks the kernel when the session comes up.
    backend, plane = Aaa(), CountingPlane()
    lns = lns_sessions(plane, backend, session_timeout=0.5)
    records = await run_calls(lns, backend, 1, lambda h: None)
    stops = [r for r in records if r.kind is aaa.AccountingKind.STOP]
    assert [r.input_octets for r in stops] == [1234]
    assert plane.asked == 1
