"""One task runs every session's link timer (`kl2tp.daemon.timerheap`)."""

from __future__ import annotations

import math

import trio
import trio.testing

from kl2tp.daemon.timerheap import TimerHeap


class Target:
    def __init__(self, heap: TimerHeap, nursery: trio.Nursery, again: float = 0.0) -> None:
        self.armed = math.inf
        self.fired: list[float] = []
        self.heap = heap
        self.nursery = nursery
        self.again = again

    def fire(self, now: float) -> None:
        self.fired.append(now)
        if self.again:
            self.heap.arm(self, now + self.again, self.nursery.start_soon)


async def test_deadlines_run_in_order_and_a_later_one_waits_for_the_earlier(
    autojump_clock: trio.testing.MockClock,
) -> None:
    heap = TimerHeap()
    async with trio.open_nursery() as nursery:
        a, b, c = Target(heap, nursery), Target(heap, nursery), Target(heap, nursery)
        t0 = trio.current_time()
        heap.arm(a, t0 + 3, nursery.start_soon)
        heap.arm(b, t0 + 1, nursery.start_soon)
        heap.arm(c, t0 + 2, nursery.start_soon)
        heap.arm(c, t0 + 5, nursery.start_soon)  # later: ignored, c fires at 2
        heap.arm(a, t0 + 0.5, nursery.start_soon)  # earlier: moves a
        assert len(heap) == 3
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(4)
    assert [f - t0 for f in b.fired] == [1]
    assert [f - t0 for f in c.fired] == [2]
    assert [f - t0 for f in a.fired] == [0.5]  # its stale entry at 3 ran nothing
    assert len(heap) == 0


async def test_disarmed_targets_do_not_fire_and_the_task_ends_with_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    heap = TimerHeap()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            a = Target(heap, nursery)
            b = Target(heap, nursery, again=0.01)
            heap.arm(a, trio.current_time() + 3600, nursery.start_soon)
            heap.arm(b, trio.current_time() + 0.01, nursery.start_soon)
            await trio.sleep(0.035)  # b fires at 0.01, 0.02, 0.03 (mock clock)
            heap.disarm(b)
            heap.disarm(a)
            heap.disarm(a)  # twice: nothing more
        # The nursery closed: the heap's task ended without waiting for a's hour.
    assert a.fired == []
    assert len(b.fired) == 3
    assert len(heap) == 0


async def test_deadlines_within_the_slack_run_in_one_pass_and_an_earlier_one_wakes_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slack = 0.25
    heap = TimerHeap(slack=slack)
    async with trio.open_nursery() as nursery:
        a, b, c, d, e = (Target(heap, nursery) for _ in range(5))
        t0 = math.floor(trio.current_time()) + 1.0  # a whole second: on a bucket's edge
        await trio.sleep_until(t0)
        due = {a: t0 + 1.05, b: t0 + 1.2, c: t0 + 1.3, d: t0 + 5}
        for target, when in due.items():
            heap.arm(target, when, nursery.start_soon)
        await trio.sleep(2)  # the task now sleeps until d's bucket
        due[e] = t0 + 3.1
        heap.arm(e, due[e], nursery.start_soon)  # before that: it must wake for e
        await trio.sleep(4)
    for target, when in due.items():
        [fired] = target.fired
        assert when <= fired <= when + slack
    assert a.fired == b.fired  # within one bucket: one pass
    assert c.fired[0] > a.fired[0]  # the next bucket
    assert e.fired[0] < d.fired[0]
    assert heap.fired == 5
    assert len(heap) == 0


async def test_the_task_ends_when_only_stale_entries_are_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    heap = TimerHeap(slack=0.25)
    with trio.fail_after(5):  # mock clock: the stale hour would jump the clock past this
        async with trio.open_nursery() as nursery:
            a = Target(heap, nursery)
            heap.arm(a, trio.current_time() + 3600, nursery.start_soon)
            heap.arm(a, trio.current_time() + 1, nursery.start_soon)  # moved earlier
            await trio.sleep(2)
    assert len(a.fired) == 1
