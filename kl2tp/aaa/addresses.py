"""Every IPv4 address a live session holds, pool or static, in one registry.

An address is never held by two live sessions. Pools alone could not promise that: a static
address from AAA (users file, RADIUS Framed-IP-Address) is not handed out by any pool, so a
pool subscriber that asked for it in IPCP would get it, and two logins of the same static user
would both get it. The book is the single place that hands out addresses: a static one is
claimed exactly like a pool one (inside a pool it is taken out of that pool too; outside every
pool it is only recorded), and ``holder`` says who has an address.

Every operation a session's setup or end runs is O(1) in the number of sessions and
addresses (a dict lookup plus the pool's own O(1) allocation); the pools are few and come from
the configuration, and a static address is looked up in each of them.

Owners are whatever the caller uses to name a session (the daemon uses its session state
object); they must be hashable and are compared by equality.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from ipaddress import IPv4Address
from typing import Generic, Protocol, TypeVar

import attrs

from kl2tp.aaa.pool import AddressPool

__all__ = ["AddressBook", "Holding", "SharedStatics", "StaticClaims", "owner_token"]

Owner = TypeVar("Owner", bound=Hashable)


@attrs.frozen
class Holding(Generic[Owner]):
    """One held address."""

    owner: Owner
    """The session holding it."""
    address: IPv4Address
    """The address."""
    user: str
    """The user name it was assigned to ("" when unknown)."""
    static: bool
    """True: a static address from AAA; False: taken from a pool."""
    pool: str | None
    """Name of the pool it came from (or, for a static address, the first pool whose range
    holds it); None: outside every pool."""


class SharedStatics(Protocol):
    """What a worker of ``[l2tp] workers = N`` shares with the others: the static addresses
    its sessions hold, claimed from the supervisor's :class:`StaticClaims` (the daemon's
    ``kl2tp.daemon.workers.SupervisorStatics``). ``token`` names the holding session."""

    async def claim(self, address: IPv4Address, token: int) -> bool:
        """True: the address is this worker's to give (free in every other worker)."""

    def release(self, address: IPv4Address, token: int) -> None:
        """The session ``token`` no longer holds ``address`` (sent in the background)."""


def owner_token(owner: Hashable) -> int:
    """The number a holding session is known by in :class:`StaticClaims`: unique among the
    live sessions of one process (its object's id: it lives as long as its holding)."""
    return id(owner)


class StaticClaims:
    """The supervisor's registry of the static addresses the workers' sessions hold: an
    address belongs to at most one worker at a time (inside that worker its
    :class:`AddressBook` decides between sessions, ``[aaa] duplicate_session``). Every
    operation is O(1) but :meth:`drop_worker` (O(that worker's claims), once per crash)."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[int, set[int]]] = {}  # address -> (worker, its tokens)
        self._by_worker: dict[int, set[int]] = {}
        self.refused = 0
        """Claims refused: the address was another worker's."""

    def claim(self, worker: int, address: IPv4Address, token: int) -> bool:
        """Give ``address`` to session ``token`` of ``worker``; False if another worker
        holds it."""
        value = int(address)
        held = self._held.get(value)
        if held is None:
            self._held[value] = (worker, {token})
            self._by_worker.setdefault(worker, set()).add(value)
            return True
        if held[0] != worker:
            self.refused += 1
            return False
        held[1].add(token)
        return True

    def release(self, worker: int, address: IPv4Address, token: int) -> None:
        """Session ``token`` of ``worker`` gave ``address`` back; the address is free once
        no session of that worker holds it. Anything else does nothing."""
        value = int(address)
        held = self._held.get(value)
        if held is None or held[0] != worker:
            return
        held[1].discard(token)
        if not held[1]:
            del self._held[value]
            self._by_worker[worker].discard(value)

    def drop_worker(self, worker: int) -> int:
        """``worker`` died (its sessions with it): everything it held is free. Returns how
        many addresses."""
        values = self._by_worker.pop(worker, set())
        for value in values:
            del self._held[value]
        return len(values)

    def holder(self, address: IPv4Address) -> int | None:
        """The worker holding ``address``, or None."""
        held = self._held.get(int(address))
        return held[0] if held is not None else None

    def __len__(self) -> int:
        return len(self._held)


def _overlaps(pools: Mapping[str, AddressPool]) -> dict[str, tuple[AddressPool, ...]]:
    """For each pool, the other pools whose ranges overlap it."""
    return {
        name: tuple(
            other
            for other_name, other in pools.items()
            if other_name != name
            and int(other.range.first) <= int(pool.range.last)
            and int(pool.range.first) <= int(other.range.last)
        )
        for name, pool in pools.items()
    }


class AddressBook(Generic[Owner]):
    """Hands out addresses to owners, each address to at most one live owner.

    Args:
        pools: the address pools by name; ``""`` is the default ``[ppp] pool``.
        default: the pool used when ``assign`` names none.
        reserved: addresses never handed out, static or not (the LNS's own ``local_address``).
    """

    def __init__(
        self,
        pools: Mapping[str, AddressPool],
        default: str = "",
        *,
        reserved: Iterable[IPv4Address] = (),
    ) -> None:
        self.pools = dict(pools)
        self.default = default
        self._reserved = frozenset(int(a) for a in reserved)
        self._by_address: dict[int, Holding[Owner]] = {}
        self._by_owner: dict[Owner, Holding[Owner]] = {}
        self._static_count = 0
        # Pools whose ranges overlap each pool: an address taken from one is taken out of
        # the others too, so no pool can hand out an address the book says is held.
        self._overlaps = _overlaps(self.pools)
        self.shared: SharedStatics | None = None
        """A worker of ``[l2tp] workers = N``: the static addresses shared with the other
        workers (claimed by the session before :meth:`assign`, released here)."""
        self.refused: dict[str, int] = {}
        """Assignments refused, by reason (``held``, ``reserved``, ``exhausted``,
        ``unknown-pool``, ``owner-holds``)."""

    # -- queries --------------------------------------------------------------------------------

    def holder(self, address: IPv4Address) -> Owner | None:
        """The live owner holding ``address``, or None."""
        holding = self._by_address.get(int(address))
        return holding.owner if holding is not None else None

    def holding(self, address: IPv4Address) -> Holding[Owner] | None:
        """Everything known about ``address``'s current holding, or None."""
        return self._by_address.get(int(address))

    def address_of(self, owner: Owner) -> IPv4Address | None:
        """The address ``owner`` holds, or None."""
        holding = self._by_owner.get(owner)
        return holding.address if holding is not None else None

    def owners_of(self, user: str) -> frozenset[Owner]:
        """The live owners holding an address for ``user``. O(addresses held): no session
        path asks it (the CoA index keeps its own sessions by user), so no per-user index is
        kept up at every assignment for it."""
        return frozenset(h.owner for h in self._by_owner.values() if h.user == user)

    def __len__(self) -> int:
        """Number of addresses held."""
        return len(self._by_address)

    # -- assignment -----------------------------------------------------------------------------

    def assign(
        self,
        owner: Owner,
        *,
        static: IPv4Address | None = None,
        pool: str | None = None,
        requested: IPv4Address | None = None,
        user: str = "",
    ) -> IPv4Address | None:
        """Give ``owner`` an address and record it.

        Args:
            owner: the session; it may hold one address at a time (asking again returns the
                one it holds, whatever the arguments).
            static: an address from AAA: exactly this one, or nothing.
            pool: the pool to take from when there is no static address; None: the default.
            requested: the address the peer asked for, preferred from the pool when free.
            user: the user name, kept for ``holding``.

        Returns:
            The address, or None when it cannot be had (the static one is held by another
            owner or reserved, the pool is unknown or exhausted); the reason is counted in
            ``refused``.
        """
        held = self._by_owner.get(owner)
        if held is not None:
            return held.address
        if static is not None:
            return self._assign_static(owner, static, user)
        name = self.default if pool is None else pool
        source = self.pools.get(name)
        if source is None:
            self._refuse("unknown-pool")
            return None
        if requested is not None and int(requested) in self._reserved:
            requested = None
        address = source.allocate(requested)
        while address is not None and int(address) in self._reserved:
            # A reserved address inside the range: keep it out of circulation for good.
            address = source.allocate()
        if address is None:
            if not source.block_on_its_way:  # else the caller may wait (`wait_for_block`)
                self._refuse("exhausted")
            return None
        for other in self._overlaps[name]:
            other.claim(address)
        self._record(Holding(owner, address, user, False, name))
        return address

    def _assign_static(self, owner: Owner, address: IPv4Address, user: str) -> IPv4Address | None:
        value = int(address)
        if value in self._reserved:
            self._refuse("reserved")
            return None
        if value in self._by_address:
            self._refuse("held")
            return None
        first: str | None = None
        claimed: list[AddressPool] = []
        for name, source in self.pools.items():
            if address not in source:
                continue
            if not source.claim(address):
                # Free in the book but not in the pool: excluded from it (its own address).
                for pool in claimed:
                    pool.release(address)
                self._refuse("reserved")
                return None
            claimed.append(source)
            if first is None:
                first = name
        self._record(Holding(owner, address, user, True, first))
        return address

    def wait_for_block(self, pool: str | None, retry: Callable[[], object]) -> bool:
        """`assign` found pool ``pool`` (None: the default) empty: True when a block is on
        its way to this worker, ``retry`` then running once it came; False: refused."""
        source = self.pools.get(self.default if pool is None else pool)
        return source is not None and source.wait_for_block(retry)

    def replace_pool(self, name: str, pool: AddressPool) -> None:
        """Put ``pool`` in the place of pool ``name`` (a reload that grew it): every address
        the book holds inside the new range is taken out of it first, so it hands out none
        of them. O(addresses held): an operator's reload, not a per-session operation."""
        old = self.pools.get(name)
        if pool.leasing:  # a worker: the blocks lent go with the pool, a new one asks
            lenders = (p.lender for p in self.pools.values() if p.lender is not None)
            pool.lender = next(lenders, None)
            for block in old.held_blocks() if old is not None else ():
                if not pool.add_block(block) and pool.lender is not None:
                    pool.lender.give_back(block)
        for value, holding in self._by_address.items():
            if holding.pool == name or IPv4Address(value) in pool:
                pool.claim(holding.address)
        self.pools[name] = pool
        pool.ask_if_low()
        self._overlaps = _overlaps(self.pools)
        if old is not None:
            old.wake_waiting()  # calls that waited for the old pool's block try the new one

    def release(self, owner: Owner) -> IPv4Address | None:
        """Give back what ``owner`` holds; nothing held does nothing.

        Returns:
            The address released, or None.
        """
        holding = self._by_owner.pop(owner, None)
        if holding is None:
            return None
        address = holding.address
        del self._by_address[int(address)]
        if holding.static:
            self._static_count -= 1
            if self.shared is not None:
                self.shared.release(address, owner_token(owner))
        for source in self.pools.values() if holding.static else self._sources(holding.pool):
            source.release(address)
        return address

    def _sources(self, name: str | None) -> Iterable[AddressPool]:
        if name is None:
            return ()
        return (self.pools[name], *self._overlaps[name])

    def _record(self, holding: Holding[Owner]) -> None:
        self._by_address[int(holding.address)] = holding
        self._by_owner[holding.owner] = holding
        if holding.static:
            self._static_count += 1

    def _refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def summary(self) -> dict[str, object]:
        """Counters for ``kl2tpctl show summary``."""
        return {
            "held": len(self._by_address),
            "static": self._static_count,
            "refused": dict(self.refused),
        }
