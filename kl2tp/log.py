"""Logging for operators: escaping of peer-supplied text, formats and destinations.

Everything a peer sends (host names, user names, calling numbers, Result Code messages,
vendor strings) may hold control characters. Written to a log as they are, a CR or LF forges
a whole log line, an ESC sequence rewrites an operator's terminal, a U+202E reorders what is
read. :func:`escape` makes any string safe to put on one log line in every format; call it on
peer-supplied strings before they reach a format string.
"""

from __future__ import annotations

import re

__all__ = ["escape"]

_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
"""Anything but printable ASCII without the backslash: the slow path looks closer."""


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not UTF-8, kept by the "surrogateescape" decoder: show the byte.
        return f"\\x{code - 0xDC00:02x}"
    if ch.isprintable():
        return ch
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(s: object) -> str:
    """``s`` as one printable line: no control, format or separator characters.

    Non-printable characters (C0 and C1 controls, DEL, line and paragraph separators,
    bidirectional overrides, lone surrogates) become ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``;
    a backslash becomes ``\\\\`` so the escaped form cannot be mistaken for one. Printable
    non-ASCII text (a user name in Cyrillic) is kept as it is. Not a string: ``str(s)`` first.
    """
    text = s if isinstance(s, str) else str(s)
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_char, text)
