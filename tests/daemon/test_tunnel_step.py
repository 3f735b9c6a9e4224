"""A parked tunnel's input handled in the endpoint's receive loop (`TunnelRunner.step`).

A held session's frame (an LCP Echo, most of the steady state) is decoded, handed to the
session and answered in the receive loop's own turn, with no wake-up of the tunnel's task;
what must wait (a control event, a full send buffer) and what fails are left to the task,
exactly as if it had run the turn itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from kl2tp.daemon.endpoint import Endpoint, TunnelRunner
from kl2tp.daemon.handle import TunnelHandle
from kl2tp.daemon.sessions import DataPlaneSessions
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp import events as ev
from kl2tp.l2tp.message import peek

from .test_fakenet import LAC_ADDR, LNS_ADDR, FakeNetwork, FakeTransport, _call, pair, running


class Answering(DataPlaneSessions):
    """Answers every data message at once with ``b"re:" + payload``; ``explode``: raises."""

    def __init__(self) -> None:
        super().__init__(NullDataPlane(), lns=True)
        self.seen: list[bytes] = []
        self.explode = False

    def data_received(self, tunnel: TunnelHandle, event: ev.DataReceived) -> None:
        if self.explode:
            raise RuntimeError("a bug above the tunnel")
        self.seen.append(event.payload)
        tunnel.send_data(event.sid, b"re:" + event.payload)


async def _settle() -> None:
    """Let the network deliver what is in flight (the ICCN) and every task park."""
    await trio.sleep(1)
    await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def one_call(**lns_kwargs: Any) -> AsyncIterator[tuple[FakeNetwork, Endpoint, TunnelRunner]]:
    """An LNS (``lns_kwargs`` to its `Endpoint`) and a LAC on a fake network, with one call
    up and every task parked: (network, the LNS, the LAC's tunnel)."""
    network = FakeNetwork()
    lns, lac = pair(network, **lns_kwargs)
    async with running(network, lns, lac):
        runner = await lac.dial(LNS_ADDR)
        info = runner.place_call(_call(1))
        await info.done.wait()
        await _settle()
        yield network, lns, runner


def _data_from_lac(lac_runner: TunnelRunner, payload: bytes) -> bytes:
    """A data message of the LAC's first session, encoded by its core and not sent."""
    sid = next(iter(lac_runner.core.sessions))
    lac_runner.core.send_data(sid, payload)
    (datagram,) = lac_runner.core.datagrams_to_send(trio.current_time())
    return datagram


def _replies(network: FakeNetwork, since: int) -> list[bytes]:
    """Data messages the LNS offered to the LAC since log entry ``since``."""
    return [
        data
        for _, src, dst, data in network.log[since:]
        if src == LNS_ADDR and dst == LAC_ADDR and not peek(data)[0]
    ]


async def test_a_frame_on_a_parked_tunnel_is_answered_in_the_receive_loops_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handler = Answering()
    async with one_call(handler=handler) as (network, lns, runner):
        datagram = _data_from_lac(runner, b"\xc0\x21\x09\x01\x00\x08abcd")
        since = len(network.log)
        lns.dispatch(datagram, LAC_ADDR)
        # No other task has run: the session got the frame and its answer is on the wire.
        assert handler.seen == [b"\xc0\x21\x09\x01\x00\x08abcd"]
        (reply,) = _replies(network, since)
        assert reply.endswith(b"re:\xc0\x21\x09\x01\x00\x08abcd")
        # The tunnel carries on as before: a second call is set up by its task.
        second = runner.place_call(_call(2))
        await second.done.wait()
        assert second.established is not None
        (lns_runner,) = lns.tunnels.values()
        assert len(lns_runner.core.sessions) == 2


async def test_a_full_send_buffer_leaves_the_answer_to_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handler = Answering()
    async with one_call(handler=handler) as (network, lns, runner):
        transport = lns.transport
        assert isinstance(transport, FakeTransport)
        datagram = _data_from_lac(runner, b"\x80\x21frame")
        transport.blocked = trio.Event()
        since = len(network.log)
        lns.dispatch(datagram, LAC_ADDR)
        assert handler.seen == [b"\x80\x21frame"]
        assert _replies(network, since) == []
        await trio.testing.wait_all_tasks_blocked()
        # The task took the answer over and waits for room; nothing was lost.
        (lns_runner,) = lns.tunnels.values()
        assert transport.waited == 1
        assert lns_runner.counters["send_waits"] == 1
        transport.blocked.set()
        await trio.testing.wait_all_tasks_blocked()
        (reply,) = _replies(network, since)
        assert reply.endswith(b"re:\x80\x21frame")


async def test_a_failure_in_the_receive_loops_turn_costs_the_tunnel_not_the_daemon(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    handler = Answering()
    lns, lac = pair(network, handler=handler)
    async with running(network, lns, lac):
        doomed = await lac.dial(LNS_ADDR)
        other = await lac.dial(LNS_ADDR)
        info = doomed.place_call(_call(1))
        await info.done.wait()
        await _settle()
        lns_doomed = lns.tunnels[doomed.peer_tunnel_id]
        handler.explode = True
        lns.dispatch(_data_from_lac(doomed, b"\xc0\x21boom"), LAC_ADDR)  # does not raise
        await lns_doomed.closed.wait()
        assert lns.counters["tunnel_task_failed"] == 1
        assert doomed.peer_tunnel_id not in lns.tunnels
        # The LAC heard the StopCCN; the other tunnel and the daemon carry on.
        await doomed.closed.wait()
        handler.explode = False
        call = other.place_call(_call(2))
        await call.done.wait()
        assert call.established is not None


async def test_a_call_refused_at_a_cap_is_answered_in_the_receive_loops_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with one_call(max_sessions=1) as (network, lns, runner):
        # The LAC's core asks for a second call; its ICRQ reaches the LNS by hand.
        second = runner.core.place_call(trio.current_time(), _call(2))
        (icrq,) = runner.core.datagrams_to_send(trio.current_time())
        since = len(network.log)
        lns.dispatch(icrq, LAC_ADDR)
        # Refused by the core at the daemon's cap before any session existed: the CDN is
        # on the wire, counted and told, and no other task has run.
        (lns_runner,) = lns.tunnels.values()
        assert len(lns_runner.core.sessions) == 1 and len(lns_runner.sessions) == 1
        cdns = [
            data
            for _, src, dst, data in network.log[since:]
            if src == LNS_ADDR and dst == LAC_ADDR and peek(data)[0]
        ]
        assert len(cdns) == 1 and b"session limit reached" in cdns[0]
        assert lns.counters["calls_refused_overload"] == 1
        assert lns.stats.failures == {("default", "max_sessions"): 1}
        # The LAC hears CDN result 4 and clears its call; the first one is untouched.
        await _settle()
        assert second not in runner.core.sessions
        assert lns.session_count() == 1
