"""Wire constants of L2TPv2 (RFC 2661) as IntEnums, with the description tables of 4.4.2."""

from __future__ import annotations

from enum import IntEnum, IntFlag

L2TP_PORT = 1701
"""UDP port (RFC 2661 section 8.1)."""

VERSION = 2
"""The only header version this codec speaks."""

# Header flag bits (RFC 2661 section 3.1), first 16-bit word of the header.
FLAG_T = 0x8000  # message type: 1 = control
FLAG_L = 0x4000  # length field present
FLAG_S = 0x0800  # Ns/Nr present
FLAG_O = 0x0200  # offset size present
FLAG_P = 0x0100  # priority (data messages)
VERSION_MASK = 0x000F
CONTROL_FLAGS = FLAG_T | FLAG_L | FLAG_S | VERSION
"""0xC802: the flags word of every control message we send."""
CONTROL_HEADER_LEN = 12

# AVP header bits (RFC 2661 section 4.1).
AVP_M = 0x8000
AVP_H = 0x4000
AVP_RESERVED = 0x3C00
AVP_LENGTH_MASK = 0x03FF
AVP_HEADER_LEN = 6
AVP_MAX_LEN = AVP_LENGTH_MASK


class MessageType(IntEnum):
    """Control message types (RFC 2661 section 3.2)."""

    SCCRQ = 1
    SCCRP = 2
    SCCCN = 3
    STOPCCN = 4
    HELLO = 6
    OCRQ = 7
    OCRP = 8
    OCCN = 9
    ICRQ = 10
    ICRP = 11
    ICCN = 12
    CDN = 14
    WEN = 15
    SLI = 16

    @property
    def abbrev(self) -> str:
        """The RFC's abbreviation: "SCCRQ", "StopCCN", ..."""
        return "StopCCN" if self is MessageType.STOPCCN else self.name

    @property
    def is_session(self) -> bool:
        """True for call-management messages (errors end the session with a CDN)."""
        return self in SESSION_MESSAGES


SESSION_MESSAGES = frozenset(
    {
        MessageType.OCRQ,
        MessageType.OCRP,
        MessageType.OCCN,
        MessageType.ICRQ,
        MessageType.ICRP,
        MessageType.ICCN,
        MessageType.CDN,
        MessageType.WEN,
        MessageType.SLI,
    }
)
"""Message types that belong to a session rather than to the control connection."""

MESSAGE_TYPES: dict[int, MessageType] = {m.value: m for m in MessageType}
"""Wire value -> MessageType for the known types (fast lookup in the decoder)."""


class AvpType(IntEnum):
    """IETF (vendor 0) AVP attribute types of RFC 2661 section 4.4."""

    MESSAGE_TYPE = 0
    RESULT_CODE = 1
    PROTOCOL_VERSION = 2
    FRAMING_CAPABILITIES = 3
    BEARER_CAPABILITIES = 4
    TIE_BREAKER = 5
    FIRMWARE_REVISION = 6
    HOST_NAME = 7
    VENDOR_NAME = 8
    ASSIGNED_TUNNEL_ID = 9
    RECEIVE_WINDOW_SIZE = 10
    CHALLENGE = 11
    Q931_CAUSE_CODE = 12
    CHALLENGE_RESPONSE = 13
    ASSIGNED_SESSION_ID = 14
    CALL_SERIAL_NUMBER = 15
    MINIMUM_BPS = 16
    MAXIMUM_BPS = 17
    BEARER_TYPE = 18
    FRAMING_TYPE = 19
    CALLED_NUMBER = 21
    CALLING_NUMBER = 22
    SUB_ADDRESS = 23
    TX_CONNECT_SPEED = 24
    PHYSICAL_CHANNEL_ID = 25
    INITIAL_RECEIVED_LCP_CONFREQ = 26
    LAST_SENT_LCP_CONFREQ = 27
    LAST_RECEIVED_LCP_CONFREQ = 28
    PROXY_AUTHEN_TYPE = 29
    PROXY_AUTHEN_NAME = 30
    PROXY_AUTHEN_CHALLENGE = 31
    PROXY_AUTHEN_ID = 32
    PROXY_AUTHEN_RESPONSE = 33
    CALL_ERRORS = 34
    ACCM = 35
    RANDOM_VECTOR = 36
    PRIVATE_GROUP_ID = 37
    RX_CONNECT_SPEED = 38
    SEQUENCING_REQUIRED = 39


class FramingCapability(IntFlag):
    """Framing Capabilities / Framing Type bits (RFC 2661 4.4.3, 4.4.5)."""

    SYNC = 1
    ASYNC = 2


class BearerCapability(IntFlag):
    """Bearer Capabilities / Bearer Type bits (RFC 2661 4.4.3, 4.4.5)."""

    DIGITAL = 1
    ANALOG = 2


class ProxyAuthenType(IntEnum):
    """Proxy Authen Type values (RFC 2661 section 4.4.5)."""

    RESERVED = 0
    TEXTUAL = 1
    CHAP = 2
    PAP = 3
    NONE = 4
    MSCHAP_V1 = 5


class StopCcnResult(IntEnum):
    """Result codes of the StopCCN Result Code AVP (RFC 2661 section 4.4.2)."""

    RESERVED = 0
    CLEAR_CONNECTION = 1
    GENERAL_ERROR = 2
    CHANNEL_EXISTS = 3
    NOT_AUTHORIZED = 4
    UNSUPPORTED_VERSION = 5
    SHUTTING_DOWN = 6
    FSM_ERROR = 7

    @property
    def description(self) -> str:
        """The RFC's wording."""
        return STOPCCN_RESULT_TEXT[self]


STOPCCN_RESULT_TEXT: dict[int, str] = {
    0: "Reserved",
    1: "General request to clear control connection",
    2: "General error--Error Code indicates the problem",
    3: "Control channel already exists",
    4: "Requester is not authorized to establish a control channel",
    5: "The protocol version of the requester is not supported",
    6: "Requester is being shut down",
    7: "Finite State Machine error",
}


class CdnResult(IntEnum):
    """Result codes of the CDN Result Code AVP (RFC 2661 section 4.4.2)."""

    RESERVED = 0
    LOSS_OF_CARRIER = 1
    GENERAL_ERROR = 2
    ADMINISTRATIVE = 3
    NO_FACILITIES_TEMPORARY = 4
    NO_FACILITIES_PERMANENT = 5
    INVALID_DESTINATION = 6
    NO_CARRIER = 7
    BUSY = 8
    NO_DIAL_TONE = 9
    TIMEOUT = 10
    NO_FRAMING = 11

    @property
    def description(self) -> str:
        """The RFC's wording."""
        return CDN_RESULT_TEXT[self]


CDN_RESULT_TEXT: dict[int, str] = {
    0: "Reserved",
    1: "Call disconnected due to loss of carrier",
    2: "Call disconnected for the reason indicated in error code",
    3: "Call disconnected for administrative reasons",
    4: "Call failed due to lack of appropriate facilities being available (temporary condition)",
    5: "Call failed due to lack of appropriate facilities being available (permanent condition)",
    6: "Invalid destination",
    7: "Call failed due to no carrier detected",
    8: "Call failed due to detection of a busy signal",
    9: "Call failed due to lack of a dial tone",
    10: "Call was not established within time allotted by LAC",
    11: "Call was connected but no appropriate framing was detected",
}


class ErrorCode(IntEnum):
    """General error codes of the Result Code AVP (RFC 2661 section 4.4.2)."""

    NO_ERROR = 0
    NO_CONTROL_CONNECTION = 1
    LENGTH_WRONG = 2
    VALUE_OUT_OF_RANGE = 3
    INSUFFICIENT_RESOURCES = 4
    INVALID_SESSION_ID = 5
    VENDOR_ERROR = 6
    TRY_ANOTHER = 7
    UNKNOWN_MANDATORY_AVP = 8

    @property
    def description(self) -> str:
        """The RFC's wording."""
        return ERROR_CODE_TEXT[self]


ERROR_CODE_TEXT: dict[int, str] = {
    0: "No general error",
    1: "No control connection exists yet for this LAC-LNS pair",
    2: "Length is wrong",
    3: "One of the field values was out of range or reserved field was non-zero",
    4: "Insufficient resources to handle this operation now",
    5: "The Session ID is invalid in this context",
    6: "A generic vendor-specific error occurred in the LAC",
    7: "Try another LNS",
    8: "Session or tunnel was shutdown due to receipt of an unknown AVP with the M-bit set",
}


def result_text(msg_type: int | None, result: int) -> str:
    """Description of `result` in a StopCCN (msg_type 4) or CDN (anything else)."""
    table = STOPCCN_RESULT_TEXT if msg_type == MessageType.STOPCCN else CDN_RESULT_TEXT
    return table.get(result, f"Unknown result {result}")


def error_text(error: int) -> str:
    """Description of a general error code."""
    return ERROR_CODE_TEXT.get(error, f"Unknown error {error}")


VENDOR_NAMES: dict[int, str] = {9: "Cisco"}
"""SMI enterprise numbers seen in vendor AVPs, for display only."""
