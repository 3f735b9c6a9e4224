"""One task for many deadlines: what drives the PPP links of established sessions.

A session whose frames are answered in its tunnel's task (the null data plane) needs no task
of its own, only someone to run its link's timer (LCP echo, restart timer) when it comes
due. :class:`TimerHeap` is that someone for every session of a handler: one heap of
``(deadline, seq, target)`` and one task sleeping until the earliest, so an established
session costs no task, no cancel scope and no event while it waits.

Entries are never removed: a target that moves its deadline pushes a new entry (only when
it is earlier than the one pending: a later deadline is found when the earlier one comes
up), and an entry whose deadline is not its target's ``armed`` any more is skipped when it
reaches the top. The task ends when no target is armed, so it never outlives the sessions.

``slack`` lets a deadline run up to that late, so the deadlines of many targets that come due
close together (100,000 LCP echo timers spread over 30 s: one every 0.3 ms) run in one pass:
the task wakes once per ``slack``, not once per deadline, and what they send leaves in one
flush per tunnel. Protocol timers are seconds long; 20 ms late is within their tolerance.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Protocol

import trio


class Timed(Protocol):
    """Something with one deadline at a time."""

    armed: float
    """The deadline the heap holds for it (``math.inf``: none); only `TimerHeap` sets it."""

    def fire(self, now: float) -> None:
        """The deadline came (disarmed first: `fire` arms again if it must). Must not raise."""


TIMER_SLACK = 0.02
"""The daemon's heaps' ``slack`` (seconds): see the module's text."""

StartSoon = Callable[..., None]
"""How to start the heap's task (a nursery's or a tunnel handle's ``start_soon``)."""


class TimerHeap:
    """Deadlines of many `Timed` targets, run by one task."""

    __slots__ = ("_heap", "_live", "_lot", "_running", "_seq", "_wake_at", "fired", "slack")

    def __init__(self, slack: float = 0.0) -> None:
        self.slack = slack
        """Seconds a deadline may run late so that nearby ones run together."""
        self._wake_at = -math.inf
        """When the task, asleep, wakes next (-inf: awake, or not running)."""
        self._heap: list[tuple[float, int, Timed]] = []
        self._seq = itertools.count()
        self._live = 0
        """Targets armed (their entries in the heap that still count)."""
        self._lot = trio.lowlevel.ParkingLot()
        self._running = False
        self.fired = 0
        """Deadlines run so far."""

    def __len__(self) -> int:
        """Targets armed."""
        return self._live

    def arm(self, target: Timed, when: float | None, start_soon: StartSoon) -> None:
        """Run ``target.fire`` at ``when`` (None or inf: never), unless it is armed for an
        earlier time already (it fires then and arms again). ``start_soon`` starts the task
        if it is not running."""
        if when is None:
            when = math.inf
        armed = target.armed
        if when >= armed:
            return
        if armed == math.inf:
            self._live += 1
        target.armed = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), target))
        if not self._running:
            self._running = True
            start_soon(self._run)
        elif when + self.slack < self._wake_at:
            self._lot.unpark_all()  # due before the task would wake

    def disarm(self, target: Timed) -> None:
        """Forget ``target``'s deadline (its entry is skipped when it comes up)."""
        if target.armed != math.inf:
            target.armed = math.inf
            self._live -= 1
            if not self._live:
                self._heap.clear()
                self._lot.unpark_all()  # the task ends

    async def _run(self) -> None:
        heap = self._heap
        try:
            while heap:
                when, _, target = heap[0]
                if target.armed != when:
                    heapq.heappop(heap)  # moved or disarmed since
                    continue
                now = trio.current_time()
                if when > now:
                    self._wake_at = when + self.slack
                    with trio.move_on_at(self._wake_at):
                        await self._lot.park()
                    self._wake_at = -math.inf
                    continue
                heapq.heappop(heap)
                target.armed = math.inf
                self._live -= 1
                self.fired += 1
                target.fire(now)
                if len(heap) > 1 and self.fired % 64 == 0:
                    # Thousands of echo timers can come due together: let the tunnels run.
                    await trio.lowlevel.checkpoint()
        finally:
            self._running = False
            self._wake_at = -math.inf
