"""AddressBook: one registry of every address a live session holds, pool or static."""

from __future__ import annotations

from ipaddress import IPv4Address

from kl2tp.aaa.addresses import AddressBook, StaticClaims, owner_token
from kl2tp.aaa.pool import AddressPool, BlockLeases, set_worker_share

A = IPv4Address


def book(*, reserved: tuple[IPv4Address, ...] = ()) -> AddressBook[str]:
    return AddressBook({"": AddressPool("10.0.0.1-10.0.0.4")}, reserved=reserved)


def test_static_inside_the_pool_is_taken_out_of_it() -> None:
    b = book()
    assert b.assign("alice", static=A("10.0.0.2"), user="alice") == A("10.0.0.2")
    # A pool subscriber asking for it in IPCP gets another one.
    got = b.assign("bob", requested=A("10.0.0.2"))
    assert got is not None and got != A("10.0.0.2")
    assert b.holder(A("10.0.0.2")) == "alice"
    assert b.pools[""].is_allocated(A("10.0.0.2"))


def test_static_outside_every_pool_is_claimed_once() -> None:
    b = book()
    assert b.assign("s1", static=A("192.0.2.7"), user="carol") == A("192.0.2.7")
    assert b.assign("s2", static=A("192.0.2.7"), user="carol") is None
    assert b.refused == {"held": 1}
    holding = b.holding(A("192.0.2.7"))
    assert holding is not None and (holding.owner, holding.user, holding.static) == (
        "s1",
        "carol",
        True,
    )
    assert b.release("s1") == A("192.0.2.7")
    assert b.assign("s2", static=A("192.0.2.7")) == A("192.0.2.7")


def test_owners_of_a_user() -> None:
    b = book()
    b.assign("s1", user="carol")
    b.assign("s2", static=A("192.0.2.9"), user="carol")
    b.assign("s3", user="dave")
    assert b.owners_of("carol") == {"s1", "s2"}
    b.release("s1")
    assert b.owners_of("carol") == {"s2"}
    b.release("s2")
    assert b.owners_of("carol") == frozenset()
    assert b.owners_of("nobody") == frozenset()


def test_a_pool_address_held_refuses_a_static_claim_of_it() -> None:
    b = book()
    got = b.assign("bob", requested=A("10.0.0.3"))
    assert got == A("10.0.0.3")
    assert b.assign("alice", static=A("10.0.0.3")) is None
    assert b.holder(A("10.0.0.3")) == "bob"


def test_release_gives_a_static_address_in_a_pool_back_to_the_pool() -> None:
    b = book()
    b.assign("alice", static=A("10.0.0.4"))
    assert b.pools[""].free == 3
    b.release("alice")
    assert b.pools[""].free == 4
    assert b.holder(A("10.0.0.4")) is None
    assert b.release("alice") is None  # twice: nothing


def test_reserved_is_never_handed_out() -> None:
    b = book(reserved=(A("10.0.0.1"),))
    assert b.assign("x", static=A("10.0.0.1")) is None
    assert b.assign("y", requested=A("10.0.0.1")) not in (None, A("10.0.0.1"))
    got = {b.assign(f"z{i}") for i in range(5)}
    assert A("10.0.0.1") not in got
    assert b.refused["reserved"] == 1 and b.refused["exhausted"] >= 1


def test_an_owner_holds_one_address() -> None:
    b = book()
    first = b.assign("s", requested=A("10.0.0.2"))
    assert b.assign("s", static=A("192.0.2.1")) == first
    assert len(b) == 1 and b.address_of("s") == first


def test_overlapping_pools_never_hand_out_the_same_address() -> None:
    b: AddressBook[int] = AddressBook(
        {"a": AddressPool("10.1.0.1-10.1.0.4"), "b": AddressPool("10.1.0.3-10.1.0.6")}
    )
    got = [b.assign(i, pool="a") for i in range(4)] + [b.assign(10 + i, pool="b") for i in range(4)]
    held = [a for a in got if a is not None]
    assert len(held) == len(set(held)) == 6
    b.release(2)  # 10.1.0.3, in both ranges
    assert b.assign(20, pool="b") == A("10.1.0.3")
    assert b.assign(21, pool="nope") is None and b.refused["unknown-pool"] == 1


def test_every_address_has_one_holder_through_churn() -> None:
    b = book()
    live: dict[str, IPv4Address] = {}
    for i in range(200):
        owner = f"o{i}"
        static = A("10.0.0.2") if i % 3 == 0 else None
        got = b.assign(owner, static=static, requested=A("10.0.0.2"))
        if got is not None:
            assert got not in live.values()
            live[owner] = got
        if i % 2:
            victim = next(iter(live))
            assert b.release(victim) == live.pop(victim)
        assert len(b) == len(live)
        assert b.pools[""].in_use == len(live)


def test_a_grown_pool_replaces_the_old_one_with_every_held_address_taken() -> None:
    b = book()
    kept = b.assign("a", requested=A("10.0.0.3"))
    b.assign("s", static=A("10.0.0.7"))  # outside the old pool, inside the new one
    b.replace_pool("", AddressPool("10.0.0.1-10.0.0.8"))
    got = {b.assign(f"n{i}") for i in range(6)}
    assert kept not in got and A("10.0.0.7") not in got and None not in got
    assert b.assign("late") is None  # 8 addresses: a, s and the six
    b.release("a")
    assert b.pools[""].free == 1


# -- StaticClaims: the supervisor's registry across workers ([l2tp] workers = N) ---------------


def test_a_static_address_belongs_to_one_worker_at_a_time() -> None:
    claims = StaticClaims()
    a = IPv4Address("10.30.0.5")
    assert claims.claim(0, a, 1)
    assert not claims.claim(1, a, 2)  # another worker's session holds it
    assert claims.refused == 1 and claims.holder(a) == 0
    # Within the holding worker its book decides (duplicate_session): the claim is granted.
    assert claims.claim(0, a, 3)
    claims.release(0, a, 1)
    assert not claims.claim(1, a, 2)  # session 3 of worker 0 still holds it
    claims.release(1, a, 2)  # not worker 1's: nothing happens
    assert claims.holder(a) == 0
    claims.release(0, a, 3)
    assert claims.holder(a) is None and len(claims) == 0
    assert claims.claim(1, a, 2)


def test_a_dead_workers_static_addresses_are_free_again() -> None:
    claims = StaticClaims()
    mine = [IPv4Address(f"10.30.0.{n}") for n in range(2, 6)]
    for n, a in enumerate(mine):
        assert claims.claim(0, a, n)
    other = IPv4Address("10.30.1.1")
    assert claims.claim(1, other, 9)
    assert claims.drop_worker(0) == len(mine)
    assert all(claims.claim(1, a, 10) for a in mine)
    assert claims.drop_worker(0) == 0
    assert claims.holder(other) == 1


class _Shared:
    def __init__(self) -> None:
        self.released: list[tuple[IPv4Address, int]] = []

    async def claim(self, address: IPv4Address, token: int) -> bool:
        return True

    def release(self, address: IPv4Address, token: int) -> None:
        self.released.append((address, token))


def test_the_book_gives_a_static_address_back_to_the_workers_when_its_session_ends() -> None:
    book: AddressBook[str] = AddressBook({"": AddressPool("10.20.0.0/24")})
    shared = _Shared()
    book.shared = shared
    a = IPv4Address("10.30.0.5")
    assert book.assign("s1", static=a, user="u") == a
    pooled = book.assign("s2", user="v")
    assert pooled is not None
    book.release("s2")
    assert shared.released == []  # pool addresses stay with the worker's share
    book.release("s1")
    assert shared.released == [(a, owner_token("s1"))]


def test_a_reload_hands_a_workers_blocks_to_the_grown_pool_and_a_new_pool_asks() -> None:
    leases = BlockLeases()
    asked: list[AddressPool] = []

    class Lender:
        def want(self, pool: AddressPool) -> None:
            asked.append(pool)
            block = leases.lease(0, int(pool.range.first), int(pool.range.last))
            if block is None:
                pool.no_block()
            else:
                assert pool.add_block(block)

        def give_back(self, block: int) -> None:
            leases.give_back(0, block)

    set_worker_share(0, 2)
    try:
        small = AddressPool("10.20.0.0/26")
        small.lender = Lender()
        book: AddressBook[str] = AddressBook({"": small})
        small.ask_if_low()  # the worker's first block, before it serves
        held = book.assign("s1")
        assert held is not None and small.blocks == 1
        grown = AddressPool("10.20.0.0/24")
        lent = small.held_blocks()
        book.replace_pool("", grown)
        assert set(lent) <= set(grown.held_blocks()) and grown.is_allocated(held)
        assert leases.held(0) == grown.blocks  # and it asked for more: 61 free < a block
        extra = AddressPool("10.21.0.0/24")
        book.replace_pool("extra", extra)
        assert asked[-1] is extra and extra.blocks == 1
        assert book.assign("s2", pool="extra") in extra
    finally:
        set_worker_share(0, 1)


class SlowLender:
    """The supervisor's side, answering a lease only when told (it is another process)."""

    def __init__(self, leases: BlockLeases) -> None:
        self.leases = leases
        self.asked: list[AddressPool] = []

    def want(self, pool: AddressPool) -> None:
        self.asked.append(pool)

    def give_back(self, block: int) -> None:
        self.leases.give_back(0, block)

    def answer(self) -> None:
        pool = self.asked.pop(0)
        block = self.leases.lease(0, int(pool.range.first), int(pool.range.last))
        if block is None:
            pool.no_block()
        else:
            assert pool.add_block(block)


def test_a_call_waits_for_the_block_on_its_way_and_is_refused_when_none_is_left() -> None:
    set_worker_share(0, 2)
    try:
        pool = AddressPool("10.20.0.0/25")  # two blocks, both for this worker to lease
    finally:
        set_worker_share(0, 1)
    lender = SlowLender(BlockLeases())
    pool.lender = lender
    book: AddressBook[str] = AddressBook({"": pool})
    pool.ask_if_low()
    lender.answer()  # the worker's first block
    held = list(iter(lambda: book.assign(f"s{len(book._by_owner)}"), None))
    assert len(held) >= 63 and pool.block_on_its_way  # a block used up; it asked for the next
    assert "exhausted" not in book.refused  # not refused: it may wait
    late: list[IPv4Address | None] = []

    def retry(owner: str) -> None:
        address = book.assign(owner)
        if address is None and book.wait_for_block(None, lambda: retry(owner)):
            return
        late.append(address)

    retry("late")
    assert late == []  # waiting
    lender.answer()  # the block comes: the waiter takes an address from it
    assert late and late[0] is not None and late[0] not in held
    while book.assign(f"s{len(book._by_owner)}") is not None:
        pass
    retry("later")
    assert late == [late[0]] and pool.block_on_its_way
    lender.answer()  # the supervisor has no block left: refused, counted
    assert late[1:] == [None] and book.refused["exhausted"] == 1
    assert book.wait_for_block(None, lambda: None) is pool.block_on_its_way
