"""`kl2tpctl decode`: hex as copied from an IOS dump in, one JSON object or an IOS-like
listing out; bad input exits 2 with one line naming the problem and the byte."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kl2tp.decode_cmd import main
from kl2tp.l2tp.avp import Avp, ResultCode
from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.message import ControlMessage, encode_control

ROOT = Path(__file__).resolve().parent.parent

CDN_DUMP = """         C8 02 00 26 D7 E6 00 2D 00 04 00 02 80 08 00 00
         00 00 00 0E 80 08 00 00 00 0E 00 07 80 0A 00 00
         00 01 00 01 00 00"""
ICRQ_CUT = """C8 02 00 5B D7 E6 00 00 00 02 00 01 80 08 00 00
         00 00 00 0A 80 08 00 00 00 0E 00 07 80 0A 00 00
         00 0F D1 14 C7 C5 80 0A 00 00 00 12 00 00 00 ..."""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_cdn(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--json", CDN_DUMP)
    assert rc == 0 and err == ""
    assert json.loads(out) == {
        "type": "CDN",
        "version": 2,
        "tunnel_id": 55270,
        "session_id": 45,
        "ns": 4,
        "nr": 2,
        "length": 38,
        "truncated": False,
        "avps": [
            {
                "type": 0,
                "vendor": 0,
                "name": "Message Type",
                "mandatory": True,
                "hidden": False,
                "value": 14,
            },
            {
                "type": 14,
                "vendor": 0,
                "name": "Assigned Session ID",
                "mandatory": True,
                "hidden": False,
                "value": 7,
            },
            {
                "type": 1,
                "vendor": 0,
                "name": "Result Code",
                "mandatory": True,
                "hidden": False,
                "value": {"result": 1, "error": 0, "message": None},
            },
        ],
    }
    assert out.count("\n") == 1  # one object, one line


def test_hex_split_over_arguments_and_run_together(capsys: pytest.CaptureFixture[str]) -> None:
    _, split_out, _ = run(capsys, "--json", *CDN_DUMP.split())
    _, joined_out, _ = run(capsys, "--json", "".join(CDN_DUMP.split()).lower())
    _, one_out, _ = run(capsys, "--json", CDN_DUMP)
    assert split_out == joined_out == one_out


def test_zlb_and_data(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--json", "C8 02 00 0C 45 18 00 00 00 01 00 02")
    obj = json.loads(out)
    assert (obj["type"], obj["tunnel_id"], obj["ns"], obj["nr"], obj["avps"]) == (
        "ZLB",
        17688,
        1,
        2,
        [],
    )
    _, out, _ = run(capsys, "--json", "00 02 45 18 00 07 C0 21 01 01")
    obj = json.loads(out)
    assert (obj["type"], obj["session_id"], obj["ns"], obj["payload"]) == (
        "DATA",
        7,
        None,
        "c0210101",
    )


def test_truncated_dump_is_decoded_up_to_the_cut(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, ICRQ_CUT)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "ICRQ, flg TLS, ver 2, len 91, tnl 55270, cl 0, ns 2, nr 1"
    assert "Parse  AVP 15, len 10, flag 0x8000 (M)" in out
    assert "Serial Number 3507800005" in out
    assert "truncated" in lines[-1] and "47 of 91 bytes" in lines[-1]


def test_listing_is_ios_like(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, CDN_DUMP)
    assert rc == 0
    assert out.splitlines() == [
        "CDN, flg TLS, ver 2, len 38, tnl 55270, cl 45, ns 4, nr 2",
        "  Parse  AVP 0, len 8, flag 0x8000 (M)",
        "      Parse CDN",
        "  Parse  AVP 14, len 8, flag 0x8000 (M)",
        "      Assigned Call ID 7",
        "  Parse  AVP 1, len 10, flag 0x8000 (M)",
        "      Result code(1): 1: Loss of carrier",
        "      Error code(0): No error",
    ]


def hidden_icrp() -> bytes:
    msg = ControlMessage(
        MessageType.ICRP,
        17688,
        7,
        1,
        3,
        (Avp(AvpType.ASSIGNED_SESSION_ID, 45), Avp(AvpType.RESULT_CODE, ResultCode(1))),
    )
    return encode_control(msg, b"hello", frozenset({AvpType.ASSIGNED_SESSION_ID}), random.Random(1))


def test_secret_unhides(capsys: pytest.CaptureFixture[str]) -> None:
    data = hidden_icrp()
    rc, out, _ = run(capsys, "--json", "--secret", "hello", data.hex(" "))
    assert rc == 0
    sid = [a for a in json.loads(out)["avps"] if a["type"] == 14]
    assert sid == [
        {
            "type": 14,
            "vendor": 0,
            "name": "Assigned Session ID",
            "mandatory": True,
            "hidden": True,
            "value": 45,
        }
    ]


def test_without_secret_hidden_avps_stay_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    data = hidden_icrp()
    rc, out, _ = run(capsys, "--json", data.hex())
    assert rc == 0
    avps = json.loads(out)["avps"]
    assert [(a["type"], a["hidden"]) for a in avps] == [
        (0, False),
        (36, False),
        (14, True),
        (1, False),
    ]
    hidden = avps[2]["value"]
    assert isinstance(hidden, str) and len(hidden) == 32  # 16 bytes of ciphertext, lowercase hex
    assert hidden == hidden.lower() and hidden in data.hex()
    rc, out, _ = run(capsys, data.hex())
    assert "flag 0xC000 (M,H)" in out and "(hidden)" in out


def test_wrong_secret_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "--secret", "nope", hidden_icrp().hex())
    assert rc == 2
    assert err.count("\n") == 1 and "at byte 42" in err


def test_unknown_mandatory_avp_is_shown_not_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        capsys,
        "--json",
        "C8 02 00 1C 00 01 00 00 00 00 00 00 80 08 00 00 00 00 00 06 80 08 00 00 00 63 AB CD",
    )
    assert rc == 0
    avp = json.loads(out)["avps"][1]
    assert (avp["type"], avp["name"], avp["mandatory"], avp["value"]) == (
        99,
        "Unknown AVP 99",
        True,
        "abcd",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["C8 02 0G"], "not a hex digit: 'G' in '0G' at byte 2"),
        (["C8 02 0"], "odd number of hex digits in '0' at byte 2"),
        (["C8 02 00 0C ... 45"], "'...' must end the dump"),
        (["C8 01 00 0C 45 18 00 00 00 01 00 02"], "unsupported version 1 (L2F) at byte 1"),
        (["C8 02 00 0C 45 18"], "shorter than its header at byte 0"),
        (
            ["C8 02 00 2A D7 E6 00 00 00 01 00 01"],
            "length field 42 exceeds the 12-byte datagram at byte 2",
        ),
        (
            ["C8 02 00 12 D7 E6 00 00 00 01 00 01 80 03 00 00 00 00"],
            "AVP length 3 is less than 6 at byte 12",
        ),
        (["88 02 00 0C 45 18 00 00 00 01 00 02"], "without L and S bits"),
        ([""], "no hex given"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("kl2tpctl decode: ")
    assert message in err


def test_length_too_long_without_dots_hints_at_truncation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, _, err = run(capsys, ICRQ_CUT.replace("...", ""))
    assert "end the dump with '...'" in err


def test_reads_stdin_without_hex_arguments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(CDN_DUMP + "\n"))
    rc, out, _ = run(capsys, "--json")
    assert rc == 0 and json.loads(out)["type"] == "CDN"


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kl2tp.decode_cmd", "--json", *ICRQ_CUT.split()],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert (obj["type"], obj["length"], obj["truncated"]) == ("ICRQ", 91, True)
    assert [a["value"] for a in obj["avps"]] == [10, 7, 0xD114C7C5]
    bad = subprocess.run(
        [sys.executable, "-m", "kl2tp.decode_cmd", "C8", "XY"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "kl2tpctl decode: not a hex digit: 'X' in 'XY' at byte 1"
