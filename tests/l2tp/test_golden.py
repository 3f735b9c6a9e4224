"""Golden vectors from the reference Cisco IOS call flow (../shared/reference/, secret "hello").

Each complete dump decodes to the values the trace prints and re-encodes byte for byte; the
dumps IOS cut after 47 bytes decode up to the cut; both Challenge Responses are reproduced.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from kl2tp.decode_cmd import main as decode_main
from kl2tp.l2tp.avp import ResultCode
from kl2tp.l2tp.constants import AvpType, CdnResult, MessageType, StopCcnResult
from kl2tp.l2tp.message import (
    ControlMessage,
    challenge_response,
    decode,
    encode_control,
    validate,
)


def h(dump: str) -> bytes:
    return bytes.fromhex(dump.replace("\n", " "))


# The dumps as IOS printed them (cisco-l2tp-call-flow.txt).
SCCCN = h(
    """C8 02 00 2A D7 E6 00 00 00 01 00 01 80 08 00 00
       00 00 00 03 80 16 00 00 00 0D 96 39 53 18 41 AC
       22 E3 10 3E 20 8E F7 D9 09 89"""
)
ICRP = h(
    """C8 02 00 1C 45 18 00 07 00 01 00 03 80 08 00 00
       00 00 00 0B 80 08 00 00 00 0E 00 2D"""
)
CDN = h(
    """C8 02 00 26 D7 E6 00 2D 00 04 00 02 80 08 00 00
       00 00 00 0E 80 08 00 00 00 0E 00 07 80 0A 00 00
       00 01 00 01 00 00"""
)
STOPCCN = h(
    """C8 02 00 24 45 18 00 00 00 02 00 05 80 08 00 00
       00 00 00 04 80 08 00 00 00 09 D7 E6 80 08 00 00
       00 01 00 01"""
)
ZLBS = {
    "LNS->LAC after SCCCN": (h("C8 02 00 0C 45 18 00 00 00 01 00 02"), 17688, 1, 2),
    "LNS->LAC after ICCN": (h("C8 02 00 0C 45 18 00 00 00 02 00 04"), 17688, 2, 4),
    "LNS->LAC after CDN": (h("C8 02 00 0C 45 18 00 00 00 02 00 05"), 17688, 2, 5),
    "LAC->LNS after StopCCN": (h("C8 02 00 0C D7 E6 00 00 00 05 00 03"), 55270, 5, 3),
}

# The first 47 bytes IOS printed of the longer messages, ending in "...".
SCCRQ_CUT = """C8 02 00 80 00 00 00 00 00 00 00 00 80 08 00 00
         00 00 00 01 80 08 00 00 00 02 01 00 80 0A 00 00
         00 03 00 00 00 03 80 0A 00 00 00 04 00 00 00 ..."""
SCCRP_CUT = """C8 02 00 9A 45 18 00 00 00 00 00 01 80 08 00 00
         00 00 00 02 80 08 00 00 00 02 01 00 80 0A 00 00
         00 03 00 00 00 03 80 0A 00 00 00 04 00 00 00 ..."""
ICRQ_CUT = """C8 02 00 5B D7 E6 00 00 00 02 00 01 80 08 00 00
         00 00 00 0A 80 08 00 00 00 0E 00 07 80 0A 00 00
         00 0F D1 14 C7 C5 80 0A 00 00 00 12 00 00 00 ..."""
ICCN_CUT = """C8 02 00 97 D7 E6 00 2D 00 03 00 02 80 08 00 00
         00 00 00 0C 80 0A 00 00 00 18 00 00 FA 00 00 0A
         00 00 00 26 00 00 FA 00 80 0A 00 00 00 13 00 ..."""


def decoded(data: bytes) -> ControlMessage:
    msg = decode(data)
    assert isinstance(msg, ControlMessage)
    validate(msg)  # the trace says "No missing AVPs in ..." for each
    return msg


def test_scccn_lac_to_lns() -> None:
    msg = decoded(SCCCN)
    assert (msg.msg_type, msg.tunnel_id, msg.session_id, msg.ns, msg.nr) == (
        MessageType.SCCCN,
        55270,
        0,
        1,
        1,
    )
    assert [(a.type, a.mandatory, a.hidden) for a in msg.avps] == [(13, True, False)]
    assert msg.get(AvpType.CHALLENGE_RESPONSE) == h("9639531841ac22e3103e208ef7d90989")
    assert encode_control(msg) == SCCCN


def test_icrp_lns_to_lac() -> None:
    msg = decoded(ICRP)
    assert (msg.msg_type, msg.tunnel_id, msg.session_id, msg.ns, msg.nr) == (
        MessageType.ICRP,
        17688,
        7,
        1,
        3,
    )
    assert msg.get(AvpType.ASSIGNED_SESSION_ID) == 45  # "Assigned Call ID 45"
    assert encode_control(msg) == ICRP


def test_cdn_lac_to_lns() -> None:
    msg = decoded(CDN)
    assert (msg.msg_type, msg.tunnel_id, msg.session_id, msg.ns, msg.nr) == (
        MessageType.CDN,
        55270,
        45,
        4,
        2,
    )
    assert msg.get(AvpType.ASSIGNED_SESSION_ID) == 7
    rc = msg.get(AvpType.RESULT_CODE)
    assert rc == ResultCode(CdnResult.LOSS_OF_CARRIER, 0)  # "Result code(1): 1: Loss of carrier"
    assert encode_control(msg) == CDN


def test_stopccn_lns_to_lac() -> None:
    msg = decoded(STOPCCN)
    assert (msg.msg_type, msg.tunnel_id, msg.session_id, msg.ns, msg.nr) == (
        MessageType.STOPCCN,
        17688,
        0,
        2,
        5,
    )
    assert msg.get(AvpType.ASSIGNED_TUNNEL_ID) == 55270
    # Value 00 01: no error field at all (the AVP is 8 bytes long)
    assert msg.get(AvpType.RESULT_CODE) == ResultCode(StopCcnResult.CLEAR_CONNECTION)
    assert encode_control(msg) == STOPCCN


@pytest.mark.parametrize("name", list(ZLBS))
def test_zlb_acks(name: str) -> None:
    data, tid, ns, nr = ZLBS[name]
    msg = decoded(data)
    assert msg == ControlMessage(None, tid, 0, ns, nr)
    assert msg.is_zlb
    assert encode_control(msg) == data


def test_rebuilt_from_scratch_match_the_trace() -> None:
    """The same bytes come out of messages built by hand, as the cores will build them."""
    from kl2tp.l2tp.avp import Avp

    cdn = ControlMessage(
        MessageType.CDN,
        55270,
        45,
        4,
        2,
        (Avp(AvpType.ASSIGNED_SESSION_ID, 7), Avp(AvpType.RESULT_CODE, ResultCode(1, 0))),
    )
    assert encode_control(cdn) == CDN
    stop = ControlMessage(
        MessageType.STOPCCN,
        17688,
        0,
        2,
        5,
        (Avp(AvpType.ASSIGNED_TUNNEL_ID, 55270), Avp(AvpType.RESULT_CODE, ResultCode(1))),
    )
    assert encode_control(stop) == STOPCCN


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert decode_main(["--json", *args]) == 0
    out = capsys.readouterr().out
    result: dict[str, object] = json.loads(out)
    return result


def avp_summary(obj: dict[str, object]) -> list[tuple[object, ...]]:
    avps = obj["avps"]
    assert isinstance(avps, list)
    return [(a["type"], a["mandatory"], a["value"]) for a in avps]


def test_sccrq_cut_decodes_up_to_the_cut(capsys: pytest.CaptureFixture[str]) -> None:
    obj = run_json(capsys, SCCRQ_CUT)
    assert (obj["type"], obj["tunnel_id"], obj["session_id"], obj["ns"], obj["nr"]) == (
        "SCCRQ",
        0,
        0,
        0,
        0,
    )
    assert obj["length"] == 128 and obj["truncated"] is True and obj["version"] == 2
    # Message Type 1, Protocol Version 1.0 ("Protocol Ver 256"), Framing Cap 3; Bearer Cap cut
    assert avp_summary(obj) == [
        (0, True, 1),
        (2, True, {"version": 1, "revision": 0}),
        (3, True, 3),
    ]


def test_sccrp_cut_decodes_up_to_the_cut(capsys: pytest.CaptureFixture[str]) -> None:
    obj = run_json(capsys, SCCRP_CUT)
    assert (obj["type"], obj["tunnel_id"], obj["ns"], obj["nr"], obj["length"]) == (
        "SCCRP",
        17688,
        0,
        1,
        154,
    )
    assert obj["truncated"] is True
    assert avp_summary(obj) == [
        (0, True, 2),
        (2, True, {"version": 1, "revision": 0}),
        (3, True, 3),
    ]


def test_icrq_cut_decodes_up_to_the_cut(capsys: pytest.CaptureFixture[str]) -> None:
    obj = run_json(capsys, *ICRQ_CUT.split())
    assert (obj["type"], obj["tunnel_id"], obj["session_id"], obj["ns"], obj["nr"]) == (
        "ICRQ",
        55270,
        0,
        2,
        1,
    )
    assert obj["length"] == 91 and obj["truncated"] is True
    # Assigned Call ID 7, Call Serial Number 0xD114C7C5; Bearer Type cut
    assert avp_summary(obj) == [(0, True, 10), (14, True, 7), (15, True, 0xD114C7C5)]


def test_iccn_cut_decodes_up_to_the_cut(capsys: pytest.CaptureFixture[str]) -> None:
    obj = run_json(capsys, ICCN_CUT)
    assert (obj["type"], obj["tunnel_id"], obj["session_id"], obj["ns"], obj["nr"]) == (
        "ICCN",
        55270,
        45,
        3,
        2,
    )
    assert obj["length"] == 151 and obj["truncated"] is True
    # "Connect Speed 64000" (M) and "Rx Speed 64000" (flag 0x0); Framing Type cut
    assert avp_summary(obj) == [(0, True, 12), (24, True, 64000), (38, False, 64000)]


@pytest.mark.parametrize(
    "packet", [SCCCN, ICRP, CDN, STOPCCN], ids=["SCCCN", "ICRP", "CDN", "StopCCN"]
)
def test_complete_dumps_through_the_cli(capsys: pytest.CaptureFixture[str], packet: bytes) -> None:
    obj = run_json(capsys, " ".join(f"{b:02X}" for b in packet))
    msg = decoded(packet)
    assert obj["truncated"] is False
    assert obj["length"] == len(packet)
    assert obj["type"] == msg.msg_type.abbrev  # type: ignore[union-attr]
    assert obj["tunnel_id"] == msg.tunnel_id and obj["ns"] == msg.ns and obj["nr"] == msg.nr
    avps = obj["avps"]
    assert isinstance(avps, list) and len(avps) == len(msg.avps) + 1


SCCRQ_CHALLENGE = h("545a2343fbe20ea08bca7b56e4a7d29e")
SCCRP_CHALLENGE = h("98b296c28429e7adc767237a45f31040")


def test_sccrp_response_to_the_sccrq_challenge() -> None:
    expected = h("7c358f7a7ba21957c07801195dcadfa6")  # the SCCRP's AVP 13 ("Chlng Resp")
    assert challenge_response(MessageType.SCCRP, b"hello", SCCRQ_CHALLENGE) == expected
    assert hashlib.md5(b"\x02hello" + SCCRQ_CHALLENGE).digest() == expected


def test_scccn_response_to_the_sccrp_challenge() -> None:
    response = challenge_response(MessageType.SCCCN, b"hello", SCCRP_CHALLENGE)
    assert response == decoded(SCCCN).get(AvpType.CHALLENGE_RESPONSE)


def test_wrong_secret_or_type_gives_another_response() -> None:
    good = challenge_response(MessageType.SCCCN, b"hello", SCCRP_CHALLENGE)
    assert challenge_response(MessageType.SCCCN, b"hellp", SCCRP_CHALLENGE) != good
    assert challenge_response(MessageType.SCCRP, b"hello", SCCRP_CHALLENGE) != good
