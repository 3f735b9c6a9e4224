"""The LAC programs its session before its ICCN goes (``defer_connect``), so the LNS's first
frame can never find the LAC without one; a deferred call is programmed exactly once.

Two endpoints on loopback, the LAC's data plane a null one that claims the kernel's
capability (it does not carry frames, so the handler defers) and lets the test look at the
LNS while the LAC's session is programmed.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio
import trio.testing

from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.sessions import DataPlaneSessions
from kl2tp.dataplane.base import DataPlaneError, FrameSink, SessionSpec
from kl2tp.dataplane.null import NullChannel, NullDataPlane
from kl2tp.l2tp.constants import CdnResult, ErrorCode
from kl2tp.l2tp.events import CallAnswered, CallEstablished, CallParams, ConnectInfo, DataReceived
from kl2tp.l2tp.tunnel import TunnelConfig
from tests.daemon.fake_tunnel import FakeTunnel

BOUND = 20.0


@attrs.define
class WatchedPlane(NullDataPlane):
    """A null data plane whose ``open_session`` first runs ``during`` (the test's probe)."""

    during: Callable[[SessionSpec], Awaitable[None]] | None = None
    refuse: bool = False

    async def open_session(self, spec: SessionSpec, sink: FrameSink) -> NullChannel:
        if self.refuse:
            self.calls.append(("refused", (spec.local_tunnel_id, spec.local_session_id)))
            raise DataPlaneError("no room")
        if self.during is not None:
            await self.during(spec)
        return await super().open_session(spec, sink)


def endpoint(role: str, plane: NullDataPlane, seed: int) -> Endpoint:
    return Endpoint(
        role=role,
        tunnel_config=TunnelConfig(hostname=role, hello_interval=0),
        dataplane=plane,
        listen=("127.0.0.1", 0),
        handler=DataPlaneSessions(plane, lns=role == "lns"),
        rng=random.Random(seed),
    )


@pytest.mark.parametrize("defer", [True, False])
async def test_lac_session_exists_before_the_lns_sees_the_iccn(defer: bool) -> None:
    lns_programmed = trio.Event()

    async def lns_opens(spec: SessionSpec) -> None:
        lns_programmed.set()  # the LNS programs its session when the ICCN arrives

    lns_plane = WatchedPlane(during=lns_opens)
    lac_plane = WatchedPlane(carries_frames=False)
    lns, lac = endpoint("lns", lns_plane, 1), endpoint("lac", lac_plane, 2)
    assert lac.defers_connect  # the handler asks for it with a kernel-like data plane
    seen: list[str] = []

    def lns_state(spec: SessionSpec) -> str:
        (runner,) = lns.tunnels.values()
        session = runner.core.sessions.get(spec.peer_session_id)
        return session.state if session is not None else "gone"

    async def probe(spec: SessionSpec) -> None:
        if defer:
            # The ICCN waits for us: however long programming takes, the LNS still waits.
            await trio.sleep(0.2)
        else:
            # The old order: the ICCN went first, the LNS is up before our session exists.
            await lns_programmed.wait()
        seen.append(lns_state(spec))

    lac_plane.during = probe
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            runner = await lac.dial(lns_addr)
            info = runner.place_call(CallParams(serial=1), defer_connect=defer)
            await info.done.wait()
            assert info.established is not None
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert seen == (["wait-connect"] if defer else ["established"])
            (lns_runner,) = lns.tunnels.values()
            ((lns_sid, lns_session),) = lns_runner.core.sessions.items()
            assert lns_session.state == "established"
            # Programmed once, with the LNS's session id, whatever the path.
            key = (runner.local_tunnel_id, info.local_sid)
            assert [c for c in lac_plane.calls if c[0] == "open_session"] == [("open_session", key)]
            assert lac_plane.sessions[key].peer_session_id == lns_sid
            assert runner.core.sessions[info.local_sid].state == "established"
            nursery.cancel_scope.cancel()


# --- the handler on its own --------------------------------------------------------------------


async def test_answered_call_is_programmed_then_connected_and_established_adds_nothing() -> None:
    plane = NullDataPlane(carries_frames=False)
    handler = DataPlaneSessions(plane, lns=False)
    info = ConnectInfo(sequencing_required=True)
    async with trio.open_nursery() as nursery:
        tunnel = FakeTunnel(nursery)
        handler.call_answered(tunnel, CallAnswered(sid=3, peer_sid=77, info=info))
        await trio.testing.wait_all_tasks_blocked()
        assert list(plane.calls) == [("open_session", (10, 3))]
        # The channel is open before the core hands over kept frames, and before the ICCN.
        assert tunnel.commands == [("data_ready", 3), ("connect_call", 3)]
        spec = plane.sessions[(10, 3)]
        assert (spec.peer_session_id, spec.lns_mode, spec.data_sequencing) == (77, False, True)
        # The ICCN's CallEstablished finds the session programmed: no second one.
        handler.call_established(tunnel, CallEstablished(sid=3, peer_sid=77, info=info))
        await trio.testing.wait_all_tasks_blocked()
        assert [c[0] for c in plane.calls] == ["open_session"]
        assert tunnel.commands == [("data_ready", 3), ("connect_call", 3)]
        assert list(handler.records) == [(10, 3)]
        nursery.cancel_scope.cancel()
    assert plane.calls[-1] == ("close_session", (10, 3))


async def test_answered_call_the_data_plane_refuses_is_cleared_without_an_iccn() -> None:
    plane = WatchedPlane(carries_frames=False, refuse=True)
    handler = DataPlaneSessions(plane, lns=False)
    async with trio.open_nursery() as nursery:
        tunnel = FakeTunnel(nursery)
        handler.call_answered(tunnel, CallAnswered(sid=3, peer_sid=77))
        await trio.testing.wait_all_tasks_blocked()
    assert list(plane.calls) == [("refused", (10, 3))]  # no connect_call, nothing to close
    assert tunnel.commands == [
        ("hangup", 3, CdnResult.GENERAL_ERROR, ErrorCode.INSUFFICIENT_RESOURCES, "data plane error")
    ]
    assert handler.records == {}


async def test_frames_go_to_the_open_channel_and_are_dropped_without_one() -> None:
    plane = NullDataPlane()
    handler = DataPlaneSessions(plane, lns=True)
    async with trio.open_nursery() as nursery:
        tunnel = FakeTunnel(nursery)
        handler.data_received(tunnel, DataReceived(sid=5, payload=b"\xff\x03\xc0\x21\x01"))
        assert tunnel.counters == {"drop_data_no_session": 1}
        handler.call_established(tunnel, CallEstablished(sid=5, peer_sid=50, info=ConnectInfo()))
        await trio.testing.wait_all_tasks_blocked()
        assert tunnel.commands == [("data_ready", 5)]
        channel = handler.records[(10, 5)].channel
        assert channel is not None
        handler.data_received(tunnel, DataReceived(sid=5, payload=b"\xff\x03\xc0\x21\x02"))
        # The address/control bytes are stripped: channels carry bare PPP frames.
        assert await channel.receive() == b"\xc0\x21\x02"
        await channel.send(b"\xc0\x21\x03")
        assert tunnel.sent == [(5, b"\xff\x03\xc0\x21\x03")]
        nursery.cancel_scope.cancel()
