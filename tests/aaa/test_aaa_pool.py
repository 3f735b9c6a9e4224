"""Address pools: ranges as operators write them, and no address ever handed out twice."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kl2tp.aaa.pool import AddressPool
from kl2tp.values import parse_pool

A = IPv4Address


@pytest.mark.parametrize(
    ("text", "first", "last", "count"),
    [
        ("10.0.0.0/24", "10.0.0.1", "10.0.0.254", 254),  # network and broadcast left out
        ("10.0.0.0/16", "10.0.0.1", "10.0.255.254", 65534),
        ("192.0.2.0/31", "192.0.2.0", "192.0.2.1", 2),  # RFC 3021 point-to-point
        ("192.0.2.7/32", "192.0.2.7", "192.0.2.7", 1),
        ("10.255.0.2-10.255.0.254", "10.255.0.2", "10.255.0.254", 253),
        ("10.0.0.9 - 10.0.0.9", "10.0.0.9", "10.0.0.9", 1),
    ],
)
def test_ranges_as_written(text: str, first: str, last: str, count: int) -> None:
    spec = parse_pool(text)
    assert (spec.first, spec.last, spec.count) == (A(first), A(last), count)
    assert AddressPool(text).size == count


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.1/24", "host bits set"),
        ("10.0.0.0/33", "bad CIDR"),
        ("10.0.0.9-10.0.0.1", "ends (10.0.0.1) before it starts"),
        ("10.0.0.1-10.0.0.300", "bad address"),
        ("pool-a", "bad address"),
        ("10.0.0.1", "expected a CIDR prefix"),
    ],
)
def test_bad_ranges_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_pool(text)


def test_local_address_is_never_handed_out() -> None:
    pool = AddressPool("10.0.0.0/29", exclude=[A("10.0.0.1"), A("192.0.2.1")])
    assert pool.size == 5  # .2-.6; the address outside the range changes nothing
    got = {pool.allocate() for _ in range(5)}
    assert A("10.0.0.1") not in got and None not in got
    assert pool.allocate() is None
    assert pool.allocate(A("10.0.0.1")) is None  # not even when asked for


def test_preferred_address_honoured_when_free() -> None:
    pool = AddressPool("10.0.0.0/24")
    assert pool.allocate(A("10.0.0.77")) == A("10.0.0.77")
    assert pool.is_allocated(A("10.0.0.77"))
    other = pool.allocate(A("10.0.0.77"))  # taken: any other address, never the same one
    assert other is not None and other != A("10.0.0.77")
    outside = pool.allocate(A("172.16.0.1"))
    assert outside is not None and outside in pool


def test_cursor_skips_an_address_claimed_ahead_of_it() -> None:
    pool = AddressPool("10.0.0.0/29")  # .1-.6
    assert pool.allocate(A("10.0.0.2")) == A("10.0.0.2")
    assert [pool.allocate() for _ in range(5)] == [A(f"10.0.0.{i}") for i in (1, 3, 4, 5, 6)]


def test_released_address_comes_back_last_and_once() -> None:
    pool = AddressPool("10.0.0.0/29")
    first = pool.allocate()
    assert first == A("10.0.0.1")
    assert pool.release(first)
    assert not pool.release(first)  # double release is harmless
    # Never-used addresses go out before the one just released.
    assert [pool.allocate() for _ in range(5)] == [A(f"10.0.0.{i}") for i in range(2, 7)]
    assert pool.allocate() == first
    assert pool.allocate() is None


def test_claim_of_a_released_address_then_release_again() -> None:
    pool = AddressPool("10.0.0.0/30")  # .1-.2
    a, b = pool.allocate(), pool.allocate()
    assert a is not None and b is not None
    pool.release(a)
    assert pool.claim(a)
    assert not pool.claim(a)
    pool.release(a)
    assert pool.allocate() == a  # the stale FIFO entry did not hand it out a second time
    assert pool.allocate() is None
    assert (pool.in_use, pool.free) == (2, 0)


def test_claim_release_cycles_keep_memory_bounded() -> None:
    pool = AddressPool("10.0.0.0/24")
    held = [pool.allocate() for _ in range(10)]
    for address in held:
        assert address is not None
        pool.release(address)
    for _ in range(10_000):  # a subscriber that reconnects asking for its old address
        assert pool.claim(A("10.0.0.3"))
        pool.release(A("10.0.0.3"))
    assert len(pool._released) < 200


def test_whole_slash16_allocate_all_release_all() -> None:
    pool = AddressPool("10.0.0.0/16")
    assert pool.size == 65534
    handed = [pool.allocate() for _ in range(65534)]
    assert None not in handed
    assert len(set(handed)) == 65534
    assert pool.allocate() is None
    assert (pool.in_use, pool.free) == (65534, 0)
    for address in handed:
        assert address is not None
        assert pool.release(address)
    assert (pool.in_use, pool.free) == (0, 65534)
    again = {pool.allocate() for _ in range(65534)}
    assert None not in again and len(again) == 65534
    assert pool.allocate() is None


def test_random_churn_against_a_model() -> None:
    rng = random.Random(2661)
    pool = AddressPool("10.1.0.0/26", exclude=[A("10.1.0.1")])  # 61 usable
    held: set[IPv4Address] = set()
    for _ in range(20_000):
        if held and rng.random() < 0.45:
            address = rng.choice(sorted(held))
            assert pool.release(address)
            held.discard(address)
        else:
            preferred = A(int(A("10.1.0.0")) + rng.randrange(70)) if rng.random() < 0.5 else None
            got = pool.allocate(preferred)
            if got is None:
                assert len(held) == pool.size
                continue
            assert got not in held, f"{got} handed out twice"
            assert got != A("10.1.0.1")
            held.add(got)
        assert pool.in_use == len(held)


@given(
    st.lists(
        st.tuples(st.sampled_from(["alloc", "claim", "release"]), st.integers(0, 9)),
        max_size=80,
    )
)
def test_any_sequence_never_hands_out_twice(ops: list[tuple[str, int]]) -> None:
    pool = AddressPool("10.2.0.1-10.2.0.6", exclude=[A("10.2.0.3")])
    held: set[IPv4Address] = set()
    for op, n in ops:
        address = A(int(A("10.2.0.0")) + n)
        if op == "alloc":
            got = pool.allocate(address if n % 2 else None)
            if got is None:
                assert len(held) == pool.size == 5
            else:
                assert got not in held and got != A("10.2.0.3")
                held.add(got)
        elif op == "claim":
            ok = pool.claim(address)
            assert ok == (address in pool and address not in held and n not in (0, 3, 7, 8, 9))
            if ok:
                held.add(address)
        else:
            assert pool.release(address) == (address in held)
            held.discard(address)
        assert pool.in_use == len(held) and pool.free == pool.size - len(held)


def test_from_config_leaves_out_local_address() -> None:
    from kl2tp.config import parse_config

    ppp = parse_config('[ppp]\npool = "10.9.0.0/29"\nlocal_address = "10.9.0.1"', "t", "lns").ppp
    pool = AddressPool.from_config(ppp)
    assert pool.size == 5
    assert A("10.9.0.1") not in {pool.allocate() for _ in range(6)}
