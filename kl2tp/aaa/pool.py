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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from kl2tp.values import PoolRange, parse_pool

if TYPE_CHECKING:
    from kl2tp.config import PppConfig

__all__ = ["AddressPool", "set_worker_share", "worker_share"]

_SHARE: tuple[int, int] = (0, 1)


def set_worker_share(index: int, count: int) -> None:
    """Make every pool built from now on in this process hand out only the addresses ``a``
    with ``int(a) % count == index``: worker ``index`` of ``count`` (``[l2tp] workers``),
    so the workers' pools together are the configured pool and no address is handed out by
    two of them. Set once, at a worker's start, before any pool is built (reloads build
    pools again and get the same share)."""
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
        self._share = _SHARE
        index, count = self._share
        # Addresses of other workers' shares are never handed out here (claim() still takes
        # one: a static address from AAA is whoever's session it is).
        mine = range(self._first + (index - self._first) % count, self._last + 1, count)
        self._size = len(mine) - sum(1 for v in self._excluded if v % count == index)

    @classmethod
    def from_config(cls, ppp: PppConfig) -> AddressPool:
        """The ``[ppp] pool``, without ``[ppp] local_address``."""
        return cls(ppp.pool, exclude=[ppp.local_address])

    # -- counters -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of addresses the pool can hand out."""
        return self._size

    @property
    def in_use(self) -> int:
        """Number of addresses currently handed out."""
        return len(self._in_use)

    @property
    def free(self) -> int:
        """Number of addresses that can still be handed out."""
        return max(0, self.size - len(self._in_use))

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
        if (
            preferred is not None
            and int(preferred) % self._share[1] == self._share[0]
            and self.claim(preferred)
        ):
            return preferred
        # Never-used addresses first, so a released one rests as long as possible.
        while self._cursor <= self._last:
            value = self._cursor
            self._cursor += 1
            if (
                value % self._share[1] != self._share[0]
                or value in self._excluded
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
                return IPv4Address(value)
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
        if value % self._share[1] != self._share[0]:
            return True  # another worker's to hand out
        self._free_released.add(value)
        self._released.append(value)
        return True

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
