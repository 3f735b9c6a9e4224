"""10,000 tunnel and call setup/teardown cycles through the real trio driver (the daemon's
``Endpoint``, tunnel and session tasks, null data plane) over the in-memory network of
test_fakenet.py under MockClock: memory (tracemalloc), tasks and every table of the endpoint
core stay flat. Generous bounds in the asserts; the measured figures are printed (``-s``)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import trio
import trio.lowlevel
import trio.testing

from kl2tp.daemon.endpoint import Endpoint
from kl2tp.l2tp.endpoint import Limits
from kl2tp.l2tp.events import CallParams
from kl2tp.l2tp.tunnel import retransmission_cycle
from tests.daemon.test_fakenet import LNS_ADDR, FakeNetwork, pair, running, until

CYCLES = 10_000
WARM_UP = 1_000
WORKERS = 100
MEMORY_BOUND = 4 << 20
"""Bytes the traced memory may grow by between the warm-up and the end (generous: a leak of
even 400 bytes per cycle would exceed it)."""


def tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        yield task
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return len(list(walk(root)))


def tables(ep: Endpoint) -> dict[str, int]:
    core = ep.core
    return {
        "runners": len(ep.tunnels),
        "tunnels": len(core.tunnels),
        "lingering": len(core.lingering),
        "linger_queue": len(core._linger_queue),
        "linger_due": len(core._linger_due),
        "by_peer": len(core._by_peer),
        "dialing": len(core._dialing),
        "half_open_timers": len(core._half_open_timers),
        "ids_in_use": 0xFFFF - core.ids.free,
        "sessions": core.session_count,
        "in_setup": core.setup_count,
        "half_open": core.half_open,
        "sources": len(core._sources),
    }


async def test_ten_thousand_setup_teardown_cycles_stay_flat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    # One LAC address dials every tunnel, WORKERS at a time: no per-source SCCRQ limit.
    lns, lac = pair(network, limits=Limits(sccrq_rate=0))
    hold = retransmission_cycle(lns.tunnel_config)
    samples: dict[str, tuple[int, int, dict[str, int], dict[str, int]]] = {}
    done = [0]

    def sample() -> tuple[int, int, dict[str, int], dict[str, int]]:
        return tracemalloc.get_traced_memory()[0], tasks(), tables(lns), tables(lac)

    async with running(network, lns, lac, limit=CYCLES * 10):

        async def cycle(n: int) -> None:
            runner = await lac.dial(LNS_ADDR)
            info = runner.place_call(CallParams(serial=n))
            await info.done.wait()
            assert info.established is not None
            info.done = trio.Event()
            runner.hangup(info.local_sid)
            await info.done.wait()
            runner.close()
            await runner.closed.wait()
            done[0] += 1

        async def worker(first: int, count: int) -> None:
            for n in range(first, first + count):
                await cycle(n)

        async def batch(first: int, count: int) -> None:
            per = count // WORKERS
            async with trio.open_nursery() as workers:
                for w in range(WORKERS):
                    workers.start_soon(worker, first + w * per, per)

        async def settle() -> None:
            # Every lingering core's hold runs out; the network goes quiet. What only a
            # test keeps (the fake network's log, the null data plane's call record) goes.
            await trio.sleep(hold + 5)
            await until(lambda: not lns.tunnels and not lac.tunnels)
            network.log.clear()
            for ep in (lns, lac):
                ep.dataplane.calls.clear()  # type: ignore[attr-defined]
            gc.collect()

        # Traced from the start: a bounded ring that turns over (``show history``) then
        # counts as flat, its old entries' frees being seen too.
        tracemalloc.start()
        try:
            await batch(0, WARM_UP)
            await settle()
            samples["warm"] = sample()
            snapshot = tracemalloc.take_snapshot()
            for first in range(WARM_UP, CYCLES, 1000):
                await batch(first, min(1000, CYCLES - first))
                network.log.clear()
            await settle()
            samples["end"] = sample()
            growth = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")[:5]
        finally:
            tracemalloc.stop()
    mem0, tasks0, lns0, lac0 = samples["warm"]
    mem1, tasks1, lns1, lac1 = samples["end"]
    print(
        f"\n{done[0]} cycles ({WORKERS} at a time): traced memory {mem0 / 1024:.0f} KiB after "
        f"{WARM_UP}, {mem1 / 1024:.0f} KiB at the end ({(mem1 - mem0) / (CYCLES - WARM_UP):+.1f}"
        f" B/cycle); tasks {tasks0} -> {tasks1}; LNS {lns1}; LAC {lac1}; largest growth:\n"
        + "\n".join(map(str, growth[:3]))
    )
    assert done[0] == CYCLES
    assert mem1 - mem0 < MEMORY_BOUND, "\n".join(map(str, growth))
    assert tasks1 == tasks0
    for before, after in ((lns0, lns1), (lac0, lac1)):
        assert after == before
        assert all(v == 0 for v in after.values()), after
    assert lns.counters["core_errors"] == lac.counters["core_errors"] == 0
