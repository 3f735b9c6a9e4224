"""IPv4 address pools for PPP subscribers.

A pool is a contiguous range (`kl2tp.values.PoolRange`), written either as a CIDR prefix
(``10.0.0.0/24``: the network and broadcast addresses are left out, except for /31 and /32 as in
RFC 3021) or as ``first-last`` (both ends included). Allocation and release are O(1) whatever
the size of the range: addresses that were never handed out come first, from a moving cursor;
released ones go to the back of a FIFO free list used after that, so an address that was just
given back is the last to be handed out again (ARP and route caches on the way have time to
forget it).

The pool never hands out an address twice: ``in_use`` is the single truth, and every path that
hands out an address checks it.

A worker of ``[l2tp] workers = N`` (:func:`set_worker_share`) builds *leasing* pools: they
hand out only addresses of the aligned blocks of :data:`BLOCK` addresses the supervisor's
:class:`BlockLeases` lent this worker (:meth:`AddressPool.add_block`), ask for another
(:class:`Lender`) when fewer than :data:`LOW_WATER` are free, and give a block back once it is
wholly free and enough others remain: one pool for the whole daemon, no address in two
workers' hands.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from kl2tp.values import PoolRange, parse_pool

if TYPE_CHECKING:
    from kl2tp.config import PppConfig

__all__ = ["BLOCK", "LOW_WATER", "AddressPool", "BlockLeases", "Lender", "set_worker_share"]
__all__ += ["worker_share"]

_SHARE: tuple[int, int] = (0, 1)

BLOCK = 64
"""Addresses in a leased block (aligned: block ``b`` is ``b * BLOCK .. b * BLOCK + BLOCK - 1``)."""
LOW_WATER = BLOCK
"""A leasing pool asks for another block when fewer addresses than this are free: a block
of headroom, so a burst of calls rarely outruns the lease (a call finding the pool empty while
the lease is on its way waits for it: `AddressPool.wait_for_block`)."""


class Lender(Protocol):
    """Where a leasing pool gets its blocks (a worker's channel to the supervisor)."""

    def want(self, pool: AddressPool) -> None:
        """Lease ``pool`` another block, in the background (``add_block`` or ``no_block``)."""

    def give_back(self, block: int) -> None:
        """``block`` is no longer this worker's."""


def set_worker_share(index: int, count: int) -> None:
    """Make every pool built from now on in this process a leasing pool (``count`` > 1):
    worker ``index`` of ``count`` (``[l2tp] workers``), handing out only the blocks the
    supervisor lends it, so no address is handed out by two workers. Set once, at a
    worker's start, before any pool is built (reloads build pools again alike)."""
    global _SHARE
    if not 0 <= index < count:
        raise ValueError(f"worker {index} outside 0..{count - 1}")
    _SHARE = (index, count)


def worker_share() -> tuple[int, int]:
    """This process's ``(index, count)`` (``(0, 1)`` outside a worker): what else must be
    unique across workers (NAS-Port, Acct-Session-Id) is numbered in the same classes."""
    return _SHARE


class AddressPool:
    """Hands out IPv4 addresses from one range, each to at most one holder at a time.

    Args:
        spec: the range, as a `PoolRange` or the text `parse_pool` accepts.
        exclude: addresses never handed out (typically the LNS's own ``local_address``);
            addresses outside the range are ignored.

    Raises:
        ValueError: if ``spec`` is text that does not parse.
    """

    def __init__(self, spec: PoolRange | str, exclude: Iterable[IPv4Address] = ()) -> None:
        self.range = parse_pool(spec) if isinstance(spec, str) else spec
        self._first = int(self.range.first)
        self._last = int(self.range.last)
        self._excluded = frozenset(int(a) for a in exclude if self._first <= int(a) <= self._last)
        self._cursor = self._first  # every address >= cursor was never handed out by it
        self._released: deque[int] = deque()  # FIFO of released addresses (may hold stale ones)
        self._free_released: set[int] = set()  # the released addresses that really are free
        self._in_use: set[int] = set()
        index, count = _SHARE
        self.leasing = count > 1
        """A worker's pool: it hands out only the blocks it holds (free ones in the FIFO)."""
        self.lender: Lender | None = None
        self._blocks: dict[int, int] = {}  # held block -> its addresses in use
        self._asking = False
        self._waiting: list[Callable[[], object]] = []
        """Who found no free address while a block was on its way (`wait_for_block`)."""
        self._refusing = False
        """The supervisor just said it has no block: the waiters it wakes are refused."""
        if self.leasing:
            self._cursor = self._last + 1  # nothing is handed out but from held blocks
            # Reported size: the addresses of the blocks b % N == index, so the workers'
            # sizes add up to the pool's whatever blocks each holds.
            span = self._block_span()
            mine = range(span.start + (index - span.start) % count, span.stop, count)
            self._size = sum(
                min(self._last, b * BLOCK + BLOCK - 1) - max(self._first, b * BLOCK) + 1
                for b in mine
            ) - sum(1 for v in self._excluded if v // BLOCK % count == index)
        else:
            self._size = self._last - self._first + 1 - len(self._excluded)

    @classmethod
    def from_config(cls, ppp: PppConfig) -> AddressPool:
        """The ``[ppp] pool``, without ``[ppp] local_address``."""
        return cls(ppp.pool, exclude=[ppp.local_address])

    # -- counters -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of addresses the pool can hand out (a worker: its part of the sum)."""
        return self._size

    @property
    def in_use(self) -> int:
        """Number of addresses currently handed out."""
        return len(self._in_use)

    @property
    def free(self) -> int:
        """Number of addresses that can still be handed out (a worker: its part of the sum,
        negative when it holds more than its part)."""
        free = self.size - len(self._in_use)
        return free if self.leasing else max(0, free)

    @property
    def blocks(self) -> int:
        """Blocks held (a leasing pool)."""
        return len(self._blocks)

    def __contains__(self, address: object) -> bool:
        """True if ``address`` belongs to this pool's range (free or not, excluded or not)."""
        return address in self.range

    def is_allocated(self, address: IPv4Address) -> bool:
        """True if ``address`` is currently handed out by this pool."""
        return int(address) in self._in_use

    # -- allocation -----------------------------------------------------------------------------

    def allocate(self, preferred: IPv4Address | None = None) -> IPv4Address | None:
        """Hand out an address: ``preferred`` if it is in the pool and free, else any free one.

        Returns:
            The address, now in use, or None if the pool is exhausted.
        """
        # A leasing pool grants a preferred address only from its own free blocks.
        mine = preferred is not None and (not self.leasing or int(preferred) in self._free_released)
        if mine and preferred is not None and self.claim(preferred):
            return preferred
        # Never-used addresses first, so a released one rests as long as possible.
        while self._cursor <= self._last:
            value = self._cursor
            self._cursor += 1
            if (
                value in self._excluded
                or value in self._in_use
                or value in self._free_released  # claimed then released before the cursor came
            ):
                continue
            self._in_use.add(value)
            return IPv4Address(value)
        while self._released:
            value = self._released.popleft()
            if value in self._free_released:  # otherwise a stale entry: claimed meanwhile
                self._free_released.discard(value)
                self._in_use.add(value)
                if self.leasing:
                    self._blocks[value // BLOCK] += 1
                    self._low_water()
                return IPv4Address(value)
        self._low_water()
        return None

    def claim(self, address: IPv4Address) -> bool:
        """Take exactly ``address`` if it is in the range, not excluded and free.

        Returns:
            True if the caller now holds ``address``; False if it is outside the range, excluded
            or already in use.
        """
        value = int(address)
        if not (self._first <= value <= self._last) or value in self._excluded:
            return False
        if value in self._in_use:
            return False
        if value in self._free_released:
            # Its entry stays in the FIFO; allocate() skips it as stale.
            self._free_released.discard(value)
            self._compact_if_stale()
        self._in_use.add(value)
        block = value // BLOCK
        if block in self._blocks:
            self._blocks[block] += 1
            self._low_water()
        return True

    def release(self, address: IPv4Address) -> bool:
        """Give ``address`` back. Releasing an address that is not in use does nothing.

        Returns:
            True if the address was in use and is now free.
        """
        value = int(address)
        if value not in self._in_use:
            return False
        self._in_use.discard(value)
        if self.leasing:
            block = value // BLOCK
            if block not in self._blocks:
                return True  # a static address of a block this worker does not hold
            self._blocks[block] -= 1
        self._free_released.add(value)
        self._released.append(value)
        if self.leasing:
            self._spare(value // BLOCK)
        return True

    # -- leasing (a worker's pool) --------------------------------------------------------------

    def _block_span(self) -> range:
        return range(self._first // BLOCK, self._last // BLOCK + 1)

    def _block_values(self, block: int) -> list[int]:
        start = max(self._first, block * BLOCK)
        end = min(self._last, block * BLOCK + BLOCK - 1)
        return [v for v in range(start, end + 1) if v not in self._excluded]

    def add_block(self, block: int) -> bool:
        """The supervisor lent this worker ``block``: its free addresses can be handed out,
        and whoever waited for it (`wait_for_block`) tries again.

        Returns:
            False if the block is outside the range or already held (give it back).
        """
        try:
            return self._add_block(block)
        finally:
            self.wake_waiting()

    def _add_block(self, block: int) -> bool:
        self._asking = False
        if block in self._blocks or block not in self._block_span():
            return False
        used = 0
        for value in self._block_values(block):
            if value in self._in_use:
                used += 1  # a static address claimed before the block came
            elif value not in self._free_released:
                self._free_released.add(value)
                self._released.append(value)
        self._blocks[block] = used
        return True

    def no_block(self) -> None:
        """The supervisor has no block left: the next shortage asks again; whoever waited
        tries again (and is refused, unless an address was released meanwhile)."""
        self._asking = False
        self._refusing = True
        try:
            self.wake_waiting()
        finally:
            self._refusing = False

    @property
    def block_on_its_way(self) -> bool:
        """A worker's pool has asked for a block and has no answer yet (a call may wait
        for it); False while the waiters of a lease the supervisor refused try again, so
        they are refused rather than waiting on the next ask."""
        return self.leasing and self._asking and not self._refusing

    def wait_for_block(self, retry: Callable[[], object]) -> bool:
        """The pool had no free address for a call: if a block is on its way, ``retry`` runs
        once the answer came (`add_block`, `no_block`) and True is returned; False when
        nothing is on its way (the pool is exhausted). A burst of calls into one worker
        can use up its blocks faster than the supervisor lends the next: its calls wait for
        the lease instead of being refused while the shared pool has room."""
        if not self.block_on_its_way:
            return False
        self._waiting.append(retry)
        return True

    def wake_waiting(self) -> None:
        """The lease is answered (or the pool replaced): every waiter tries again, in
        arrival order (one may wait again, for the next block)."""
        waiting, self._waiting = self._waiting, []
        for retry in waiting:
            retry()

    def held_blocks(self) -> list[int]:
        """The blocks this pool holds (a reload hands them to the pool replacing it)."""
        return list(self._blocks)

    def ask_if_low(self) -> None:
        """A leasing pool with fewer than :data:`LOW_WATER` free asks its lender for a
        block (once at a time)."""
        self._low_water()

    def _low_water(self) -> None:
        if (
            self.leasing
            and not self._asking
            and self.lender is not None
            and len(self._free_released) < LOW_WATER
        ):
            self._asking = True
            self.lender.want(self)

    def _spare(self, block: int) -> None:
        """Give ``block`` back if it is wholly free and the others keep us above water."""
        if self._blocks[block] or self.lender is None:
            return
        values = self._block_values(block)
        if len(self._free_released) - len(values) < LOW_WATER + BLOCK // 2:  # no ping-pong
            return
        for value in values:
            self._free_released.discard(value)  # FIFO entries turn stale
        del self._blocks[block]
        self._compact_if_stale()
        self.lender.give_back(block)

    def _compact_if_stale(self) -> None:
        # Stale FIFO entries come from claim(); drop them once they outnumber the live ones so
        # that memory stays proportional to the free addresses (amortised O(1) per operation).
        if len(self._released) > 2 * len(self._free_released) + 64:
            seen: set[int] = set()
            kept: deque[int] = deque()
            for value in self._released:
                if value in self._free_released and value not in seen:
                    seen.add(value)
                    kept.append(value)
            self._released = kept

    def __repr__(self) -> str:
        return f"<AddressPool {self.range.text} size={self.size} in_use={self.in_use}>"


class _Span:
    """One pool range's blocks in :class:`BlockLeases`: a cursor over those never lent, and
    the ones given back (FIFO, may hold stale entries: lent again meanwhile)."""

    def __init__(self, first: int, last: int) -> None:
        self.cursor = first // BLOCK
        self.end = last // BLOCK
        self.start = self.cursor
        self.returned: deque[int] = deque()


class BlockLeases:
    """The supervisor's registry of address blocks lent to workers: a block (of the address
    space, whatever pool asks) is lent to at most one worker at a time. O(1) amortised per
    lease and give-back (pools are few); :meth:`drop_worker` O(that worker's blocks)."""

    def __init__(self) -> None:
        self._holder: dict[int, int] = {}  # block -> worker
        self._by_worker: dict[int, set[int]] = {}
        self._spans: dict[tuple[int, int], _Span] = {}

    def lease(self, worker: int, first: int, last: int) -> int | None:
        """A free block of the range ``first..last`` for ``worker``, or None."""
        span = self._spans.get((first, last))
        if span is None:
            span = self._spans[(first, last)] = _Span(first, last)
        block: int | None = None
        while span.returned:
            candidate = span.returned.popleft()
            if candidate not in self._holder:
                block = candidate
                break
        while block is None and span.cursor <= span.end:
            candidate = span.cursor
            span.cursor += 1
            if candidate not in self._holder:
                block = candidate
        if block is None:
            return None
        self._holder[block] = worker
        self._by_worker.setdefault(worker, set()).add(block)
        return block

    def give_back(self, worker: int, block: int) -> None:
        """``worker`` returns ``block`` (a block it does not hold: nothing happens)."""
        if self._holder.get(block) != worker:
            return
        del self._holder[block]
        self._by_worker[worker].discard(block)
        self._returned(block)

    def drop_worker(self, worker: int) -> int:
        """``worker`` died, its sessions with it: its blocks are free. Returns how many."""
        blocks = self._by_worker.pop(worker, set())
        for block in blocks:
            del self._holder[block]
            self._returned(block)
        return len(blocks)

    def _returned(self, block: int) -> None:
        for span in self._spans.values():
            if span.start <= block < span.cursor:
                span.returned.append(block)

    def holder(self, block: int) -> int | None:
        """The worker holding ``block``, or None."""
        return self._holder.get(block)

    def held(self, worker: int) -> int:
        """Blocks ``worker`` holds."""
        return len(self._by_worker.get(worker, ()))
