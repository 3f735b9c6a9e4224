"""MD4 message digest (RFC 1320), for MS-CHAPv2's NT password hash.

OpenSSL 3 moved MD4 to its legacy provider, so ``hashlib.new("md4")`` often fails; this small
implementation is tested against RFC 1320's appendix A.5 vectors. MD4 is broken as a general
hash: use it only where a protocol demands it.
"""

from __future__ import annotations

import struct

__all__ = ["md4"]

_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    x &= _MASK
    return ((x << n) | (x >> (32 - n))) & _MASK


# (word index, shift) per step of rounds 2 and 3 (RFC 1320 3.4)
_R2_ORDER = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
_R3_ORDER = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
_R1_SHIFTS = (3, 7, 11, 19)
_R2_SHIFTS = (3, 5, 9, 13)
_R3_SHIFTS = (3, 9, 11, 15)


def md4(message: bytes) -> bytes:
    """The 16-octet MD4 digest of ``message``."""
    length_bits = (len(message) * 8) & 0xFFFFFFFFFFFFFFFF
    padded = message + b"\x80" + b"\x00" * ((55 - len(message)) % 64)
    padded += struct.pack("<Q", length_bits)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for block in range(0, len(padded), 64):
        x = struct.unpack_from("<16I", padded, block)
        aa, bb, cc, dd = a, b, c, d
        for i in range(16):
            f = (b & c) | (~b & d)
            a, b, c, d = d, _rotl(a + f + x[i], _R1_SHIFTS[i % 4]), b, c
        for i in range(16):
            g = (b & c) | (b & d) | (c & d)
            a, b, c, d = d, _rotl(a + g + x[_R2_ORDER[i]] + 0x5A827999, _R2_SHIFTS[i % 4]), b, c
        for i in range(16):
            h = b ^ c ^ d
            a, b, c, d = d, _rotl(a + h + x[_R3_ORDER[i]] + 0x6ED9EBA1, _R3_SHIFTS[i % 4]), b, c
        a = (a + aa) & _MASK
        b = (b + bb) & _MASK
        c = (c + cc) & _MASK
        d = (d + dd) & _MASK
    return struct.pack("<4I", a, b, c, d)
