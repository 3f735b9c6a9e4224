"""Session (call) state machines of RFC 2661 section 7.4, table-driven, for both roles.

One machine, four tables. A call is one of four kinds, and the kind picks the table; the code
never asks "am I the LAC?":

===============  =========================================================================
kind             states (IOS names)
===============  =========================================================================
LAC incoming     idle -> wait-for-tunnel -> wait-reply -(ICRP)-> wait-connect
                 -(connect/send ICCN)-> established
LNS incoming     idle -(ICRQ)-> wait-answer -(answer/send ICRP)-> wait-connect -(ICCN)->
                 established
LAC outgoing     idle -(OCRQ)-> wait-answer -(answer/send OCRP)-> wait-cs-answer
                 -(connect/send OCCN)-> established
LNS outgoing     idle -> wait-for-tunnel -(send OCRQ)-> wait-reply -(OCRP)-> wait-connect
                 -(OCCN)-> established
===============  =========================================================================

Every kind goes back to ``idle`` on a CDN either way (the session is then destroyed, as IOS
does: "Session state change from established to idle"). ``wait-answer`` is where the driver
decides (AAA, resources) between ``Tunnel.answer_call`` and ``Tunnel.hangup``; a LAC has no
line to dial for an OCRQ, so ``Tunnel.answer_call`` runs ``answer`` and ``connect`` back to
back (OCRP, then OCCN). The LAC's
``wait-connect`` is the mirror image: the LNS answered, and the ICCN goes once the LAC is
ready for the LNS's data (``Tunnel.place_call(defer_connect=True)`` + ``connect_call``; by
default the tunnel connects at once, so the wire sees ICRQ, ICRP, ICCN back to back).

A (state, input) pair missing from the table is a protocol error: for a received message the
tunnel clears the call with a CDN (result 2, "general error"), for a local command it raises
``CommandError`` (the driver used the API out of order).

The session does not send anything itself: it asks its ``SessionHost`` (the tunnel) to.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from kl2tp.l2tp.avp import Accm, Avp, CallErrors, Q931Cause, ResultCode
from kl2tp.l2tp.constants import AvpType, CdnResult, MessageType
from kl2tp.l2tp.errors import ProtocolError
from kl2tp.l2tp.events import (
    CallAnswered,
    CallClosed,
    CallEstablished,
    CallParams,
    ConnectInfo,
    Event,
    IncomingCall,
    LinkInfo,
    WanError,
)
from kl2tp.l2tp.message import ControlMessage

__all__ = [
    "LOCAL_INPUTS",
    "MESSAGE_INPUTS",
    "STATES",
    "TABLES",
    "CallKind",
    "CallParams",
    "Clear",
    "CommandError",
    "ConnectInfo",
    "Session",
    "SessionArg",
    "SessionHost",
    "SessionInput",
    "SessionState",
    "call_params_avps",
    "call_params_from",
    "connect_info_avps",
    "connect_info_from",
    "dispatch",
]

A = AvpType
MT = MessageType


class CallKind(enum.Enum):
    """Which of the four RFC 2661 7.4 machines a session runs."""

    LAC_INCOMING = "lac-incoming"
    LNS_INCOMING = "lns-incoming"
    LAC_OUTGOING = "lac-outgoing"
    LNS_OUTGOING = "lns-outgoing"


class SessionState(enum.StrEnum):
    """Session states; the values are the IOS names that traces and JSON show."""

    IDLE = "idle"
    """No call (before the first input, and again once the call is cleared: then the
    session is destroyed)."""
    WAIT_FOR_TUNNEL = "wait-for-tunnel"
    """Placed by us; the control connection is not established yet."""
    WAIT_REPLY = "wait-reply"
    """Our ICRQ/OCRQ is out; waiting for the ICRP/OCRP."""
    WAIT_ANSWER = "wait-answer"
    """The peer's ICRQ/OCRQ arrived; the driver decides (``answer_call`` or ``hangup``)."""
    WAIT_CONNECT = "wait-connect"
    """Answered: waiting for the ICCN/OCCN (or, LAC incoming, for ``connect_call``)."""
    WAIT_CS_ANSWER = "wait-cs-answer"
    """LAC outgoing call: OCRP sent, the dial-out is in progress; the OCCN follows."""
    ESTABLISHED = "established"
    """The call is up: data may flow."""


class SessionInput(enum.StrEnum):
    """Everything a session table reacts to. Received messages carry the RFC's abbreviation
    (the value of ``MessageType.abbrev``); the rest come from the driver or the tunnel."""

    ICRQ = "ICRQ"
    ICRP = "ICRP"
    ICCN = "ICCN"
    OCRQ = "OCRQ"
    OCRP = "OCRP"
    OCCN = "OCCN"
    CDN = "CDN"
    WEN = "WEN"
    SLI = "SLI"
    PLACE = "place"
    """The driver placed the call (``Tunnel.place_call``)."""
    TUNNEL_UP = "tunnel-up"
    """The control connection is established (or already was)."""
    ANSWER = "answer"
    """``Tunnel.answer_call``."""
    CONNECT = "connect"
    """``Tunnel.connect_call`` (argument: ConnectInfo or None)."""
    HANGUP = "hangup"
    """``Tunnel.hangup`` (argument: Clear)."""
    TUNNEL_DOWN = "tunnel-down"
    """The tunnel went away under the call (argument: Clear); valid in every live state."""
    WAN_ERROR = "wan-error"
    """The LAC reports line errors (argument: CallErrors): WEN."""
    LINK_INFO = "link-info"
    """The LNS sets the LAC's ACCM (argument: Accm): SLI."""

    @classmethod
    def of(cls, msg_type: MessageType) -> SessionInput:
        """The input for a received session-scoped message type.

        Raises:
            KeyError: `msg_type` is not a call-management message.
        """
        return _MESSAGE_INPUT[msg_type]


_MESSAGE_INPUT: dict[MessageType, SessionInput] = {
    mt: SessionInput(mt.abbrev) for mt in MessageType if mt.is_session
}


class CommandError(Exception):
    """A local command (answer_call, connect_call, ...) does not fit the session's state."""


@attrs.frozen
class Clear:
    """Why a call is cleared: the CDN's Result Code and optional Q.931 Cause Code."""

    result: int = CdnResult.ADMINISTRATIVE
    """CDN result code (RFC 2661 4.4.2)."""
    error: int = 0
    """General error code."""
    message: str = ""
    """Optional error message."""
    q931: tuple[int, int] | None = None
    """Q.931 (cause code, cause message type), when known."""
    by_peer: bool = False
    """Reported in CallClosed when the call goes without a CDN of ours (tunnel cleared by
    the peer)."""


class Session:
    """One call inside a tunnel. Small on purpose: there may be 100,000 of them."""

    __slots__ = (
        "accm",
        "call",
        "call_errors",
        "connect_ns",
        "created",
        "data_ready",
        "defer_connect",
        "info",
        "kind",
        "local_sid",
        "peer_sid",
        "setup_deadline",
        "state",
        "table",
    )

    def __init__(
        self, kind: CallKind, local_sid: int, created: float, call: CallParams | None = None
    ) -> None:
        self.kind = kind
        self.table = TABLES[kind]
        self.local_sid = local_sid
        """Our Assigned Session ID (header session id of what the peer sends us)."""
        self.peer_sid = 0
        """The peer's Assigned Session ID; 0 until it told us."""
        self.state = SessionState.IDLE
        """The machine's state (its value is the IOS name)."""
        self.created = created
        """Time the session was created (driver clock), for uptime in show commands."""
        self.call: CallParams = call if call is not None else CallParams()
        """Call request parameters (sent or received)."""
        self.info: ConnectInfo | None = None
        """Connect parameters (to send in ICCN/OCCN, or received)."""
        self.call_errors: CallErrors | None = None
        """Last WAN-Error-Notify counters (LNS side)."""
        self.accm: Accm | None = None
        """Last Set-Link-Info ACCM (LAC side)."""
        self.defer_connect = False
        """LAC incoming call: after the ICRP, report ``CallAnswered`` and wait for the
        driver's ``connect`` instead of sending the ICCN at once."""
        self.data_ready = False
        """The upper layer said it can take this call's data (``Tunnel.data_ready``)."""
        self.connect_ns: int | None = None
        """Ns of the ICCN/OCCN we sent, until its data was seen to follow it on the wire
        (``Tunnel.send_data``)."""
        self.setup_deadline: float | None = None
        """While the call is being set up: when the tunnel clears it if it is not
        established by then (``TunnelConfig.session_setup_timeout``); None afterwards."""

    def __repr__(self) -> str:
        return f"<Session {self.local_sid}/{self.peer_sid} {self.kind.value} {self.state}>"


class SessionHost(Protocol):
    """What a session needs from its tunnel."""

    def send_session(
        self, session: Session, msg_type: MessageType, avps: list[Avp], now: float, header_sid: int
    ) -> None:
        """Send a session-scoped control message (header session id = `header_sid`)."""

    def emit(self, event: Event) -> None:
        """Queue an event for the driver."""

    def session_changed(
        self, session: Session, old: SessionState, new: SessionState, now: float
    ) -> None:
        """The session changed state (trace, and removal when it reached idle)."""


# --- AVP <-> value mapping ----------------------------------------------------------------------

# (field name, AVP type) of CallParams, in the order the RFC lists them.
_CALL_FIELDS: tuple[tuple[str, AvpType], ...] = (
    ("serial", A.CALL_SERIAL_NUMBER),
    ("minimum_bps", A.MINIMUM_BPS),
    ("maximum_bps", A.MAXIMUM_BPS),
    ("bearer_type", A.BEARER_TYPE),
    ("framing_type", A.FRAMING_TYPE),
    ("physical_channel", A.PHYSICAL_CHANNEL_ID),
    ("calling_number", A.CALLING_NUMBER),
    ("called_number", A.CALLED_NUMBER),
    ("sub_address", A.SUB_ADDRESS),
)

_CONNECT_FIELDS: tuple[tuple[str, AvpType], ...] = (
    ("tx_connect_speed", A.TX_CONNECT_SPEED),
    ("framing_type", A.FRAMING_TYPE),
    ("initial_rx_lcp_confreq", A.INITIAL_RECEIVED_LCP_CONFREQ),
    ("last_sent_lcp_confreq", A.LAST_SENT_LCP_CONFREQ),
    ("last_rx_lcp_confreq", A.LAST_RECEIVED_LCP_CONFREQ),
    ("proxy_authen_type", A.PROXY_AUTHEN_TYPE),
    ("proxy_authen_name", A.PROXY_AUTHEN_NAME),
    ("proxy_authen_challenge", A.PROXY_AUTHEN_CHALLENGE),
    ("proxy_authen_id", A.PROXY_AUTHEN_ID),
    ("proxy_authen_response", A.PROXY_AUTHEN_RESPONSE),
    ("private_group_id", A.PRIVATE_GROUP_ID),
    ("rx_connect_speed", A.RX_CONNECT_SPEED),
)

# AVPs an OCRQ must carry (RFC 2661 6.9) but an ICRQ may leave out; defaults when unset.
_OCRQ_DEFAULTS: dict[str, Any] = {
    "minimum_bps": 0,
    "maximum_bps": 0xFFFFFFFF,
    "bearer_type": 3,
    "framing_type": 3,
    "called_number": "",
}
_ICRQ_ONLY = frozenset({"minimum_bps", "maximum_bps", "framing_type"})


def call_params_avps(call: CallParams, *, outgoing: bool) -> list[Avp]:
    """The ICRQ (``outgoing=False``) or OCRQ AVPs for `call`, Assigned Session ID aside."""
    avps: list[Avp] = []
    for name, avp_type in _CALL_FIELDS:
        value = getattr(call, name)
        if outgoing:
            if value is None:
                value = _OCRQ_DEFAULTS.get(name)
            if name == "physical_channel" or name == "calling_number":
                continue  # not in an OCRQ (RFC 2661 6.9)
        elif name in _ICRQ_ONLY:
            continue
        if value is not None:
            avps.append(Avp(avp_type, value))
    return avps


def call_params_from(msg: ControlMessage) -> CallParams:
    """CallParams from a received ICRQ or OCRQ."""
    values: dict[str, Any] = {}
    for name, avp_type in _CALL_FIELDS:
        value = msg.get(avp_type)
        if value is not None:
            values[name] = value
    return CallParams(**values)


def connect_info_avps(info: ConnectInfo, *, outgoing: bool) -> list[Avp]:
    """The ICCN (``outgoing=False``) or OCCN AVPs for `info`."""
    avps: list[Avp] = []
    for name, avp_type in _CONNECT_FIELDS:
        value = getattr(info, name)
        if value is None:
            continue
        if outgoing and name not in ("tx_connect_speed", "framing_type", "rx_connect_speed"):
            continue  # OCCN carries no proxy or private group AVPs (RFC 2661 6.11)
        avps.append(Avp(avp_type, value))
    if info.sequencing_required:
        avps.append(Avp(A.SEQUENCING_REQUIRED, True))
    return avps


def connect_info_from(msg: ControlMessage) -> ConnectInfo:
    """ConnectInfo from a received ICCN or OCCN."""
    values: dict[str, Any] = {}
    for name, avp_type in _CONNECT_FIELDS:
        value = msg.get(avp_type)
        if value is not None:
            values[name] = value
    values["sequencing_required"] = msg.has(A.SEQUENCING_REQUIRED)
    return ConnectInfo(**values)


# --- actions ----------------------------------------------------------------------------------
# An action runs once the state holds the table's next state (the host hears of the change
# after the action, so trace lines read "O ICRQ" then "state change"). It gets the received message
# (None for local inputs) and the command argument (ConnectInfo for connect, Clear for hangup).

Msg = ControlMessage | None
SessionArg = ConnectInfo | Clear | CallErrors | Accm | None
"""The argument of a local input: ConnectInfo (connect), Clear (hangup, tunnel-down),
CallErrors (wan-error), Accm (link-info); None for the rest and for received messages."""
Action = Callable[[SessionHost, Session, Msg, SessionArg, float], None]


def _nothing(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    return None


def _peer_sid(s: Session, msg: ControlMessage | None) -> None:
    if msg is not None:
        s.peer_sid = int(msg.get(A.ASSIGNED_SESSION_ID) or 0)


def _send_icrq(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    avps = [Avp(A.ASSIGNED_SESSION_ID, s.local_sid), *call_params_avps(s.call, outgoing=False)]
    host.send_session(s, MT.ICRQ, avps, now, 0)


def _send_ocrq(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    avps = [Avp(A.ASSIGNED_SESSION_ID, s.local_sid), *call_params_avps(s.call, outgoing=True)]
    host.send_session(s, MT.OCRQ, avps, now, 0)


def _recv_request(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    _peer_sid(s, msg)
    if msg is not None:
        s.call = call_params_from(msg)
    host.emit(
        IncomingCall(
            s.local_sid, s.call, outgoing=s.kind is CallKind.LAC_OUTGOING, peer_sid=s.peer_sid
        )
    )


def _send_icrp(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    host.send_session(s, MT.ICRP, [Avp(A.ASSIGNED_SESSION_ID, s.local_sid)], now, s.peer_sid)


def _send_ocrp(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    avps = [Avp(A.ASSIGNED_SESSION_ID, s.local_sid)]
    if s.call.physical_channel is not None:
        avps.append(Avp(A.PHYSICAL_CHANNEL_ID, s.call.physical_channel))
    host.send_session(s, MT.OCRP, avps, now, s.peer_sid)


def _recv_icrp(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    """LAC: the LNS answered. A deferred call tells the driver, which connects when ready;
    otherwise the tunnel connects at once (no event: nothing for the driver to do)."""
    _peer_sid(s, msg)
    if s.defer_connect:
        host.emit(CallAnswered(s.local_sid, s.peer_sid, s.info or ConnectInfo()))


def _send_iccn(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    """LAC: connect with the ConnectInfo given to connect_call (else to place_call)."""
    info = arg if isinstance(arg, ConnectInfo) else s.info
    if info is None:
        info = ConnectInfo()
    s.info = info
    host.send_session(s, MT.ICCN, connect_info_avps(info, outgoing=False), now, s.peer_sid)
    host.emit(CallEstablished(s.local_sid, s.peer_sid, info, s.call))


def _recv_ocrp(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    _peer_sid(s, msg)


def _send_occn(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    """LAC: the dial-out succeeded, with the ConnectInfo given to answer_call (or the
    defaults)."""
    info = arg if isinstance(arg, ConnectInfo) else ConnectInfo()
    s.info = info
    host.send_session(s, MT.OCCN, connect_info_avps(info, outgoing=True), now, s.peer_sid)
    host.emit(CallEstablished(s.local_sid, s.peer_sid, info, s.call))


def _recv_connected(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    """ICCN (LNS incoming) or OCCN (LNS outgoing): the call is up."""
    info = connect_info_from(msg) if msg is not None else ConnectInfo()
    s.info = info
    host.emit(CallEstablished(s.local_sid, s.peer_sid, info, s.call))


def _recv_cdn(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    rc = msg.get(A.RESULT_CODE) if msg is not None else None
    q = msg.get(A.Q931_CAUSE_CODE) if msg is not None else None
    result, error, text = 0, 0, ""
    if isinstance(rc, ResultCode):
        result, error, text = rc.result, rc.error or 0, rc.message or ""
    q931 = (q.cause, q.message_code) if isinstance(q, Q931Cause) else None
    host.emit(CallClosed(s.local_sid, result, error, text, q931, by_peer=True))


def _send_cdn(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    clear = arg if isinstance(arg, Clear) else Clear()
    rc = ResultCode(clear.result, clear.error, clear.message or None)
    if not clear.error and not clear.message:
        rc = ResultCode(clear.result, 0)
    avps = [Avp(A.ASSIGNED_SESSION_ID, s.local_sid), Avp(A.RESULT_CODE, rc)]
    if clear.q931 is not None:
        avps.append(Avp(A.Q931_CAUSE_CODE, Q931Cause(clear.q931[0], clear.q931[1])))
    host.send_session(s, MT.CDN, avps, now, s.peer_sid)
    host.emit(CallClosed(s.local_sid, clear.result, clear.error, clear.message, clear.q931, False))


def _send_wen(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    errors = arg if isinstance(arg, CallErrors) else CallErrors()
    host.send_session(s, MT.WEN, [Avp(A.CALL_ERRORS, errors)], now, s.peer_sid)


def _send_sli(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    accm = arg if isinstance(arg, Accm) else Accm(0xFFFFFFFF, 0xFFFFFFFF)
    host.send_session(s, MT.SLI, [Avp(A.ACCM, accm)], now, s.peer_sid)


def _drop(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    """Clear locally without a CDN: the peer never heard of this call (or the tunnel is gone)."""
    clear = arg if isinstance(arg, Clear) else Clear()
    host.emit(
        CallClosed(s.local_sid, clear.result, clear.error, clear.message, clear.q931, clear.by_peer)
    )


def _recv_wen(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    errors = msg.get(A.CALL_ERRORS) if msg is not None else None
    if isinstance(errors, CallErrors):
        s.call_errors = errors
        host.emit(WanError(s.local_sid, attrs.astuple(errors)))


def _recv_sli(host: SessionHost, s: Session, msg: Msg, arg: SessionArg, now: float) -> None:
    accm = msg.get(A.ACCM) if msg is not None else None
    if isinstance(accm, Accm):
        s.accm = accm
        host.emit(LinkInfo(s.local_sid, accm.send_accm, accm.recv_accm))


# --- the tables -------------------------------------------------------------------------------

S = SessionState
In = SessionInput

Table = dict[tuple[SessionState, SessionInput], tuple[Action, SessionState]]


def _clearing(
    states_with_peer: tuple[SessionState, ...], states_without: tuple[SessionState, ...]
) -> Table:
    """CDN received / hangup / tunnel-down entries: every live state goes back to idle."""
    table: Table = {}
    for state in states_with_peer:
        table[(state, In.CDN)] = (_recv_cdn, S.IDLE)
        table[(state, In.HANGUP)] = (_send_cdn, S.IDLE)
    for state in states_without:
        table[(state, In.HANGUP)] = (_drop, S.IDLE)
    for state in states_with_peer + states_without:
        table[(state, In.TUNNEL_DOWN)] = (_drop, S.IDLE)
    return table


TABLES: dict[CallKind, Table] = {
    # RFC 2661 7.4.1, LAC side: the LAC detects a call and asks the LNS to take it.
    CallKind.LAC_INCOMING: {
        (S.IDLE, In.PLACE): (_nothing, S.WAIT_FOR_TUNNEL),
        (S.WAIT_FOR_TUNNEL, In.TUNNEL_UP): (_send_icrq, S.WAIT_REPLY),
        (S.WAIT_REPLY, In.ICRP): (_recv_icrp, S.WAIT_CONNECT),
        (S.WAIT_CONNECT, In.CONNECT): (_send_iccn, S.ESTABLISHED),
        (S.ESTABLISHED, In.SLI): (_recv_sli, S.ESTABLISHED),
        (S.ESTABLISHED, In.WAN_ERROR): (_send_wen, S.ESTABLISHED),
        **_clearing((S.WAIT_REPLY, S.WAIT_CONNECT, S.ESTABLISHED), (S.WAIT_FOR_TUNNEL,)),
    },
    # RFC 2661 7.4.1, LNS side.
    CallKind.LNS_INCOMING: {
        (S.IDLE, In.ICRQ): (_recv_request, S.WAIT_ANSWER),
        (S.WAIT_ANSWER, In.ANSWER): (_send_icrp, S.WAIT_CONNECT),
        (S.WAIT_CONNECT, In.ICCN): (_recv_connected, S.ESTABLISHED),
        (S.ESTABLISHED, In.WEN): (_recv_wen, S.ESTABLISHED),
        (S.ESTABLISHED, In.LINK_INFO): (_send_sli, S.ESTABLISHED),
        **_clearing((S.WAIT_ANSWER, S.WAIT_CONNECT, S.ESTABLISHED), ()),
    },
    # RFC 2661 7.4.2, LAC side: the LNS asks the LAC to dial out.
    CallKind.LAC_OUTGOING: {
        (S.IDLE, In.OCRQ): (_recv_request, S.WAIT_ANSWER),
        (S.WAIT_ANSWER, In.ANSWER): (_send_ocrp, S.WAIT_CS_ANSWER),
        (S.WAIT_CS_ANSWER, In.CONNECT): (_send_occn, S.ESTABLISHED),
        (S.ESTABLISHED, In.SLI): (_recv_sli, S.ESTABLISHED),
        (S.ESTABLISHED, In.WAN_ERROR): (_send_wen, S.ESTABLISHED),
        **_clearing((S.WAIT_ANSWER, S.WAIT_CS_ANSWER, S.ESTABLISHED), ()),
    },
    # RFC 2661 7.4.2, LNS side.
    CallKind.LNS_OUTGOING: {
        (S.IDLE, In.PLACE): (_nothing, S.WAIT_FOR_TUNNEL),
        (S.WAIT_FOR_TUNNEL, In.TUNNEL_UP): (_send_ocrq, S.WAIT_REPLY),
        (S.WAIT_REPLY, In.OCRP): (_recv_ocrp, S.WAIT_CONNECT),
        (S.WAIT_CONNECT, In.OCCN): (_recv_connected, S.ESTABLISHED),
        (S.ESTABLISHED, In.WEN): (_recv_wen, S.ESTABLISHED),
        (S.ESTABLISHED, In.LINK_INFO): (_send_sli, S.ESTABLISHED),
        **_clearing((S.WAIT_REPLY, S.WAIT_CONNECT, S.ESTABLISHED), (S.WAIT_FOR_TUNNEL,)),
    },
}
"""(state, input) -> (action, next state), one table per call kind. A missing pair is a
protocol error (received message: CDN result 2) or a CommandError (local input)."""

STATES = frozenset(SessionState)
"""Every state a session can be in."""

LOCAL_INPUTS = frozenset(
    {
        In.PLACE,
        In.TUNNEL_UP,
        In.ANSWER,
        In.CONNECT,
        In.HANGUP,
        In.TUNNEL_DOWN,
        In.WAN_ERROR,
        In.LINK_INFO,
    }
)
"""Inputs that come from the driver or the tunnel rather than from the wire."""

MESSAGE_INPUTS = frozenset(SessionInput) - LOCAL_INPUTS
"""Inputs that are received session-scoped messages."""


def dispatch(
    host: SessionHost,
    session: Session,
    event: SessionInput,
    now: float,
    msg: ControlMessage | None = None,
    arg: SessionArg = None,
) -> None:
    """Run one input through the session's table.

    Raises:
        ProtocolError: a received message the state does not expect (result 2: the tunnel
            clears the call with a CDN).
        CommandError: a local command the state does not allow.
    """
    old = session.state
    entry = session.table.get((old, event))
    if entry is None:
        if event in LOCAL_INPUTS:
            raise CommandError(f"{event} not allowed in session state {old}")
        raise ProtocolError(
            CdnResult.GENERAL_ERROR,
            0,
            f"unexpected {event} in session state {old}",
            session_id=session.local_sid,
        )
    action, new = entry
    session.state = new
    action(host, session, msg, arg, now)
    if new is not old:
        host.session_changed(session, old, new, now)
