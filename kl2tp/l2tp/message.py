"""L2TPv2 header codec, control and data messages, and the per-message AVP specs.

RFC 2661 section 3.1 (header), 3.2 (message types), 5.1.1 (tunnel authentication) and 6
(message specs). Control messages always carry T, L and S (flags word 0xC802); the first AVP
is the Message Type, which ControlMessage keeps as `msg_type` rather than in `avps`.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any

import attrs

from kl2tp.l2tp.avp import (
    AVP_TABLE,
    Accm,
    Avp,
    AvpList,
    CallErrors,
    HiddenValue,
    ProtocolVersion,
    Q931Cause,
    ResultCode,
    avp_name,
    decode_avps,
    encode_avps,
)
from kl2tp.l2tp.buffer import Buffer, BufferReadError
from kl2tp.l2tp.constants import (
    CONTROL_FLAGS,
    CONTROL_HEADER_LEN,
    FLAG_L,
    FLAG_O,
    FLAG_P,
    FLAG_S,
    FLAG_T,
    MESSAGE_TYPES,
    VERSION,
    VERSION_MASK,
    AvpType,
    ErrorCode,
    MessageType,
)
from kl2tp.l2tp.errors import DecodeError, ProtocolError, UnknownMessageType, UnsupportedVersion

__all__ = [
    "MESSAGE_SPECS",
    "Accm",
    "Avp",
    "CallErrors",
    "ControlMessage",
    "DataMessage",
    "DecodeError",
    "HiddenValue",
    "Inspection",
    "MessageSpec",
    "ProtocolError",
    "ProtocolVersion",
    "Q931Cause",
    "ResultCode",
    "UnknownMessageType",
    "UnsupportedVersion",
    "challenge_response",
    "decode",
    "encode_control",
    "encode_data",
    "inspect",
    "peek",
    "peek_tunnel_id",
    "set_ns_nr",
    "validate",
]

_CTRL_HDR = struct.Struct(">HHHHHH")
_CTRL_FIELDS = struct.Struct(">HHHHH")
"""Length, tunnel id, session id, Ns, Nr: a control header after its flags word."""
_TID_SID = struct.Struct(">HH")
_NS_NR = struct.Struct(">HH")
_U16 = struct.Struct(">H")


@attrs.frozen
class ControlMessage:
    """A control message. A ZLB (zero-length body ack) has msg_type None and no AVPs."""

    msg_type: MessageType | None
    """Message type (from the first AVP); None for a ZLB."""
    tunnel_id: int
    """Header tunnel id: the receiver's tunnel id (0 in an SCCRQ)."""
    session_id: int
    """Header session id: the receiver's session id (0 for tunnel messages and an ICRQ)."""
    ns: int
    """Sequence number of this message."""
    nr: int
    """Next sequence number expected from the peer (acknowledges everything before it)."""
    avps: tuple[Avp, ...] = ()
    """The AVPs after the Message Type AVP, in wire order."""

    def get(self, avp_type: int, vendor: int = 0) -> Any:
        """Value of the first AVP of that type, or None when absent."""
        for a in self.avps:
            if a.type == avp_type and a.vendor == vendor:
                return a.value
        return None

    def get_all(self, avp_type: int, vendor: int = 0) -> list[Any]:
        """Values of every AVP of that type, in order."""
        return [a.value for a in self.avps if a.type == avp_type and a.vendor == vendor]

    def has(self, avp_type: int, vendor: int = 0) -> bool:
        """True when an AVP of that type is present."""
        return any(a.type == avp_type and a.vendor == vendor for a in self.avps)

    @property
    def is_zlb(self) -> bool:
        """True for a zero-length body (pure acknowledgement)."""
        return self.msg_type is None


@attrs.frozen
class DataMessage:
    """A data message (T bit clear): one PPP frame for a session."""

    tunnel_id: int
    """Header tunnel id (the receiver's)."""
    session_id: int
    """Header session id (the receiver's)."""
    ns: int | None
    """Ns when the S bit is set, else None."""
    nr: int | None
    """Nr when the S bit is set, else None (reserved in data messages)."""
    payload: bytes
    """The PPP frame (address/control already stripped by the sender)."""


# --- header ------------------------------------------------------------------------------------


def _check_version(flags: int) -> None:
    version = flags & VERSION_MASK
    if version != VERSION:
        raise UnsupportedVersion(version)


def peek_tunnel_id(data: bytes) -> int:
    """The header tunnel id without decoding the message (for demultiplexing).

    Raises:
        UnsupportedVersion: version 1 (L2F) or 3.
        DecodeError: too short.
    """
    if len(data) < 6:
        raise DecodeError(f"datagram of {len(data)} bytes is shorter than an L2TP header", 0)
    flags = (data[0] << 8) | data[1]
    _check_version(flags)
    pos = 4 if flags & FLAG_L else 2
    return (data[pos] << 8) | data[pos + 1]


def peek(data: bytes) -> tuple[bool, int, int]:
    """(is_control, tunnel_id, session_id) without decoding the body."""
    if len(data) < 6:
        raise DecodeError(f"datagram of {len(data)} bytes is shorter than an L2TP header", 0)
    flags = (data[0] << 8) | data[1]
    _check_version(flags)
    pos = 4 if flags & FLAG_L else 2
    if len(data) < pos + 4:
        raise DecodeError(f"datagram of {len(data)} bytes is shorter than its header", 0)
    return (
        bool(flags & FLAG_T),
        (data[pos] << 8) | data[pos + 1],
        (data[pos + 2] << 8) | data[pos + 3],
    )


@attrs.frozen
class Inspection:
    """A message as the decode CLI sees it: what was there and whether the dump was cut."""

    message: ControlMessage | DataMessage
    """The decoded message (AVPs up to the cut when truncated)."""
    length: int
    """Length field of the header (or the datagram size without an L bit)."""
    flags: int
    """The header's first 16-bit word."""
    avps: tuple[Avp, ...]
    """All AVPs in wire order, Message Type included (empty for data)."""
    truncated: bool
    """True when the data ended before `length` bytes."""
    message_type: int | None
    """Raw Message Type value, including unknown types; None for a ZLB or data."""
    avp_offsets: tuple[int, ...] = ()
    """Byte offset of each AVP header in `avps` (flags and length are read from there)."""


def _decode(
    data: bytes,
    secret: bytes | None,
    *,
    keep_hidden: bool,
    strict: bool,
    allow_truncated: bool,
) -> Inspection:
    n = len(data)
    buf = Buffer(data)
    try:
        flags = buf.pull_uint16()
        _check_version(flags)
        if flags & FLAG_T:
            if flags & (FLAG_L | FLAG_S) != FLAG_L | FLAG_S:
                raise DecodeError(f"control message without L and S bits (flags 0x{flags:04x})", 0)
            if flags & FLAG_O:
                raise DecodeError(f"control message with the O bit set (flags 0x{flags:04x})", 0)
            length = buf.pull_uint16()
            tunnel_id = buf.pull_uint16()
            session_id = buf.pull_uint16()
            ns = buf.pull_uint16()
            nr = buf.pull_uint16()
        else:
            length = buf.pull_uint16() if flags & FLAG_L else n
            tunnel_id = buf.pull_uint16()
            session_id = buf.pull_uint16()
            ns_d: int | None = None
            nr_d: int | None = None
            if flags & FLAG_S:
                ns_d = buf.pull_uint16()
                nr_d = buf.pull_uint16()
            if flags & FLAG_O:
                offset_pos = buf.tell()
                offset_size = buf.pull_uint16()
                if buf.tell() + offset_size > min(length, n):
                    raise DecodeError(
                        f"offset size {offset_size} runs past the message", offset_pos
                    )
                buf.seek(buf.tell() + offset_size)
    except BufferReadError:
        raise DecodeError(f"datagram of {n} bytes is shorter than its header", 0) from None
    header_len = buf.tell()
    if length < header_len:
        raise DecodeError(f"length field {length} is shorter than the {header_len}-byte header", 2)
    truncated = False
    end = length
    if length > n:
        if not allow_truncated:
            raise DecodeError(f"length field {length} exceeds the {n}-byte datagram", 2)
        truncated = True
        end = n
    # Bytes after `length` are ignored (RFC 2661 3.1: the datagram may be padded).
    if not flags & FLAG_T:
        data_msg = DataMessage(tunnel_id, session_id, ns_d, nr_d, bytes(data[header_len:end]))
        return Inspection(data_msg, length, flags, (), truncated, None)
    if end == CONTROL_HEADER_LEN and not truncated:
        zlb = ControlMessage(None, tunnel_id, session_id, ns, nr)
        return Inspection(zlb, length, flags, (), False, None)
    offsets: list[int] | None = [] if not strict else None
    parsed: AvpList = decode_avps(
        data,
        CONTROL_HEADER_LEN,
        end,
        secret,
        keep_hidden=keep_hidden,
        strict=strict,
        allow_truncated=truncated,
        session_id=session_id,
        offsets=offsets,
    )
    truncated = truncated or parsed.truncated
    avps = parsed.avps
    if not avps:
        # Only reachable for a cut dump that ends inside the first AVP.
        msg = ControlMessage(None, tunnel_id, session_id, ns, nr)
        return Inspection(msg, length, flags, (), truncated, None)
    raw_type = int(avps[0].value)
    msg = _control_message(avps, tunnel_id, session_id, ns, nr, strict=strict)
    return Inspection(msg, length, flags, avps, truncated, raw_type, tuple(offsets or ()))


def _control_message(
    avps: tuple[Avp, ...], tunnel_id: int, session_id: int, ns: int, nr: int, *, strict: bool
) -> ControlMessage:
    """The ControlMessage for decoded AVPs (the first one is the Message Type)."""
    first = avps[0]
    raw_type = int(first.value)
    msg_type = MESSAGE_TYPES.get(raw_type)
    if msg_type is None and strict:
        if first.mandatory:
            raise ProtocolError(
                2,
                ErrorCode.UNKNOWN_MANDATORY_AVP,
                f"unknown message type {raw_type} with the M bit set",
                msg_type=raw_type,
                session_id=session_id,
            )
        raise UnknownMessageType(raw_type, tunnel_id, session_id, ns, nr)
    return ControlMessage(msg_type, tunnel_id, session_id, ns, nr, avps[1:])


def decode(
    data: bytes, secret: bytes | None = None, *, keep_hidden: bool = False
) -> ControlMessage | DataMessage:
    """Decode one L2TP datagram.

    Args:
        secret: tunnel secret, needed to unhide hidden AVPs.
        keep_hidden: without a secret, keep hidden values as HiddenValue instead of failing.

    Raises:
        UnsupportedVersion: version 1 or 3 (a DecodeError).
        UnknownMessageType: unknown message type with M clear (a DecodeError: ignore it).
        DecodeError: anything malformed, with the byte offset.
        ProtocolError: unknown AVP or message type with the M bit set (result 2, error 8).
    """
    # Fast paths for the two shapes nearly every datagram has (the general decoder below
    # gives the same result for them, only slower): a data message without L, S, O or P
    # bits, and a control message (flags exactly T, L, S, version 2) that fits the datagram.
    n = len(data)
    if n >= 6:
        flags = (data[0] << 8) | data[1]
        if flags == VERSION:
            tunnel_id, session_id = _TID_SID.unpack_from(data, 2)
            return DataMessage(tunnel_id, session_id, None, None, bytes(data[6:]))
        if flags == CONTROL_FLAGS and n >= CONTROL_HEADER_LEN:
            length, tunnel_id, session_id, ns, nr = _CTRL_FIELDS.unpack_from(data, 2)
            if length == CONTROL_HEADER_LEN:
                return ControlMessage(None, tunnel_id, session_id, ns, nr)
            if CONTROL_HEADER_LEN < length <= n:
                avps = decode_avps(
                    data,
                    CONTROL_HEADER_LEN,
                    length,
                    secret,
                    keep_hidden=keep_hidden,
                    session_id=session_id,
                ).avps
                return _control_message(avps, tunnel_id, session_id, ns, nr, strict=True)
    msg = _decode(data, secret, keep_hidden=keep_hidden, strict=True, allow_truncated=False)
    return msg.message


def inspect(data: bytes, secret: bytes | None = None, *, truncated_ok: bool = False) -> Inspection:
    """Lenient decode for humans (the decode CLI, traces): unknown mandatory AVPs and message
    types are kept, hidden AVPs stay HiddenValue without a secret, and with `truncated_ok` a
    datagram shorter than its Length field decodes up to the last complete AVP.

    Raises:
        DecodeError: the header or a complete AVP is malformed.
    """
    return _decode(data, secret, keep_hidden=True, strict=False, allow_truncated=truncated_ok)


# --- encode ------------------------------------------------------------------------------------

_MSG_TYPE_AVP_HDR = struct.Struct(">HHHH")


def encode_control(
    msg: ControlMessage,
    secret: bytes | None = None,
    hide: frozenset[int] = frozenset(),
    rng: random.Random | None = None,
) -> bytes:
    """Encode a control message: header (flags 0xC802), the Message Type AVP (M set) unless
    this is a ZLB, then `msg.avps` (a Message Type AVP among them is skipped: `msg_type` rules).

    Args:
        secret: tunnel secret, needed when hiding.
        hide: AVP types to hide (only those the table says may be hidden); AVPs with
            `hidden=True` are hidden too. A Random Vector AVP from `rng` goes in front.
        rng: source of the Random Vector and padding.
    """
    if msg.msg_type is None:
        if msg.avps:
            raise ValueError("a ZLB (msg_type None) carries no AVPs")
        return _CTRL_HDR.pack(
            CONTROL_FLAGS, CONTROL_HEADER_LEN, msg.tunnel_id, msg.session_id, msg.ns, msg.nr
        )
    avps = msg.avps
    if any(a.type == 0 and a.vendor == 0 for a in avps):
        avps = tuple(a for a in avps if not (a.type == 0 and a.vendor == 0))
    body = encode_avps(avps, secret, hide, rng)
    length = CONTROL_HEADER_LEN + 8 + len(body)
    if length > 0xFFFF:
        raise ValueError(f"control message too long ({length} bytes)")
    return b"".join(
        (
            _CTRL_HDR.pack(CONTROL_FLAGS, length, msg.tunnel_id, msg.session_id, msg.ns, msg.nr),
            _MSG_TYPE_AVP_HDR.pack(0x8008, 0, 0, int(msg.msg_type)),
            body,
        )
    )


def encode_data(
    tunnel_id: int,
    session_id: int,
    payload: bytes,
    ns: int | None = None,
    nr: int | None = None,
) -> bytes:
    """Encode a data message (no L, no O bit; S with Ns/Nr when `ns` is given)."""
    if ns is None:
        return struct.pack(">HHH", VERSION, tunnel_id, session_id) + payload
    return struct.pack(">HHHHH", FLAG_S | VERSION, tunnel_id, session_id, ns, nr or 0) + payload


def set_ns_nr(buf: bytes | bytearray, ns: int, nr: int) -> bytes:
    """Patch Ns and Nr into an encoded control message (retransmits carry a fresh Nr)."""
    out = bytearray(buf)
    _NS_NR.pack_into(out, 8, ns, nr)
    return bytes(out)


# --- message specs (RFC 2661 section 6) -------------------------------------------------------


@attrs.frozen
class MessageSpec:
    """Which AVPs a message type must and may carry."""

    msg_type: MessageType
    """The message type."""
    must: tuple[AvpType, ...]
    """AVPs that MUST be present (Message Type aside)."""
    may: tuple[AvpType, ...] = ()
    """AVPs that MAY be present (Random Vector is allowed everywhere)."""


M = MessageType
T = AvpType
MESSAGE_SPECS: dict[MessageType, MessageSpec] = {
    # Ref: RFC 2661 section 6.1
    M.SCCRQ: MessageSpec(
        M.SCCRQ,
        must=(T.PROTOCOL_VERSION, T.HOST_NAME, T.FRAMING_CAPABILITIES, T.ASSIGNED_TUNNEL_ID),
        may=(
            T.BEARER_CAPABILITIES,
            T.RECEIVE_WINDOW_SIZE,
            T.CHALLENGE,
            T.TIE_BREAKER,
            T.FIRMWARE_REVISION,
            T.VENDOR_NAME,
        ),
    ),
    # Ref: RFC 2661 section 6.2
    M.SCCRP: MessageSpec(
        M.SCCRP,
        must=(T.PROTOCOL_VERSION, T.FRAMING_CAPABILITIES, T.HOST_NAME, T.ASSIGNED_TUNNEL_ID),
        may=(
            T.BEARER_CAPABILITIES,
            T.FIRMWARE_REVISION,
            T.VENDOR_NAME,
            T.RECEIVE_WINDOW_SIZE,
            T.CHALLENGE,
            T.CHALLENGE_RESPONSE,
        ),
    ),
    # Ref: RFC 2661 section 6.3
    M.SCCCN: MessageSpec(M.SCCCN, must=(), may=(T.CHALLENGE_RESPONSE,)),
    # Ref: RFC 2661 section 6.4
    M.STOPCCN: MessageSpec(M.STOPCCN, must=(T.ASSIGNED_TUNNEL_ID, T.RESULT_CODE)),
    # Ref: RFC 2661 section 6.5
    M.HELLO: MessageSpec(M.HELLO, must=()),
    # Ref: RFC 2661 section 6.6
    M.ICRQ: MessageSpec(
        M.ICRQ,
        must=(T.ASSIGNED_SESSION_ID, T.CALL_SERIAL_NUMBER),
        may=(
            T.BEARER_TYPE,
            T.PHYSICAL_CHANNEL_ID,
            T.CALLING_NUMBER,
            T.CALLED_NUMBER,
            T.SUB_ADDRESS,
        ),
    ),
    # Ref: RFC 2661 section 6.7
    M.ICRP: MessageSpec(M.ICRP, must=(T.ASSIGNED_SESSION_ID,)),
    # Ref: RFC 2661 section 6.8
    M.ICCN: MessageSpec(
        M.ICCN,
        must=(T.TX_CONNECT_SPEED, T.FRAMING_TYPE),
        may=(
            T.INITIAL_RECEIVED_LCP_CONFREQ,
            T.LAST_SENT_LCP_CONFREQ,
            T.LAST_RECEIVED_LCP_CONFREQ,
            T.PROXY_AUTHEN_TYPE,
            T.PROXY_AUTHEN_NAME,
            T.PROXY_AUTHEN_CHALLENGE,
            T.PROXY_AUTHEN_ID,
            T.PROXY_AUTHEN_RESPONSE,
            T.PRIVATE_GROUP_ID,
            T.RX_CONNECT_SPEED,
            T.SEQUENCING_REQUIRED,
        ),
    ),
    # Ref: RFC 2661 section 6.9
    M.OCRQ: MessageSpec(
        M.OCRQ,
        must=(
            T.ASSIGNED_SESSION_ID,
            T.CALL_SERIAL_NUMBER,
            T.MINIMUM_BPS,
            T.MAXIMUM_BPS,
            T.BEARER_TYPE,
            T.FRAMING_TYPE,
            T.CALLED_NUMBER,
        ),
        may=(T.SUB_ADDRESS,),
    ),
    # Ref: RFC 2661 section 6.10
    M.OCRP: MessageSpec(M.OCRP, must=(T.ASSIGNED_SESSION_ID,), may=(T.PHYSICAL_CHANNEL_ID,)),
    # Ref: RFC 2661 section 6.11
    M.OCCN: MessageSpec(
        M.OCCN,
        must=(T.TX_CONNECT_SPEED, T.FRAMING_TYPE),
        may=(T.RX_CONNECT_SPEED, T.SEQUENCING_REQUIRED),
    ),
    # Ref: RFC 2661 section 6.12
    M.CDN: MessageSpec(
        M.CDN, must=(T.RESULT_CODE, T.ASSIGNED_SESSION_ID), may=(T.Q931_CAUSE_CODE,)
    ),
    # Ref: RFC 2661 section 6.13
    M.WEN: MessageSpec(M.WEN, must=(T.CALL_ERRORS,)),
    # Ref: RFC 2661 section 6.14
    M.SLI: MessageSpec(M.SLI, must=(T.ACCM,)),
}
del M, T

MISSING_AVP_ERROR = ErrorCode.LENGTH_WRONG
"""General error code for a message missing a MUST AVP. RFC 2661 4.4.2 has no "missing AVP"
code; like other implementations we report the message as malformed: "Length is wrong"."""

_NONZERO_IDS = (AvpType.ASSIGNED_TUNNEL_ID, AvpType.ASSIGNED_SESSION_ID)


def validate(msg: ControlMessage) -> None:
    """Check that `msg` carries every MUST AVP of its message spec (RFC 2661 section 6) and
    non-zero Assigned Tunnel/Session IDs. A ZLB is always valid.

    Raises:
        ProtocolError: result 2, error 2 (missing AVP) or 3 (value out of range), naming the
            AVP; msg_type and session_id set so the core picks StopCCN or CDN.
    """
    if msg.msg_type is None:
        return
    spec = MESSAGE_SPECS[msg.msg_type]
    present = {a.type for a in msg.avps if a.vendor == 0}
    for t in spec.must:
        if t not in present:
            raise ProtocolError(
                2,
                MISSING_AVP_ERROR,
                f"missing mandatory AVP {AVP_TABLE[t].name} in {msg.msg_type.abbrev}",
                msg_type=msg.msg_type,
                session_id=msg.session_id,
                avp_type=t,
            )
    for t in _NONZERO_IDS:
        if t in present and msg.get(t) == 0:
            raise ProtocolError(
                2,
                ErrorCode.VALUE_OUT_OF_RANGE,
                f"{avp_name(t)} is 0 in {msg.msg_type.abbrev}",
                msg_type=msg.msg_type,
                session_id=msg.session_id,
                avp_type=t,
            )


def challenge_response(msg_type: int, secret: bytes, challenge: bytes) -> bytes:
    """Tunnel authentication response (RFC 2661 section 5.1.1): MD5 over one byte holding the
    message type of the message that carries the response, the secret, and the challenge."""
    return hashlib.md5(bytes((msg_type,)) + secret + challenge).digest()


# Re-exported for `from kl2tp.l2tp.message import FLAG_P` style imports in drivers.
PRIORITY_FLAG = FLAG_P
