"""Sequence-number arithmetic modulo 2^16 (RFC 2661 section 5.8).

RFC 2661 5.8: a value is "less than" another when it lies in the 32767 values before it
(half-window compare), so numbers keep ordering across the wrap from 65535 to 0.
"""

from __future__ import annotations

SEQ_MOD = 1 << 16
_HALF = 1 << 15


def seq_add(a: int, n: int) -> int:
    """`a + n` modulo 2^16 (n may be negative)."""
    return (a + n) & 0xFFFF


def seq_sub(a: int, b: int) -> int:
    """Distance from `b` forward to `a` modulo 2^16 (0..65535)."""
    return (a - b) & 0xFFFF


def seq_lt(a: int, b: int) -> bool:
    """True when `a` comes before `b`: b is 1..32767 steps after a."""
    return 0 < ((b - a) & 0xFFFF) < _HALF


def seq_le(a: int, b: int) -> bool:
    """`a` equals `b` or comes before it."""
    return a == b or seq_lt(a, b)
