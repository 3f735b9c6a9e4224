"""kl2tp.log: escaping of peer-supplied strings and the log formats."""

from __future__ import annotations

import pytest

from kl2tp.log import escape


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("lac-1.example.net", "lac-1.example.net"),
        ("", ""),
        ("a\nb", "a\\x0ab"),
        ("a\r\nFAKE: session up", "a\\x0d\\x0aFAKE: session up"),
        ("\x1b[2J", "\\x1b[2J"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85", "c1\\x85"),
        ("sep\u2028x", "sep\\u2028x"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("back\\slash", "back\\\\slash"),
        ("Пётр", "Пётр"),
        (b"\xff\xfe".decode("utf-8", "surrogateescape"), "\\xff\\xfe"),
        ("nul\x00", "nul\\x00"),
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_escape_output_is_one_printable_line() -> None:
    every = "".join(chr(c) for c in range(0x250)) + "\u2028\u2029\u202e\ufeff"
    out = escape(every)
    assert out.isprintable()
    assert "\n" not in out and "\r" not in out


def test_escape_takes_any_object() -> None:
    assert escape(42) == "42"
