"""Test harnesses for the tunnel core: a back-to-back pair in memory (h11's ConnectionPair)
and, for trio tests, a seeded terrible network (trio's test_dtls) with a small driver.

Only tests import trio; the cores never do.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import trio

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.message import ControlMessage, decode
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig

LAC_TID = 17688
LNS_TID = 55270


class FixedRandom(random.Random):
    """A random.Random whose next randbytes/getrandbits results can be queued, so a core
    produces the reference trace's challenge and session ids."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.bytes_queue: list[bytes] = []
        self.bits_queue: list[int] = []

    def randbytes(self, n: int) -> bytes:
        if self.bytes_queue:
            value = self.bytes_queue.pop(0)
            assert len(value) == n
            return value
        return super().randbytes(n)

    def getrandbits(self, k: int) -> int:
        if self.bits_queue and k == 16:
            return self.bits_queue.pop(0)
        return super().getrandbits(k)


def answer_calls(tunnel: Tunnel, event: ev.Event, now: float) -> None:
    """The default driver policy: accept every incoming call (an outgoing one connects
    with a 128 kbit/s OCCN) and take every established call's data."""
    if isinstance(event, ev.IncomingCall):
        info = ev.ConnectInfo(tx_connect_speed=128000) if event.outgoing else None
        tunnel.answer_call(event.sid, now, info)
    elif isinstance(event, ev.CallEstablished):
        tunnel.data_ready(event.sid, now)


Policy = Callable[[Tunnel, ev.Event, float], None]


def msg_types(datagrams: Iterable[bytes], secret: bytes | None = None) -> list[str]:
    """Message abbreviations of control datagrams ("ZLB" for acks)."""
    out = []
    for d in datagrams:
        m = decode(d, secret)
        assert isinstance(m, ControlMessage)
        out.append("ZLB" if m.msg_type is None else m.msg_type.abbrev)
    return out


class Pair:
    """A LAC core and an LNS core wired back to back through a lossless in-memory link.

    ``pump()`` moves datagrams until both are quiet; ``run(until)`` also advances the
    hand-driven clock from deadline to deadline. Events land in ``events[side]``; the
    ``policy`` sees each one first (default: answer every call).
    """

    def __init__(
        self,
        lac_config: TunnelConfig | None = None,
        lns_config: TunnelConfig | None = None,
        *,
        seed: int = 1,
        policy: Policy = answer_calls,
    ) -> None:
        self.now = 0.0
        self.lac = Tunnel(
            lac_config or TunnelConfig(hostname="hgw"),
            LAC_TID,
            initiator=True,
            rng=random.Random(seed),
            now=self.now,
        )
        self.lns = Tunnel(
            lns_config or TunnelConfig(hostname="l2tp-gw"),
            LNS_TID,
            initiator=False,
            rng=random.Random(seed + 1),
            now=self.now,
        )
        self.policy = policy
        self.events: dict[str, list[ev.Event]] = {"lac": [], "lns": []}
        self.wire: list[tuple[str, bytes]] = []
        """Every datagram carried, as (sender, bytes)."""

    def side(self, name: str) -> Tunnel:
        return self.lac if name == "lac" else self.lns

    def _drain_events(self) -> bool:
        got = False
        for name in ("lac", "lns"):
            tunnel = self.side(name)
            while (event := tunnel.next_event()) is not None:
                got = True
                self.events[name].append(event)
                self.policy(tunnel, event, self.now)
        return got

    def pump(self) -> None:
        """Move datagrams and handle events until nothing moves."""
        for _ in range(1_000_000):
            moved = self._drain_events()
            for src, dst, name in ((self.lac, self.lns, "lac"), (self.lns, self.lac, "lns")):
                for data in src.datagrams_to_send(self.now):
                    moved = True
                    self.wire.append((name, data))
                    dst.receive_datagram(data, self.now)
            if not moved:
                return
        raise AssertionError("pump did not settle")

    def next_deadline(self) -> float:
        timers = [t for t in (self.lac.get_timer(), self.lns.get_timer()) if t is not None]
        return min(timers) if timers else math.inf

    def run(self, until: float) -> None:
        """Pump, then step the clock from deadline to deadline up to `until`."""
        self.pump()
        while (deadline := self.next_deadline()) <= until:
            self.now = max(self.now, deadline)
            for tunnel in (self.lac, self.lns):
                timer = tunnel.get_timer()
                if timer is not None and timer <= self.now:
                    tunnel.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, until)

    def establish(self) -> None:
        self.lac.connect(self.now)
        self.run(self.now + 1.0)
        assert self.lac.state == "established", self.lac.state
        assert self.lns.state == "established", self.lns.state

    def of_type(self, side: str, cls: type[Any]) -> list[Any]:
        return [e for e in self.events[side] if isinstance(e, cls)]


# --- trio: a terrible network and a thin driver ----------------------------------------------


class FakeNetwork:
    """Seeded loss, duplication, reordering and delay between named endpoints.

    Every datagram copy gets its own random delay, so later datagrams overtake earlier ones.
    ``log`` records (time, sender, bytes) of everything offered to the network.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        max_delay: float = 0.0,
    ) -> None:
        self.nursery = nursery
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.max_delay = max_delay
        self.inboxes: dict[str, trio.MemorySendChannel[bytes]] = {}
        self.log: list[tuple[float, str, bytes]] = []
        self.dropped = 0

    def attach(self, name: str) -> trio.MemoryReceiveChannel[bytes]:
        send, receive = trio.open_memory_channel[bytes](math.inf)
        self.inboxes[name] = send
        return receive

    def send(self, src: str, dst: str, data: bytes) -> None:
        self.log.append((trio.current_time(), src, data))
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            if self.rng.random() < self.loss:
                self.dropped += 1
                continue
            delay = self.rng.uniform(0.0, self.max_delay)
            self.nursery.start_soon(self._deliver, dst, data, delay)

    async def _deliver(self, dst: str, data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        inbox = self.inboxes.get(dst)
        if inbox is not None:
            inbox.send_nowait(data)


class Driver:
    """The trio glue for one core, as thin as the daemon's: receive, feed, flush, sleep until
    the core's timer. Events go through ``policy`` and into ``events``; ``changed`` is set
    whenever the core ran, so tests can wait on conditions."""

    def __init__(
        self,
        name: str,
        peer: str,
        tunnel: Tunnel,
        network: FakeNetwork,
        policy: Policy = answer_calls,
    ) -> None:
        self.name = name
        self.peer = peer
        self.tunnel = tunnel
        self.network = network
        self.inbox = network.attach(name)
        self.policy = policy
        self.events: list[ev.Event] = []
        self.changed = trio.Event()

    def flush(self) -> None:
        now = trio.current_time()
        while True:
            for data in self.tunnel.datagrams_to_send(now):
                self.network.send(self.name, self.peer, data)
            event = self.tunnel.next_event()
            if event is None:
                return
            self.events.append(event)
            self.policy(self.tunnel, event, now)

    def command(self, fn: Callable[[Tunnel, float], Any]) -> Any:
        """Run a command on the core now and flush what it produced."""
        result = fn(self.tunnel, trio.current_time())
        self.flush()
        self.changed.set()
        return result

    async def run(self) -> None:
        self.flush()
        while True:
            timer = self.tunnel.get_timer()
            with trio.move_on_at(math.inf if timer is None else timer):
                data = await self.inbox.receive()
                self.tunnel.receive_datagram(data, trio.current_time())
            now = trio.current_time()
            timer = self.tunnel.get_timer()
            if timer is not None and timer <= now:
                self.tunnel.handle_timer(now)
            self.flush()
            self.changed.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed = trio.Event()
            await self.changed.wait()

    def of_type(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]
