"""The codec's exceptions: DecodeError for bytes we cannot parse, ProtocolError for a peer that
breaks the rules in a way that must end the tunnel or session (RFC 2661 section 4.1, 4.4.2)."""

from __future__ import annotations


class DecodeError(Exception):
    """The bytes are not a well-formed L2TP message. The only exception decoders raise
    (besides ProtocolError for an unknown mandatory AVP or message type).

    Attributes:
        message: what is wrong, without the offset.
        offset: byte offset in the datagram where the problem is.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte {offset}")
        self.message = message
        self.offset = offset


class UnsupportedVersion(DecodeError):
    """The header's version is not 2: 1 is L2F (shares UDP port 1701), 3 is L2TPv3.
    Drivers drop these and count them by `version`."""

    def __init__(self, version: int) -> None:
        what = {1: " (L2F)", 3: " (L2TPv3)"}.get(version, "")
        super().__init__(f"unsupported version {version}{what}", 1)
        self.version = version


class UnknownMessageType(DecodeError):
    """A control message whose Message Type AVP is unknown and has the M bit clear: RFC 2661
    section 4.4.1 says to ignore the message. It is still sequenced, so the header fields are
    kept here for the reliable-delivery layer to acknowledge it."""

    def __init__(
        self, message_type: int, tunnel_id: int, session_id: int, ns: int, nr: int
    ) -> None:
        super().__init__(f"unknown message type {message_type} (M bit clear: ignore)", 18)
        self.message_type = message_type
        self.tunnel_id = tunnel_id
        self.session_id = session_id
        self.ns = ns
        self.nr = nr


class ProtocolError(Exception):
    """The peer broke the protocol; the core turns this into a StopCCN (tunnel scope) or a CDN
    (session scope) carrying `result`/`error`/`message` in the Result Code AVP.

    Attributes:
        result: Result Code (StopCCN 2 = general error; CDN 2 = see error code).
        error: general error code (RFC 2661 section 4.4.2), 0 = no general error.
        message: human-readable text for the optional error message field.
        msg_type: message type of the offending message when known.
        session_id: header session id of the offending message when known (0 = tunnel).
        avp_type: the AVP at fault when there is one.
    """

    def __init__(
        self,
        result: int,
        error: int = 0,
        message: str = "",
        *,
        msg_type: int | None = None,
        session_id: int | None = None,
        avp_type: int | None = None,
    ) -> None:
        super().__init__(message or f"result {result}, error {error}")
        self.result = result
        self.error = error
        self.message = message
        self.msg_type = msg_type
        self.session_id = session_id
        self.avp_type = avp_type
