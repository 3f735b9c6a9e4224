"""`kl2tpctl decode [--secret S] [--json] HEX...`: decode one L2TP packet given as hex.

The hex may be spread over several arguments and lines, as copied from an IOS debug dump
("C8 02 00 2A D7 E6 ...") or from kl2tp's own trace at the avp level (its dump lines, log
prefix and all: the text up to " L2TP: " is skipped). A dump that ends in `...` was cut by the
router: everything up to the cut (the header and every complete AVP) is decoded and the output
says it is truncated.
With no HEX arguments the hex is read from standard input.

Exit status: 0 decoded, 2 bad input (one line on stderr saying what and at which byte).
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Sequence
from typing import Any

from kl2tp.l2tp.avp import (
    Accm,
    Avp,
    CallErrors,
    HiddenValue,
    ProtocolVersion,
    Q931Cause,
    ResultCode,
    avp_name,
)
from kl2tp.l2tp.describe import avp_lines, message_name, message_summary
from kl2tp.l2tp.errors import DecodeError
from kl2tp.l2tp.message import DataMessage, Inspection, inspect

PROG = "kl2tpctl decode"
_HEX = frozenset(string.hexdigits)


class InputError(Exception):
    """Bad hex input."""


def parse_hex(text: str) -> tuple[bytes, bool]:
    """Hex digits (whitespace-separated groups of whole bytes, optional `0x`) -> bytes, and
    whether the dump ends in `...` (truncated).

    Raises:
        InputError: a non-hex character, an odd number of digits, or `...` not at the end.
    """
    # kl2tp's own trace: each dump line carries its log prefix ("Dec 01 2026 22:54:07.057:
    # Tnl 23076 L2TP:          C8 02 ..."); the hex is what follows "L2TP:".
    text = "\n".join(
        line.split(" L2TP: ", 1)[1] if " L2TP: " in line else line for line in text.splitlines()
    )
    tokens = text.split()
    out = bytearray()
    truncated = False
    for i, token in enumerate(tokens):
        if truncated:
            raise InputError(f"'...' must end the dump, found '{token}' after it")
        if token.endswith("..."):
            truncated = True
            token = token.rstrip(".")
            if not token:
                continue
        if token[:2] in ("0x", "0X"):
            token = token[2:]
        bad = next((c for c in token if c not in _HEX), None)
        if bad is not None:
            raise InputError(f"not a hex digit: {bad!r} in {token!r} at byte {len(out)}")
        if len(token) % 2:
            raise InputError(f"odd number of hex digits in {token!r} at byte {len(out)}")
        out += bytes.fromhex(token)
        del i
    if not out:
        raise InputError("no hex given")
    return bytes(out), truncated


def json_value(value: Any) -> Any:
    """An AVP value as JSON: number, string, lowercase hex for binary, object when structured."""
    if isinstance(value, bool):
        return ""  # Sequencing Required: an empty value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, HiddenValue):
        return value.ciphertext.hex()
    if isinstance(value, ResultCode):
        return {"result": value.result, "error": value.error, "message": value.message}
    if isinstance(value, ProtocolVersion):
        return {"version": value.version, "revision": value.revision}
    if isinstance(value, Q931Cause):
        return {
            "cause": value.cause,
            "message_code": value.message_code,
            "advisory": value.advisory,
        }
    if isinstance(value, CallErrors):
        return {
            "crc_errors": value.crc_errors,
            "framing_errors": value.framing_errors,
            "hardware_overruns": value.hardware_overruns,
            "buffer_overruns": value.buffer_overruns,
            "timeout_errors": value.timeout_errors,
            "alignment_errors": value.alignment_errors,
        }
    if isinstance(value, Accm):
        return {"send_accm": value.send_accm, "recv_accm": value.recv_accm}
    return str(value)


def _type_name(ins: Inspection) -> str:
    if isinstance(ins.message, DataMessage):
        return "DATA"
    if ins.message_type is None:
        return "ZLB" if not ins.truncated else "UNKNOWN"
    return message_name(ins.message_type)


def to_json(ins: Inspection) -> dict[str, Any]:
    """The `--json` object."""
    msg = ins.message
    return {
        "type": _type_name(ins),
        "version": ins.flags & 0xF,
        "tunnel_id": msg.tunnel_id,
        "session_id": msg.session_id,
        "ns": msg.ns,
        "nr": msg.nr,
        "length": ins.length,
        "truncated": ins.truncated,
        "avps": [_avp_json(a) for a in ins.avps],
        **({"payload": msg.payload.hex()} if isinstance(msg, DataMessage) else {}),
    }


def _avp_json(a: Avp) -> dict[str, Any]:
    return {
        "type": int(a.type),
        "vendor": a.vendor,
        "name": avp_name(a.type, a.vendor),
        "mandatory": a.mandatory,
        "hidden": a.hidden,
        "value": json_value(a.value),
    }


def to_text(ins: Inspection, data: bytes) -> list[str]:
    """The readable IOS-like listing."""
    lines = [message_summary(ins.message, ins.length, ins.flags)]
    if isinstance(ins.message, DataMessage):
        lines.append(f"  payload {len(ins.message.payload)} bytes: {ins.message.payload.hex()}")
    for avp, off in zip(ins.avps, ins.avp_offsets, strict=True):
        word = (data[off] << 8) | data[off + 1]
        first, *rest = avp_lines(avp, word & 0x3FF, word, ins.message_type)
        lines.append(f"  {first}")
        lines.extend(f"      {r}" for r in rest)
    if ins.truncated:
        lines.append(
            f"  (truncated: the dump has {len(data)} of {ins.length} bytes;"
            f" {len(ins.avps)} complete AVPs decoded)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run `kl2tpctl decode`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Decode one L2TP packet given as hex (spaces and newlines allowed; a dump "
        "ending in '...' is truncated). Reads standard input when no HEX is given.",
    )
    parser.add_argument("--secret", help="tunnel secret, to show hidden AVPs unhidden")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("hex", nargs="*", metavar="HEX")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    text = " ".join(args.hex) if args.hex else sys.stdin.read()
    try:
        data, truncated = parse_hex(text)
        secret = args.secret.encode() if args.secret is not None else None
        ins = inspect(data, secret, truncated_ok=truncated)
    except InputError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except DecodeError as e:
        hint = (
            " (end the dump with '...' if it was cut)"
            if not truncated and "exceeds the" in e.message
            else ""
        )
        print(f"{PROG}: {e}{hint}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(ins)))
    else:
        print("\n".join(to_text(ins, data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
