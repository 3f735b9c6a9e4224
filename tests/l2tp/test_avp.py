"""The AVP table and AVP codec (RFC 2661 sections 4.1, 4.3, 4.4)."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from kl2tp.l2tp.avp import (
    AVP_TABLE,
    Accm,
    Avp,
    CallErrors,
    HiddenValue,
    ProtocolVersion,
    Q931Cause,
    ResultCode,
    decode_avps,
    encode_avps,
    hide_value,
    unhide_value,
)
from kl2tp.l2tp.constants import AvpType, ErrorCode, MessageType
from kl2tp.l2tp.errors import DecodeError, ProtocolError

SECRET = b"hello"
RV = bytes(range(0xA0, 0xB0))


def avp_bytes(
    atype: int, value: bytes, *, m: bool = True, h: bool = False, vendor: int = 0
) -> bytes:
    flags = (0x8000 if m else 0) | (0x4000 if h else 0) | (6 + len(value))
    return struct.pack(">HHH", flags, vendor, atype) + value


def msg_type_avp(t: int = MessageType.HELLO) -> bytes:
    return avp_bytes(0, struct.pack(">H", t))


def decode_all(body: bytes, secret: bytes | None = None, **kw: object) -> tuple[Avp, ...]:
    return decode_avps(body, 0, len(body), secret, **kw).avps  # type: ignore[arg-type]


# --- the table --------------------------------------------------------------------------------


def test_table_has_every_rfc2661_avp_type() -> None:
    assert sorted(AVP_TABLE) == [t for t in range(40) if t != 20]  # 20 is reserved
    assert all(AVP_TABLE[t].type == t for t in AVP_TABLE)


# RFC 2661 section 4.4: the AVPs that MUST NOT be hidden, and those sent with M clear.
NEVER_HIDDEN = {0, 1, 2, 5, 7, 10, 12, 15, 36, 39}
M_CLEAR = {5, 6, 8, 25, 26, 27, 28, 29, 30, 31, 32, 33, 37, 38}


@pytest.mark.parametrize("t", sorted(AVP_TABLE))
def test_table_flags_follow_the_rfc(t: int) -> None:
    spec = AVP_TABLE[t]
    assert spec.may_hide == (t not in NEVER_HIDDEN)
    assert spec.mandatory == (t not in M_CLEAR)


def test_avp_mandatory_defaults_to_the_table() -> None:
    assert Avp(AvpType.HOST_NAME, "lns").mandatory is True
    assert Avp(AvpType.VENDOR_NAME, "kl2tp").mandatory is False
    assert Avp(100, b"x", vendor=9).mandatory is False
    assert Avp(AvpType.VENDOR_NAME, "kl2tp", mandatory=True).mandatory is True


# --- value codecs -------------------------------------------------------------------------------

# (AVP, its value bytes on the wire)
VALUES: list[tuple[Avp, bytes]] = [
    (Avp(AvpType.RESULT_CODE, ResultCode(1)), b"\x00\x01"),
    (Avp(AvpType.RESULT_CODE, ResultCode(2, 6)), b"\x00\x02\x00\x06"),
    (Avp(AvpType.RESULT_CODE, ResultCode(2, 6, "no pool")), b"\x00\x02\x00\x06no pool"),
    (Avp(AvpType.PROTOCOL_VERSION, ProtocolVersion(1, 0)), b"\x01\x00"),
    (Avp(AvpType.FRAMING_CAPABILITIES, 3), b"\x00\x00\x00\x03"),
    (Avp(AvpType.BEARER_CAPABILITIES, 2), b"\x00\x00\x00\x02"),
    (Avp(AvpType.TIE_BREAKER, b"12345678"), b"12345678"),
    (Avp(AvpType.FIRMWARE_REVISION, 0x1120), b"\x11\x20"),
    (Avp(AvpType.HOST_NAME, "l2tp-gw"), b"l2tp-gw"),
    (Avp(AvpType.VENDOR_NAME, "Cisco Systems, Inc."), b"Cisco Systems, Inc."),
    (Avp(AvpType.ASSIGNED_TUNNEL_ID, 55270), b"\xd7\xe6"),
    (Avp(AvpType.RECEIVE_WINDOW_SIZE, 300), b"\x01\x2c"),
    (Avp(AvpType.CHALLENGE, b"\x54\x5a"), b"\x54\x5a"),
    (Avp(AvpType.Q931_CAUSE_CODE, Q931Cause(16, 0x45)), b"\x00\x10\x45"),
    (Avp(AvpType.Q931_CAUSE_CODE, Q931Cause(16, 0x45, "bye")), b"\x00\x10\x45bye"),
    (Avp(AvpType.CHALLENGE_RESPONSE, bytes(16)), bytes(16)),
    (Avp(AvpType.ASSIGNED_SESSION_ID, 45), b"\x00\x2d"),
    (Avp(AvpType.CALL_SERIAL_NUMBER, 0xD114C7C5), b"\xd1\x14\xc7\xc5"),
    (Avp(AvpType.MINIMUM_BPS, 9600), struct.pack(">I", 9600)),
    (Avp(AvpType.MAXIMUM_BPS, 64000), struct.pack(">I", 64000)),
    (Avp(AvpType.BEARER_TYPE, 1), b"\x00\x00\x00\x01"),
    (Avp(AvpType.FRAMING_TYPE, 2), b"\x00\x00\x00\x02"),
    (Avp(AvpType.CALLED_NUMBER, "614629"), b"614629"),
    (Avp(AvpType.CALLING_NUMBER, "2085730592"), b"2085730592"),
    (Avp(AvpType.SUB_ADDRESS, "7"), b"7"),
    (Avp(AvpType.TX_CONNECT_SPEED, 64000), struct.pack(">I", 64000)),
    (Avp(AvpType.PHYSICAL_CHANNEL_ID, 5), struct.pack(">I", 5)),
    (Avp(AvpType.INITIAL_RECEIVED_LCP_CONFREQ, b"\x05\x06n\xe4\xe8e"), b"\x05\x06n\xe4\xe8e"),
    (
        Avp(AvpType.LAST_SENT_LCP_CONFREQ, bytes.fromhex("0305c223050506109d08f2")),
        bytes.fromhex("0305c223050506109d08f2"),
    ),
    (
        Avp(AvpType.LAST_RECEIVED_LCP_CONFREQ, bytes.fromhex("05066ee4e865")),
        bytes.fromhex("05066ee4e865"),
    ),
    (Avp(AvpType.PROXY_AUTHEN_TYPE, 2), b"\x00\x02"),
    (Avp(AvpType.PROXY_AUTHEN_NAME, "2500-1"), b"2500-1"),
    (Avp(AvpType.PROXY_AUTHEN_CHALLENGE, b"\x5d\x0d"), b"\x5d\x0d"),
    (Avp(AvpType.PROXY_AUTHEN_ID, 6), b"\x00\x06"),
    (Avp(AvpType.PROXY_AUTHEN_RESPONSE, b"\xca\x1c"), b"\xca\x1c"),
    (
        Avp(AvpType.CALL_ERRORS, CallErrors(1, 2, 3, 4, 5, 6)),
        struct.pack(">HIIIIII", 0, 1, 2, 3, 4, 5, 6),
    ),
    (Avp(AvpType.ACCM, Accm(0xFFFFFFFF, 0x000A0000)), b"\x00\x00\xff\xff\xff\xff\x00\x0a\x00\x00"),
    (Avp(AvpType.RANDOM_VECTOR, RV), RV),
    (Avp(AvpType.PRIVATE_GROUP_ID, "corp"), b"corp"),
    (Avp(AvpType.RX_CONNECT_SPEED, 64000), struct.pack(">I", 64000)),
    (Avp(AvpType.SEQUENCING_REQUIRED, True), b""),
    (Avp(100, b"Serial0:0", vendor=9), b"Serial0:0"),  # Cisco "Client NAS Port", kept opaque
]


@pytest.mark.parametrize(("avp", "value"), VALUES, ids=lambda x: repr(x)[:40])
def test_value_codec_both_ways(avp: Avp, value: bytes) -> None:
    wire = avp_bytes(avp.type, value, m=avp.mandatory, vendor=avp.vendor)
    assert encode_avps([avp]) == wire
    assert decode_all(msg_type_avp() + wire)[1:] == (avp,)


def test_every_table_type_is_covered_by_the_value_table() -> None:
    covered = {a.type for a, _ in VALUES if a.vendor == 0}
    assert covered | {0} == set(AVP_TABLE)


@pytest.mark.parametrize(
    ("atype", "value", "why"),
    [
        (AvpType.ASSIGNED_TUNNEL_ID, b"\x01", "value must be 2 bytes, got 1"),
        (AvpType.FRAMING_CAPABILITIES, b"\x00\x00\x03", "value must be 4 bytes, got 3"),
        (AvpType.RESULT_CODE, b"\x00\x01\x00", "value must be 2 or at least 4 bytes, got 3"),
        (AvpType.CHALLENGE_RESPONSE, bytes(15), "value must be 16 bytes, got 15"),
        (AvpType.CALL_ERRORS, bytes(25), "value must be 26 bytes, got 25"),
        (AvpType.PROXY_AUTHEN_ID, b"\x01\x06", "reserved octet must be 0"),
        (AvpType.SEQUENCING_REQUIRED, b"\x00", "value must be 0 bytes, got 1"),
        (AvpType.HOST_NAME, b"", "value must not be empty"),
        (AvpType.Q931_CAUSE_CODE, b"\x00\x10", "value must be at least 3 bytes, got 2"),
    ],
)
def test_bad_value_length_is_a_decode_error_at_the_avp(atype: int, value: bytes, why: str) -> None:
    body = msg_type_avp() + avp_bytes(AvpType.HOST_NAME, b"x") + avp_bytes(atype, value)
    with pytest.raises(DecodeError) as exc:
        decode_all(body)
    assert exc.value.offset == 15  # 8 (Message Type) + 7 (Host Name)
    assert why in exc.value.message


# --- AVP header sanity ----------------------------------------------------------------------


def test_length_below_six_is_rejected_with_its_offset() -> None:
    body = msg_type_avp() + struct.pack(">HHH", 0x8005, 0, 7)
    with pytest.raises(DecodeError, match="less than 6") as exc:
        decode_all(body)
    assert exc.value.offset == 8


def test_length_past_the_message_is_rejected() -> None:
    body = msg_type_avp() + struct.pack(">HHH", 0x8010, 0, 7) + b"abc"
    with pytest.raises(DecodeError, match="runs past the end") as exc:
        decode_all(body)
    assert exc.value.offset == 8


def test_reserved_bits_are_rejected() -> None:
    body = msg_type_avp() + struct.pack(">HHH", 0x8400 | 7, 0, 7) + b"x"
    with pytest.raises(DecodeError, match="reserved") as exc:
        decode_all(body)
    assert exc.value.offset == 8


def test_trailing_bytes_shorter_than_a_header() -> None:
    with pytest.raises(DecodeError, match="too short for an AVP header") as exc:
        decode_all(msg_type_avp() + b"\x80\x08")
    assert exc.value.offset == 8


def test_message_type_must_be_first() -> None:
    with pytest.raises(DecodeError, match="first AVP must be Message Type") as exc:
        decode_all(avp_bytes(7, b"lns") + msg_type_avp())
    assert exc.value.offset == 0


# --- unknown and vendor AVPs (RFC 2661 4.1) ---------------------------------------------------


def test_unknown_mandatory_avp_tears_down() -> None:
    body = msg_type_avp(MessageType.ICRQ) + avp_bytes(45, b"\x01\x02")
    with pytest.raises(ProtocolError) as exc:
        decode_avps(body, 0, len(body), session_id=7)
    err = exc.value
    assert (err.result, err.error) == (2, ErrorCode.UNKNOWN_MANDATORY_AVP)
    assert (err.msg_type, err.session_id, err.avp_type) == (MessageType.ICRQ, 7, 45)


def test_reserved_type_20_with_m_is_unknown_mandatory() -> None:
    body = msg_type_avp() + avp_bytes(20, b"\x00\x00")
    with pytest.raises(ProtocolError):
        decode_all(body)


def test_vendor_avp_with_m_is_unknown_mandatory() -> None:
    body = msg_type_avp() + avp_bytes(100, b"x", vendor=9, m=True)
    with pytest.raises(ProtocolError) as exc:
        decode_all(body)
    assert exc.value.error == 8


def test_unknown_optional_avp_is_skipped_past_its_value() -> None:
    # The unknown AVP's value looks like an AVP header; decoding must jump over all of it.
    tricky = struct.pack(">HHH", 0x8008, 0, 99) + b"\x00\x00"
    body = msg_type_avp() + avp_bytes(45, tricky, m=False) + avp_bytes(AvpType.HOST_NAME, b"lac")
    avps = decode_all(body)
    assert avps[1] == Avp(45, tricky, 0, False, False)
    assert avps[2] == Avp(AvpType.HOST_NAME, "lac")
    assert encode_avps(avps) == body  # kept opaque, re-encoded as it was


def test_lenient_mode_keeps_unknown_mandatory_avps() -> None:
    body = msg_type_avp() + avp_bytes(45, b"\x01")
    avps = decode_all(body, strict=False)
    assert avps[1] == Avp(45, b"\x01", 0, True, False)


# --- hiding (RFC 2661 4.3) --------------------------------------------------------------------


def md5(*parts: bytes) -> bytes:
    return hashlib.md5(b"".join(parts)).digest()


def rfc_hide(atype: int, value: bytes, secret: bytes, rv: bytes, padding: bytes) -> bytes:
    """RFC 2661 4.3 spelled out: subformat = length + value + padding, in 16-byte blocks;
    c1 = p1 xor MD5(type + secret + RV), ci = pi xor MD5(secret + c(i-1))."""
    sub = struct.pack(">H", len(value)) + value + padding
    blocks = [sub[i : i + 16] for i in range(0, len(sub), 16)]
    out = b""
    key = md5(struct.pack(">H", atype), secret, rv)
    for p in blocks:
        c = bytes(x ^ y for x, y in zip(p, key, strict=False))
        out += c
        key = md5(secret, c)
    return out


def test_hand_computed_hidden_vector_decodes() -> None:
    # Assigned Tunnel ID 55270 hidden: 2 + 2 bytes padded to 16 with zeros.
    hidden = rfc_hide(9, b"\xd7\xe6", SECRET, RV, bytes(12))
    assert len(hidden) == 16
    body = msg_type_avp() + avp_bytes(36, RV) + avp_bytes(9, hidden, h=True)
    avps = decode_all(body, SECRET)
    assert avps[2] == Avp(AvpType.ASSIGNED_TUNNEL_ID, 55270, 0, True, True)
    # re-encoding with the Random Vector already present and no rng pads with zeros: same bytes
    assert encode_avps(avps[1:], SECRET) == body[8:]


def test_hand_computed_multi_block_hidden_vector() -> None:
    name = b"a-rather-long-host-name-for-two-blocks"  # 2 + 38 bytes: three blocks, last short
    hidden = rfc_hide(30, name, SECRET, RV, b"")
    assert len(hidden) == 40
    assert hide_value(30, name, SECRET, RV) == hidden
    assert unhide_value(30, hidden, SECRET, RV) == name


def test_hide_round_trip_with_rng() -> None:
    avps = [
        Avp(AvpType.HOST_NAME, "lns"),
        Avp(AvpType.ASSIGNED_SESSION_ID, 45),
        Avp(AvpType.PROXY_AUTHEN_NAME, "2500-1"),
    ]
    hide = frozenset({AvpType.HOST_NAME, AvpType.ASSIGNED_SESSION_ID, AvpType.PROXY_AUTHEN_NAME})
    body = encode_avps(avps, SECRET, hide, random.Random(7))
    assert body == encode_avps(avps, SECRET, hide, random.Random(7))  # deterministic per rng
    out = decode_all(msg_type_avp() + body, SECRET)[1:]
    # Host Name may not be hidden (4.4.3), so it stays clear; a Random Vector precedes the rest.
    assert [(a.type, a.hidden) for a in out] == [(7, False), (36, False), (14, True), (30, True)]
    assert [a.value for a in out if a.type != 36] == ["lns", 45, "2500-1"]
    assert len(out[1].value) == 16


def test_hidden_value_is_padded_to_whole_blocks() -> None:
    body = encode_avps([Avp(14, 45)], SECRET, frozenset({14}), random.Random(1))
    rv_len = 6 + 16
    hidden_len = struct.unpack(">H", body[rv_len : rv_len + 2])[0] & 0x3FF
    assert (hidden_len - 6) % 16 == 0


def test_hidden_without_secret_is_a_decode_error() -> None:
    body = (
        msg_type_avp()
        + avp_bytes(36, RV)
        + avp_bytes(9, rfc_hide(9, b"\x00\x01", SECRET, RV, b""), h=True)
    )
    with pytest.raises(DecodeError, match="no tunnel secret") as exc:
        decode_all(body)
    assert exc.value.offset == 30
    kept = decode_all(body, keep_hidden=True)
    assert kept[2].hidden and isinstance(kept[2].value, HiddenValue)
    assert encode_avps(kept[1:]) == body[8:]


def test_hidden_avp_needs_a_random_vector_first() -> None:
    hidden = rfc_hide(9, b"\x00\x01", SECRET, RV, b"")
    body = msg_type_avp() + avp_bytes(9, hidden, h=True) + avp_bytes(36, RV)
    with pytest.raises(DecodeError, match="without a preceding Random Vector") as exc:
        decode_all(body, SECRET)
    assert exc.value.offset == 8


def test_wrong_secret_fails_the_strict_length_check() -> None:
    hidden = rfc_hide(9, b"\x00\x01", SECRET, RV, bytes(12))
    body = msg_type_avp() + avp_bytes(36, RV) + avp_bytes(9, hidden, h=True)
    # Find a wrong secret whose garbage length does not fit (most of them).
    for guess in (b"hellp", b"x", b"wrong", b"secret"):
        try:
            unhide_value(9, hidden, guess, RV)
        except DecodeError:
            break
    else:
        pytest.fail("no wrong secret tripped the length check")
    with pytest.raises(DecodeError, match="original length"):
        decode_all(body, guess)


def test_unhidden_length_must_fit() -> None:
    # Claim 20 original bytes in a 16-byte subformat.
    sub_key = md5(b"\x00\x09", SECRET, RV)
    plain = struct.pack(">H", 20) + bytes(14)
    hidden = bytes(a ^ b for a, b in zip(plain, sub_key, strict=True))
    with pytest.raises(DecodeError, match="original length 20 exceeds the 14"):
        unhide_value(9, hidden, SECRET, RV)


def test_message_type_and_random_vector_cannot_be_hidden() -> None:
    body = msg_type_avp() + avp_bytes(36, RV) + avp_bytes(36, RV, h=True)
    with pytest.raises(DecodeError, match="must not be hidden"):
        decode_all(body, SECRET)


def test_hiding_needs_a_secret_and_an_rng() -> None:
    with pytest.raises(ValueError, match="secret"):
        encode_avps([Avp(14, 1, hidden=True)], None, rng=random.Random(1))
    with pytest.raises(ValueError, match="Random Vector or an rng"):
        encode_avps([Avp(14, 1, hidden=True)], SECRET)


def test_avp_too_long_to_encode() -> None:
    with pytest.raises(ValueError, match="too long"):
        encode_avps([Avp(AvpType.HOST_NAME, "x" * 1018)])
    assert len(encode_avps([Avp(AvpType.HOST_NAME, "x" * 1017)])) == 1023
