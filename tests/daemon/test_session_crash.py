"""A session task that fails clears only its own call; the data plane is cleaned up."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing

from kl2tp.daemon.sessions import DataPlaneSessions, SessionRecord
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.constants import CdnResult
from kl2tp.l2tp.events import CallEstablished, ConnectInfo
from tests.daemon.fake_tunnel import FakeTunnel


class Buggy(DataPlaneSessions):
    async def run_session(self, rec: SessionRecord) -> None:
        await trio.lowlevel.checkpoint()
        if rec.sid == 1:
            raise RuntimeError("a bug in session 1")
        await trio.sleep_forever()


async def test_crashed_session_task_clears_its_call_and_nothing_else() -> None:
    dp = NullDataPlane()
    handler = Buggy(dp, lns=True)
    async with trio.open_nursery() as nursery:
        tunnel = FakeTunnel(nursery)
        for sid in (1, 2):
            handler.call_established(
                tunnel, CallEstablished(sid=sid, peer_sid=100 + sid, info=ConnectInfo())
            )
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        # Session 1 was cleared with a CDN (result 2) and removed from the data plane;
        # session 2 and the daemon's nursery live on.
        assert tunnel.hangups() == [(1, CdnResult.GENERAL_ERROR, 0, "internal error")]
        assert handler.crashed == 1
        assert list(handler.records) == [(10, 2)]
        assert (10, 2) in dp.sessions
        assert handler.summary() == {"active": 1, "crashed": 1}
        nursery.cancel_scope.cancel()
    assert dp.calls[-1] == ("close_session", (10, 2))
