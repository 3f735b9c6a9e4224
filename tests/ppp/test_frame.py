"""PPP frame, control packet and option codecs."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ppp.frame import (
    Code,
    Packet,
    PppDecodeError,
    Proto,
    decode_frame,
    decode_options,
    decode_packet,
    encode_frame,
    encode_option,
    encode_packet,
)

LCP_CONFREQ = bytes.fromhex("01 0b 000f 0305c22305 0506109d08f2")


@pytest.mark.parametrize(
    ("wire", "protocol"),
    [
        (b"\xff\x03\xc0\x21" + LCP_CONFREQ, Proto.LCP),  # full
        (b"\xc0\x21" + LCP_CONFREQ, Proto.LCP),  # ACFC
        (b"\xff\x03\x21" + b"\x45\x00", Proto.IPV4),  # PFC
        (b"\x21" + b"\x45\x00", Proto.IPV4),  # ACFC and PFC
        (b"\x00\x21" + b"\x45\x00", Proto.IPV4),  # uncompressed IPv4
    ],
)
def test_frames_with_and_without_compression(wire: bytes, protocol: int) -> None:
    got_protocol, information = decode_frame(wire)
    assert got_protocol == protocol
    assert information == wire[-len(information) :]
    assert information in (LCP_CONFREQ, b"\x45\x00")


def test_encode_frame_variants() -> None:
    assert encode_frame(Proto.LCP, b"x") == b"\xff\x03\xc0\x21x"
    assert encode_frame(Proto.LCP, b"x", address_control=False) == b"\xc0\x21x"
    assert encode_frame(Proto.LCP, b"x", pfc=True) == b"\xff\x03\xc0\x21x"  # never for LCP
    assert encode_frame(Proto.IPV4, b"x", pfc=True, address_control=False) == b"\x21x"


@pytest.mark.parametrize(
    "wire",
    [b"", b"\xff\x03", b"\xc0", b"\xc0\x20", b"\xff\x03\x02\x02"],
)
def test_bad_frames(wire: bytes) -> None:
    with pytest.raises(PppDecodeError):
        decode_frame(wire)


def test_packet_roundtrip_and_padding() -> None:
    assert decode_packet(LCP_CONFREQ) == Packet(1, 11, LCP_CONFREQ[4:])
    assert decode_packet(LCP_CONFREQ + b"\x00\x00") == Packet(1, 11, LCP_CONFREQ[4:])
    assert encode_packet(1, 11, LCP_CONFREQ[4:]) == LCP_CONFREQ


@pytest.mark.parametrize("wire", [b"\x01\x01\x00", b"\x01\x01\x00\x03", b"\x01\x01\x00\x09abc"])
def test_bad_packets(wire: bytes) -> None:
    with pytest.raises(PppDecodeError):
        decode_packet(wire)


def test_options_from_the_trace() -> None:
    last_sent = bytes.fromhex("0305c223050506109d08f2")
    assert decode_options(last_sent) == [(3, b"\xc2\x23\x05"), (5, bytes.fromhex("109d08f2"))]
    assert b"".join(encode_option(t, v) for t, v in decode_options(last_sent)) == last_sent


@pytest.mark.parametrize("wire", [b"\x05", b"\x05\x01", b"\x05\x06\x00"])
def test_bad_options(wire: bytes) -> None:
    with pytest.raises(PppDecodeError):
        decode_options(wire)


def test_codes_are_rfc_numbers() -> None:
    assert [Code.CONFREQ, Code.CODEREJ, Code.PROTREJ, Code.TIMEREM] == [1, 7, 8, 13]


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    for decoder in (decode_frame, decode_packet, decode_options):
        with contextlib.suppress(PppDecodeError):
            decoder(data)
