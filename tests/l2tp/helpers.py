"""Test harnesses for the tunnel core: a back-to-back pair in memory (h11's ConnectionPair).

The cores over a terrible network, under trio's MockClock, run in the real trio driver:
``tests/daemon/test_fakenet.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

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
