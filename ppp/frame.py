"""PPP frame and control-packet codec (RFC 1661 sections 2, 5 and 6).

A PPP frame as it travels in an L2TP data message (RFC 2661 section 5.4) is the HDLC-like
frame without flags, FCS or byte stuffing::

    [ff 03] protocol(1 or 2 octets) information...

The ``ff 03`` Address/Control prefix is absent when Address-and-Control-Field-Compression
(ACFC) is in use, and the protocol field is a single octet under Protocol-Field-Compression
(PFC). Both forms occur on L2TP, so :func:`decode_frame` accepts either, always.

Control protocols (LCP, PAP, CHAP, IPCP, IPv6CP) carry packets of the form
``code(1) identifier(1) length(2) data``; the configure packets carry option TLVs
``type(1) length(1) value``. Every decoder raises only :class:`PppDecodeError`.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

__all__ = [
    "Code",
    "Packet",
    "PppDecodeError",
    "Proto",
    "decode_frame",
    "decode_options",
    "decode_packet",
    "encode_frame",
    "encode_option",
    "encode_packet",
]


class PppDecodeError(Exception):
    """The one error the PPP decoders raise."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(f"{message} (offset {offset})")
        self.message = message
        """What is wrong."""
        self.offset = offset
        """Byte offset of the problem."""


class Proto(enum.IntEnum):
    """PPP protocol numbers (RFC 1661 section 2, IANA PPP DLL protocol numbers)."""

    IPV4 = 0x0021
    IPV6 = 0x0057
    IPCP = 0x8021
    IPV6CP = 0x8057
    CCP = 0x80FD
    LCP = 0xC021
    PAP = 0xC023
    LQR = 0xC025
    CHAP = 0xC223


class Code(enum.IntEnum):
    """Control packet codes: 1-7 for every control protocol, 8-13 for LCP only (RFC 1661 5,
    RFC 1570 for 12 and 13)."""

    CONFREQ = 1
    CONFACK = 2
    CONFNAK = 3
    CONFREJ = 4
    TERMREQ = 5
    TERMACK = 6
    CODEREJ = 7
    PROTREJ = 8
    ECHOREQ = 9
    ECHOREP = 10
    DISCREQ = 11
    IDENT = 12
    TIMEREM = 13


_ADDRESS_CONTROL = b"\xff\x03"
_HEADER = struct.Struct("!BBH")


def decode_frame(data: bytes) -> tuple[int, bytes]:
    """Split a PPP frame into (protocol, information).

    Accepts the frame with or without the ``ff 03`` prefix (ACFC) and with a one- or two-octet
    protocol field (PFC).

    Raises:
        PppDecodeError: empty frame, or a protocol field that is not a valid PPP protocol
            number (the low bit of the last octet is 1, of the first octet 0).
    """
    offset = 2 if data[:2] == _ADDRESS_CONTROL else 0
    if len(data) <= offset:
        raise PppDecodeError("frame has no protocol field", offset)
    first = data[offset]
    if first & 1:
        return first, data[offset + 1 :]
    if len(data) < offset + 2:
        raise PppDecodeError("truncated protocol field", offset)
    second = data[offset + 1]
    if not second & 1:
        raise PppDecodeError(f"invalid protocol 0x{first:02x}{second:02x}", offset)
    return (first << 8) | second, data[offset + 2 :]


def encode_frame(
    protocol: int, information: bytes, *, address_control: bool = True, pfc: bool = False
) -> bytes:
    """Build a PPP frame.

    Args:
        protocol: the PPP protocol number.
        information: the packet.
        address_control: prepend ``ff 03`` (False: ACFC in effect).
        pfc: send a one-octet protocol field when the number allows it (never for LCP).
    """
    head = bytes((protocol,)) if pfc and protocol < 0x100 else protocol.to_bytes(2, "big")
    if address_control:
        return _ADDRESS_CONTROL + head + information
    return head + information


class Packet(NamedTuple):
    """A control-protocol packet (RFC 1661 section 5)."""

    code: int
    """Code field."""
    identifier: int
    """Identifier field, matching requests and replies."""
    data: bytes
    """Data field, Length-limited (padding beyond Length dropped)."""


def decode_packet(information: bytes) -> Packet:
    """Decode a control packet; octets beyond its Length field are padding and are dropped.

    Raises:
        PppDecodeError: shorter than 4 octets, or Length smaller than 4 or beyond the data.
    """
    if len(information) < 4:
        raise PppDecodeError("control packet shorter than 4 octets", 0)
    code, identifier, length = _HEADER.unpack_from(information)
    if length < 4 or length > len(information):
        raise PppDecodeError(f"bad length {length} for {len(information)} octets", 2)
    return Packet(code, identifier, information[4:length])


def encode_packet(code: int, identifier: int, data: bytes = b"") -> bytes:
    """Encode a control packet."""
    return _HEADER.pack(code, identifier & 0xFF, 4 + len(data)) + data


def decode_options(data: bytes) -> list[tuple[int, bytes]]:
    """Decode Configure option TLVs into (type, value) pairs, in order.

    Raises:
        PppDecodeError: an option Length below 2 or running past the data.
    """
    options: list[tuple[int, bytes]] = []
    offset = 0
    end = len(data)
    while offset < end:
        if offset + 2 > end:
            raise PppDecodeError("truncated option header", offset)
        length = data[offset + 1]
        if length < 2 or offset + length > end:
            raise PppDecodeError(f"bad option length {length}", offset + 1)
        options.append((data[offset], data[offset + 2 : offset + length]))
        offset += length
    return options


def encode_option(option_type: int, value: bytes = b"") -> bytes:
    """Encode one option TLV."""
    return bytes((option_type, 2 + len(value))) + value
