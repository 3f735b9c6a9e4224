"""The one AVP table (RFC 2661 section 4.4) and AVP encode/decode, including hiding (4.3).

Every IETF AVP type 0-39 has one row: name, the M bit it is sent with, whether it may be
hidden, and its value codec. Vendor AVPs (vendor != 0) and unknown AVPs are opaque bytes.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from kl2tp.l2tp.constants import (
    AVP_H,
    AVP_HEADER_LEN,
    AVP_LENGTH_MASK,
    AVP_M,
    AVP_MAX_LEN,
    AVP_RESERVED,
    MESSAGE_TYPES,
    AvpType,
    ErrorCode,
)
from kl2tp.l2tp.errors import DecodeError, ProtocolError

_HDR = struct.Struct(">HHH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_CALL_ERRORS = struct.Struct(">HIIIIII")
_ACCM = struct.Struct(">HII")
_Q931 = struct.Struct(">HB")

RANDOM_VECTOR_LEN = 16
"""Length of the Random Vector we generate for hiding."""


# --- structured values -----------------------------------------------------------------------


@attrs.frozen
class ResultCode:
    """Value of the Result Code AVP (type 1, RFC 2661 section 4.4.2)."""

    result: int
    """Result code (StopCcnResult or CdnResult)."""
    error: int | None = None
    """General error code (ErrorCode); None = field absent on the wire."""
    message: str | None = None
    """Optional error message; needs `error` present on the wire (sent as 0 when None)."""


@attrs.frozen
class ProtocolVersion:
    """Value of the Protocol Version AVP (type 2): 1.0 for RFC 2661."""

    version: int = 1
    """Version (1 for L2TPv2)."""
    revision: int = 0
    """Revision (0)."""


@attrs.frozen
class Q931Cause:
    """Value of the Q.931 Cause Code AVP (type 12, RFC 2661 section 4.4.5)."""

    cause: int
    """Q.931 cause code (16 bits)."""
    message_code: int
    """Q.931 message type the cause came in (8 bits)."""
    advisory: str | None = None
    """Optional advisory text."""


@attrs.frozen
class CallErrors:
    """Value of the Call Errors AVP (type 34) carried by WEN (RFC 2661 section 4.4.6)."""

    crc_errors: int = 0
    """CRC errors since the call was established."""
    framing_errors: int = 0
    """Framing errors."""
    hardware_overruns: int = 0
    """Hardware overruns."""
    buffer_overruns: int = 0
    """Buffer overruns."""
    timeout_errors: int = 0
    """Time-out errors."""
    alignment_errors: int = 0
    """Alignment errors."""


@attrs.frozen
class Accm:
    """Value of the ACCM AVP (type 35) carried by SLI (RFC 2661 section 4.4.6)."""

    send_accm: int
    """ACCM the LAC uses when sending to the PPP peer (32 bits)."""
    recv_accm: int
    """ACCM the LAC expects from the PPP peer (32 bits)."""


@attrs.frozen
class HiddenValue:
    """A hidden AVP value we could not unhide (no secret given; the decode CLI's view)."""

    ciphertext: bytes
    """The hidden value as it is on the wire."""


# --- value codecs ----------------------------------------------------------------------------
# A decoder takes the value bytes and returns the Python value or raises ValueError with what
# is wrong; an encoder does the reverse. No attrs validators: this is the per-packet hot path.


def _need_len(b: bytes, n: int) -> None:
    if len(b) != n:
        raise ValueError(f"value must be {n} bytes, got {len(b)}")


def _dec_u16(b: bytes) -> int:
    _need_len(b, 2)
    return int.from_bytes(b, "big")


def _enc_u16(v: Any) -> bytes:
    return _U16.pack(v)


def _dec_u32(b: bytes) -> int:
    _need_len(b, 4)
    return int.from_bytes(b, "big")


def _enc_u32(v: Any) -> bytes:
    return _U32.pack(v)


def _dec_msg_type(b: bytes) -> int:
    v = _dec_u16(b)
    return MESSAGE_TYPES.get(v, v)


def _dec_str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _enc_str(v: Any) -> bytes:
    return str(v).encode("utf-8", "surrogateescape")


def _dec_nonempty_str(b: bytes) -> str:
    if not b:
        raise ValueError("value must not be empty")
    return _dec_str(b)


def _dec_bytes(b: bytes) -> bytes:
    return b


def _dec_nonempty_bytes(b: bytes) -> bytes:
    if not b:
        raise ValueError("value must not be empty")
    return b


def _enc_bytes(v: Any) -> bytes:
    return bytes(v)


def _fixed_bytes(n: int) -> Callable[[bytes], bytes]:
    def dec(b: bytes) -> bytes:
        _need_len(b, n)
        return b

    return dec


def _dec_result(b: bytes) -> ResultCode:
    n = len(b)
    if n == 2:
        return ResultCode(int.from_bytes(b, "big"))
    if n < 4:
        raise ValueError(f"value must be 2 or at least 4 bytes, got {n}")
    message = _dec_str(b[4:]) if n > 4 else None
    return ResultCode(int.from_bytes(b[:2], "big"), int.from_bytes(b[2:4], "big"), message)


def _enc_result(v: Any) -> bytes:
    rc: ResultCode = v
    if rc.error is None and rc.message is None:
        return _U16.pack(rc.result)
    out = _U16.pack(rc.result) + _U16.pack(rc.error or 0)
    if rc.message is not None:
        out += _enc_str(rc.message)
    return out


def _dec_version(b: bytes) -> ProtocolVersion:
    _need_len(b, 2)
    return ProtocolVersion(b[0], b[1])


def _enc_version(v: Any) -> bytes:
    return bytes((v.version, v.revision))


def _dec_q931(b: bytes) -> Q931Cause:
    if len(b) < 3:
        raise ValueError(f"value must be at least 3 bytes, got {len(b)}")
    cause, msg = _Q931.unpack_from(b)
    return Q931Cause(cause, msg, _dec_str(b[3:]) if len(b) > 3 else None)


def _enc_q931(v: Any) -> bytes:
    q: Q931Cause = v
    out = _Q931.pack(q.cause, q.message_code)
    return out + _enc_str(q.advisory) if q.advisory is not None else out


def _dec_call_errors(b: bytes) -> CallErrors:
    _need_len(b, _CALL_ERRORS.size)
    return CallErrors(*_CALL_ERRORS.unpack(b)[1:])


def _enc_call_errors(v: Any) -> bytes:
    c: CallErrors = v
    return _CALL_ERRORS.pack(
        0,
        c.crc_errors,
        c.framing_errors,
        c.hardware_overruns,
        c.buffer_overruns,
        c.timeout_errors,
        c.alignment_errors,
    )


def _dec_accm(b: bytes) -> Accm:
    _need_len(b, _ACCM.size)
    _, send, recv = _ACCM.unpack(b)
    return Accm(send, recv)


def _enc_accm(v: Any) -> bytes:
    return _ACCM.pack(0, v.send_accm, v.recv_accm)


def _dec_proxy_id(b: bytes) -> int:
    _need_len(b, 2)
    if b[0]:
        raise ValueError("reserved octet must be 0")
    return b[1]


def _enc_proxy_id(v: Any) -> bytes:
    return bytes((0, v))


def _dec_empty(b: bytes) -> bool:
    _need_len(b, 0)
    return True


def _enc_empty(v: Any) -> bytes:
    return b""


@attrs.frozen
class Codec:
    """How one AVP value goes to and from bytes."""

    kind: str
    """Short name of the value shape ("u16", "u32", "str", "bytes", "result", ...)."""
    decode: Callable[[bytes], Any]
    """Value bytes -> Python value; raises ValueError naming what is wrong."""
    encode: Callable[[Any], bytes]
    """Python value -> value bytes."""


U16 = Codec("u16", _dec_u16, _enc_u16)
U32 = Codec("u32", _dec_u32, _enc_u32)
STR = Codec("str", _dec_str, _enc_str)
NONEMPTY_STR = Codec("str", _dec_nonempty_str, _enc_str)
BYTES = Codec("bytes", _dec_bytes, _enc_bytes)
NONEMPTY_BYTES = Codec("bytes", _dec_nonempty_bytes, _enc_bytes)
MSG_TYPE = Codec("msgtype", _dec_msg_type, _enc_u16)
RESULT = Codec("result", _dec_result, _enc_result)
VERSION = Codec("version", _dec_version, _enc_version)
Q931 = Codec("q931", _dec_q931, _enc_q931)
CALL_ERRORS = Codec("callerrors", _dec_call_errors, _enc_call_errors)
ACCM = Codec("accm", _dec_accm, _enc_accm)
PROXY_ID = Codec("u8", _dec_proxy_id, _enc_proxy_id)
EMPTY = Codec("empty", _dec_empty, _enc_empty)
TIE_BREAKER = Codec("bytes", _fixed_bytes(8), _enc_bytes)
RESPONSE16 = Codec("bytes", _fixed_bytes(16), _enc_bytes)


@attrs.frozen
class AvpSpec:
    """One row of the AVP table."""

    type: AvpType
    """Attribute type."""
    name: str
    """RFC name."""
    mandatory: bool
    """The M bit we send it with (RFC 2661 section 4.4)."""
    may_hide: bool
    """Whether the RFC allows the H bit on it."""
    codec: Codec
    """Value codec."""
    label: str
    """IOS debug wording ("Hostname", "Rx Window Size", ...)."""


def _row(t: AvpType, name: str, m: bool, h: bool, codec: Codec, label: str) -> tuple[int, AvpSpec]:
    return int(t), AvpSpec(t, name, m, h, codec, label)


A = AvpType
# Ref: RFC 2661 section 4.4. Columns: type, name, M bit, may be hidden, value codec, IOS label.
AVP_TABLE: dict[int, AvpSpec] = dict(
    [
        _row(A.MESSAGE_TYPE, "Message Type", True, False, MSG_TYPE, "Message Type"),
        _row(A.RESULT_CODE, "Result Code", True, False, RESULT, "Result code"),
        _row(A.PROTOCOL_VERSION, "Protocol Version", True, False, VERSION, "Protocol Ver"),
        _row(A.FRAMING_CAPABILITIES, "Framing Capabilities", True, True, U32, "Framing Cap"),
        _row(A.BEARER_CAPABILITIES, "Bearer Capabilities", True, True, U32, "Bearer Cap"),
        _row(A.TIE_BREAKER, "Tie Breaker", False, False, TIE_BREAKER, "Tie Breaker"),
        _row(A.FIRMWARE_REVISION, "Firmware Revision", False, True, U16, "Firmware Ver"),
        _row(A.HOST_NAME, "Host Name", True, False, NONEMPTY_STR, "Hostname"),
        _row(A.VENDOR_NAME, "Vendor Name", False, True, STR, "Vendor Name"),
        _row(A.ASSIGNED_TUNNEL_ID, "Assigned Tunnel ID", True, True, U16, "Assigned Tunnel ID"),
        _row(A.RECEIVE_WINDOW_SIZE, "Receive Window Size", True, False, U16, "Rx Window Size"),
        _row(A.CHALLENGE, "Challenge", True, True, NONEMPTY_BYTES, "Chlng"),
        _row(A.Q931_CAUSE_CODE, "Q.931 Cause Code", True, False, Q931, "Q.931 Cause"),
        _row(A.CHALLENGE_RESPONSE, "Challenge Response", True, True, RESPONSE16, "Chlng Resp"),
        _row(A.ASSIGNED_SESSION_ID, "Assigned Session ID", True, True, U16, "Assigned Call ID"),
        _row(A.CALL_SERIAL_NUMBER, "Call Serial Number", True, False, U32, "Serial Number"),
        _row(A.MINIMUM_BPS, "Minimum BPS", True, True, U32, "Min BPS"),
        _row(A.MAXIMUM_BPS, "Maximum BPS", True, True, U32, "Max BPS"),
        _row(A.BEARER_TYPE, "Bearer Type", True, True, U32, "Bearer Type"),
        _row(A.FRAMING_TYPE, "Framing Type", True, True, U32, "Framing Type"),
        _row(A.CALLED_NUMBER, "Called Number", True, True, STR, "Called Number"),
        _row(A.CALLING_NUMBER, "Calling Number", True, True, STR, "Calling Number"),
        _row(A.SUB_ADDRESS, "Sub-Address", True, True, STR, "Sub-Address"),
        _row(A.TX_CONNECT_SPEED, "(Tx) Connect Speed", True, True, U32, "Connect Speed"),
        _row(A.PHYSICAL_CHANNEL_ID, "Physical Channel ID", False, True, U32, "Physical Channel ID"),
        _row(
            A.INITIAL_RECEIVED_LCP_CONFREQ,
            "Initial Received LCP CONFREQ",
            False,
            True,
            BYTES,
            "Initial Rx LCPREQ",
        ),
        _row(
            A.LAST_SENT_LCP_CONFREQ, "Last Sent LCP CONFREQ", False, True, BYTES, "Last Sent LCPREQ"
        ),
        _row(
            A.LAST_RECEIVED_LCP_CONFREQ,
            "Last Received LCP CONFREQ",
            False,
            True,
            BYTES,
            "Last Rx LCPREQ",
        ),
        _row(A.PROXY_AUTHEN_TYPE, "Proxy Authen Type", False, True, U16, "Proxy Auth Type"),
        _row(A.PROXY_AUTHEN_NAME, "Proxy Authen Name", False, True, STR, "Proxy Auth Name"),
        _row(
            A.PROXY_AUTHEN_CHALLENGE,
            "Proxy Authen Challenge",
            False,
            True,
            BYTES,
            "Proxy Auth Chal",
        ),
        _row(A.PROXY_AUTHEN_ID, "Proxy Authen ID", False, True, PROXY_ID, "Proxy Auth ID"),
        _row(
            A.PROXY_AUTHEN_RESPONSE, "Proxy Authen Response", False, True, BYTES, "Proxy Auth Resp"
        ),
        _row(A.CALL_ERRORS, "Call Errors", True, True, CALL_ERRORS, "Call Errors"),
        _row(A.ACCM, "ACCM", True, True, ACCM, "ACCM"),
        _row(A.RANDOM_VECTOR, "Random Vector", True, False, NONEMPTY_BYTES, "Random Vector"),
        _row(A.PRIVATE_GROUP_ID, "Private Group ID", False, True, STR, "Private Group ID"),
        _row(A.RX_CONNECT_SPEED, "Rx Connect Speed", False, True, U32, "Rx Speed"),
        _row(
            A.SEQUENCING_REQUIRED, "Sequencing Required", True, False, EMPTY, "Sequencing Required"
        ),
    ]
)
del A

VENDOR_AVP_NAMES: dict[tuple[int, int], str] = {(9, 100): "Client NAS Port"}
"""(vendor, type) -> name of vendor AVPs we can name (display only; values stay opaque)."""


def default_mandatory(avp_type: int, vendor: int = 0) -> bool:
    """The M bit the table gives an IETF AVP (False for vendor and unknown AVPs)."""
    spec = AVP_TABLE.get(avp_type) if vendor == 0 else None
    return spec.mandatory if spec is not None else False


def avp_name(avp_type: int, vendor: int = 0) -> str:
    """Display name of an AVP type ("Host Name", "Client NAS Port", "Unknown AVP 45")."""
    if vendor == 0:
        spec = AVP_TABLE.get(avp_type)
        return spec.name if spec is not None else f"Unknown AVP {avp_type}"
    return VENDOR_AVP_NAMES.get((vendor, avp_type), f"Vendor {vendor} AVP {avp_type}")


@attrs.frozen
class Avp:
    """One attribute-value pair of a control message (RFC 2661 section 4.1)."""

    type: int
    """Attribute type (AvpType for IETF AVPs)."""
    value: Any
    """Decoded value: int, str, bytes, True (Sequencing Required), ResultCode, ProtocolVersion,
    Q931Cause, CallErrors, Accm; bytes for vendor/unknown AVPs; HiddenValue when it could not
    be unhidden."""
    vendor: int = 0
    """Vendor ID (SMI enterprise number), 0 = IETF."""
    mandatory: bool = attrs.field(
        default=attrs.Factory(lambda a: default_mandatory(a.type, a.vendor), takes_self=True)
    )
    """M bit. Defaults to the table's M bit for the type (False for vendor/unknown AVPs)."""
    hidden: bool = False
    """H bit: hidden on the wire (decoded) / hide when encoding (needs a secret)."""


# --- hiding (RFC 2661 section 4.3) -----------------------------------------------------------


def _xor(a: bytes, b: bytes) -> bytes:
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def md5_chain(data: bytes, secret: bytes, key: bytes, *, decrypt: bool = False) -> bytes:
    """XOR ``data`` with the MD5 key stream that L2TP AVP hiding (RFC 2661 4.3) and RADIUS
    attribute hiding (RFC 2865 5.2 User-Password, RFC 2868 3.5 Tunnel-Password) share: ``key``
    for the first 16 octets, then MD5(secret + the previous ciphertext block). Only the first
    key differs between them. ``decrypt``: ``data`` is the ciphertext (the chain runs on it)."""
    out = bytearray()
    for i in range(0, len(data), 16):
        block = data[i : i + 16]
        x = _xor(block, key)
        out += x
        key = hashlib.md5(secret + (block if decrypt else x), usedforsecurity=False).digest()
    return bytes(out)


def hide_value(
    avp_type: int, value: bytes, secret: bytes, random_vector: bytes, padding: bytes = b""
) -> bytes:
    """Hide an AVP value: the Hidden AVP Subformat (original length, value, padding) XORed with
    the MD5 chain b1 = MD5(type + secret + RV), bi = MD5(secret + c(i-1))."""
    sub = _U16.pack(len(value)) + value + padding
    key = hashlib.md5(_U16.pack(avp_type) + secret + random_vector).digest()
    return md5_chain(sub, secret, key)


def unhide_value(
    avp_type: int, hidden: bytes, secret: bytes, random_vector: bytes, offset: int = 0
) -> bytes:
    """Reverse hide_value; DecodeError (at `offset`) when the unhidden length does not fit."""
    if len(hidden) < 2:
        raise DecodeError(f"hidden AVP {avp_type} value too short ({len(hidden)} bytes)", offset)
    key = hashlib.md5(_U16.pack(avp_type) + secret + random_vector).digest()
    out = md5_chain(hidden, secret, key, decrypt=True)
    n = (out[0] << 8) | out[1]
    if n > len(out) - 2:
        raise DecodeError(
            f"hidden AVP {avp_type}: original length {n} exceeds the {len(out) - 2} hidden bytes"
            " (wrong secret?)",
            offset,
        )
    return bytes(out[2 : 2 + n])


# --- decode ------------------------------------------------------------------------------------


@attrs.frozen
class AvpList:
    """Result of decode_avps."""

    avps: tuple[Avp, ...]
    """The AVPs in wire order (Message Type included)."""
    truncated: bool
    """True when the data ended inside an AVP (only with allow_truncated)."""


def decode_avps(
    data: bytes,
    start: int,
    end: int,
    secret: bytes | None = None,
    *,
    keep_hidden: bool = False,
    strict: bool = True,
    allow_truncated: bool = False,
    session_id: int | None = None,
    offsets: list[int] | None = None,
) -> AvpList:
    """Decode the AVPs in data[start:end].

    Args:
        secret: tunnel secret for hidden AVPs.
        keep_hidden: without a secret, keep hidden values as HiddenValue instead of failing.
        strict: raise ProtocolError for an unknown AVP with the M bit (RFC 2661 4.1); when
            False (the decode CLI) keep it as opaque bytes.
        allow_truncated: stop quietly at an AVP that runs past `end` (a cut debug dump).
        session_id: header session id, reported in ProtocolError.
        offsets: when given, the byte offset of each returned AVP's header is appended.

    Raises:
        DecodeError: malformed AVP, with the byte offset of its header.
        ProtocolError: unknown AVP with M set (result 2, error 8), when strict.
    """
    out: list[Avp] = []
    pos = start
    random_vector: bytes | None = None
    msg_type: int | None = None
    table_get = AVP_TABLE.get
    unpack_hdr = _HDR.unpack_from
    make = Avp
    while pos < end:
        if end - pos < AVP_HEADER_LEN:
            if allow_truncated:
                return AvpList(tuple(out), True)
            raise DecodeError(f"{end - pos} trailing bytes, too short for an AVP header", pos)
        flags_len, vendor, atype = unpack_hdr(data, pos)
        length = flags_len & AVP_LENGTH_MASK
        if length < AVP_HEADER_LEN:
            raise DecodeError(f"AVP length {length} is less than 6", pos)
        if flags_len & AVP_RESERVED:
            raise DecodeError(f"AVP reserved flag bits set (0x{flags_len & 0xFC00:04x})", pos)
        if pos + length > end:
            if allow_truncated:
                return AvpList(tuple(out), True)
            raise DecodeError(
                f"AVP {atype} length {length} runs past the end of the message"
                f" ({end - pos} bytes left)",
                pos,
            )
        mandatory = bool(flags_len & AVP_M)
        hidden = bool(flags_len & AVP_H)
        raw = data[pos + AVP_HEADER_LEN : pos + length]
        if type(raw) is not bytes:
            raw = bytes(raw)
        if offsets is not None:
            offsets.append(pos)
        if not out and (vendor != 0 or atype != 0):
            raise DecodeError(f"first AVP must be Message Type, got {avp_name(atype, vendor)}", pos)
        if hidden:
            if vendor == 0 and atype in (0, 36):
                raise DecodeError(f"{avp_name(atype)} AVP must not be hidden", pos)
            if random_vector is None:
                raise DecodeError(f"hidden AVP {atype} without a preceding Random Vector", pos)
            if secret is None:
                if keep_hidden:
                    out.append(Avp(atype, HiddenValue(raw), vendor, mandatory, True))
                    pos += length
                    continue
                raise DecodeError(f"hidden AVP {atype} but no tunnel secret", pos)
            raw = unhide_value(atype, raw, secret, random_vector, pos)
        spec = table_get(atype) if vendor == 0 else None
        if spec is None:
            if mandatory and strict:
                raise ProtocolError(
                    2,
                    ErrorCode.UNKNOWN_MANDATORY_AVP,
                    f"unknown mandatory AVP {avp_name(atype, vendor)}",
                    msg_type=msg_type,
                    session_id=session_id,
                    avp_type=atype,
                )
            value: Any = raw
            out.append(Avp(atype, value, vendor, mandatory, hidden))
        else:
            try:
                value = spec.codec.decode(raw)
            except ValueError as e:
                raise DecodeError(f"{spec.name} AVP: {e}", pos) from None
            if atype == 0:
                msg_type = value
            elif atype == 36:
                random_vector = raw
            out.append(make(spec.type, value, 0, mandatory, hidden))
        pos += length
    return AvpList(tuple(out), False)


# --- encode ------------------------------------------------------------------------------------


def encode_avp_value(avp: Avp) -> bytes:
    """The unhidden value bytes of an AVP."""
    spec = AVP_TABLE.get(avp.type) if avp.vendor == 0 else None
    if spec is None or (isinstance(avp.value, bytes) and spec.codec.kind != "bytes"):
        return bytes(avp.value)
    return spec.codec.encode(avp.value)


def _header(mandatory: bool, hidden: bool, length: int, vendor: int, atype: int) -> bytes:
    if length > AVP_MAX_LEN:
        raise ValueError(f"AVP {atype} too long to encode ({length} > {AVP_MAX_LEN})")
    flags = (AVP_M if mandatory else 0) | (AVP_H if hidden else 0) | length
    return _HDR.pack(flags, vendor, atype)


def encode_avps(
    avps: Iterable[Avp],
    secret: bytes | None = None,
    hide: frozenset[int] = frozenset(),
    rng: random.Random | None = None,
) -> bytes:
    """Encode AVPs in order. An AVP is hidden when `avp.hidden` is set, or when its type is in
    `hide` and the table says it may be hidden. Before the first hidden AVP that has no Random
    Vector in front of it, a Random Vector AVP (16 bytes from `rng`) is inserted.

    Raises:
        ValueError: hiding without a secret, without a Random Vector or rng, or an AVP too long.
    """
    parts: list[bytes] = []
    random_vector: bytes | None = None
    for avp in avps:
        atype = avp.type
        vendor = avp.vendor
        value = avp.value
        if isinstance(value, HiddenValue):
            parts.append(_header(avp.mandatory, True, 6 + len(value.ciphertext), vendor, atype))
            parts.append(value.ciphertext)
            continue
        raw = encode_avp_value(avp)
        if vendor == 0 and atype == 36:
            random_vector = raw
        do_hide = avp.hidden
        if not do_hide and hide and vendor == 0 and atype in hide:
            spec = AVP_TABLE.get(atype)
            do_hide = spec is not None and spec.may_hide
        if do_hide:
            if secret is None:
                raise ValueError(f"cannot hide AVP {atype} without a secret")
            if random_vector is None:
                if rng is None:
                    raise ValueError(f"hiding AVP {atype} needs a Random Vector or an rng")
                random_vector = rng.randbytes(RANDOM_VECTOR_LEN)
                parts.append(_header(True, False, 6 + RANDOM_VECTOR_LEN, 0, 36))
                parts.append(random_vector)
            pad = (-(len(raw) + 2)) % 16
            padding = rng.randbytes(pad) if rng is not None and pad else bytes(pad)
            raw = hide_value(atype, raw, secret, random_vector, padding)
        parts.append(_header(avp.mandatory, do_hide, 6 + len(raw), vendor, atype))
        parts.append(raw)
    return b"".join(parts)
