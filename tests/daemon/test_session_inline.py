"""A PPP session over the null data plane runs without a task of its own: its link's timer is
an entry in the handler's timer heap, its end gives everything back at once."""

from __future__ import annotations

import math

import trio
import trio.testing

from kl2tp.daemon.handle import SessionInfo
from kl2tp.daemon.timerheap import TIMER_SLACK
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.constants import CdnResult
from kl2tp.l2tp.events import CallClosed, CallEstablished, ConnectInfo
from ppp import events as pev
from tests.daemon.fake_tunnel import FakeTunnel
from tests.daemon.inprocess import Aaa, lns_sessions


async def test_session_without_task_timer_in_the_heap_and_nothing_left_after_its_cdn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plane = NullDataPlane()
    handler = lns_sessions(plane, Aaa())
    async with trio.open_nursery() as nursery:
        tunnel = FakeTunnel(nursery)
        tunnel.sessions[1] = SessionInfo(1, trio.current_time())
        handler.call_established(tunnel, CallEstablished(sid=1, peer_sid=101, info=ConnectInfo()))
        key = (tunnel.local_tunnel_id, 1)
        rec = handler.records[key]
        state = handler.running[key]
        # Opened at once, LCP started (our Configure-Request went out), no task of its own:
        # the only task is the heap's, for the restart timer.
        assert rec.scope is None
        assert key in plane.sessions
        assert tunnel.sent and tunnel.sent[0][0] == 1
        assert len(handler.timers) == 1 and state.armed < math.inf
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 1
        # The restart timer runs from the heap: the Configure-Request goes out again.
        sent = len(tunnel.sent)
        await trio.sleep(state.armed - trio.current_time() + TIMER_SLACK + 0.01)
        assert len(tunnel.sent) == sent + 1

        handler.call_closed(
            tunnel,
            CallClosed(
                sid=1, result=CdnResult.ADMINISTRATIVE, error=0, message="", q931=None, by_peer=True
            ),
        )
        assert key not in handler.records and key not in handler.running
        assert key not in plane.sessions
        assert len(handler.timers) == 0
        # A late address request (an answer that was already on its way) takes nothing.
        state._assign_address(pev.AddressRequest(username="u", requested=None))
        assert handler.pool is not None and handler.pool.in_use == 0
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 0  # the heap's task ended with the last timer
