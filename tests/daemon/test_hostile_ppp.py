"""Hostile subscribers against a live LNS: the PPP rows of issue 8's hostile-input table.

The real endpoints and PPP session handlers run on loopback. A legitimate subscriber holds a
session through every row; each row then places a call from a LAC whose data plane rewrites
what its subscriber sends (frames whose Length lies, CHAP and MS-CHAPv2 responses of the wrong
size, LCP option floods, IPCP asking for someone else's address) and checks the LNS's reaction
(dropped and counted, Configure-Reject, Configure-Nak with the subscriber's own address). After
every row the legitimate session is still up, a fresh legitimate call still succeeds, no
address is held twice, and no Traceback was logged.

Further down, the same set-up drives the identity and address rules at the session level: a
second login of a static-address user (refused, or replacing the first), and a link whose
LCP restarts under another user (ended, with its accounting Stop) or the same one (goes on,
no second Start).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from kl2tp.aaa import base as aaa
from kl2tp.aaa.addresses import AddressBook
from kl2tp.aaa.local import LocalAuthenticator, LocalUser
from kl2tp.aaa.pool import AddressPool, BlockLeases, set_worker_share
from kl2tp.daemon.client import subscriber_call
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.handle import SessionInfo, TunnelHandle
from kl2tp.daemon.ppp_session import PppSessions
from kl2tp.dataplane.base import FrameSink, SessionSpec
from kl2tp.dataplane.null import NullChannel, NullDataPlane
from kl2tp.l2tp.avp import Avp, ResultCode
from kl2tp.l2tp.constants import AvpType, CdnResult, MessageType
from kl2tp.l2tp.message import ControlMessage, DataMessage
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.values import Secret
from ppp.auth import ChapCode
from ppp.config import AuthMethod, LinkConfig
from ppp.frame import Code, Proto, decode_options, decode_packet, encode_option, encode_packet
from ppp.ipcp import IpcpOption
from ppp.link import Link, Phase
from tests.aaa.test_addresses import SlowLender
from tests.daemon.harness import ctl, wait_for
from tests.daemon.hostile_rows import REPLY_BOUND, HostileLns, RawPeer, Row
from tests.daemon.inprocess import fsm, lns_link, subscriber_link

BOUND = 60.0
A = ipaddress.IPv4Address
LOCAL = A("10.9.0.1")
POOL = "10.9.0.2-10.9.0.60"
STATIC_IN_POOL = A("10.9.0.50")
STATIC_OUTSIDE = A("192.0.2.99")
USERS = {
    "legit": ("pw-legit", None),
    "static1": ("pw-s1", STATIC_IN_POOL),
    "static2": ("pw-s2", STATIC_OUTSIDE),
    **{f"user{n}": (f"pass{n}", None) for n in range(1, 10)},
}


class Recording(LocalAuthenticator):
    """The local back end, keeping every request and accounting record."""

    def __init__(self) -> None:
        super().__init__(
            {
                name: LocalUser(name, Secret(pw.encode()), address)
                for name, (pw, address) in USERS.items()
            }
        )
        self.requests: list[aaa.AuthRequest] = []
        self.records: list[aaa.AccountingRecord] = []

    async def authenticate(self, request: aaa.AuthRequest) -> aaa.AuthResult:
        self.requests.append(request)
        return await super().authenticate(request)

    slow_stop = 0.0
    """Seconds an accounting Stop takes (a RADIUS server far away)."""

    async def account(self, record: aaa.AccountingRecord) -> None:
        self.records.append(record)
        if record.kind is aaa.AccountingKind.STOP:
            await trio.sleep(self.slow_stop)
        await super().account(record)

    def asked(self, user: str) -> int:
        return sum(1 for r in self.requests if r.username == user)

    def kinds(self, user: str) -> list[str]:
        return [r.kind.name for r in self.records if r.username == user]


def subscriber(user: str, method: AuthMethod = AuthMethod.CHAP) -> LinkConfig:
    return subscriber_link(
        hostname=user, username=user, password=USERS[user][0], accept_auth=(method,)
    )


# -- the hostile data plane -------------------------------------------------------------------

Rewrite = Callable[[bytes], list[bytes]]
"""What a hostile subscriber sends instead of one frame its PPP wanted to send."""


class HostileChannel(NullChannel):
    """A LAC session's channel that rewrites outgoing frames and records incoming ones; a
    test may take the session over (``impostor``) and feed it frames itself."""

    def __init__(self, sink: FrameSink, depth: int, rewrite: Rewrite) -> None:
        super().__init__(sink, depth)
        self.sink = sink
        self.rewrite = rewrite
        self.received: list[bytes] = []
        self.impostor: trio.MemorySendChannel[bytes] | None = None

    def send_nowait(self, frame: bytes) -> None:
        for out in self.rewrite(frame):
            self.sink(out)

    def deliver(self, frame: bytes) -> bool:
        self.received.append(frame)
        if self.impostor is not None:
            self.impostor.send_nowait(frame)
            return True
        return super().deliver(frame)

    def packets(self, protocol: int) -> list[tuple[int, int, bytes]]:
        out = []
        for frame in self.received:
            if int.from_bytes(frame[:2], "big") == protocol:
                out.append(tuple(decode_packet(frame[2:])))
        return out  # type: ignore[return-value]


@attrs.define
class HostilePlane(NullDataPlane):
    rewrite: Rewrite = lambda frame: [frame]
    hostile: list[HostileChannel] = attrs.field(factory=list)

    async def open_session(self, spec: SessionSpec, sink: FrameSink) -> NullChannel:
        await super().open_session(spec, sink)
        channel = HostileChannel(sink, self.channel_depth, self.rewrite)
        self.set_channel((spec.local_tunnel_id, spec.local_session_id), channel)
        self.hostile.append(channel)
        return channel


def proto(frame: bytes) -> int:
    return int.from_bytes(frame[:2], "big")


def ppp(protocol: int, information: bytes) -> bytes:
    return protocol.to_bytes(2, "big") + information


# -- the lab ----------------------------------------------------------------------------------


@attrs.define
class Call:
    lac: Endpoint
    runner: TunnelHandle
    info: SessionInfo
    plane: HostilePlane

    @property
    def up(self) -> bool:
        return self.info.established is not None and self.info.closed is None

    @property
    def channel(self) -> HostileChannel:
        return self.plane.hostile[0]


@attrs.define
class Lab:
    nursery: trio.Nursery
    lns: Endpoint
    handler: PppSessions
    backend: Recording
    address: tuple[str, int]

    def summary(self) -> dict[str, Any]:
        return self.handler.summary()

    def drops(self) -> dict[str, int]:
        return dict(self.summary()["ppp_drops"])

    def state_of(self, call: Call) -> Any:
        """The LNS's session state for ``call`` (matched by the LAC's session id)."""
        for (_tid, _sid), state in self.handler.running.items():
            if state.rec.call.serial == call.info.extra["serial"]:
                return state
        return None

    async def call(
        self,
        config: LinkConfig,
        rewrite: Rewrite = lambda frame: [frame],
        *,
        wait: bool = True,
    ) -> Call:
        plane = HostilePlane(rewrite=rewrite)
        lac = Endpoint(
            role="lac",
            tunnel_config=TunnelConfig(hostname="lac", hello_interval=0),
            dataplane=plane,
            listen=("127.0.0.1", 0),
            handler=PppSessions(
                plane, lns=False, link_config=lambda _n: config, rng=random.Random(7)
            ),
        )
        await self.nursery.start(lac.serve)
        runner = await lac.dial(self.address, setup_timeout=BOUND / 2)
        serial = next(_serials)
        info = runner.place_call(subscriber_call(serial), None, defer_connect=lac.defers_connect)
        info.extra["n"] = 1
        info.extra["serial"] = serial
        call = Call(lac, runner, info, plane)
        if wait:
            await info.done.wait()
        return call


_serials = iter(range(1000, 100000))


@asynccontextmanager
async def lab(link: LinkConfig | None = None, **handler_options: Any) -> AsyncIterator[Lab]:
    plane = NullDataPlane()
    backend = Recording()
    if link is None:
        # LCP and CHAP wait 1 s between requests: on a loaded machine, tracing a flood at
        # DEBUG takes the LNS a while, and no row is about retransmissions. The phases
        # still end within 1 s (auth_timeout, network_timeout).
        link = lns_link(
            lcp=fsm(1.0, 10), auth=(AuthMethod.CHAP, AuthMethod.MSCHAPV2, AuthMethod.PAP)
        )
    handler = PppSessions(
        plane,
        lns=True,
        link_config=lambda _n: link,
        authenticator=backend,
        pool=AddressPool(POOL, exclude=[LOCAL]),
        rng=random.Random(1),
        **handler_options,
    )
    lns = Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(hostname="lns", hello_interval=0),
        dataplane=plane,
        listen=("127.0.0.1", 0),
        handler=handler,
    )
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(lns.serve)
            yield Lab(nursery, lns, handler, backend, address)
            nursery.cancel_scope.cancel()


async def until(condition: Callable[[], bool]) -> None:
    """Poll state other tasks change (no event to wait on); ``lab``'s fail_after bounds it."""
    for _ in itertools.count():
        if condition():
            return
        await trio.sleep(0.01)


def held_once(lab: Lab) -> None:
    """No address is held by two live sessions, and the pool agrees with the book."""
    addresses = [s.address for s in lab.handler.running.values() if s.address is not None]
    assert len(addresses) == len(set(addresses))
    for state in lab.handler.running.values():
        if state.address is not None:
            assert lab.handler.addresses.holder(state.address) is state


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- the rows ---------------------------------------------------------------------------------

LCP_LONG = ppp(Proto.LCP, b"\x01\x63\x00\x40" + bytes(4))  # Length 64, 8 octets
LCP_SHORT = ppp(Proto.LCP, b"\x01\x64\x00\x02")  # Length below 4
IPCP_LONG = ppp(Proto.IPCP, b"\x01\x65\x00\x30\x03\x06")  # Length 48, 6 octets
CHAP_LONG = ppp(Proto.CHAP, b"\x02\x66\x01\x00\x10")  # Length 256, 5 octets
NO_PROTOCOL = b"\xc0"  # a protocol field cut short


def length_lies() -> tuple[Rewrite, Callable[[Lab, Call, dict[str, int]], None]]:
    """PPP packets whose Length field lies, and a frame with no room for its protocol,
    before the first LCP request and again before the first IPCP request: dropped and
    counted; the call comes up."""
    sent = {"lcp": False, "ipcp": False}
    lies = [LCP_LONG, LCP_SHORT, IPCP_LONG, CHAP_LONG, NO_PROTOCOL]

    def rewrite(frame: bytes) -> list[bytes]:
        key = "lcp" if proto(frame) == Proto.LCP else "ipcp" if proto(frame) == Proto.IPCP else ""
        if key and not sent[key]:
            sent[key] = True
            return [*lies, frame]
        return [frame]

    def check(lab: Lab, call: Call, before: dict[str, int]) -> None:
        assert call.up
        after = lab.drops()
        # In Establish, LCP packets are decoded (two lies) and IPCP/CHAP are not yet
        # read; in Network, all four packets are; the cut frame each time.
        assert after.get("bad-packet", 0) - before.get("bad-packet", 0) == 2 + 4
        assert after.get("bad-frame", 0) - before.get("bad-frame", 0) == 2

    return rewrite, check


def wrong_size(method: AuthMethod, sizes: tuple[int, ...], *, then_good: bool) -> Any:
    """CHAP or MS-CHAPv2 Responses of the wrong size before (or instead of) the real one:
    dropped and counted, never passed to AAA."""

    def rewrite(frame: bytes) -> list[bytes]:
        if proto(frame) != Proto.CHAP or frame[2] != ChapCode.RESPONSE:
            return [frame]
        code, ident, data = decode_packet(frame[2:])
        size = data[0]
        name = data[1 + size :]
        bad = [
            ppp(Proto.CHAP, encode_packet(code, ident, bytes((n,)) + bytes(n) + name))
            for n in sizes
        ]
        return [*bad, frame] if then_good else bad

    def check(lab: Lab, call: Call, before: dict[str, int]) -> None:
        after = lab.drops()
        dropped = after.get("chap-response-size", 0) - before.get("chap-response-size", 0)
        if then_good:
            assert call.up
            assert dropped >= len(sizes)
            assert lab.backend.asked("user2") == 1
        else:
            assert not call.up and call.info.closed is not None
            assert dropped >= len(sizes)
            assert lab.backend.asked("user3") == 0  # nothing the peer sent reached AAA

    return rewrite, check


FLOOD = b"".join(encode_option(t, bytes((t,))) for t in range(32, 255))
"""223 options no one knows, 669 octets."""


def lcp_flood(copies: int) -> Any:
    """Configure-Requests stuffed with unknown options ahead of the real one: each gets a
    Configure-Reject of exactly those options (no more answers than requests); the call
    comes up."""
    sent = [False]

    def rewrite(frame: bytes) -> list[bytes]:
        if proto(frame) == Proto.LCP and frame[2] == Code.CONFREQ and not sent[0]:
            sent[0] = True
            flood = [
                ppp(Proto.LCP, encode_packet(Code.CONFREQ, 200 + i, FLOOD)) for i in range(copies)
            ]
            return [*flood, frame]
        return [frame]

    def check(lab: Lab, call: Call, before: dict[str, int]) -> None:
        assert call.up
        rejects = [p for p in call.channel.packets(Proto.LCP) if p[0] == Code.CONFREJ]
        flood_rejects = [p for p in rejects if p[1] >= 200]
        assert 1 <= len(flood_rejects) <= copies
        assert all(p[2] == FLOOD for p in flood_rejects)
        assert len(decode_options(flood_rejects[0][2])) == 223

    return rewrite, check


def ipcp_asks_for(target: Callable[[Lab], ipaddress.IPv4Address], *, always: bool) -> Any:
    """The subscriber's IPCP asks for an address someone else holds (another subscriber's,
    a static user's, the LNS's own): Nak'd with its own; asked for every time, the call
    never comes up with it."""
    state: dict[str, Any] = {"done": False, "target": None}

    def rewrite(frame: bytes) -> list[bytes]:
        if proto(frame) != Proto.IPCP or frame[2] != Code.CONFREQ:
            return [frame]
        if state["done"] and not always:
            return [frame]
        state["done"] = True
        code, ident, data = decode_packet(frame[2:])
        options = [
            encode_option(t, state["target"].packed if t == IpcpOption.ADDRESS else v)
            for t, v in decode_options(data)
        ]
        return [ppp(Proto.IPCP, encode_packet(code, ident, b"".join(options)))]

    def check(lab: Lab, call: Call, before: dict[str, int]) -> None:
        wanted = state["target"]
        naks = [p for p in call.channel.packets(Proto.IPCP) if p[0] == Code.CONFNAK]
        assert naks
        for _code, _ident, data in naks:
            offered = dict(decode_options(data)).get(IpcpOption.ADDRESS)
            assert offered is not None and A(offered) != wanted
        acks = [p for p in call.channel.packets(Proto.IPCP) if p[0] == Code.CONFACK]
        assert not [
            p for p in acks if dict(decode_options(p[2])).get(IpcpOption.ADDRESS) == wanted.packed
        ]
        if always:
            assert not call.up
        else:
            assert call.up
            mine = lab.state_of(call)
            assert mine is not None and mine.address not in (None, wanted)
        assert lab.handler.addresses.holder(wanted) is not lab.state_of(call)

    def prepare(lab: Lab, legit: Call) -> None:
        state["target"] = target(lab)

    return rewrite, check, prepare


def address_of(user: str) -> Callable[[Lab], ipaddress.IPv4Address]:
    def find(lab: Lab) -> ipaddress.IPv4Address:
        for state in lab.handler.running.values():
            if state.username == user and state.address is not None:
                return state.address
        raise AssertionError(f"{user} holds no address")

    return find


ROWS: dict[str, tuple[Any, LinkConfig]] = {
    "ppp length lies": (length_lies(), subscriber("user1")),
    "chap response wrong size, then good": (
        wrong_size(AuthMethod.CHAP, (0, 8, 17, 255), then_good=True),
        subscriber("user2"),
    ),
    "chap response wrong size only": (
        wrong_size(AuthMethod.CHAP, (15,), then_good=False),
        subscriber("user3"),
    ),
    "mschapv2 response wrong size, then good": (
        wrong_size(AuthMethod.MSCHAPV2, (48, 50, 16), then_good=True),
        subscriber("user2", AuthMethod.MSCHAPV2),
    ),
    "lcp option flood": (lcp_flood(1), subscriber("user4")),
    "lcp option flood x10": (lcp_flood(10), subscriber("user5")),
    "ipcp asks for another subscriber's address": (
        ipcp_asks_for(address_of("legit"), always=False),
        subscriber("user6"),
    ),
    "ipcp asks for a static user's address (in the pool)": (
        ipcp_asks_for(address_of("static1"), always=False),
        subscriber("user7"),
    ),
    "ipcp asks for a static user's address (outside the pool)": (
        ipcp_asks_for(address_of("static2"), always=False),
        subscriber("user8"),
    ),
    "ipcp asks for the LNS's own address": (
        ipcp_asks_for(lambda _lab: LOCAL, always=False),
        subscriber("user9"),
    ),
    "ipcp keeps asking for another subscriber's address": (
        ipcp_asks_for(address_of("legit"), always=True),
        subscriber("user6"),
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
async def test_hostile_ppp_row(row: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the traces run on hostile input too
    spec, config = ROWS[row]
    rewrite, check, *rest = spec
    async with lab() as the:
        legit = await the.call(subscriber("legit"))
        statics = [await the.call(subscriber("static1")), await the.call(subscriber("static2"))]
        assert legit.up and all(s.up for s in statics)
        for prepare in rest:
            prepare(the, legit)
        before = the.drops()
        hostile = await the.call(config, rewrite)
        if not hostile.up:
            await until(lambda: hostile.info.closed is not None)
        check(the, hostile, before)
        held_once(the)
        # The legitimate session is untouched, and a new legitimate call still succeeds.
        assert legit.up and all(s.up for s in statics)
        state = the.state_of(legit)
        assert state is not None and state.link.phase is Phase.NETWORK
        fresh = await the.call(subscriber("user1"))
        assert fresh.up
        held_once(the)
    no_traceback(caplog)


# -- a second login of a static-address user ---------------------------------------------------


async def test_second_login_of_a_static_user_is_refused_by_default() -> None:
    async with lab() as the:
        first = await the.call(subscriber("static1"))
        assert first.up
        second = await the.call(subscriber("static1"))
        assert not second.up
        assert second.info.extra.get("failure") == "auth failed"
        assert the.summary()["logins_refused"] == {"duplicate-session": 1}
        assert first.up
        state = the.state_of(first)
        assert state is not None and the.handler.addresses.holder(STATIC_IN_POOL) is state
        assert the.backend.kinds("static1") == ["START"]
        # Pool users may log in twice: each session has its own address.
        a, b = await the.call(subscriber("user1")), await the.call(subscriber("user1"))
        assert a.up and b.up
        sa, sb = the.state_of(a), the.state_of(b)
        assert sa.address != sb.address
        held_once(the)


async def test_second_login_of_a_static_user_replaces_the_first() -> None:
    async with lab(duplicate_session="replace") as the:
        # The old session's Stop takes a while, so its data-plane removal comes late.
        the.backend.slow_stop = 0.5
        first = await the.call(subscriber("static2"))
        assert first.up
        old = the.state_of(first)
        second = await the.call(subscriber("static2"))
        assert second.up
        await until(lambda: first.info.closed is not None)
        assert first.info.closed is not None
        assert first.info.closed.result == CdnResult.ADMINISTRATIVE
        new = the.state_of(second)
        assert new is not old and new.address == STATIC_OUTSIDE
        # The old session's data-plane session (its interface, its host route to the same
        # address) was gone before the new one's interface was configured.
        calls = the.handler.dataplane.calls  # type: ignore[attr-defined]
        old_key = (old.rec.tunnel.local_tunnel_id, old.rec.sid)
        new_key = (new.rec.tunnel.local_tunnel_id, new.rec.sid)
        await until(lambda: ("session_up", new_key) in calls)
        assert calls.index(("close_session", old_key)) < calls.index(("session_up", new_key))
        assert the.handler.addresses.holder(STATIC_OUTSIDE) is new
        await until(lambda: the.backend.kinds("static2") == ["START", "STOP", "START"])
        stop = next(r for r in the.backend.records if r.kind is aaa.AccountingKind.STOP)
        assert stop.terminate_cause == "admin-reset" and stop.address == STATIC_OUTSIDE
        held_once(the)


async def test_a_static_address_held_by_another_user_refuses_the_login() -> None:
    async with lab() as the:
        # user1 takes 10.9.0.50 from the pool (its IPCP asks for it before static1 logs in).
        squatter = await the.call(subscriber("user1"), ipcp_asks_for_plain(STATIC_IN_POOL))
        assert squatter.up and the.state_of(squatter).address == STATIC_IN_POOL
        late = await the.call(subscriber("static1"))
        assert not late.up
        assert the.summary()["logins_refused"] == {"address-in-use": 1}
        held_once(the)


def ipcp_asks_for_plain(address: ipaddress.IPv4Address) -> Rewrite:
    """Ask for ``address`` in the first IPCP request (a hint the pool may honour)."""
    done = [False]

    def rewrite(frame: bytes) -> list[bytes]:
        if proto(frame) != Proto.IPCP or frame[2] != Code.CONFREQ or done[0]:
            return [frame]
        done[0] = True
        code, ident, data = decode_packet(frame[2:])
        options = [
            encode_option(t, address.packed if t == IpcpOption.ADDRESS else v)
            for t, v in decode_options(data)
        ]
        return [ppp(Proto.IPCP, encode_packet(code, ident, b"".join(options)))]

    return rewrite


# -- identity fixed once authenticated ---------------------------------------------------------


async def impostor(channel: HostileChannel, config: LinkConfig, done: Callable[[], bool]) -> Link:
    """Take the session over from its subscriber: a new PPP link on the same L2TP session
    restarts LCP and authenticates with ``config``'s credentials."""
    send, receive = trio.open_memory_channel[bytes](256)
    channel.impostor = send
    link = Link(config, rng=random.Random(11), name="impostor")
    link.open(trio.current_time())
    while not done():
        for frame in link.frames_to_send():
            channel.sink(frame)
        while link.next_event() is not None:
            pass
        timer = link.get_timer()
        with trio.move_on_at(timer if timer is not None else trio.current_time() + 0.05):
            frame = await receive.receive()
            link.receive_frame(frame, trio.current_time())
            continue
        link.handle_timer(trio.current_time())
    return link


async def test_reauthentication_as_another_user_ends_the_session_with_its_stop() -> None:
    async with lab() as the:
        call = await the.call(subscriber("user4"))
        assert call.up
        assert the.backend.kinds("user4") == ["START"]
        await impostor(call.channel, subscriber("user5"), lambda: call.info.closed is not None)
        assert call.info.closed is not None
        assert call.info.closed.result == CdnResult.GENERAL_ERROR
        assert the.backend.asked("user5") == 0  # the other name never reached AAA
        await until(lambda: the.backend.kinds("user4") == ["START", "STOP"])
        assert the.summary()["identity_changes"] == 1
        assert the.handler.addresses.summary()["held"] == 0


async def test_reauthentication_as_the_same_user_goes_on_without_a_second_start() -> None:
    async with lab() as the:
        call = await the.call(subscriber("user4"))
        state = the.state_of(call)
        address = state.address

        def reauthenticated() -> bool:
            return (
                the.backend.asked("user4") == 2
                and state.link.phase is Phase.NETWORK
                and (state.link.ipcp is not None and state.link.ipcp.fsm.state.name == "OPENED")
            )

        link = await impostor(call.channel, subscriber("user4"), reauthenticated)
        assert link.phase is Phase.NETWORK
        assert call.up and state.address == address
        assert the.backend.kinds("user4") == ["START"]
        assert the.summary()["identity_changes"] == 0


# -- PPP links that never finish ---------------------------------------------------------------


async def test_a_link_that_never_finishes_setup_is_ended_and_its_address_released() -> None:
    """The subscriber never acknowledges the LNS's IPCP request: IPCP's own retries would
    run for minutes (restart 0.2 s x 1000), the Network phase for 60 s; ``setup_timeout``
    ends it at 1 s, with the address it was given back in the pool."""
    link = lns_link(lcp=fsm(0.2, 1000), network_timeout=60.0, setup_timeout=1.0)
    async with lab(link) as the:
        legit = await the.call(subscriber("legit"))
        assert legit.up
        in_use = the.handler.addresses.summary()["held"]

        def no_ipcp_ack(frame: bytes) -> list[bytes]:
            if proto(frame) == Proto.IPCP and frame[2] == Code.CONFACK:
                return []
            return [frame]

        stuck = await the.call(subscriber("user1"), no_ipcp_ack)
        await until(lambda: stuck.info.closed is not None)
        # (The subscriber's own IPCP opened: the LNS acknowledged it.) The LNS's never did:
        # no accounting began.
        assert the.backend.kinds("user1") == []
        assert stuck.info.closed is not None
        assert stuck.info.closed.result == CdnResult.TIMEOUT
        # It held an address (its IPCP request was answered) and gave it back.
        naks = [p for p in stuck.channel.packets(Proto.IPCP) if p[0] == Code.CONFNAK]
        assert naks
        await until(lambda: the.handler.addresses.summary()["held"] == in_use)
        summary = the.summary()
        assert summary["setup_timeouts"] == {"network": 1}
        assert summary["pool"]["in_use"] == in_use
        assert legit.up


# -- the same rows against a kl2tp-lns process (hostile_rows' runner) -------------------------
#
# A hand-driven L2TP peer (RawPeer, scope "session") carries the PPP frames; where a row needs
# a subscriber that gets as far as CHAP or IPCP, a ppp.Link runs over that peer's session
# (``over_raw``) with the row's rewrite between the link and the wire. The legitimate
# kl2tp-lac's subscribers hold their sessions throughout; the last test checks they survived.


def over_raw(
    peer: RawPeer,
    config: LinkConfig,
    until: Callable[[Link, list[bytes]], bool],
    rewrite: Rewrite = lambda frame: [frame],
) -> tuple[Link, list[bytes]]:
    """Run a subscriber's PPP over ``peer``'s session until ``until(link, received)``;
    returns the link and every PPP frame the LNS sent (without ``ff 03``)."""
    link = Link(config, rng=random.Random(5), name="raw-subscriber")
    received: list[bytes] = []

    def feed(msg: object) -> None:
        if isinstance(msg, DataMessage):
            frame = msg.payload[2:] if msg.payload[:2] == b"\xff\x03" else msg.payload
            received.append(frame)
            link.receive_frame(frame, time.monotonic())

    link.open(time.monotonic())
    for msg in peer.received:
        feed(msg)
    deadline = time.monotonic() + REPLY_BOUND * 2
    while not until(link, received):
        assert time.monotonic() < deadline, f"the subscriber got stuck in {link.phase}"
        for frame in link.frames_to_send():
            for out in rewrite(frame):
                peer.send_data(b"\xff\x03" + out)
        while link.next_event() is not None:
            pass
        msg = peer.receive(0.05)
        if isinstance(msg, ControlMessage) and msg.msg_type is not None:
            peer.ack()
        feed(msg)
        timer = link.get_timer()
        if timer is not None and time.monotonic() >= timer:
            link.handle_timer(time.monotonic())
    return link, received


def of(frames: list[bytes], protocol: int, code: int) -> list[tuple[int, int, bytes]]:
    out = []
    for frame in frames:
        if proto(frame) == protocol:
            packet = tuple(decode_packet(frame[2:]))
            if packet[0] == code:
                out.append(packet)
    return out  # type: ignore[return-value]


def leave(peer: RawPeer, lns: HostileLns) -> None:
    """Clear the raw peer's tunnel (StopCCN) and wait until its session is gone, so the
    final check counts only the legitimate subscribers."""
    peer.send(
        MessageType.STOPCCN,
        [
            Avp(AvpType.RESULT_CODE, ResultCode(1, 0)),
            Avp(AvpType.ASSIGNED_TUNNEL_ID, peer.tunnel_id),
        ],
    )
    wait_for(lambda: live_sessions(lns) == lns.legit, "the raw peer's session to go")


def live_sessions(lns: HostileLns) -> int:
    return int(lns.summary()["sessions"]["total"])


def ppp_summary(lns: HostileLns) -> dict[str, Any]:
    return dict(lns.summary()["ppp"])


def drops_rise(lns: HostileLns, before: dict[str, int], want: dict[str, int]) -> None:
    def risen() -> dict[str, int] | None:
        now = ppp_summary(lns)["ppp_drops"]
        delta = {k: now.get(k, 0) - before.get(k, 0) for k in want}
        return delta if all(delta[k] >= v for k, v in want.items()) else None

    assert wait_for(risen, f"ppp_drops {want}", REPLY_BOUND) == want


def live_length_lies(peer: RawPeer, lns: HostileLns) -> None:
    before = ppp_summary(lns)["ppp_drops"]
    for frame in (LCP_LONG, LCP_SHORT, NO_PROTOCOL):
        peer.send_data(b"\xff\x03" + frame)
    drops_rise(lns, before, {"bad-packet": 2, "bad-frame": 1})
    leave(peer, lns)


def live_flood(peer: RawPeer, lns: HostileLns) -> None:
    peer.send_data(b"\xff\x03" + ppp(Proto.LCP, encode_packet(Code.CONFREQ, 222, FLOOD)))

    def rejected(msg: object) -> bool:
        if not isinstance(msg, DataMessage):
            return False
        frame = msg.payload[2:]
        return proto(frame) == Proto.LCP and decode_packet(frame[2:])[:3] == (
            Code.CONFREJ,
            222,
            FLOOD,
        )

    peer.expect(rejected, "LCP Configure-Reject of the flood")
    leave(peer, lns)


def live_wrong_size(method: AuthMethod, sizes: tuple[int, ...]) -> Callable[..., None]:
    def check(peer: RawPeer, lns: HostileLns) -> None:
        before = ppp_summary(lns)["ppp_drops"]
        rewrite, _ = wrong_size(method, sizes, then_good=True)

        def up(link: Link, _frames: list[bytes]) -> bool:
            return link.ipcp is not None and link.ipcp.fsm.state.name == "OPENED"

        over_raw(peer, subscriber_link(accept_auth=(method,)), up, rewrite)
        drops_rise(lns, before, {"chap-response-size": len(sizes)})
        leave(peer, lns)

    return check


def live_ipcp_asks(target: Callable[[HostileLns], ipaddress.IPv4Address]) -> Callable[..., None]:
    def check(peer: RawPeer, lns: HostileLns) -> None:
        wanted = target(lns)
        link, frames = over_raw(
            peer,
            subscriber_link(),
            lambda link, _f: link.ipcp is not None and link.ipcp.fsm.state.name == "OPENED",
            ipcp_asks_for_plain(wanted),
        )
        naks = of(frames, Proto.IPCP, Code.CONFNAK)
        assert naks, "no IPCP Configure-Nak"
        offered = dict(decode_options(naks[0][2]))[IpcpOption.ADDRESS]
        assert A(offered) != wanted
        assert link.peer_address is not None
        mine = link.ipcp.want_address if link.ipcp is not None else None
        assert mine is not None and A(mine) == A(offered) != wanted
        rows = ctl(lns.sock, "show", "sessions")
        holders = [r for r in rows if r.get("address") == str(wanted)]
        assert len(holders) <= 1  # still only its owner (none for the LNS's own address)
        leave(peer, lns)

    return check


def a_legit_address(lns: HostileLns) -> ipaddress.IPv4Address:
    rows = ctl(lns.sock, "show", "sessions")
    return A(next(r["address"] for r in rows if r.get("address")))


LIVE_ROWS = [
    Row("ppp length lies", "session", lambda p: None, check=live_length_lies),
    Row("lcp option flood", "session", lambda p: None, check=live_flood),
    Row(
        "chap response wrong size",
        "session",
        lambda p: None,
        check=live_wrong_size(AuthMethod.CHAP, (8, 17)),
    ),
    Row(
        "mschapv2 response wrong size",
        "session",
        lambda p: None,
        check=live_wrong_size(AuthMethod.MSCHAPV2, (48, 16)),
    ),
    Row(
        "ipcp asks for another subscriber's address",
        "session",
        lambda p: None,
        check=live_ipcp_asks(a_legit_address),
    ),
    Row(
        "ipcp asks for the LNS's own address",
        "session",
        lambda p: None,
        check=live_ipcp_asks(lambda _lns: A("10.30.0.1")),
    ),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileLns]:
    with HostileLns.start(tmp_path_factory.mktemp("hostile-ppp")) as lns:
        yield lns


@pytest.mark.parametrize("row", LIVE_ROWS, ids=lambda r: r.name)
def test_live_row(live: HostileLns, row: Row) -> None:
    live.run(row)


def test_live_zz_the_legitimate_subscribers_survived(live: HostileLns) -> None:
    """Last (module order): every live row ran against this LNS."""
    live.check_healthy()


# -- reload --------------------------------------------------------------------------------------


def test_reload_applies_the_new_bounds_and_grows_the_pool_through_the_book() -> None:
    from kl2tp.config import parse_config
    from kl2tp.daemon.ppp_session import address_book, lns_link_config
    from kl2tp.daemon.reload import Reloader

    def cfg(text: str) -> Any:
        return parse_config(text, "lns.toml", "lns")

    old = cfg('[ppp]\npool = "10.40.0.2-10.40.0.3"\nlocal_address = "10.40.0.1"\n')
    plane = NullDataPlane()
    handler = PppSessions(
        plane,
        lns=True,
        link_config=lambda _n: lns_link_config(old),
        addresses=address_book(old),
        duplicate_session=old.aaa.duplicate_session,
    )
    held = handler.addresses.assign("someone", requested=A("10.40.0.3"))
    reloader = Reloader("lns.toml", old, ident="kl2tp-lns")
    reloader.handler = handler
    reloader.link_config = lns_link_config
    new = cfg(
        '[ppp]\npool = "10.40.0.2-10.40.0.9"\nlocal_address = "10.40.0.1"\n'
        "setup_timeout = 7\nmax_restarts = 2\n"
        '[aaa]\nduplicate_session = "replace"\n'
    )
    answer = reloader.apply(new)
    assert answer["restart_needed"] == []
    assert set(answer["applied"]) >= {
        "ppp.pool",
        "ppp.setup_timeout",
        "ppp.max_restarts",
        "aaa.duplicate_session",
    }
    assert handler.duplicate_session == "replace"
    link = handler.link_config(0)
    assert (link.setup_timeout, link.max_restarts) == (7.0, 2)
    # The grown pool is the book's, with the held address already taken.
    assert handler.addresses.pools[""] is handler.pool and handler.pool.size == 8
    got = {handler.addresses.assign(n) for n in range(7)}
    assert held not in got and None not in got


async def test_an_lcp_timeout_is_cleared_with_cdn_11_no_appropriate_framing() -> None:
    """The subscriber's LCP frames never arrive: the LNS's LCP gives up and clears the call
    with Result Code 11 ("connected but no appropriate framing was detected"), not 10, whose
    RFC 2661 wording is about the LAC's own timer (docs/INTEROP.md)."""
    link = lns_link(lcp=fsm(0.2, 3), setup_timeout=30.0)
    async with lab(link) as the:

        def no_lcp(frame: bytes) -> list[bytes]:
            return [] if proto(frame) == Proto.LCP else [frame]

        deaf = await the.call(subscriber("user1"), no_lcp)
        await until(lambda: deaf.info.closed is not None)
        assert deaf.info.closed is not None
        assert deaf.info.closed.result == CdnResult.NO_FRAMING
        assert deaf.info.closed.message == "PPP LCP timeout"


async def test_a_call_waits_for_its_workers_next_address_block() -> None:
    """A worker's pool (``[l2tp] workers``) hands out only the blocks the supervisor lent
    it: a call that finds it empty while the next block is on its way waits for the block,
    and is refused only when the supervisor has none left."""
    set_worker_share(0, 2)
    try:
        pool = AddressPool("10.50.0.0/26", exclude=[LOCAL])  # one block, none held yet
    finally:
        set_worker_share(0, 1)
    lender = SlowLender(BlockLeases())
    pool.lender = lender
    book: AddressBook[Any] = AddressBook({"": pool})
    async with lab(addresses=book) as the:
        first = await the.call(subscriber("user1"), wait=False)
        await until(lambda: bool(lender.asked))  # it found no address, and asked
        await trio.sleep(0.2)
        assert not first.info.done.is_set() and "exhausted" not in book.refused
        lender.answer()
        await first.info.done.wait()
        assert first.up and the.state_of(first).address in pool
        while book.assign(object()) is not None:  # the rest of the block
            pass
        lender.answer()  # the ask that took: no block left
        assert not lender.asked and not pool.block_on_its_way
        second = await the.call(subscriber("user2"), wait=False)
        await until(lambda: bool(lender.asked))  # the call asks again, and waits
        assert "exhausted" not in book.refused
        lender.answer()  # still none: the waiting call is refused
        await second.info.done.wait()
        assert not second.up and book.refused == {"exhausted": 1}
