"""The real trio driver over a terrible in-memory network, under trio's MockClock.

In the style of trio's own DTLS tests (``test_handshake_over_terrible_network``): a seeded
fake network loses, duplicates and reorders datagrams between an LNS and a LAC that are the
daemons' own objects (``Endpoint`` with its tunnel tasks, ``PppSessions`` with their PPP
session tasks, the null data plane, ``simulate``), each with an in-memory transport instead
of a UDP socket. MockClock's autojump makes every timeout instant, so minutes of
retransmissions take seconds and the times they happen at are exact.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing

from kl2tp.aaa.local import LocalAuthenticator
from kl2tp.cli import settings_from_config
from kl2tp.config import load_config
from kl2tp.daemon.endpoint import Address, Endpoint
from kl2tp.daemon.ppp_session import PppSessions, make_handler
from kl2tp.daemon.service import simulate
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.events import CallParams
from kl2tp.l2tp.message import ControlMessage, decode, peek
from kl2tp.l2tp.tunnel import TunnelConfig
from ppp.config import LinkConfig

LNS_ADDR = ("192.0.2.1", 1701)
LAC_ADDR = ("198.51.100.7", 1701)


# --- the network ------------------------------------------------------------------------------


class FakeNetwork:
    """Seeded loss, duplication and reordering between attached transports.

    Every copy of a datagram is delivered ``delay`` after it was sent, plus, for the
    ``reorder`` share, a random extra of up to ``reorder_delay`` (so later datagrams overtake
    it). ``log`` records (time, source, destination, bytes) of everything offered.

    Data messages (PPP frames) are lost like the rest, and with ``disorder_data`` duplicated
    and reordered too. PPP assumes a link that keeps order (RFC 1661 section 1), and without
    data sequencing (RFC 2661 5.4) nothing restores it: a stale LCP or IPCP Configure-Request
    makes the automaton renegotiate, by the book, and a stale CHAP Challenge can then arrive
    after the current one. The PPP core survives both (tests/ppp/test_disorder.py replays
    the sequences that used to strand a call).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.005,
        reorder_delay: float = 0.2,
        disorder_data: bool = False,
    ) -> None:
        self.disorder_data = disorder_data
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.reorder_delay = reorder_delay
        self.hosts: dict[Address, FakeTransport] = {}
        self.log: list[tuple[float, Address, Address, bytes]] = []
        self.stats: Counter[str] = Counter()
        self.silenced: set[Address] = set()
        """Senders whose datagrams are all lost."""
        self._heap: list[tuple[float, int, Address, Address, bytes]] = []
        self._seq = itertools.count()
        self._wake = trio.Event()
        self._armed = math.inf

    def attach(self, addr: Address) -> FakeTransport:
        transport = FakeTransport(self, addr)
        self.hosts[addr] = transport
        return transport

    def send(self, src: Address, dst: Address, data: bytes) -> None:
        now = trio.current_time()
        self.log.append((now, src, dst, data))
        rng = self.rng
        disorder = self.disorder_data or peek(data)[0]
        copies = 1
        if disorder and rng.random() < self.duplicate:
            copies = 2
            self.stats["duplicated"] += 1
        for _ in range(copies):
            if rng.random() < self.loss or src in self.silenced:
                self.stats["lost"] += 1
                continue
            at = now + self.delay
            if disorder and rng.random() < self.reorder:
                self.stats["reordered"] += 1
                at += rng.uniform(0.0, self.reorder_delay)
            heapq.heappush(self._heap, (at, next(self._seq), src, dst, data))
            if at < self._armed:
                self._wake.set()

    async def run(self) -> None:
        """Deliver datagrams when they are due (one task for the whole network)."""
        heap = self._heap
        while True:
            self._armed = heap[0][0] if heap else math.inf
            with trio.move_on_at(self._armed):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, src, dst, data = heapq.heappop(heap)
                host = self.hosts.get(dst)
                if host is None:
                    self.stats["unreachable"] += 1
                else:
                    host.deliver(data, src)


class FakeTransport:
    """The endpoint's datagram transport on the fake network (``DatagramTransport``)."""

    def __init__(self, network: FakeNetwork, addr: Address) -> None:
        self.network = network
        self.local_addr = addr
        self.inbox: deque[tuple[bytes, Address]] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self.blocked: trio.Event | None = None
        """While set to an unset Event, sends would block: ``try_send`` says so and
        ``send`` waits for the event."""
        self.waited = 0

    def deliver(self, data: bytes, src: Address) -> None:
        self.inbox.append((data, src))
        self._lot.unpark()

    async def receive_batch(self, idle: Callable[[], object]) -> list[tuple[bytes, Any]]:
        if self.inbox:
            idle()
            await trio.lowlevel.checkpoint()
        while not self.inbox:
            idle()
            await self._lot.park()
        batch = list(self.inbox)
        self.inbox.clear()
        return batch

    def try_send(self, data: bytes, addr: Address) -> bool:
        if self.blocked is not None and not self.blocked.is_set():
            return False
        self.network.send(self.local_addr, addr, data)
        return True

    async def send(self, data: bytes, addr: Address) -> None:
        self.waited += 1
        if self.blocked is not None:
            await self.blocked.wait()
        self.network.send(self.local_addr, addr, data)


async def until(condition: Callable[[], bool]) -> None:
    """Let (mock) time pass until ``condition`` holds; the caller's fail_after bounds it."""
    for _ in itertools.count():
        if condition():
            return
        await trio.sleep(0.5)


@asynccontextmanager
async def running(
    network: FakeNetwork, *endpoints: Endpoint, limit: float = 600
) -> AsyncIterator[trio.Nursery]:
    """``network`` and ``endpoints`` serving in a nursery under a deadline of ``limit``
    (virtual) seconds; everything is cancelled when the block ends."""
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(network.run)
            for endpoint in endpoints:
                await nursery.start(endpoint.serve)
            yield nursery
            nursery.cancel_scope.cancel()


# --- the daemons --------------------------------------------------------------------------------


L2TP_SETTINGS = """
hostname = "{name}"
secret = "fakenet"
receive_window = 64
retransmit_initial = 1.0
retransmit_cap = 8.0
max_retries = {retries}
hello_interval = 60
"""

PPP_SETTINGS = """
lcp_echo_interval = 0
restart_timer = 2.0
max_configure = 100
max_failure = 50
max_terminate = 10
"""


def configs(tmp: Path, *, users: int, tunnels: int, retries: int) -> tuple[Any, Any]:
    users_file = tmp / "users"
    users_file.write_text("".join(f"user{n} pass{n}\n" for n in range(1, users + 1)))
    lns = tmp / "lns.toml"
    lns.write_text(
        f"""
[l2tp]
listen = "{LNS_ADDR[0]}:{LNS_ADDR[1]}"
{L2TP_SETTINGS.format(name="lns", retries=retries)}
idle_timeout = 0
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lns.sock"}"
[aaa]
users_file = "{users_file}"
[ppp]
auth = ["chap"]
pool = "10.64.0.0/16"
local_address = "10.0.0.1"
{PPP_SETTINGS}
"""
    )
    lac = tmp / "lac.toml"
    peers = "".join(
        f'\n[[lac.lns]]\naddress = "{LNS_ADDR[0]}:{LNS_ADDR[1]}"\n' for _ in range(tunnels)
    )
    lac.write_text(
        f"""
[l2tp]
listen = "{LAC_ADDR[0]}:{LAC_ADDR[1]}"
{L2TP_SETTINGS.format(name="lac", retries=retries)}
idle_timeout = 0
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lac.sock"}"
[ppp]
{PPP_SETTINGS}
[subscriber]
auth = "chap"
{peers}
"""
    )
    return load_config(lns, "lns"), load_config(lac, "lac")


class Daemons:
    """An LNS and a LAC as the CLI builds them, on the fake network."""

    def __init__(self, tmp: Path, network: FakeNetwork, *, users: int, tunnels: int) -> None:
        self.lns_cfg, self.lac_cfg = configs(tmp, users=users, tunnels=tunnels, retries=20)
        self.lns_settings = settings_from_config(self.lns_cfg, "lns")
        self.lac_settings = settings_from_config(self.lac_cfg, "lac")
        lns_handler = make_handler(
            "lns",
            self.lns_cfg,
            NullDataPlane(),
            LocalAuthenticator.from_config(self.lns_cfg),
            subscribers=False,
        )
        lac_handler = make_handler("lac", self.lac_cfg, NullDataPlane(), None, subscribers=True)
        assert isinstance(lns_handler, PppSessions)
        assert isinstance(lac_handler, PppSessions)
        self.lns_handler = lns_handler
        self.lac_handler = lac_handler
        for handler in (self.lns_handler, self.lac_handler):
            handler.link_config = patient(handler.link_config)
        self.lns = self._endpoint(self.lns_settings, self.lns_handler, network, LNS_ADDR, 1)
        self.lac = self._endpoint(self.lac_settings, self.lac_handler, network, LAC_ADDR, 2)

    @staticmethod
    def _endpoint(
        settings: Any, handler: Any, network: FakeNetwork, addr: Address, seed: int
    ) -> Endpoint:
        return Endpoint(
            role=settings.role,
            tunnel_config=settings.tunnel,
            dataplane=handler.dataplane,
            listen=settings.listen,
            handler=handler,
            queue_depth=settings.queue_depth,
            rng=random.Random(seed),
            transport=network.attach(addr),
        )


def patient(link_config: Callable[[int], LinkConfig]) -> Callable[[int], LinkConfig]:
    """PPP phase limits for a network this bad (the subject here is the driver, not them).

    With 20 % loss each way and stale frames knocking negotiations back, LCP and IPCP take
    many restart intervals. With the defaults (30 s phases, restart timer 3 s, Max-Configure
    10, Max-Failure 5) a few calls in a thousand fail by those limits, as PPP would on such a
    line: e.g. the LAC's LCP sends its 10 requests while the ICCN's retransmissions (1, 2, 4,
    8 s ...) have not reached the LNS yet, or IPCP has not opened 30 s into the Network
    phase. PPP_SETTINGS stretches the counters for the same reason.
    """

    def config(n: int) -> LinkConfig:
        return attrs.evolve(
            link_config(n),
            establish_timeout=600.0,
            auth_timeout=600.0,
            network_timeout=600.0,
        )

    return config


Sends = dict[tuple[int, int, object], list[tuple[float, MessageType]]]


def control_sends(network: FakeNetwork, src: Address) -> Sends:
    """Every control message ``src`` sent, with its send times, by (tunnel id, Ns, Assigned
    Tunnel ID): SCCRQs all go to tunnel 0 with Ns 0, the AVP tells them apart."""
    out: Sends = {}
    for t, s, _, data in network.log:
        if s != src:
            continue
        is_control, _, _ = peek(data)
        if not is_control:
            continue
        msg = decode(data, b"fakenet")
        assert isinstance(msg, ControlMessage)
        if msg.msg_type is None:
            continue  # ZLBs are not retransmitted
        key = (msg.tunnel_id, msg.ns, msg.get(AvpType.ASSIGNED_TUNNEL_ID))
        out.setdefault(key, []).append((t, msg.msg_type))
    return out


BACKOFF = [1.0, 2.0, 4.0, 8.0, 8.0]


def assert_backoff(sends: Sends) -> int:
    """Each retransmitted message went out again 1, 2, 4, 8, 8 ... s after the one before."""
    seen = 0
    for copies in sends.values():
        if len(copies) < 2:
            continue
        assert len({k for _, k in copies}) == 1
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(copies)]
        expected = (BACKOFF + [8.0] * len(gaps))[: len(gaps)]
        assert gaps == pytest.approx(expected), (copies[0][1], gaps)
        seen += 1
    return seen


async def test_a_thousand_calls_over_a_terrible_network(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    n = 1000
    network = FakeNetwork(seed=7, loss=0.20, duplicate=0.05, reorder=0.10, disorder_data=True)
    d = Daemons(tmp_path, network, users=n, tunnels=10)
    pool = d.lns_handler.pool
    assert pool is not None
    async with running(network, d.lns, d.lac, limit=3600):
        # A call can still fail now and then (10 CHAP exchanges in a row lost at 20 % loss
        # each way: ~4e-5 per call and side): its subscriber dials again, as a real one does.
        result = await simulate(
            d.lac,
            d.lac_settings.lns_peers,
            n,
            rate=50.0,
            hold=1.0,
            setup_timeout=1800.0,
            redial=5.0,
        )
        # The LNS sees the StopCCNs, and every closed tunnel's hold runs out.
        await until(lambda: not (d.lns.tunnels or d.lns.lingering or d.lac.lingering))

    summary = result.summary()
    assert (summary["requested"], summary["established"], summary["failed"]) == (n, n, {}), summary
    assert sum(result.redials.values()) <= n // 100, result.redials
    # All up at once: every subscriber authenticated by CHAP and got its own address.
    assert len(result.setup_ms) == n
    # All cleared, nothing left anywhere.
    for endpoint in (d.lns, d.lac):
        assert endpoint.tunnels == {}
        assert endpoint.core.tunnels == {}
        assert endpoint.core.lingering == {}
        assert endpoint.core.session_count == 0
        assert endpoint.core.ids.free == 0xFFFF
        assert endpoint.core._by_peer == {} and endpoint.core._dialing == {}
        assert endpoint.counters["tunnel_task_failed"] == 0
        assert endpoint.counters["core_errors"] == 0
    for handler in (d.lns_handler, d.lac_handler):
        assert handler.records == {}
        assert handler.crashed == 0
    assert (pool.in_use, pool.free) == (0, pool.size)
    # The network really was terrible, and the retransmissions kept their schedule.
    assert network.stats["lost"] > 1000
    assert network.stats["duplicated"] > 300
    assert network.stats["reordered"] > 500
    retransmitted = assert_backoff(control_sends(network, LAC_ADDR))
    retransmitted += assert_backoff(control_sends(network, LNS_ADDR))
    assert retransmitted > 100


# --- retransmission schedule, exactly -------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "cap", "retries", "gaps"),
    [
        (1.0, 8.0, 5, [1, 2, 4, 8, 8]),
        (0.5, 3.0, 4, [0.5, 1, 2, 3]),
    ],
)
async def test_sccrq_retransmitted_at_the_configured_times(
    initial: float,
    cap: float,
    retries: int,
    gaps: list[float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    lac = Endpoint(
        role="lac",
        tunnel_config=TunnelConfig(hostname="lac"),
        dataplane=NullDataPlane(),
        listen=LAC_ADDR,
        rng=random.Random(3),
        transport=network.attach(LAC_ADDR),
    )
    config = TunnelConfig(
        hostname="lac", retransmit_initial=initial, retransmit_cap=cap, max_retries=retries
    )
    async with running(network, lac):
        start = trio.current_time()
        with pytest.raises(Exception, match="no acknowledgement"):
            await lac.dial(LNS_ADDR, config)  # nobody is there
        end = trio.current_time()
    sends = control_sends(network, LAC_ADDR)
    ((copies),) = sends.values()
    assert [k for _, k in copies] == [MessageType.SCCRQ] * (retries + 1)
    times = [t - start for t, _ in copies]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx(gaps)
    assert end - start == pytest.approx(sum(gaps) + gaps[-1])
    assert network.stats["unreachable"] == retries + 1
    assert lac.tunnels == {} and lac.core.ids.free == 0xFFFF


# --- failure paths of the driver -----------------------------------------------------------------


def pair(
    network: FakeNetwork,
    lns_config: TunnelConfig | None = None,
    lac_config: TunnelConfig | None = None,
    **lns_kwargs: Any,
) -> tuple[Endpoint, Endpoint]:
    """An LNS and a LAC endpoint on ``network`` (no HELLO, no idle timeout unless configs are
    given); ``lns_kwargs`` go to the LNS's ``Endpoint``."""
    cfg = TunnelConfig(hostname="x", hello_interval=0, idle_timeout=0)
    lns = Endpoint(
        role="lns",
        tunnel_config=lns_config or cfg,
        dataplane=NullDataPlane(),
        listen=LNS_ADDR,
        rng=random.Random(1),
        transport=network.attach(LNS_ADDR),
        **lns_kwargs,
    )
    lac = Endpoint(
        role="lac",
        tunnel_config=lac_config or cfg,
        dataplane=NullDataPlane(),
        listen=LAC_ADDR,
        rng=random.Random(2),
        transport=network.attach(LAC_ADDR),
    )
    return lns, lac


async def test_a_tunnel_task_that_crashes_clears_its_tunnel_and_the_daemon_lives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    lns, lac = pair(network)
    async with running(network, lns, lac):
        doomed = await lac.dial(LNS_ADDR)
        other = await lac.dial(LNS_ADDR)
        info = doomed.place_call(_call(1))
        await info.done.wait()
        assert len(lns.tunnels) == 2

        def explode(now: float) -> None:
            raise RuntimeError("a bug in the tunnel core")

        doomed.core.handle_timer = explode  # type: ignore[method-assign]
        doomed.core.get_timer = lambda: trio.current_time()  # type: ignore[method-assign]
        doomed.kick()
        await doomed.closed.wait()
        # The session above it was closed; the tunnel is gone from every table at once.
        assert info.closed is not None and info.closed.message == "tunnel closed"
        assert lac.counters["tunnel_task_failed"] == 1
        assert doomed.local_tunnel_id not in lac.tunnels
        assert doomed.local_tunnel_id not in lac.core.tunnels
        assert doomed.local_tunnel_id not in lac.core.lingering
        # The peer heard a StopCCN (general error) and cleared its side.
        await until(lambda: len(lns.tunnels) == 1)
        # The other tunnel and the daemon carry on.
        call = other.place_call(_call(2))
        await call.done.wait()
        assert call.established is not None


async def test_a_send_that_would_block_waits_and_then_goes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    lns, lac = pair(network)
    transport = lac.transport
    assert isinstance(transport, FakeTransport)
    async with running(network, lns, lac):
        runner = await lac.dial(LNS_ADDR)
        transport.blocked = trio.Event()
        info = runner.place_call(_call(1))
        await trio.testing.wait_all_tasks_blocked()
        # The ICRQ waits on the awaitable path; nothing went out, nothing was lost.
        assert transport.waited == 1
        assert runner.counters["send_waits"] == 1
        assert not info.done.is_set()
        sent = len(network.log)
        transport.blocked.set()
        await info.done.wait()
        assert info.established is not None
        assert len(network.log) > sent
        assert runner.core.counters["retransmits"] == 0


async def test_lingering_tunnel_reacks_a_late_stopccn_then_is_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    lns, lac = pair(network)
    async with running(network, lns, lac):
        runner = await lac.dial(LNS_ADDR)
        await until(lambda: bool(lns.tunnels))
        (lns_runner,) = lns.tunnels.values()
        tid = lns_runner.local_tunnel_id
        # Every ack from the LNS is lost: the LAC retransmits its StopCCN.
        network.silenced.add(LNS_ADDR)
        runner.close()
        await lns_runner.closed.wait()
        assert tid not in lns.tunnels and tid in lns.lingering
        network.silenced.clear()
        await runner.closed.wait()  # a retransmitted StopCCN reached the lingering core
        assert lns.lingering[tid].tunnel.counters["duplicates"] >= 1
        hold = lns.lingering[tid].tunnel.hold_until
        assert hold is not None
        await trio.sleep_until(hold + 0.01)
        assert tid not in lns.lingering
        assert lns.core.ids.free == 0xFFFF


def _call(serial: int) -> CallParams:
    return CallParams(serial=serial)


# --- a peer that goes silent ---------------------------------------------------------------------


async def test_peer_going_silent_tears_down_the_tunnel_and_its_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    lns, lac = pair(network)
    async with running(network, lns, lac):
        runner = await lac.dial(LNS_ADDR)
        first = runner.place_call(_call(1))
        await first.done.wait()
        network.silenced.add(LNS_ADDR)  # the LNS's replies are all lost from now on
        runner.hangup(first.local_sid)  # the CDN goes unanswered
        second = runner.place_call(_call(2))
        start = trio.current_time()
        await runner.closed.wait()
        gone = trio.current_time() - start
    # Given up after the CDN's retransmissions (1 + 2 + 4 + 8 + 8, then one more backoff).
    assert gone == pytest.approx(31.0)
    assert runner.close_event is not None and runner.close_event.result == 2
    assert first.closed is not None and first.closed.message == ""
    assert second.closed is not None and second.closed.message == "tunnel closed"
    assert lac.tunnels == {} and lac.core.session_count == 0
    assert lac.core.lingering == {}  # nothing to re-ack: the peer never sent a StopCCN


async def test_hello_detects_a_dead_peer(autojump_clock: trio.testing.MockClock) -> None:
    network = FakeNetwork()
    cfg = TunnelConfig(hostname="x", hello_interval=60, idle_timeout=0)
    lns, lac = pair(network)
    lac.tunnel_config = cfg
    async with running(network, lns, lac):
        runner = await lac.dial(LNS_ADDR)
        await until(lambda: runner.core.transport.unacked == 0)  # SCCCN acked
        up = trio.current_time()
        network.silenced.add(LNS_ADDR)
        await runner.closed.wait()
        gone = trio.current_time() - up
    hellos = [
        t for t, sent in control_sends(network, LAC_ADDR).items() if sent[0][1] is MessageType.HELLO
    ]
    (hello,) = hellos
    assert len(control_sends(network, LAC_ADDR)[hello]) == 6  # the HELLO and 5 retransmissions
    assert gone == pytest.approx(60 + 31, abs=0.5)
