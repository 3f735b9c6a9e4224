"""Events the tunnel core emits, and the call values they carry.

The driver pulls them with ``Tunnel.next_event()`` after feeding the core. Every class is a
frozen, slotted attrs class: events are values, safe to keep, compare and hand to other tasks.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class CallParams:
    """The AVPs of a call request (ICRQ from a LAC, OCRQ from an LNS), RFC 2661 6.7 / 6.10.

    Every field is optional on the wire except where the RFC says MUST; ``None`` means the
    AVP is absent (on receive) or not sent (on send).
    """

    serial: int = 0
    """Call Serial Number (AVP 15): an identifier for the call, the same on LAC and LNS."""
    bearer_type: int | None = None
    """Bearer Type (AVP 18): bit 0 digital, bit 1 analog. MUST in OCRQ."""
    framing_type: int | None = None
    """Framing Type (AVP 19): bit 0 synchronous, bit 1 asynchronous. MUST in OCRQ."""
    calling_number: str | None = None
    """Calling Number (AVP 22): the subscriber's number (CLI), e.g. "2085730592"."""
    called_number: str | None = None
    """Called Number (AVP 21): the number dialled (DNIS), e.g. "614629". MUST in OCRQ."""
    sub_address: str | None = None
    """Sub-Address (AVP 23): additional dialling information."""
    physical_channel: int | None = None
    """Physical Channel ID (AVP 25): the LAC's vendor-specific channel number."""
    minimum_bps: int | None = None
    """Minimum BPS (AVP 16, OCRQ only): lowest acceptable line speed. MUST in OCRQ."""
    maximum_bps: int | None = None
    """Maximum BPS (AVP 17, OCRQ only): highest acceptable line speed. MUST in OCRQ."""


@attrs.frozen
class ConnectInfo:
    """The AVPs of a call connected message (ICCN / OCCN), RFC 2661 6.9 / 6.11.

    The proxy LCP and proxy authentication AVPs (26-33) let the LNS skip or replay the LCP
    negotiation and authentication the LAC already did with the subscriber.
    """

    tx_connect_speed: int = 64000
    """(Tx) Connect Speed (AVP 24) in bits per second. MUST."""
    framing_type: int = 1
    """Framing Type (AVP 19): 1 synchronous, 2 asynchronous. MUST."""
    rx_connect_speed: int | None = None
    """Rx Connect Speed (AVP 38) when it differs from the transmit speed."""
    private_group_id: str | None = None
    """Private Group ID (AVP 37): customer group the call belongs to (ICCN only)."""
    sequencing_required: bool = False
    """Sequencing Required (AVP 39): data messages must carry Ns/Nr."""
    initial_rx_lcp_confreq: bytes | None = None
    """Initial Received LCP CONFREQ (AVP 26): options of the first CONFREQ from the peer."""
    last_sent_lcp_confreq: bytes | None = None
    """Last Sent LCP CONFREQ (AVP 27): options of the last CONFREQ the LAC sent."""
    last_rx_lcp_confreq: bytes | None = None
    """Last Received LCP CONFREQ (AVP 28): options of the last CONFREQ from the peer."""
    proxy_authen_type: int | None = None
    """Proxy Authen Type (AVP 29): 1 text, 2 CHAP, 3 PAP, 4 none, 5 MS-CHAPv1."""
    proxy_authen_name: str | None = None
    """Proxy Authen Name (AVP 30): the name the subscriber authenticated with."""
    proxy_authen_challenge: bytes | None = None
    """Proxy Authen Challenge (AVP 31): the CHAP challenge the LAC sent."""
    proxy_authen_id: int | None = None
    """Proxy Authen ID (AVP 32): the CHAP identifier of that exchange."""
    proxy_authen_response: bytes | None = attrs.field(default=None, repr=False)
    """Proxy Authen Response (AVP 33): the subscriber's CHAP response or PAP password."""


@attrs.frozen
class TunnelEstablished:
    """The control connection is up: calls may be placed and answered."""

    peer_tunnel_id: int
    """The tunnel id the peer assigned (goes into the header of everything we send)."""
    peer_hostname: str
    """The peer's Host Name AVP."""


@attrs.frozen
class TunnelClosed:
    """The control connection is gone; the core may be dropped once this is seen."""

    result: int
    """StopCCN Result Code (RFC 2661 4.4.2), e.g. 1 general request to clear."""
    error: int
    """Error code (0 = no general error)."""
    message: str
    """Human-readable reason (ours or the peer's error message)."""
    by_peer: bool
    """True when the peer sent the StopCCN, False when we closed (or gave up)."""


@attrs.frozen
class IncomingCall:
    """The peer requests a call: answer with ``Tunnel.answer_call`` or refuse with ``hangup``."""

    sid: int
    """Our (local) session id, allocated by the core."""
    call: CallParams
    """The request's call parameters."""
    outgoing: bool = False
    """True for an OCRQ (the LNS asks this LAC to dial out), False for an ICRQ."""
    peer_sid: int = 0
    """The session id the peer assigned (its Assigned Session ID AVP)."""


@attrs.frozen
class CallRefused:
    """The core refused a call request itself (CDN result 4 sent, no session created):
    ``Tunnel.admission`` named a cap it would exceed."""

    sid: int
    """The session id the CDN's Assigned Session ID gave (not reserved)."""
    peer_sid: int
    """The session id the peer assigned."""
    limit: str
    """The cap, as ``admission`` named it."""
    message: str
    """The CDN's text."""


@attrs.frozen
class CallAnswered:
    """LAC: the LNS answered our call (ICRP) and waits for its ICCN.

    Emitted only for calls placed with ``Tunnel.place_call(..., defer_connect=True)``: the
    driver prepares whatever must exist before the LNS may send data (the kernel session)
    and then sends the ICCN with ``Tunnel.connect_call`` (or clears the call with ``hangup``).
    """

    sid: int
    """Our session id."""
    peer_sid: int
    """The session id the LNS assigned (goes into data message headers)."""
    info: ConnectInfo = ConnectInfo()
    """The ConnectInfo the call was placed with (or last given to ``connect_call``): what
    the ICCN will carry unless ``connect_call`` replaces it."""


@attrs.frozen
class CallEstablished:
    """The session is established: data may flow."""

    sid: int
    """Our session id."""
    peer_sid: int
    """The session id the peer assigned (goes into data message headers)."""
    info: ConnectInfo
    """The ICCN/OCCN AVPs (received on the answering side, sent on the calling side)."""
    call: CallParams = CallParams()
    """The call's parameters: those of the ICRQ/OCRQ received (answering side), or those
    given to ``place_call`` (calling side)."""


@attrs.frozen
class CallClosed:
    """The session is gone (CDN either way, or the tunnel went down under it)."""

    sid: int
    """Our session id."""
    result: int
    """CDN Result Code (RFC 2661 4.4.2), e.g. 1 lost carrier, 3 administrative."""
    error: int
    """Error code (0 = no general error)."""
    message: str
    """Human-readable reason."""
    q931: tuple[int, int] | None
    """Q.931 Cause Code AVP as (cause code, cause message), when present."""
    by_peer: bool
    """True when the peer cleared the call."""


@attrs.frozen
class DataReceived:
    """A data message (a PPP frame) for a session arrived on the control path."""

    sid: int
    """Our session id."""
    payload: bytes
    """The PPP frame, address/control bytes as sent by the peer."""


@attrs.frozen
class LinkInfo:
    """Set-Link-Info (SLI) from the LNS: the PPP ACCM the LAC should use."""

    sid: int
    """Our session id."""
    send_accm: int
    """ACCM for frames the LAC sends to the subscriber."""
    recv_accm: int
    """ACCM for frames the LAC receives from the subscriber."""


@attrs.frozen
class WanError:
    """WAN-Error-Notify (WEN) from the LAC: cumulative line error counters."""

    sid: int
    """Our session id."""
    counters: tuple[int, ...]
    """CRC, framing, hardware overrun, buffer overrun, timeout and alignment errors."""


Event = (
    TunnelEstablished
    | TunnelClosed
    | IncomingCall
    | CallRefused
    | CallAnswered
    | CallEstablished
    | CallClosed
    | DataReceived
    | LinkInfo
    | WanError
)
"""Everything ``Tunnel.next_event()`` returns."""
