"""Sequence numbers modulo 2^16 (RFC 2661 section 5.8), as a table."""

from __future__ import annotations

import pytest

from kl2tp.l2tp.seq import seq_add, seq_le, seq_lt, seq_sub

# (a, b, a < b): "less than" means b lies 1..32767 steps after a, across the wrap.
LT_TABLE = [
    (0, 1, True),
    (1, 0, False),
    (5, 5, False),
    (65535, 0, True),  # wraps
    (0, 65535, False),
    (65530, 4, True),
    (4, 65530, False),
    (0, 32767, True),  # the furthest "after"
    (0, 32768, False),  # half way round is not "after"
    (32768, 0, False),
    (32769, 0, True),
    (100, 32867, True),
    (100, 32868, False),
]


@pytest.mark.parametrize(("a", "b", "lt"), LT_TABLE)
def test_seq_lt(a: int, b: int, lt: bool) -> None:
    assert seq_lt(a, b) is lt
    assert seq_le(a, b) is (lt or a == b)


ADD_TABLE = [
    (0, 1, 1),
    (65535, 1, 0),
    (65535, 2, 1),
    (10, -11, 65535),
    (0, 65536, 0),
    (40000, 30000, 4464),
]


@pytest.mark.parametrize(("a", "n", "out"), ADD_TABLE)
def test_seq_add(a: int, n: int, out: int) -> None:
    assert seq_add(a, n) == out
    assert seq_sub(out, a) == n % 65536


def test_successor_is_always_after() -> None:
    for a in (0, 1, 32767, 32768, 65534, 65535):
        assert seq_lt(a, seq_add(a, 1))
        assert not seq_lt(seq_add(a, 1), a)
