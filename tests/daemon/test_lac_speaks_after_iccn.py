"""A LAC subscriber lets the LNS speak first, and never speaks before its ICCN has left:
over a data plane that bypasses the tunnel core (the kernel's), the core cannot hold its
frames behind an ICCN that waits for the peer's window, so the subscriber waits for that
itself (issue 11, found 1; the core's own hold is tested in tests/l2tp/test_early_data.py).
"""

from __future__ import annotations

import attrs
import trio
import trio.testing

from kl2tp.daemon.ppp_session import PppSessions
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.events import CallAnswered, DataReceived
from ppp.frame import Code, Proto, decode_frame, decode_packet, encode_frame, encode_packet
from tests.daemon.fake_tunnel import FakeTunnel
from tests.daemon.inprocess import subscriber_link

BOUND = 120.0


@attrs.define
class WindowFullTunnel(FakeTunnel):
    """A tunnel whose ICCN waits for the peer's window until the test lets it go."""

    pending: bool = True

    def connect_pending(self, sid: int) -> bool:
        return self.pending


def lcp_codes(sent: list[tuple[int, bytes]]) -> list[int]:
    codes = []
    for _, frame in sent:
        protocol, information = decode_frame(frame[2:] if frame[:2] == b"\xff\x03" else frame)
        if protocol == Proto.LCP:
            codes.append(decode_packet(information).code)
    return codes


def handler(plane: NullDataPlane) -> PppSessions:
    return PppSessions(plane, lns=False, link_config=lambda _n: subscriber_link(), silent_start=1.0)


async def test_subscriber_sends_nothing_while_its_iccn_waits_for_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plane = NullDataPlane(carries_frames=False)  # kernel-like: frames bypass the core
    sessions = handler(plane)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            tunnel = WindowFullTunnel(nursery)
            sessions.call_answered(tunnel, CallAnswered(sid=3, peer_sid=77))
            await trio.sleep(30.0)  # far past the 1 s wait for the LNS
            assert tunnel.sent == []
            tunnel.pending = False  # the ICCN left
            await trio.sleep(1.0)
            assert lcp_codes(tunnel.sent) == [Code.CONFREQ]
            nursery.cancel_scope.cancel()


async def test_the_lns_speaking_first_ends_every_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The LNS's first frame proves it has our ICCN: the subscriber answers it at once."""
    plane = NullDataPlane(carries_frames=False)
    sessions = handler(plane)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            tunnel = WindowFullTunnel(nursery)
            sessions.call_answered(tunnel, CallAnswered(sid=3, peer_sid=77))
            await trio.testing.wait_all_tasks_blocked()
            request = encode_frame(
                Proto.LCP,
                encode_packet(Code.CONFREQ, 1, bytes.fromhex("0506a1b2c3d4")),
                address_control=False,
            )
            sessions.data_received(tunnel, DataReceived(sid=3, payload=request))
            await trio.sleep(0.5)
            assert Code.CONFACK in lcp_codes(tunnel.sent)
            nursery.cancel_scope.cancel()
