"""IOS-style text for L2TP messages and AVPs, shared by the debug trace and `kl2tpctl decode`.

Wording follows Cisco IOS `debug vpdn l2x-packets` (see the reference call flow)::

    SCCRQ, flg TLS, ver 2, len 128, tnl 0, cl 0, ns 0, nr 0
    Parse  AVP 7, len 13, flag 0x8000 (M)
    Hostname l2tp-gw

Pure formatting: callers guard with `logger.isEnabledFor` before calling.

Nothing here prints a secret or what an attacker could test guesses against offline: the value
of a Proxy Authen Response (AVP 33: a PAP password in clear, or a CHAP response that, with the
challenge beside it, checks guesses at the subscriber's password), of a tunnel Challenge
Response (AVP 13: the same for the tunnel secret) and the ciphertext of a hidden AVP (the
secret's MD5 stream over a known plaintext) show as their length only. IOS prints them; a log
that leaves the box is not the place. Strings from the peer (host names, numbers, messages)
are escaped (`kl2tp.log.escape`): no control character reaches a log line.
"""

from __future__ import annotations

from typing import Any

from kl2tp.l2tp.avp import (
    AVP_TABLE,
    Accm,
    Avp,
    CallErrors,
    HiddenValue,
    ProtocolVersion,
    Q931Cause,
    ResultCode,
    avp_name,
    encode_avp_value,
)
from kl2tp.l2tp.constants import (
    AVP_H,
    AVP_M,
    FLAG_L,
    FLAG_O,
    FLAG_P,
    FLAG_S,
    FLAG_T,
    MESSAGE_TYPES,
    VENDOR_NAMES,
    AvpType,
    MessageType,
    error_text,
    result_text,
)
from kl2tp.l2tp.message import ControlMessage, DataMessage
from kl2tp.log import escape

_FLAG_LETTERS = ((FLAG_T, "T"), (FLAG_L, "L"), (FLAG_S, "S"), (FLAG_O, "O"), (FLAG_P, "P"))
_HEX_INTS = frozenset({AvpType.FRAMING_CAPABILITIES, AvpType.BEARER_CAPABILITIES, 6})
REDACTED_AVPS = frozenset({AvpType.CHALLENGE_RESPONSE, AvpType.PROXY_AUTHEN_RESPONSE})
"""AVPs (vendor 0) whose value is never shown: see the module docstring."""


IOS_STOPCCN_RESULT: dict[int, str] = {
    1: "Request to clear control connection",
    2: "General error",
    3: "Control channel already exists",
    4: "Requester not authorized",
    5: "Protocol version not supported",
    6: "Requester is being shut down",
    7: "Finite state machine error",
}
"""StopCCN Result Codes in IOS's words (``L2X: Result code(1): 1: ...``). Code 1 is the
reference trace's; the others are IOS's style of shortening RFC 2661 4.4.2."""
IOS_CDN_RESULT: dict[int, str] = {
    1: "Loss of carrier",
    2: "Error - see error code",
    3: "Administrative disconnect",
    4: "Temporary lack of resources",
    5: "Permanent lack of resources",
    6: "Invalid destination",
    7: "No carrier",
    8: "Busy",
    9: "No dial tone",
    10: "Timeout",
    11: "No appropriate framing",
}
"""CDN Result Codes in IOS's words; code 1 is the reference trace's."""
IOS_ERROR: dict[int, str] = {
    0: "No error",
    1: "No control connection",
    2: "Length is wrong",
    3: "Value out of range",
    4: "Insufficient resources",
    5: "Invalid session ID",
    6: "Vendor specific error",
    7: "Try another LNS",
    8: "Unknown mandatory AVP",
}
"""General Error Codes in IOS's words; code 0 is the reference trace's."""


def _redacted(size: int) -> str:
    return f"({size} octets, not shown)"


def flag_letters(flags: int) -> str:
    """ "TLS" for 0xC802: the header bits IOS prints after `flg`."""
    return "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)


def message_name(msg_type: int | None) -> str:
    """ "SCCRQ", "StopCCN", "ZLB" (None) or "type 99" for an unknown one."""
    if msg_type is None:
        return "ZLB"
    known = MESSAGE_TYPES.get(msg_type)
    return known.abbrev if known is not None else f"type {msg_type}"


def message_summary(
    msg: ControlMessage | DataMessage, length: int, flags: int | None = None
) -> str:
    """ "SCCRQ, flg TLS, ver 2, len 128, tnl 0, cl 0, ns 0, nr 0" ("ZLB ctrl ack, ..." for a ZLB,
    "DATA, ..." for a data message)."""
    if isinstance(msg, DataMessage):
        if flags is None:
            flags = (FLAG_S if msg.ns is not None else 0) | 2
        seq = f", ns {msg.ns}, nr {msg.nr}" if msg.ns is not None else ""
        return (
            f"DATA, flg {flag_letters(flags) or '-'}, ver {flags & 0xF}, len {length}, "
            f"tnl {msg.tunnel_id}, cl {msg.session_id}{seq}"
        )
    if flags is None:
        flags = 0xC802
    name = "ZLB ctrl ack" if msg.msg_type is None else message_name(msg.msg_type)
    return (
        f"{name}, flg {flag_letters(flags)}, ver {flags & 0xF}, len {length}, "
        f"tnl {msg.tunnel_id}, cl {msg.session_id}, ns {msg.ns}, nr {msg.nr}"
    )


def avp_header_line(avp: Avp, length: int | None = None, flags: int | None = None) -> str:
    """ "Parse  AVP 7, len 13, flag 0x8000 (M)"; "Parse Cisco AVP 100, len 15, flag 0x0".

    `length`/`flags` are the wire values when known; otherwise they are computed from the AVP
    (the length of its plain encoding)."""
    if flags is None:
        flags = (AVP_M if avp.mandatory else 0) | (AVP_H if avp.hidden else 0)
    flags &= 0xFC00
    if length is None:
        value = avp.value
        length = 6 + (
            len(value.ciphertext) if isinstance(value, HiddenValue) else len(encode_avp_value(avp))
        )
    marks = [m for bit, m in ((AVP_M, "M"), (AVP_H, "H")) if flags & bit]
    mark = f" ({','.join(marks)})" if marks else ""
    vendor = "" if avp.vendor == 0 else VENDOR_NAMES.get(avp.vendor, f"Vendor {avp.vendor}")
    return f"Parse {vendor} AVP {avp.type}, len {length}, flag 0x{flags:X}{mark}"


def format_value(avp: Avp) -> str:
    """The value as IOS prints it: ints in decimal (capabilities and firmware in 0x hex),
    binary in upper-case hex, strings as they are."""
    value: Any = avp.value
    if isinstance(value, HiddenValue):
        return f"(hidden) {_redacted(len(value.ciphertext))}"
    if avp.vendor == 0 and avp.type in REDACTED_AVPS:
        if avp.hidden:
            return "(not shown)"  # hiding pads the value: its true length is a secret too
        size = len(value) if isinstance(value, (bytes, str)) else len(encode_avp_value(avp))
        return _redacted(size)
    if isinstance(value, bytes):
        if avp.vendor != 0 and value and all(32 <= c < 127 for c in value):
            return escape(value.decode("ascii"))  # vendor strings: Cisco's "Client NAS Port"
        return value.hex().upper()
    if isinstance(value, ProtocolVersion):
        return str((value.version << 8) | value.revision)  # IOS: "Protocol Ver 256"
    if isinstance(value, Q931Cause):
        text = f"cause {value.cause}, msg {value.message_code}"
        return text + (f", {escape(value.advisory)}" if value.advisory else "")
    if isinstance(value, CallErrors):
        return (
            f"CRC {value.crc_errors}, framing {value.framing_errors}, "
            f"hw overruns {value.hardware_overruns}, buf overruns {value.buffer_overruns}, "
            f"timeouts {value.timeout_errors}, alignment {value.alignment_errors}"
        )
    if isinstance(value, Accm):
        return f"send 0x{value.send_accm:08X}, recv 0x{value.recv_accm:08X}"
    if value is True:
        return ""
    if isinstance(value, int) and avp.vendor == 0 and avp.type in _HEX_INTS:
        return f"0x{value:X}"
    return str(int(value)) if isinstance(value, int) else escape(value)


def avp_lines(
    avp: Avp, length: int | None = None, flags: int | None = None, msg_type: int | None = None
) -> list[str]:
    """The parse line and the value line(s) of one AVP, IOS style. `msg_type` picks the
    StopCCN or CDN wording of a Result Code."""
    lines = [avp_header_line(avp, length, flags)]
    value: Any = avp.value
    if avp.vendor == 0 and avp.type == AvpType.MESSAGE_TYPE and isinstance(value, int):
        lines.append(f"Parse {message_name(value)}")
    elif isinstance(value, ResultCode):
        # IOS's words where it has them, else the RFC's; IOS prints the error line for a
        # Result Code without an error field too (code 0).
        ios = IOS_STOPCCN_RESULT if msg_type == MessageType.STOPCCN else IOS_CDN_RESULT
        text = ios.get(value.result) or result_text(msg_type, value.result)
        lines.append(f"Result code({value.result}): {value.result}: {text}")
        error = value.error or 0
        lines.append(f"Error code({error}): {IOS_ERROR.get(error) or error_text(error)}")
        if value.message:
            lines.append(f"Error message: {escape(value.message)}")
    else:
        spec = AVP_TABLE.get(avp.type) if avp.vendor == 0 else None
        label = spec.label if spec is not None else avp_name(avp.type, avp.vendor)
        lines.append(f"{label} {format_value(avp)}".rstrip())
    return lines


def describe_avp(
    avp: Avp, length: int | None = None, flags: int | None = None, msg_type: int | None = None
) -> str:
    """avp_lines joined with newlines."""
    return "\n".join(avp_lines(avp, length, flags, msg_type))
