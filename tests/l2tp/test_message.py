"""Header codec, control/data messages, message specs and the IOS-style descriptions
(RFC 2661 sections 3.1, 3.2, 5.1.1, 6)."""

from __future__ import annotations

import random
import struct

import attrs
import pytest

from kl2tp.l2tp.avp import Avp, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import (
    AvpType,
    CdnResult,
    ErrorCode,
    MessageType,
    StopCcnResult,
)
from kl2tp.l2tp.describe import avp_lines, describe_avp, message_summary
from kl2tp.l2tp.errors import DecodeError, ProtocolError, UnknownMessageType, UnsupportedVersion
from kl2tp.l2tp.message import (
    MESSAGE_SPECS,
    ControlMessage,
    DataMessage,
    decode,
    encode_control,
    encode_data,
    peek,
    peek_tunnel_id,
    set_ns_nr,
    validate,
)

ZLB = bytes.fromhex("c802000c451800000001 0002".replace(" ", ""))
HELLO = ControlMessage(MessageType.HELLO, 17688, 0, 3, 4)


def control(
    flags: int, body: bytes, tid: int = 1, sid: int = 2, length: int | None = None
) -> bytes:
    n = 12 + len(body) if length is None else length
    return struct.pack(">HHHHHH", flags, n, tid, sid, 0, 0) + body


# --- header ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 3, 0, 15])
def test_other_versions_are_unsupported(version: int) -> None:
    data = bytearray(ZLB)
    data[1] = version
    with pytest.raises(UnsupportedVersion) as exc:
        decode(bytes(data))
    assert exc.value.version == version
    assert isinstance(exc.value, DecodeError)
    with pytest.raises(UnsupportedVersion):
        peek_tunnel_id(bytes(data))


def test_l2f_packet_is_counted_as_version_1() -> None:
    l2f = bytes.fromhex("0001 0000 0000 0000 0000 0000".replace(" ", ""))
    with pytest.raises(UnsupportedVersion, match="L2F"):
        decode(l2f)


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (0x8802, "without L and S"),  # T, S: no L
        (0xC002, "without L and S"),  # T, L: no S
        (0xCA02, "O bit"),  # T, L, S, O
    ],
)
def test_control_header_needs_t_l_s_and_no_o(flags: int, why: str) -> None:
    with pytest.raises(DecodeError, match=why) as exc:
        decode(control(flags, b""))
    assert exc.value.offset == 0


def test_length_shorter_than_the_header() -> None:
    with pytest.raises(DecodeError, match="shorter than the 12-byte header") as exc:
        decode(control(0xC802, b"", length=11))
    assert exc.value.offset == 2


def test_length_longer_than_the_datagram() -> None:
    with pytest.raises(DecodeError, match="exceeds the 12-byte datagram") as exc:
        decode(control(0xC802, b"", length=20))
    assert exc.value.offset == 2


def test_bytes_after_length_are_ignored() -> None:
    msg = decode(ZLB + b"\x00padding")
    assert msg == ControlMessage(None, 17688, 0, 1, 2)


@pytest.mark.parametrize("n", range(12))
def test_short_datagrams(n: int) -> None:
    with pytest.raises(DecodeError):
        decode(ZLB[:n])


def test_peek_tunnel_id_control_and_data() -> None:
    assert peek_tunnel_id(ZLB) == 17688
    assert peek_tunnel_id(encode_data(555, 7, b"\xff\x03")) == 555
    assert peek_tunnel_id(bytes.fromhex("4002 000a 0309 0007 ffff".replace(" ", ""))) == 0x0309
    assert peek(ZLB) == (True, 17688, 0)
    assert peek(encode_data(555, 7, b"")) == (False, 555, 7)
    with pytest.raises(DecodeError):
        peek_tunnel_id(b"\xc8\x02\x00")


# --- data messages --------------------------------------------------------------------------


def test_data_message_plain() -> None:
    data = encode_data(17688, 7, b"\xc0\x21\x01\x01")
    assert data == bytes.fromhex("0002 4518 0007 c0210101".replace(" ", ""))
    assert decode(data) == DataMessage(17688, 7, None, None, b"\xc0\x21\x01\x01")


def test_data_message_with_sequence_numbers() -> None:
    data = encode_data(1, 2, b"ppp", ns=65535, nr=0)
    assert data[:2] == b"\x08\x02"
    assert decode(data) == DataMessage(1, 2, 65535, 0, b"ppp")


def test_data_message_with_length_offset_and_priority() -> None:
    # L, S, O, P: length 20, tid 1, sid 2, ns 3, nr 4, offset size 2 + 2 pad bytes, payload
    data = bytes.fromhex("4b02 0014 0001 0002 0003 0004 0002 aaaa 11223344".replace(" ", "")) + b"x"
    assert decode(data) == DataMessage(1, 2, 3, 4, b"\x11\x22\x33\x44")  # trailing byte ignored


def test_data_offset_past_the_end() -> None:
    data = bytes.fromhex("0202 0001 0002 0010 aaaa".replace(" ", ""))
    with pytest.raises(DecodeError, match="offset size 16") as exc:
        decode(data)
    assert exc.value.offset == 6


# --- control messages ------------------------------------------------------------------------


def test_control_round_trip_with_every_kind_of_value() -> None:
    msg = ControlMessage(
        MessageType.SCCRQ,
        0,
        0,
        0,
        0,
        (
            Avp(AvpType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
            Avp(AvpType.FRAMING_CAPABILITIES, 3),
            Avp(AvpType.BEARER_CAPABILITIES, 3),
            Avp(AvpType.FIRMWARE_REVISION, 0x1130),
            Avp(AvpType.HOST_NAME, "hgw"),
            Avp(AvpType.VENDOR_NAME, "Cisco Systems, Inc."),
            Avp(AvpType.ASSIGNED_TUNNEL_ID, 17688),
            Avp(AvpType.RECEIVE_WINDOW_SIZE, 800),
            Avp(AvpType.CHALLENGE, bytes.fromhex("545a2343fbe20ea08bca7b56e4a7d29e")),
        ),
    )
    data = encode_control(msg)
    assert len(data) == 128  # the SCCRQ in the reference trace is 128 bytes
    assert data[:12] == bytes.fromhex("c80200800000000000000000")
    assert decode(data) == msg
    validate(msg)


def test_message_type_avp_in_avps_is_not_sent_twice() -> None:
    msg = ControlMessage(MessageType.HELLO, 1, 0, 0, 0, (Avp(0, MessageType.HELLO),))
    assert encode_control(msg) == encode_control(ControlMessage(MessageType.HELLO, 1, 0, 0, 0))


def test_zlb_cannot_carry_avps() -> None:
    with pytest.raises(ValueError, match="ZLB"):
        encode_control(ControlMessage(None, 1, 0, 0, 0, (Avp(14, 1),)))


def test_get_get_all_has() -> None:
    msg = ControlMessage(
        MessageType.ICRQ,
        1,
        0,
        0,
        0,
        (Avp(14, 7), Avp(100, b"Serial0:0", vendor=9), Avp(22, "1"), Avp(22, "2")),
    )
    assert msg.get(AvpType.ASSIGNED_SESSION_ID) == 7
    assert msg.get(100, vendor=9) == b"Serial0:0"
    assert msg.get(100) is None
    assert msg.get_all(AvpType.CALLING_NUMBER) == ["1", "2"]
    assert msg.has(AvpType.CALLING_NUMBER) and not msg.has(AvpType.CALLED_NUMBER)


def test_set_ns_nr_patches_an_encoded_message() -> None:
    data = encode_control(HELLO)
    patched = set_ns_nr(data, 65535, 9)
    assert decode(patched) == attrs.evolve(HELLO, ns=65535, nr=9)
    assert patched[12:] == data[12:]
    assert set_ns_nr(bytearray(data), 3, 4) == data


def test_unknown_message_type_without_m_is_ignored_with_its_header() -> None:
    body = struct.pack(">HHHH", 0x0008, 0, 0, 99)
    with pytest.raises(UnknownMessageType) as exc:
        decode(control(0xC802, body, tid=5, sid=6))
    e = exc.value
    assert (e.message_type, e.tunnel_id, e.session_id, e.ns, e.nr) == (99, 5, 6, 0, 0)


def test_unknown_message_type_with_m_tears_down() -> None:
    body = struct.pack(">HHHH", 0x8008, 0, 0, 5)  # 5 is reserved
    with pytest.raises(ProtocolError) as exc:
        decode(control(0xC802, body, sid=6))
    assert (exc.value.result, exc.value.error, exc.value.msg_type) == (2, 8, 5)


def test_hidden_avps_through_whole_messages() -> None:
    msg = ControlMessage(MessageType.ICRP, 17688, 7, 1, 3, (Avp(AvpType.ASSIGNED_SESSION_ID, 45),))
    data = encode_control(msg, b"hello", frozenset({AvpType.ASSIGNED_SESSION_ID}), random.Random(3))
    back = decode(data, b"hello")
    assert isinstance(back, ControlMessage)
    assert back.get(AvpType.ASSIGNED_SESSION_ID) == 45
    assert [(a.type, a.hidden) for a in back.avps] == [(36, False), (14, True)]
    # re-encoding a decoded hidden message hides again under the same Random Vector
    again = encode_control(back, b"hello", rng=random.Random(9))
    assert again[:38] == data[:38]  # header, Message Type, Random Vector
    assert decode(again, b"hello") == back
    with pytest.raises(DecodeError, match="no tunnel secret"):
        decode(data)


# --- message specs (RFC 2661 section 6) ------------------------------------------------------

MUST = {
    MessageType.SCCRQ: {2, 3, 7, 9},
    MessageType.SCCRP: {2, 3, 7, 9},
    MessageType.SCCCN: set(),
    MessageType.STOPCCN: {1, 9},
    MessageType.HELLO: set(),
    MessageType.OCRQ: {14, 15, 16, 17, 18, 19, 21},
    MessageType.OCRP: {14},
    MessageType.OCCN: {19, 24},
    MessageType.ICRQ: {14, 15},
    MessageType.ICRP: {14},
    MessageType.ICCN: {19, 24},
    MessageType.CDN: {1, 14},
    MessageType.WEN: {34},
    MessageType.SLI: {35},
}


def test_every_message_type_has_a_spec() -> None:
    assert set(MESSAGE_SPECS) == set(MessageType)
    assert {t: set(map(int, s.must)) for t, s in MESSAGE_SPECS.items()} == MUST


SAMPLE_VALUES: dict[int, object] = {
    1: ResultCode(1, 0),
    2: ProtocolVersion(),
    3: 3,
    7: "lns",
    9: 1,
    14: 1,
    15: 1,
    16: 1,
    17: 1,
    18: 1,
    19: 1,
    21: "1",
    24: 1,
}


@pytest.mark.parametrize("msg_type", [t for t in MessageType if MUST[t]])
def test_validate_names_each_missing_avp(msg_type: MessageType) -> None:
    from kl2tp.l2tp.avp import Accm, CallErrors

    values = {**SAMPLE_VALUES, 34: CallErrors(), 35: Accm(0, 0)}
    full = [Avp(t, values[t]) for t in sorted(MUST[msg_type])]
    validate(ControlMessage(msg_type, 1, 2, 0, 0, tuple(full)))
    for missing in full:
        msg = ControlMessage(msg_type, 1, 2, 0, 0, tuple(a for a in full if a is not missing))
        with pytest.raises(ProtocolError) as exc:
            validate(msg)
        err = exc.value
        assert (err.result, err.error) == (2, ErrorCode.LENGTH_WRONG)
        assert (err.msg_type, err.session_id, err.avp_type) == (msg_type, 2, missing.type)
        assert msg_type.abbrev in err.message


def test_validate_rejects_zero_assigned_ids() -> None:
    msg = ControlMessage(MessageType.ICRP, 1, 2, 0, 0, (Avp(14, 0),))
    with pytest.raises(ProtocolError) as exc:
        validate(msg)
    assert exc.value.error == ErrorCode.VALUE_OUT_OF_RANGE


def test_zlb_and_optional_only_messages_validate() -> None:
    validate(ControlMessage(None, 1, 0, 0, 0))
    validate(HELLO)


def test_session_messages() -> None:
    assert MessageType.CDN.is_session and MessageType.ICRQ.is_session
    assert not MessageType.STOPCCN.is_session and not MessageType.HELLO.is_session
    assert MessageType.STOPCCN.abbrev == "StopCCN"


def test_result_code_descriptions() -> None:
    assert StopCcnResult(4).description.startswith("Requester is not authorized")
    assert CdnResult(1).description == "Call disconnected due to loss of carrier"
    assert ErrorCode(8).description.endswith("unknown AVP with the M-bit set")


# --- IOS-style descriptions ----------------------------------------------------------------


def test_message_summary_like_ios() -> None:
    sccrq = ControlMessage(MessageType.SCCRQ, 0, 0, 0, 0)
    assert message_summary(sccrq, 128) == "SCCRQ, flg TLS, ver 2, len 128, tnl 0, cl 0, ns 0, nr 0"
    zlb = decode(ZLB)
    assert message_summary(zlb, 12) == (
        "ZLB ctrl ack, flg TLS, ver 2, len 12, tnl 17688, cl 0, ns 1, nr 2"
    )
    assert message_summary(DataMessage(1, 2, None, None, b""), 6).startswith("DATA, ")


def test_avp_lines_like_ios() -> None:
    assert avp_lines(Avp(AvpType.HOST_NAME, "l2tp-gw")) == [
        "Parse  AVP 7, len 13, flag 0x8000 (M)",
        "Hostname l2tp-gw",
    ]
    assert avp_lines(Avp(AvpType.FIRMWARE_REVISION, 0x1120)) == [
        "Parse  AVP 6, len 8, flag 0x0",
        "Firmware Ver 0x1120",
    ]
    assert avp_lines(Avp(AvpType.PROTOCOL_VERSION, ProtocolVersion()))[1] == "Protocol Ver 256"
    assert avp_lines(Avp(100, b"Serial0:0", vendor=9)) == [
        "Parse Cisco AVP 100, len 15, flag 0x0",
        "Client NAS Port Serial0:0",
    ]
    assert describe_avp(Avp(AvpType.RESULT_CODE, ResultCode(1, 0)), msg_type=14).splitlines() == [
        "Parse  AVP 1, len 10, flag 0x8000 (M)",
        "Result code(1): 1: Loss of carrier",
        "Error code(0): No error",
    ]
    assert avp_lines(Avp(0, MessageType.SCCRP))[1] == "Parse SCCRP"
    assert avp_lines(Avp(13, bytes.fromhex("7c358f7a")))[1] == "Chlng Resp (4 octets, not shown)"
