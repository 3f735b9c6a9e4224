"""20,000 half-open tunnels expiring at once through the real trio driver, and how long a
legitimate SCCRQ waits for its SCCRP meanwhile (issue 8 finding 2: a per-teardown scan froze
the event loop for ~10 s). Prints figures; asserts nothing about timing.

How: the LNS is the daemon's own ``Endpoint`` (its receive loop, one task per tunnel, the
endpoint core, the null data plane) on an in-memory datagram transport, under a trio clock
that can be held still. While the clock is held, N SCCRQs from N spoofed sources create N
tunnels in wait-ctl-conn, so every one has the same setup deadline. The clock is released;
SCCRP retransmissions go out at +1 s and +3 s for all N, and at +``setup_timeout`` all N
expire together. From shortly before the deadline until every tunnel is gone, a legitimate
LAC sends an SCCRQ every ``--probe-interval`` ms; the wait of each (wall time from handing the
SCCRQ to the transport until the LNS's SCCRP leaves it) is reported, with the same probe
before the expiry as the baseline.

    .venv/bin/python bench/bench_expiry.py              # 20,000 tunnels
    .venv/bin/python bench/bench_expiry.py -n 5000
    .venv/bin/python bench/bench_expiry.py --via retries   # expire by retransmission limit
    KL2TP_BENCH_SRC=/tmp/old .venv/bin/python bench/bench_expiry.py   # an older tree

``--via retries`` (automatic on a tree without ``setup_timeout``) lets them expire the way an
older tree can: SCCRP retransmissions exhausted (``max_retries = 2``: gone 7 s after the SCCRP).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import _util  # sys.path: kl2tp from the repository or KL2TP_BENCH_SRC
import attrs
import trio
import trio.abc
import trio.testing

from kl2tp.daemon.endpoint import Endpoint
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.avp import Avp, ProtocolVersion
from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.message import ControlMessage, encode_control
from kl2tp.l2tp.tunnel import TunnelConfig

LNS_ADDR = ("192.0.2.1", 1701)
LEGIT_HOST = "198.51.100.1"
"""The legitimate LAC; each probe comes from its own port (so each is a new tunnel)."""


class HoldableClock(trio.abc.Clock):
    """Wall time (perf_counter) that can be held still: while held, ``current_time`` does
    not move; released, it runs on from where it stood."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._held: float | None = None

    def start_clock(self) -> None:
        self._offset = time.perf_counter()

    def current_time(self) -> float:
        if self._held is not None:
            return self._held
        return time.perf_counter() - self._offset

    def deadline_to_sleep_time(self, deadline: float) -> float:
        if self._held is not None:
            return 0.0 if deadline <= self._held else 0.001
        return deadline - self.current_time()

    def hold(self) -> None:
        self._held = self.current_time()

    def release(self) -> None:
        assert self._held is not None
        self._offset = time.perf_counter() - self._held
        self._held = None


class MemoryTransport:
    """The endpoint's ``DatagramTransport`` in memory: the bench injects datagrams, and
    what the LNS sends to the legitimate LAC is timestamped."""

    def __init__(self) -> None:
        self.local_addr = LNS_ADDR
        self._send, self._receive = trio.open_memory_channel[tuple[bytes, Any]](math.inf)
        self.sent = 0
        self.answered: dict[int, float] = {}
        """Legitimate probe's source port -> perf_counter when its SCCRP left the LNS."""

    def inject(self, data: bytes, addr: tuple[str, int]) -> None:
        self._send.send_nowait((data, addr))

    async def receive_batch(self, idle: Callable[[], object]) -> list[tuple[bytes, Any]]:
        idle()
        batch = [await self._receive.receive()]
        while len(batch) < 64:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    def try_send(self, data: bytes, addr: tuple[str, int]) -> bool:
        self.sent += 1
        if addr[0] == LEGIT_HOST:
            self.answered.setdefault(addr[1], time.perf_counter())
        return True

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.try_send(data, addr)


def sccrq(tid: int, host: str) -> bytes:
    avps = (
        Avp(AvpType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        Avp(AvpType.FRAMING_CAPABILITIES, 3),
        Avp(AvpType.HOST_NAME, host),
        Avp(AvpType.ASSIGNED_TUNNEL_ID, tid),
        Avp(AvpType.RECEIVE_WINDOW_SIZE, 4),
    )
    return encode_control(ControlMessage(MessageType.SCCRQ, 0, 0, 0, 0, avps))


async def probe(transport: MemoryTransport, port: int) -> float:
    """Send one legitimate SCCRQ from ``port``; its wait in ms until the SCCRP left the LNS."""
    sent = time.perf_counter()
    transport.inject(sccrq(1, "legit"), (LEGIT_HOST, port))
    while port not in transport.answered:  # noqa: ASYNC110 (polls a timestamp record)
        await trio.sleep(0.0005)
    return (transport.answered[port] - sent) * 1000.0


def summary(waits: list[float]) -> str:
    if not waits:
        return "no probes"
    waits = sorted(waits)
    p99 = waits[max(0, math.ceil(0.99 * len(waits)) - 1)]
    return (
        f"{len(waits)} probes: p50 {statistics.median(waits):.2f} ms, p99 {p99:.2f} ms, "
        f"max {waits[-1]:.2f} ms"
    )


async def run(
    n: int, setup_timeout: float, probe_interval: float, via: str, clock: HoldableClock
) -> None:
    transport = MemoryTransport()
    extra: dict[str, Any] = {}
    with contextlib.suppress(ImportError):  # older trees have no Limits
        from kl2tp.l2tp.endpoint import Limits

        # The bench is the attack: no per-source or half-open limit stops it early.
        extra["limits"] = Limits(max_setup_tunnels=0, sccrq_rate=0)
    if via == "setup":
        config = TunnelConfig(hostname="lns", hello_interval=0, setup_timeout=setup_timeout)
    else:
        config = TunnelConfig(hostname="lns", hello_interval=0, max_retries=2)
        setup_timeout = 7.0  # 1 + 2 + 4: the retransmission cycle with max_retries = 2
    lns = Endpoint(
        role="lns",
        tunnel_config=config,
        dataplane=NullDataPlane(),
        listen=LNS_ADDR,
        rng=random.Random(1),
        transport=transport,  # type: ignore[arg-type]
        **extra,
    )
    print(f"expiring by {'setup_timeout' if via == 'setup' else 'the retransmission limit'}")
    async with trio.open_nursery() as nursery:
        await nursery.start(lns.serve)
        # Baseline: the probe on an idle LNS.
        base = [await probe(transport, 1000 + i) for i in range(20)]
        clock.hold()
        t0 = time.perf_counter()
        for i in range(n):
            # Spoofed sources: one SCCRQ each, every one a new half-open tunnel.
            source = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
            transport.inject(sccrq(1 + i % 65000, "spoofed"), (source, 1701))
            if i % 256 == 255:
                await trio.testing.wait_all_tasks_blocked()
        await trio.testing.wait_all_tasks_blocked()
        made = time.perf_counter() - t0
        half_open = len(lns.core.tunnels)
        deadline = clock.current_time() + setup_timeout
        clock.release()
        print(f"{half_open} half-open tunnels made in {made:.1f} s (clock held: one deadline)")
        await trio.sleep_until(deadline - 0.5)
        during: list[float] = []
        start = time.perf_counter()
        # Every half-open tunnel made so far (the baseline probes' too) expires; the probes
        # made from here on (one tunnel each) expire later and are not waited for.
        while len(lns.core.tunnels) - len(during) > 0:
            during.append(await probe(transport, 2000 + len(during)))
            await trio.sleep(probe_interval / 1000.0)
        end = time.perf_counter()
        late = clock.current_time() - deadline
        print(
            f"all {half_open} gone {late * 1000:.0f} ms after their deadline "
            f"(probed for {end - start:.2f} s from 0.5 s before it)"
        )
        print(f"legitimate SCCRQ wait, idle LNS:        {summary(base)}")
        print(f"legitimate SCCRQ wait, during expiry:   {summary(during)}")
        print(f"tunnels left {len(lns.core.tunnels)} (the probes'), sent {transport.sent}")
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="half-open tunnels (default 20000)")
    parser.add_argument(
        "--setup-timeout", type=float, default=5.0, help="seconds until they expire (default 5)"
    )
    parser.add_argument(
        "--probe-interval", type=float, default=5.0, help="ms between legitimate SCCRQs (default 5)"
    )
    parser.add_argument(
        "--via",
        choices=("setup", "retries"),
        default=None,
        help="expire by setup_timeout (default when the tree has it) or by the retransmission "
        "limit (max_retries = 2: gone 7 s after the SCCRP)",
    )
    args = parser.parse_args()
    via = args.via or ("setup" if "setup_timeout" in attrs.fields_dict(TunnelConfig) else "retries")
    print(_util.machine())
    clock = HoldableClock()
    trio.run(run, args.n, args.setup_timeout, args.probe_interval, via, clock, clock=clock)


if __name__ == "__main__":
    main()
