"""One task for many deadlines: what drives the PPP links of established sessions.

A session whose frames are answered in its tunnel's task (the null data plane) needs no task
of its own, only someone to run its link's timer (LCP echo, restart timer) when it comes
due. :class:`TimerHeap` is that someone for every session of a handler, and the tunnel
runners' core timers have one of their own: one task sleeping until the earliest deadline,
so an armed target costs no task, no cancel scope and no trio deadline while it waits.

Deadlines fall into buckets: with ``slack`` 0 one per distinct deadline, else one per
``slack`` seconds (a deadline runs at the end of its bucket: up to ``slack`` late). A heap
holds the buckets' keys, a dict their ``(deadline, target)`` entries, so arming a target in
an existing bucket is a dict lookup and an append, and 100,000 LCP echo timers spread over
30 s (one every 0.3 ms) run ~70 to a wake-up in 20 ms buckets, whose frames then leave in
one flush per tunnel. Protocol timers are seconds long; 20 ms late is within their
tolerance.

Entries are never removed: a target that moves its deadline adds a new entry (only when it
is earlier than the one pending: a later deadline is found when the earlier one comes up),
and an entry whose deadline is not its target's ``armed`` any more is skipped when its
bucket runs. The task ends when no target is armed, so it never outlives the sessions.
"""

from __future__ import annotations

import heapq
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
"""The session heaps' ``slack`` (seconds): see the module's text."""

StartSoon = Callable[..., None]
"""How to start the heap's task (a nursery's or a tunnel handle's ``start_soon``)."""

_YIELD_EVERY = 64
"""Targets fired between checkpoints: thousands can come due together; let tunnels run."""


class TimerHeap:
    """Deadlines of many `Timed` targets, run by one task."""

    __slots__ = ("_buckets", "_keys", "_live", "_lot", "_running", "_wake_at", "fired", "slack")

    def __init__(self, slack: float = 0.0) -> None:
        self.slack = slack
        """Seconds a deadline may run late so that nearby ones run together (0: on time)."""
        self._buckets: dict[float, list[tuple[float, Timed]]] = {}
        self._keys: list[float] = []
        """The buckets' run times, a heap."""
        self._live = 0
        """Targets armed (their entries in the buckets that still count)."""
        self._lot = trio.lowlevel.ParkingLot()
        self._running = False
        self._wake_at = -math.inf
        """When the task, asleep, wakes next (-inf: awake, or not running)."""
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
        slack = self.slack
        key = math.ceil(when / slack) * slack if slack else when
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = bucket = []
            heapq.heappush(self._keys, key)
            if not self._running:
                self._running = True
                start_soon(self._run)
            elif key < self._wake_at:
                self._lot.unpark_all()  # due before the task would wake
        bucket.append((when, target))

    def disarm(self, target: Timed) -> None:
        """Forget ``target``'s deadline (its entry is skipped when its bucket runs)."""
        if target.armed != math.inf:
            target.armed = math.inf
            self._live -= 1
            if not self._live:
                self._buckets.clear()
                self._keys.clear()
                self._lot.unpark_all()  # the task ends

    async def _run(self) -> None:
        keys = self._keys
        buckets = self._buckets
        try:
            while keys:
                key = keys[0]
                if key > trio.current_time():
                    self._wake_at = key
                    with trio.move_on_at(key):
                        await self._lot.park()
                    self._wake_at = -math.inf
                    continue
                heapq.heappop(keys)
                now = trio.current_time()
                for when, target in buckets.pop(key, ()):
                    if target.armed != when:
                        continue  # moved or disarmed since
                    target.armed = math.inf
                    self._live -= 1
                    self.fired += 1
                    target.fire(now)
                    if self.fired % _YIELD_EVERY == 0:
                        await trio.lowlevel.checkpoint()
                if not self._live:  # what is left is stale: do not sleep until it
                    buckets.clear()
                    keys.clear()
        finally:
            self._running = False
            self._wake_at = -math.inf
