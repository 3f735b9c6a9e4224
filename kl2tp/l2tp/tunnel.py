"""The tunnel (control connection) core: RFC 2661 section 7.2 state machine, tunnel
authentication (5.1.1), reliable delivery (5.8, via ``Transport``) and the sessions of the
tunnel (7.4, via ``session``).

Sans-IO, aioquic style. The driver feeds datagrams and the time, sends what
``datagrams_to_send`` returns, sleeps until ``get_timer``, calls ``handle_timer`` and reads
``next_event``. Initiator and responder run the same table; they differ by where they start.

Tunnel states (IOS names): ``idle``, ``wait-ctl-reply`` (initiator sent SCCRQ),
``wait-ctl-conn`` (responder sent SCCRP), ``established``, ``no-sessions-left`` (the last
session went away: a StopCCN follows after ``idle_timeout``), ``shutting-down`` (we sent a
StopCCN and wait for its ack), ``closed``.
"""

from __future__ import annotations

import enum
import hmac
import logging
import random
from collections import deque
from collections.abc import Callable

import attrs

from kl2tp.l2tp import trace
from kl2tp.l2tp.avp import AVP_TABLE, Accm, Avp, CallErrors, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import (
    SESSION_MESSAGES,
    VERSION,
    AvpType,
    CdnResult,
    ErrorCode,
    MessageType,
    StopCcnResult,
)
from kl2tp.l2tp.errors import DecodeError, ProtocolError, UnknownMessageType
from kl2tp.l2tp.events import (
    CallParams,
    CallRefused,
    ConnectInfo,
    DataReceived,
    Event,
    TunnelClosed,
    TunnelEstablished,
)
from kl2tp.l2tp.message import (
    ControlMessage,
    DataMessage,
    challenge_response,
    decode,
    encode_control,
    encode_data,
    inspect,
    validate,
)
from kl2tp.l2tp.session import (
    CallKind,
    Clear,
    CommandError,
    Session,
    SessionInput,
    SessionState,
    dispatch,
)
from kl2tp.l2tp.transport import Transport

__all__ = [
    "EARLY_FRAMES",
    "TUNNEL_INPUTS",
    "TUNNEL_STATES",
    "TUNNEL_TABLE",
    "CommandError",
    "Stop",
    "Tunnel",
    "TunnelConfig",
    "TunnelInput",
    "TunnelState",
    "tie_breaker_loses",
]

A = AvpType
MT = MessageType
_log = trace.log
_avp_log = trace.avp_log
_DEBUG = logging.DEBUG

CHALLENGE_LEN = 16
"""Bytes of the Challenge AVP we send (MD5-sized, like IOS)."""
EARLY_FRAMES = 16
"""Data frames kept per session until its upper layer is ready (``Tunnel.data_ready``)."""


class TunnelState(enum.StrEnum):
    """Tunnel (control connection) states; the values are the IOS names that traces
    (``Tunnel state change from idle to wait-ctl-reply``) and JSON show."""

    IDLE = "idle"
    """Created: the initiator has not sent its SCCRQ, the responder has not had one."""
    WAIT_CTL_REPLY = "wait-ctl-reply"
    """Initiator: SCCRQ sent, waiting for the SCCRP."""
    WAIT_CTL_CONN = "wait-ctl-conn"
    """Responder: SCCRP sent, waiting for the SCCCN."""
    ESTABLISHED = "established"
    """Up, with sessions (or none yet)."""
    NO_SESSIONS_LEFT = "no-sessions-left"
    """Up; the last session went away: a StopCCN follows after ``idle_timeout``."""
    SHUTTING_DOWN = "shutting-down"
    """We sent a StopCCN and wait for its acknowledgement."""
    CLOSED = "closed"
    """Gone (the RFC's "clean up"): only a received StopCCN is still re-acked a while."""


class TunnelInput(enum.StrEnum):
    """Everything the tunnel table reacts to: received control messages (by the RFC's
    abbreviation; one input for all call-management messages), commands of the driver,
    timers, and what the core itself notices."""

    SCCRQ = "SCCRQ"
    SCCRP = "SCCRP"
    SCCCN = "SCCCN"
    STOPCCN = "StopCCN"
    HELLO = "HELLO"
    SESSION = "session"
    """Any call-management message (ICRQ ... SLI): the session machines take it."""
    CONNECT = "connect"
    """Command: send the SCCRQ (``Tunnel.connect``)."""
    CLOSE = "close"
    """Command (also a protocol error of tunnel scope): clear with a StopCCN (argument:
    Stop)."""
    IDLE_TIMEOUT = "idle-timeout"
    """Timer: ``idle_timeout`` seconds in no-sessions-left."""
    RETRIES_EXHAUSTED = "retries-exhausted"
    """Timer: a message was retransmitted ``max_retries`` times without an ack."""
    SETUP_TIMEOUT = "setup-timeout"
    """Timer: ``setup_timeout`` seconds since creation and still not established."""
    STOP_ACKED = "stop-acked"
    """Our StopCCN was acknowledged."""
    LAST_SESSION_GONE = "last-session-gone"
    """The last session of an established tunnel went away."""
    SESSION_CREATED = "session-created"
    """A session was created in no-sessions-left."""


@attrs.frozen
class Stop:
    """Why we clear a tunnel: the StopCCN's Result Code (RFC 2661 4.4.2)."""

    result: int = StopCcnResult.CLEAR_CONNECTION
    """StopCCN result code."""
    error: int = 0
    """General error code."""
    message: str = ""
    """Optional error message."""


@attrs.frozen
class TunnelConfig:
    """Per-tunnel settings (the ``[l2tp]`` config section)."""

    hostname: str = "kl2tp"
    """Our Host Name AVP."""
    secret: bytes | None = attrs.field(default=None, repr=False)
    """Tunnel secret: when set we challenge the peer and require a correct response, and we
    can answer its challenge. Never logged."""
    hide_avps: bool = False
    """Hide the AVPs the RFC allows to hide (needs ``secret``)."""
    hello_interval: float = 60.0
    """Send a HELLO after this many seconds without hearing from the peer; 0 disables."""
    receive_window: int = 16
    """Our Receive Window Size AVP: how many messages the peer may have in flight to us."""
    retransmit_initial: float = 1.0
    """First retransmission timeout, seconds; doubles on every retry."""
    retransmit_cap: float = 8.0
    """Largest retransmission timeout, seconds."""
    max_retries: int = 5
    """Retransmissions of one message before the tunnel is declared dead."""
    idle_timeout: float = 10.0
    """Seconds in ``no-sessions-left`` before we clear the tunnel; 0 = keep it."""
    vendor_name: str = "kl2tp"
    """Our Vendor Name AVP."""
    framing_caps: int = 3
    """Framing Capabilities AVP (1 sync, 2 async)."""
    bearer_caps: int = 3
    """Bearer Capabilities AVP (1 digital, 2 analog)."""
    ack_delay: float | None = None
    """How long an ack may wait to ride on a message before a ZLB goes; None = a quarter of
    ``retransmit_initial``."""
    firmware_revision: int | None = None
    """Firmware Revision AVP, when set."""
    tie_breaker: bool = False
    """Send a Tie Breaker AVP in our SCCRQ (RFC 2661 4.4.3); see ``tie_breaker_loses``."""
    setup_timeout: float | None = None
    """Seconds from the tunnel's creation until it must be established, whatever the path (an
    SCCRQ whose Ns is not 0, a peer that never sends its SCCCN or SCCRP): then it is
    forgotten at once, without a StopCCN (the peer's address is unproven). None: one
    retransmission cycle (31 s with the defaults), so a peer that is merely slow or lossy
    meets the retransmission limit first, as before."""
    session_setup_timeout: float | None = None
    """Seconds a call may take from its creation until established (an answered ICRQ whose
    ICCN never comes, an ICRQ of ours never answered): then CDN result 10. None: one
    retransmission cycle (so a lost message meets the retransmission limit first)."""
    max_setup_sessions_per_tunnel: int = 1000
    """Calls in setup in this tunnel at once; a further ICRQ/OCRQ gets CDN result 4
    (temporary lack of facilities) and creates nothing."""


def tie_breaker_loses(ours: bytes, theirs: bytes) -> bool:
    """RFC 2661 4.4.3: both sides sent an SCCRQ with a Tie Breaker; the lower value wins.

    Returns:
        True when our tunnel must give way (ours is higher, or equal: then both give way).
    """
    return int.from_bytes(ours, "big") >= int.from_bytes(theirs, "big")


def retransmission_cycle(config: TunnelConfig) -> float:
    """Seconds from a first transmission until its last retransmission times out (31 s with
    the defaults: 1 + 2 + 4 + 8 + 8 + 8), the "full retransmission cycle" of RFC 2661 5.7."""
    return sum(
        min(config.retransmit_initial * (1 << i), config.retransmit_cap)
        for i in range(config.max_retries + 1)
    )


class _Ignored:
    """A sequenced message the tunnel acknowledges but does not act on (unknown type, M
    clear: RFC 2661 4.4.1)."""

    __slots__ = ()


class _Broken:
    """A sequenced message that failed to decode with a protocol error (unknown mandatory
    AVP): acted on when its turn comes, so errors keep the message order."""

    __slots__ = ("error", "peer_sid")

    def __init__(self, error: ProtocolError, peer_sid: int = 0) -> None:
        self.error = error
        self.peer_sid = peer_sid
        """The Assigned Session ID of a broken ICRQ/OCRQ (0: none), so its CDN reaches the
        peer's call (RFC 2661 4.1: the session is torn down, not just forgotten)."""


_IGNORED = _Ignored()
Msg = ControlMessage | None
_Item = ControlMessage | _Broken | _Ignored

TS = TunnelState
TI = TunnelInput
_UP = frozenset({TS.ESTABLISHED, TS.NO_SESSIONS_LEFT})
_SETUP = frozenset({TS.IDLE, TS.WAIT_CTL_REPLY, TS.WAIT_CTL_CONN})
_CLOSING = frozenset({TS.SHUTTING_DOWN, TS.CLOSED})
_COMMANDS = frozenset({TI.CONNECT})
_BEFORE_ICRP = frozenset({SessionState.WAIT_FOR_TUNNEL, SessionState.WAIT_REPLY})
_MESSAGE_INPUT: dict[MessageType, TunnelInput] = {
    mt: TI.SESSION if mt.is_session else TunnelInput(mt.abbrev) for mt in MessageType
}
_IN_KEYS = {mt: f"in_{mt.abbrev}" for mt in MessageType}
_OUT_KEYS = {mt: f"out_{mt.abbrev}" for mt in MessageType}
_HIDE_ALL = frozenset(t for t, spec in AVP_TABLE.items() if spec.may_hide)
_SENT_PLAIN = frozenset({MT.SCCRQ, MT.SCCRP})
"""Messages whose AVPs are never hidden, even with ``hide_avps``: a peer may choose the secret
by our Host Name, which these carry, and so read their AVPs before it knows the secret.
xl2tpd 1.3.18 does (it looks its secret up after parsing the message) and fails the tunnel
with "Invalid Hidden AVP"; hiding is a MAY (RFC 2661 4.3), so these go in clear."""
_REQUESTS = {MT.ICRQ: CallKind.LNS_INCOMING, MT.OCRQ: CallKind.LAC_OUTGOING}


class StateTally:
    """Tunnels and sessions by state over every tunnel core attached to it
    (:meth:`Tunnel.attach`), kept up to date at each state change: a driver reads how many
    of each there are in O(1), however many sessions there are (the metrics scrape)."""

    __slots__ = ("sessions", "tunnels")

    def __init__(self) -> None:
        self.tunnels: dict[str, int] = {}
        """Attached tunnels by state (IOS names)."""
        self.sessions: dict[str, int] = {}
        """Their sessions by state (``idle`` ones are gone)."""

    @staticmethod
    def _add(counts: dict[str, int], state: str, n: int) -> None:
        counts[state] = counts.get(state, 0) + n


class Tunnel:
    """One L2TP control connection and its sessions.

    Args:
        config: tunnel settings.
        local_tunnel_id: our Assigned Tunnel ID (non-zero, unique: the driver allocates it).
        initiator: True to send the SCCRQ (``connect``), False to answer one.
        rng: source of challenges, session ids, random vectors and tie breakers.
        now: the driver's clock.
        lac: the role for ``place_call`` (ICRQ as LAC, OCRQ as LNS); defaults to
            ``initiator``.
        refuse: responder: answer the SCCRQ with a StopCCN carrying this instead of an SCCRP
            (the endpoint's per-peer policy refused the peer before any challenge is answered).
    """

    def __init__(
        self,
        config: TunnelConfig,
        local_tunnel_id: int,
        *,
        initiator: bool,
        rng: random.Random,
        now: float,
        lac: bool | None = None,
        refuse: Stop | None = None,
    ) -> None:
        self.config = config
        self.refuse = refuse
        """Set: the SCCRQ gets this StopCCN (and no SCCRP); see ``refuse`` above."""
        self.local_tunnel_id = local_tunnel_id
        self.initiator = initiator
        self.lac = initiator if lac is None else lac
        self.rng = rng
        self.created = now
        self.state = TS.IDLE
        """The machine's state (its value is the IOS name)."""
        self.peer_tunnel_id = 0
        self.peer_hostname = ""
        self.peer_vendor = ""
        self.peer_window = 4
        """The peer's Receive Window Size (our send window)."""
        self.sessions: dict[int, Session] = {}
        """Live sessions by our session id."""
        self.tally: StateTally | None = None
        """Where this tunnel and its sessions are counted by state (:meth:`attach`)."""
        self.counters: dict[str, int] = {
            "retransmits": 0,
            "duplicates": 0,
            "out_of_window": 0,
            "in_ZLB": 0,
            "out_ZLB": 0,
        }
        """Messages in/out by type (``in_SCCRQ``, ``out_ZLB``...), retransmits, duplicates,
        out-of-window drops, malformed and unknown-session drops."""
        self.tie_breaker: bytes | None = rng.randbytes(8) if config.tie_breaker else None
        """The Tie Breaker we send in our SCCRQ, when configured."""
        self.peer_tie_breaker: bytes | None = None
        """The Tie Breaker the peer's SCCRQ carried."""
        self.close_reason: TunnelClosed | None = None
        """Set once the tunnel is closed (or closing): why."""
        self.hold_until: float | None = None
        """After receiving a StopCCN we keep acking its retransmissions until then."""
        self.transport: Transport[_Item] = Transport(
            counters=self.counters,
            trace_id=local_tunnel_id,
            receive_window=config.receive_window,
            retransmit_initial=config.retransmit_initial,
            retransmit_cap=config.retransmit_cap,
            max_retries=config.max_retries,
            ack_delay=(
                config.ack_delay if config.ack_delay is not None else config.retransmit_initial / 4
            ),
        )
        self._events: deque[Event] = deque()
        self.admission: Callable[[], tuple[str, str] | None] | None = None
        """The driver's caps, asked before a call request (ICRQ/OCRQ) creates a session:
        None admits it; (cap, text) refuses it at once with CDN result 4 and ``text``, and
        `CallRefused` tells the driver. A refused call costs no session (RFC 2661 4.4.2)."""
        self._peer_sids: dict[int, int] = {}
        self._waiting: list[int] = []
        self._early: dict[int, list[bytes]] = {}
        """Data kept until its session is established and ready, by our session id (at
        most EARLY_FRAMES each)."""
        self._challenge: bytes | None = None
        self._hide = _HIDE_ALL if config.hide_avps and config.secret else frozenset()
        self._idle_deadline: float | None = None
        setup = config.setup_timeout
        self._setup_deadline: float | None = now + (
            setup if setup is not None else retransmission_cycle(config)
        )
        self.setting_up = 0
        """Sessions not established yet (each has a ``setup_deadline``)."""
        self._setup_queue: deque[Session] = deque()
        """Sessions in setup in creation order, so in deadline order (one timeout for all);
        entries of sessions that left setup are skipped when they reach the front."""
        self._session_setup = (
            config.session_setup_timeout
            if config.session_setup_timeout is not None
            else retransmission_cycle(config)
        )
        self._last_heard = now
        self._dropping = False
        self._prefix = trace.tunnel_prefix(local_tunnel_id)
        self.peer_address = ""
        """The peer's IP address, for trace lines (the endpoint sets it)."""

    def __repr__(self) -> str:
        return f"<Tunnel {self.local_tunnel_id}/{self.peer_tunnel_id} {self.state}>"

    # --- driver surface -----------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Feed one UDP payload that belongs to this tunnel."""
        if len(data) >= 6 and data[0] == 0 and data[1] == VERSION:
            # A plain data message (no L, S, O or P bit: what PPP frames usually ride in):
            # the session id is all we need, skip the general decoder.
            self._data((data[4] << 8) | data[5], bytes(data[6:]))
            return
        try:
            msg = decode(data, self.config.secret)
        except UnknownMessageType as exc:
            self._count("ignored_unknown_type")
            self._sequenced(exc.ns, exc.nr, _IGNORED, now)
            return
        except ProtocolError as exc:
            if len(data) < 12:
                self._count("malformed")
                return
            ns = (data[8] << 8) | data[9]
            nr = (data[10] << 8) | data[11]
            self._sequenced(ns, nr, _Broken(exc, self._requested_sid(exc, data)), now)
            return
        except DecodeError as exc:
            self._count("malformed")
            if _log.isEnabledFor(_DEBUG):
                trace.line(self._prefix, f"Dropped malformed packet: {exc}")
            return
        if isinstance(msg, ControlMessage):
            self._trace_in(data, msg)
        self._receive(msg, now)

    def receive_message(
        self, msg: ControlMessage | DataMessage, now: float, data: bytes | None = None
    ) -> None:
        """Feed an already decoded message (the driver decoded an SCCRQ to demux it);
        ``data``, its bytes, for the trace (header line, AVP lines and hex dump)."""
        if isinstance(msg, ControlMessage):
            if data is not None:
                self._trace_in(data, msg)
            elif _log.isEnabledFor(_DEBUG):
                trace.line(
                    self._prefix,
                    f"I {trace.message_name(msg.msg_type)}, tnl {msg.tunnel_id}, "
                    f"cl {msg.session_id}, ns {msg.ns}, nr {msg.nr}",
                )
        self._receive(msg, now)

    def _trace_in(self, data: bytes, msg: ControlMessage) -> None:
        """IOS order: the parse lines, then ``I SCCRQ, flg TLS, ...`` and its hex dump."""
        if msg.msg_type is not None and _avp_log.isEnabledFor(trace.AVP_LEVEL):
            self._trace_avps(data, msg)
        if _log.isEnabledFor(_DEBUG):
            trace.packet(self.local_tunnel_id, "I", data)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Datagrams to send to the peer now, in order."""
        return self.transport.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must run next (driver clock), or None."""
        # Called after every wake-up of the driver: no allocation on this path.
        best = self.transport.get_timer()
        idle = self._idle_deadline
        if idle is not None and (best is None or idle < best):
            best = idle
        hold = self.hold_until
        if hold is not None and (best is None or hold < best):
            best = hold
        setup = self._setup_deadline
        if setup is not None and (best is None or setup < best):
            best = setup
        queue = self._setup_queue
        while queue and queue[0].setup_deadline is None:
            queue.popleft()  # left setup (established or gone): its deadline no longer counts
        if queue:
            due = queue[0].setup_deadline
            if due is not None and (best is None or due < best):
                best = due
        interval = self.config.hello_interval
        if interval > 0 and self.state in _UP:
            hello = self._last_heard + interval
            if best is None or hello < best:
                best = hello
        return best

    def handle_timer(self, now: float) -> None:
        """Run what is due: retransmissions, delayed acks, HELLO, idle teardown, hold end."""
        transport = self.transport
        transport.handle_timer(now)
        if transport.failed:
            transport.failed = False
            self.fire(TI.RETRIES_EXHAUSTED, now)
        if self._idle_deadline is not None and now >= self._idle_deadline:
            self._idle_deadline = None
            self.fire(TI.IDLE_TIMEOUT, now)
        if self._setup_deadline is not None and now >= self._setup_deadline:
            self._setup_deadline = None
            self._count("setup_timeouts")
            self.fire(TI.SETUP_TIMEOUT, now)
        queue = self._setup_queue
        while queue:
            session = queue[0]
            due = session.setup_deadline
            if due is not None and due > now:
                break
            queue.popleft()
            if due is not None and self.sessions.get(session.local_sid) is session:
                self._count("session_setup_timeouts")
                self.hangup(
                    session.local_sid,
                    now,
                    CdnResult.TIMEOUT,
                    0,
                    "call not established in time",
                )
        interval = self.config.hello_interval
        if self.state in _UP and interval > 0 and now >= self._last_heard + interval:
            self._last_heard = now
            self._send(MT.HELLO, [], now)
        if self.hold_until is not None and now >= self.hold_until:
            self.hold_until = None

    def next_event(self) -> Event | None:
        """The next event for the driver, or None."""
        return self._events.popleft() if self._events else None

    @property
    def done(self) -> bool:
        """True when the tunnel is closed and no longer needs to re-ack a StopCCN: the driver
        may forget it."""
        return self.state is TS.CLOSED and self.hold_until is None

    # --- commands -----------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Initiator: send the SCCRQ."""
        self.fire(TI.CONNECT, now)

    def close(
        self,
        now: float,
        result: int = StopCcnResult.CLEAR_CONNECTION,
        error: int = 0,
        message: str = "",
    ) -> None:
        """Clear the tunnel and every session in it with a StopCCN."""
        self.fire(TI.CLOSE, now, arg=Stop(result, error, message))

    def place_call(
        self,
        now: float,
        call: CallParams,
        info: ConnectInfo | None = None,
        *,
        defer_connect: bool = False,
    ) -> int:
        """Start a call: ICRQ as LAC, OCRQ as LNS; sent once the tunnel is established.

        Args:
            info: LAC only: the ICCN values (defaults to ``ConnectInfo()``; ``connect_call``
                before the ICRP replaces them).
            defer_connect: LAC only. False: the ICCN goes as soon as the ICRP arrives (the
                session passes through ``wait-connect`` without stopping; no event).
                True: the session stops in ``wait-connect`` and the core emits
                ``CallAnswered``; the driver then sends the ICCN with ``connect_call`` once
                it can take the LNS's data (e.g. its kernel session exists).

        Returns:
            Our session id.

        Raises:
            CommandError: the tunnel is closing, or has no free session id.
        """
        if self.state in _CLOSING:
            raise CommandError(f"tunnel {self.local_tunnel_id} is {self.state}")
        sid = self._allocate_sid()
        if sid is None:
            raise CommandError(f"tunnel {self.local_tunnel_id} has no free session id")
        kind = CallKind.LAC_INCOMING if self.lac else CallKind.LNS_OUTGOING
        session = Session(kind, sid, now, call)
        session.info = info
        session.defer_connect = defer_connect and kind is CallKind.LAC_INCOMING
        self._add_session(session, now)
        dispatch(self, session, SessionInput.PLACE, now)
        if self.state in _UP:
            dispatch(self, session, SessionInput.TUNNEL_UP, now)
        else:
            self._waiting.append(sid)
        return sid

    def answer_call(self, sid: int, now: float, info: ConnectInfo | None = None) -> None:
        """Accept a call announced by ``IncomingCall``: ICRP (LNS), or OCRP and then at once
        OCCN (LAC answering an OCRQ: it has no line to dial, the call connects right away;
        ``CallEstablished`` follows).

        A session that is already gone (the peer cleared it meanwhile) is ignored.

        Args:
            info: LAC answering an OCRQ: the OCCN values (default ``ConnectInfo()``).
                Ignored for an ICRQ (the ICRP carries none).

        Raises:
            CommandError: the session is not waiting for an answer.
        """
        session = self.sessions.get(sid)
        if session is None:
            return
        dispatch(self, session, SessionInput.ANSWER, now)
        if session.kind is CallKind.LAC_OUTGOING:
            dispatch(self, session, SessionInput.CONNECT, now, arg=info)

    def connect_call(self, sid: int, now: float, info: ConnectInfo | None = None) -> None:
        """Report the call connected: ICCN (LAC incoming call in ``wait-connect``, after
        ``CallAnswered``). For a LAC incoming call that has not seen its ICRP yet, only
        replaces the ICCN values given to ``place_call``. (An answered OCRQ connects by
        itself: see ``answer_call``.)

        Args:
            info: the ICCN values; None keeps those given to ``place_call``.

        Raises:
            CommandError: the session cannot connect in its state.
        """
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.kind is CallKind.LAC_INCOMING and session.state in _BEFORE_ICRP:
            if info is not None:
                session.info = info
            return
        dispatch(self, session, SessionInput.CONNECT, now, arg=info)

    def hangup(
        self,
        sid: int,
        now: float,
        result: int,
        error: int = 0,
        message: str = "",
        q931: tuple[int, int] | None = None,
    ) -> None:
        """Clear a call with a CDN (or quietly, if the peer never heard of it). A session
        that is already gone is ignored."""
        session = self.sessions.get(sid)
        if session is not None:
            dispatch(
                self, session, SessionInput.HANGUP, now, arg=Clear(result, error, message, q931)
            )

    def send_wan_error(self, sid: int, now: float, errors: CallErrors) -> None:
        """LAC: report line error counters of an established call (WEN, RFC 2661 6.14).

        Raises:
            CommandError: the call is not established or is not a LAC call.
        """
        session = self.sessions.get(sid)
        if session is not None:
            dispatch(self, session, SessionInput.WAN_ERROR, now, arg=errors)

    def set_link_info(self, sid: int, now: float, send_accm: int, recv_accm: int) -> None:
        """LNS: tell the LAC the PPP ACCM of an established call (SLI, RFC 2661 6.15).

        Raises:
            CommandError: the call is not established or is not an LNS call.
        """
        session = self.sessions.get(sid)
        if session is not None:
            dispatch(self, session, SessionInput.LINK_INFO, now, arg=Accm(send_accm, recv_accm))

    def send_data(self, sid: int, payload: bytes) -> None:
        """Send a PPP frame of an established session as a data message (no sequencing).

        Until the ICCN/OCCN we sent has been transmitted (it may wait for the peer's
        window), the frame is held behind it (``Transport.send_after``, counted
        ``data_held``), so the peer never gets data for a call it has not connected."""
        session = self.sessions.get(sid)
        if session is None or session.state is not SessionState.ESTABLISHED:
            self._count("data_dropped")
            return
        packet = encode_data(self.peer_tunnel_id, session.peer_sid, payload)
        ns = session.connect_ns
        if ns is not None:
            # A peer that has not seen our ICCN yet drops the frame (l2tpns: "ignoring
            # ConfigReq in state Starting"): hold it until the ICCN is on the wire.
            if self.transport.send_after(ns, packet):
                return
            session.connect_ns = None
        self.transport.send_unsequenced(packet)

    def connect_pending(self, sid: int) -> bool:
        """True while the ICCN/OCCN we sent for call ``sid`` waits for the peer's window:
        a data path that bypasses ``send_data`` (the kernel's) must not send yet."""
        session = self.sessions.get(sid)
        if session is None or session.connect_ns is None:
            return False
        if self.transport.waiting(session.connect_ns):
            return True
        session.connect_ns = None
        return False

    def data_ready(self, sid: int, now: float) -> None:
        """The upper layer (the session's data-plane channel) can take the session's data.

        The core is the only buffer for data that arrives before that: until ``data_ready``
        (and until the call is established, whichever is later) data messages of the session
        are kept, at most ``EARLY_FRAMES``, each counted ``data_early``; more are dropped and
        counted ``data_early_overflow``. The kept frames then come out as ``DataReceived`` in
        their order (right behind ``CallEstablished`` when the call is established after
        ``data_ready``), and later frames go straight out. A session that is gone is
        ignored.
        """
        session = self.sessions.get(sid)
        if session is None or session.data_ready:
            return
        session.data_ready = True
        if session.state is SessionState.ESTABLISHED:
            self._release_early(sid)

    # --- SessionHost ----------------------------------------------------------------------

    def send_session(
        self, session: Session, msg_type: MessageType, avps: list[Avp], now: float, header_sid: int
    ) -> None:
        """Send a session-scoped message (called by the session machine)."""
        if _log.isEnabledFor(_DEBUG):
            trace.line(
                trace.session_prefix(self.local_tunnel_id, session.local_sid),
                f"O {msg_type.abbrev} to {self.peer_hostname} {self.peer_tunnel_id}/{header_sid}",
            )
        ns = self._send(msg_type, avps, now, header_sid, quiet=True)
        if msg_type is MT.ICCN or msg_type is MT.OCCN:
            # Our connect message may wait for the send window while the call already
            # counts as established: its data must not overtake it (send_data).
            session.connect_ns = ns

    def emit(self, event: Event) -> None:
        """Queue an event for the driver."""
        self._events.append(event)

    def session_changed(
        self, session: Session, old: SessionState, new: SessionState, now: float
    ) -> None:
        """Trace the change; forget the session when it is back to idle."""
        if _log.isEnabledFor(_DEBUG):
            prefix = trace.session_prefix(self.local_tunnel_id, session.local_sid)
            trace.state_change(prefix, "Session", old, new)
        tally = self.tally
        if tally is not None:
            if old is not SessionState.IDLE:
                tally._add(tally.sessions, old, -1)
            if new is not SessionState.IDLE:
                tally._add(tally.sessions, new, 1)
        if session.setup_deadline is not None and (
            new is SessionState.ESTABLISHED or new is SessionState.IDLE
        ):
            session.setup_deadline = None
            self.setting_up -= 1
        if new is SessionState.ESTABLISHED:
            if session.data_ready:
                # Frames that overtook the ICCN/OCCN (data is not windowed, the ICCN may
                # be) follow the CallEstablished the action just emitted.
                self._release_early(session.local_sid)
            return
        if new is not SessionState.IDLE:
            return
        sid = session.local_sid
        self._early.pop(sid, None)
        self.sessions.pop(sid, None)
        if session.peer_sid and self._peer_sids.get(session.peer_sid) == sid:
            del self._peer_sids[session.peer_sid]
        if not self.sessions and not self._dropping and self.state is TS.ESTABLISHED:
            self.fire(TI.LAST_SESSION_GONE, now)

    # --- receive path -----------------------------------------------------------------------

    def _data(self, sid: int, payload: bytes) -> None:
        session = self.sessions.get(sid)
        if session is None:
            self._count("data_dropped")
            return
        if session.data_ready and session.state is SessionState.ESTABLISHED:
            self._events.append(DataReceived(sid, payload))
            return
        # The peer's PPP may start before its ICCN (which can wait for our window, or be
        # lost and resent) reaches us, or before the upper layer has opened the session's
        # channel: keep a few frames until both are ready (see data_ready).
        early = self._early.setdefault(sid, [])
        if len(early) < EARLY_FRAMES:
            early.append(payload)
            self._count("data_early")
        else:
            self._count("data_early_overflow")

    def _release_early(self, sid: int) -> None:
        for payload in self._early.pop(sid, ()):
            self._events.append(DataReceived(sid, payload))

    def _receive(self, msg: ControlMessage | DataMessage, now: float) -> None:
        if isinstance(msg, DataMessage):
            self._data(msg.session_id, msg.payload)
            return
        mt = msg.msg_type
        if mt is not None:
            key = _IN_KEYS[mt]
            self.counters[key] = self.counters.get(key, 0) + 1
        self._sequenced(msg.ns, msg.nr, None if mt is None else msg, now)

    def _sequenced(self, ns: int, nr: int, item: _Item | None, now: float) -> None:
        self._last_heard = now
        for delivered in self.transport.receive(ns, nr, item, now):
            self._deliver(delivered, now)
        if self.state is TS.SHUTTING_DOWN and self.transport.unacked == 0:
            self.fire(TI.STOP_ACKED, now)

    def _deliver(self, item: _Item, now: float) -> None:
        if isinstance(item, _Ignored):
            return
        if isinstance(item, _Broken):
            self._protocol_error(item.error, now, None, item.peer_sid)
            return
        mt = item.msg_type
        assert mt is not None  # ZLBs are never delivered
        try:
            validate(item)
            self.fire(_MESSAGE_INPUT[mt], now, item)
        except ProtocolError as exc:
            self._protocol_error(exc, now, item)

    def _requested_sid(self, exc: ProtocolError, data: bytes) -> int:
        """The Assigned Session ID of an ICRQ/OCRQ that failed to decode strictly (read
        leniently), or 0."""
        if exc.msg_type not in _REQUESTS:
            return 0
        try:
            sid = inspect(data, self.config.secret).message
        except DecodeError:
            return 0
        value = sid.get(A.ASSIGNED_SESSION_ID) if isinstance(sid, ControlMessage) else None
        return value if isinstance(value, int) else 0

    def _protocol_error(
        self, exc: ProtocolError, now: float, msg: ControlMessage | None, peer_sid: int = 0
    ) -> None:
        """Turn a ProtocolError into a CDN (session scope) or a StopCCN (tunnel scope)."""
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"Protocol error: {exc.message or exc}")
        if self.refuse is None:  # a policy's refusal is no error of the peer's
            self._count("protocol_errors")
        if self.state in _CLOSING:
            return
        msg_type = exc.msg_type if exc.msg_type is not None else (msg and msg.msg_type)
        if msg_type in SESSION_MESSAGES and self.state in _UP:
            self._session_error(exc, now, msg, peer_sid)
            return
        stop = Stop(exc.result, exc.error, exc.message)
        if self.state is TS.IDLE:
            if not self.peer_tunnel_id:
                # Nobody to tell (no peer tunnel id yet): just go away.
                self._finish(TunnelClosed(exc.result, exc.error, exc.message, False), now)
                return
            # The SCCRQ was refused (authentication, version): answer it with a StopCCN.
            self._act_close(None, stop, now)
            self._set_state(TS.SHUTTING_DOWN, now)
            return
        self.fire(TI.CLOSE, now, arg=stop)

    def _session_error(
        self, exc: ProtocolError, now: float, msg: ControlMessage | None, peer_sid: int = 0
    ) -> None:
        clear = Clear(CdnResult.GENERAL_ERROR, exc.error, exc.message)
        session: Session | None = None
        if exc.session_id:
            session = self.sessions.get(exc.session_id)
        elif msg is not None and msg.session_id:
            session = self.sessions.get(msg.session_id)
        if session is not None and session.state is not SessionState.IDLE:
            dispatch(self, session, SessionInput.HANGUP, now, arg=clear)
            return
        # A bad ICRQ/OCRQ: refuse it without creating a session, if we can address the peer.
        if msg is not None:
            value = msg.get(A.ASSIGNED_SESSION_ID)
            peer_sid = value if isinstance(value, int) else 0
        if peer_sid:
            rc = ResultCode(clear.result, clear.error, clear.message or None)
            self._refuse_request(peer_sid, rc, now)
        else:
            self._count("rejected_requests")

    def _refuse_request(self, peer_sid: int, rc: ResultCode, now: float) -> int:
        """Answer an ICRQ/OCRQ with a CDN and create no session; the Assigned Session ID
        the CDN gave (not reserved)."""
        sid = self._allocate_sid() or 1
        self._send(MT.CDN, [Avp(A.ASSIGNED_SESSION_ID, sid), Avp(A.RESULT_CODE, rc)], now, peer_sid)
        return sid

    # --- the tunnel state machine ---------------------------------------------------------------

    def fire(
        self,
        event: TunnelInput,
        now: float,
        msg: ControlMessage | None = None,
        arg: Stop | None = None,
    ) -> None:
        """Run one input through ``TUNNEL_TABLE``. The driver surface (receive, commands,
        timers) is the way in; this is public so tests can walk every cell of the table.

        Args:
            msg: the received message, for a received-message input.
            arg: the Stop of ``close`` (None: general request to clear).

        Raises:
            CommandError: a command the state does not allow (``connect``).
            ProtocolError: any other input the state does not allow (StopCCN result 7):
                for a received message the receive path turns it into a StopCCN.
        """
        old = self.state
        entry = TUNNEL_TABLE.get((old, event))
        if entry is None:
            if event in _COMMANDS:
                raise CommandError(f"{event} not allowed in tunnel state {old}")
            raise ProtocolError(
                StopCcnResult.FSM_ERROR,
                0,
                f"unexpected {event} in tunnel state {old}",
                msg_type=msg.msg_type if msg is not None else None,
            )
        action, new = entry
        action(self, msg, arg, now)
        if self.state is old and new is not old:
            self._set_state(new, now)

    def attach(self, tally: StateTally) -> None:
        """Count this tunnel and its sessions in ``tally`` from now on (O(its sessions))."""
        self.detach()
        self.tally = tally
        tally._add(tally.tunnels, self.state, 1)
        for session in self.sessions.values():
            if session.state is not SessionState.IDLE:
                tally._add(tally.sessions, session.state, 1)

    def detach(self) -> None:
        """Stop counting this tunnel and its sessions in its tally (O(its sessions))."""
        tally = self.tally
        if tally is None:
            return
        self.tally = None
        tally._add(tally.tunnels, self.state, -1)
        for session in self.sessions.values():
            if session.state is not SessionState.IDLE:
                tally._add(tally.sessions, session.state, -1)

    def _set_state(self, new: TunnelState, now: float) -> None:
        old = self.state
        self.state = new
        tally = self.tally
        if tally is not None:
            tally._add(tally.tunnels, old, -1)
            tally._add(tally.tunnels, new, 1)
        if _log.isEnabledFor(_DEBUG):
            trace.state_change(self._prefix, "Tunnel", old, new)
            if new is TS.NO_SESSIONS_LEFT and self.config.idle_timeout > 0:
                trace.line(
                    self._prefix,
                    "No more sessions in tunnel, shutdown (likely) in "
                    f"{self.config.idle_timeout:g} seconds",
                )
        if new not in _SETUP:
            self._setup_deadline = None
        if (
            new is TS.ESTABLISHED
            and old is TS.WAIT_CTL_CONN
            and not self.sessions
            and self.config.idle_timeout > 0
        ):
            # A tunnel a peer opened and never uses meets idle_timeout like one whose last
            # session went (IOS "no-session timeout"): a peer cannot park tunnels forever.
            self._idle_deadline = now + self.config.idle_timeout
        if new is TS.ESTABLISHED and old in (TS.WAIT_CTL_REPLY, TS.WAIT_CTL_CONN):
            waiting, self._waiting = self._waiting, []
            for sid in waiting:
                session = self.sessions.get(sid)
                if session is not None and session.state is SessionState.WAIT_FOR_TUNNEL:
                    dispatch(self, session, SessionInput.TUNNEL_UP, now)

    # Actions: (tunnel, received message or None, command argument, now). They run in the old
    # state; the table's next state is set afterwards unless the action moved the state itself.

    def _act_nothing(self, msg: Msg, arg: Stop | None, now: float) -> None:
        return None

    def _act_connect(self, msg: Msg, arg: Stop | None, now: float) -> None:
        avps = self._start_avps()
        if self.tie_breaker is not None:
            avps.append(Avp(A.TIE_BREAKER, self.tie_breaker))
        self._send(MT.SCCRQ, avps, now)

    def _act_sccrq(self, msg: Msg, arg: Stop | None, now: float) -> None:
        assert msg is not None
        self._learn_peer(msg, now)
        self.peer_tie_breaker = msg.get(A.TIE_BREAKER)
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"I SCCRQ from {self.peer_hostname} tnl {self.peer_tunnel_id}")
        refuse = self.refuse
        if refuse is not None:
            # Refused by policy: the receive path answers with a StopCCN (the peer's tunnel
            # id is known now) and its challenge, if any, is never answered.
            raise ProtocolError(refuse.result, refuse.error, refuse.message)
        avps = self._start_avps()
        avps.extend(self._answer_challenge(msg, MT.SCCRP))
        if _log.isEnabledFor(_DEBUG):
            where = f", address {self.peer_address}" if self.peer_address else ""
            trace.line(self._prefix, f"New tunnel created for remote {self.peer_hostname}{where}")
        self._send(MT.SCCRP, avps, now)

    def _act_sccrp(self, msg: Msg, arg: Stop | None, now: float) -> None:
        assert msg is not None
        self._learn_peer(msg, now)
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"I SCCRP from {self.peer_hostname}")
        response = self._answer_challenge(msg, MT.SCCCN)
        self._check_response(msg, MT.SCCRP)
        self._send(MT.SCCCN, response, now)
        self._established()

    def _act_scccn(self, msg: Msg, arg: Stop | None, now: float) -> None:
        assert msg is not None
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"I SCCCN from {self.peer_hostname} tnl {self.peer_tunnel_id}")
        self._check_response(msg, MT.SCCCN)
        self._established()

    def _act_stopccn(self, msg: Msg, arg: Stop | None, now: float) -> None:
        """The peer clears the tunnel: ack at once, drop everything, keep re-acking a while."""
        assert msg is not None
        rc = msg.get(A.RESULT_CODE)
        result, error, text = 0, 0, ""
        if isinstance(rc, ResultCode):
            result, error, text = rc.result, rc.error or 0, rc.message or ""
        if not self.peer_tunnel_id:
            # Our SCCRQ was refused: the StopCCN's Assigned Tunnel ID is where the ack goes
            # (sent to tunnel 0 it would be dropped, and the peer would retransmit).
            assigned = msg.get(A.ASSIGNED_TUNNEL_ID)
            if isinstance(assigned, int) and assigned:
                self.peer_tunnel_id = assigned
                self.transport.peer_tunnel_id = assigned
        if _log.isEnabledFor(_DEBUG):
            trace.line(
                self._prefix, f"I StopCCN from {self.peer_hostname} tnl {self.peer_tunnel_id}"
            )
            trace.line(self._prefix, "Shutdown tunnel")
        self.transport.ack_now(now)
        self.hold_until = now + retransmission_cycle(self.config)
        reason = self.close_reason  # set when both sides sent a StopCCN
        self._finish(reason or TunnelClosed(result, error, text, True), now)

    def _act_close(self, msg: Msg, arg: Stop | None, now: float) -> None:
        """Send a StopCCN; closed once it is acknowledged (or its retries run out)."""
        stop = arg or Stop()
        result, error, text = stop.result, stop.error, stop.message
        if not self.peer_tunnel_id:
            # No SCCRP yet: the peer has no tunnel id for a StopCCN to reach. Just stop.
            self._finish(TunnelClosed(result, error, text, False), now)
            return
        self.close_reason = TunnelClosed(result, error, text, False)
        self._drop_sessions(Clear(CdnResult.GENERAL_ERROR, 0, "tunnel closed"))
        rc = ResultCode(result, error, text) if (error or text) else ResultCode(result)
        self._send(
            MT.STOPCCN,
            [Avp(A.ASSIGNED_TUNNEL_ID, self.local_tunnel_id), Avp(A.RESULT_CODE, rc)],
            now,
        )
        self._idle_deadline = None

    def _act_close_idle(self, msg: Msg, arg: Stop | None, now: float) -> None:
        """Never connected: nothing to tell anyone."""
        stop = arg or Stop()
        self._finish(TunnelClosed(stop.result, stop.error, stop.message, False), now)

    def _act_idle_timeout(self, msg: Msg, arg: Stop | None, now: float) -> None:
        self._act_close(None, Stop(), now)

    def _act_setup_timeout(self, msg: Msg, arg: Stop | None, now: float) -> None:
        """Not established in time: go at once, without a StopCCN. The peer never finished
        the handshake, so its address is unproven (a spoofed SCCRQ's would aim our StopCCN
        and its retransmissions at a victim), and going at once frees the id now."""
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, "Tunnel not established in time, shutdown tunnel")
        self._finish(
            TunnelClosed(StopCcnResult.GENERAL_ERROR, 0, "tunnel setup timed out", False), now
        )

    def _act_retries_exhausted(self, msg: Msg, arg: Stop | None, now: float) -> None:
        n = self.config.max_retries
        self._count("retries_exhausted")
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"No response after {n} retransmissions, shutdown tunnel")
        reason = self.close_reason or TunnelClosed(
            StopCcnResult.GENERAL_ERROR, 0, f"no acknowledgement after {n} retransmissions", False
        )
        self._finish(reason, now)

    def _act_stop_acked(self, msg: Msg, arg: Stop | None, now: float) -> None:
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, "Shutdown tunnel")
        assert self.close_reason is not None
        self._finish(self.close_reason, now)

    def _act_last_session_gone(self, msg: Msg, arg: Stop | None, now: float) -> None:
        timeout = self.config.idle_timeout
        if timeout > 0:
            self._idle_deadline = now + timeout

    def _act_session_created(self, msg: Msg, arg: Stop | None, now: float) -> None:
        self._idle_deadline = None

    def _act_session_message(self, msg: Msg, arg: Stop | None, now: float) -> None:
        assert msg is not None and msg.msg_type is not None
        mt = msg.msg_type
        name = mt.abbrev
        kind = _REQUESTS.get(mt)
        if kind is not None:
            peer_sid = int(msg.get(A.ASSIGNED_SESSION_ID))
            if peer_sid in self._peer_sids:
                self._count("duplicate_requests")  # same call asked for twice: one session
                return
            if self.setting_up >= self.config.max_setup_sessions_per_tunnel:
                # An ICRQ flood: refuse without creating anything (RFC 2661 4.4.2 CDN
                # result 4, temporary lack of facilities).
                self._count("calls_refused_setup_limit")
                rc = ResultCode(CdnResult.NO_FACILITIES_TEMPORARY, 0, "too many calls in setup")
                self._refuse_request(peer_sid, rc, now)
                return
            if self.admission is not None and (refused := self.admission()) is not None:
                limit, text = refused
                rc = ResultCode(CdnResult.NO_FACILITIES_TEMPORARY, 0, text)
                answered = self._refuse_request(peer_sid, rc, now)
                self._events.append(CallRefused(answered, peer_sid, limit, text))
                return
            sid = self._allocate_sid()
            if sid is None:
                raise ProtocolError(
                    CdnResult.NO_FACILITIES_TEMPORARY,
                    ErrorCode.INSUFFICIENT_RESOURCES,
                    "no free session id",
                    msg_type=mt,
                )
            session = Session(kind, sid, now)
            self._add_session(session, now)
            self._peer_sids[peer_sid] = sid
            if _log.isEnabledFor(_DEBUG):
                prefix = trace.session_prefix(self.local_tunnel_id, sid)
                trace.line(prefix, f"I {name} from {self.peer_hostname} tnl {self.peer_tunnel_id}")
                trace.line(prefix, "New session created")
            dispatch(self, session, SessionInput.of(mt), now, msg)
            return
        found: Session | None
        if msg.session_id:
            found = self.sessions.get(msg.session_id)
        else:
            # A CDN before the peer learnt our id addresses session 0: find it by the peer's.
            local = self._peer_sids.get(int(msg.get(A.ASSIGNED_SESSION_ID) or 0))
            found = self.sessions.get(local) if local is not None else None
        if found is None:
            self._count("unknown_session")
            return
        if mt is MT.ICRP or mt is MT.OCRP:
            peer_sid = int(msg.get(A.ASSIGNED_SESSION_ID))
            self._peer_sids[peer_sid] = found.local_sid
        if _log.isEnabledFor(_DEBUG):
            prefix = trace.session_prefix(self.local_tunnel_id, found.local_sid)
            peer_sid = found.peer_sid or msg.get(A.ASSIGNED_SESSION_ID)
            peer = f"{self.peer_hostname} tnl {self.peer_tunnel_id}, cl {peer_sid}"
            trace.line(prefix, f"I {name} from {peer}")
        try:
            dispatch(self, found, SessionInput.of(mt), now, msg)
        except ProtocolError as exc:
            exc.session_id = found.local_sid
            raise
        if mt is MT.ICRP and not found.defer_connect and found.state is SessionState.WAIT_CONNECT:
            # The ICCN goes right behind the ICRP's ack unless the driver asked to connect.
            dispatch(self, found, SessionInput.CONNECT, now)

    # --- helpers ----------------------------------------------------------------------------

    def _start_avps(self) -> list[Avp]:
        """SCCRQ/SCCRP AVPs (RFC 2661 6.1, 6.2), plus our Challenge when we have a secret."""
        cfg = self.config
        avps = [
            Avp(A.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
            Avp(A.FRAMING_CAPABILITIES, cfg.framing_caps),
            Avp(A.BEARER_CAPABILITIES, cfg.bearer_caps),
        ]
        if cfg.firmware_revision is not None:
            avps.append(Avp(A.FIRMWARE_REVISION, cfg.firmware_revision))
        avps += [
            Avp(A.HOST_NAME, cfg.hostname),
            Avp(A.VENDOR_NAME, cfg.vendor_name),
            Avp(A.ASSIGNED_TUNNEL_ID, self.local_tunnel_id),
            Avp(A.RECEIVE_WINDOW_SIZE, cfg.receive_window),
        ]
        if cfg.secret is not None:
            if self._challenge is None:
                self._challenge = self.rng.randbytes(CHALLENGE_LEN)
            avps.append(Avp(A.CHALLENGE, self._challenge))
        return avps

    def _learn_peer(self, msg: ControlMessage, now: float) -> None:
        version = msg.get(A.PROTOCOL_VERSION)
        self.peer_tunnel_id = int(msg.get(A.ASSIGNED_TUNNEL_ID))
        self.transport.peer_tunnel_id = self.peer_tunnel_id
        self.peer_hostname = str(msg.get(A.HOST_NAME))
        self.peer_vendor = str(msg.get(A.VENDOR_NAME) or "")
        window = msg.get(A.RECEIVE_WINDOW_SIZE)
        self.peer_window = int(window) if window else 4
        self.transport.set_send_window(self.peer_window, now)
        if not isinstance(version, ProtocolVersion) or (version.version, version.revision) != (
            1,
            0,
        ):
            raise ProtocolError(
                StopCcnResult.UNSUPPORTED_VERSION, 0, f"protocol version {version} not supported"
            )

    def _answer_challenge(self, msg: ControlMessage, reply_type: MessageType) -> list[Avp]:
        """The Challenge Response AVP for the peer's challenge, if it sent one."""
        challenge = msg.get(A.CHALLENGE)
        if challenge is None:
            return []
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"Got a challenge from remote peer, {self.peer_hostname}")
        secret = self.config.secret
        if secret is None:
            self._auth_failed("peer sent a challenge but no tunnel secret is configured")
        assert secret is not None
        return [Avp(A.CHALLENGE_RESPONSE, challenge_response(reply_type, secret, challenge))]

    def _check_response(self, msg: ControlMessage, msg_type: MessageType) -> None:
        """Verify the peer's answer to our challenge (RFC 2661 5.1.1)."""
        secret = self.config.secret
        if secret is None or self._challenge is None:
            return
        response = msg.get(A.CHALLENGE_RESPONSE)
        if response is None:
            self._auth_failed(f"no challenge response in {msg_type.abbrev}")
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"Got a response from remote peer, {self.peer_hostname}")
        expected = challenge_response(msg_type, secret, self._challenge)
        if not hmac.compare_digest(bytes(response), expected):
            self._auth_failed(f"wrong challenge response in {msg_type.abbrev}")
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, "Tunnel Authentication success")

    def _auth_failed(self, why: str) -> None:
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"Tunnel Authentication failed: {why}")
        self._count("auth_failures")
        raise ProtocolError(StopCcnResult.NOT_AUTHORIZED, 0, why)

    def _established(self) -> None:
        self._events.append(TunnelEstablished(self.peer_tunnel_id, self.peer_hostname))

    def _send(
        self,
        msg_type: MessageType,
        avps: list[Avp],
        now: float,
        session_id: int = 0,
        *,
        quiet: bool = False,
    ) -> int:
        """Encode and sequence one control message; returns its Ns."""
        msg = ControlMessage(msg_type, self.peer_tunnel_id, session_id, 0, 0, tuple(avps))
        hide = self._hide if msg_type not in _SENT_PLAIN else frozenset()
        data = encode_control(msg, self.config.secret, hide, self.rng)
        key = _OUT_KEYS[msg_type]
        self.counters[key] = self.counters.get(key, 0) + 1
        if not quiet and _log.isEnabledFor(_DEBUG):
            to = (
                f"  to {self.peer_hostname} tnlid {self.peer_tunnel_id}"
                if self.peer_hostname
                else ""
            )
            trace.line(self._prefix, f"O {msg_type.abbrev}{to}")
        return self.transport.send(data, now)

    def _finish(self, reason: TunnelClosed, now: float) -> None:
        """Enter ``closed``: sessions gone, retransmissions stopped, TunnelClosed emitted."""
        self.close_reason = reason
        self._drop_sessions(
            Clear(CdnResult.GENERAL_ERROR, 0, "tunnel closed", by_peer=reason.by_peer)
        )
        self.transport.abandon()
        self._idle_deadline = None
        self._set_state(TS.CLOSED, now)
        self._events.append(reason)

    def _drop_sessions(self, clear: Clear) -> None:
        if not self.sessions:
            return
        self._dropping = True
        try:
            for session in list(self.sessions.values()):
                dispatch(self, session, SessionInput.TUNNEL_DOWN, 0.0, arg=clear)
        finally:
            self._dropping = False
        self._waiting.clear()

    def _add_session(self, session: Session, now: float) -> None:
        self.sessions[session.local_sid] = session
        session.setup_deadline = now + self._session_setup
        self.setting_up += 1
        self._setup_queue.append(session)
        if self.state is TS.NO_SESSIONS_LEFT:
            self.fire(TI.SESSION_CREATED, now)
        elif self.state is TS.ESTABLISHED:
            self._idle_deadline = None  # a tunnel that never had a session got its first

    def _allocate_sid(self) -> int | None:
        """A random non-zero session id not in use (expected O(1) while the tunnel is not
        nearly full)."""
        sessions = self.sessions
        if len(sessions) >= 0xFFFF - 1:
            return None
        getrandbits = self.rng.getrandbits
        while True:
            sid = getrandbits(16)
            if sid and sid not in sessions:
                return sid

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _trace_avps(self, data: bytes, msg: ControlMessage) -> None:
        prefix = self._prefix
        trace.avp_log.log(trace.AVP_LEVEL, "%s L2TP: Parse  AVP 0, len 8, flag 0x8000 (M)", prefix)
        trace.avp_log.log(
            trace.AVP_LEVEL, "%s L2TP: Parse %s", prefix, trace.message_name(msg.msg_type)
        )
        trace.avp_lines(prefix, data, msg.avps, start=20, msg_type=msg.msg_type)
        trace.avp_log.log(
            trace.AVP_LEVEL,
            "%s L2TP: No missing AVPs in %s",
            prefix,
            trace.message_name(msg.msg_type),
        )


# --- the table ------------------------------------------------------------------------------------

TunnelAction = Callable[[Tunnel, Msg, Stop | None, float], None]

TUNNEL_STATES = frozenset(TunnelState)
"""Every state a tunnel can be in."""

_LIVE = (TS.WAIT_CTL_REPLY, TS.WAIT_CTL_CONN, TS.ESTABLISHED, TS.NO_SESSIONS_LEFT)
_RECEIVED = (TI.SCCRQ, TI.SCCRP, TI.SCCCN, TI.STOPCCN, TI.HELLO, TI.SESSION)

TUNNEL_TABLE: dict[tuple[TunnelState, TunnelInput], tuple[TunnelAction, TunnelState]] = {
    # RFC 2661 7.2: start-up, initiator and responder.
    (TS.IDLE, TI.CONNECT): (Tunnel._act_connect, TS.WAIT_CTL_REPLY),
    (TS.IDLE, TI.SCCRQ): (Tunnel._act_sccrq, TS.WAIT_CTL_CONN),
    (TS.WAIT_CTL_REPLY, TI.SCCRP): (Tunnel._act_sccrp, TS.ESTABLISHED),
    (TS.WAIT_CTL_CONN, TI.SCCCN): (Tunnel._act_scccn, TS.ESTABLISHED),
    # Up: HELLOs need nothing but the ack; session messages go to the session machines.
    (TS.ESTABLISHED, TI.HELLO): (Tunnel._act_nothing, TS.ESTABLISHED),
    (TS.NO_SESSIONS_LEFT, TI.HELLO): (Tunnel._act_nothing, TS.NO_SESSIONS_LEFT),
    (TS.ESTABLISHED, TI.SESSION): (Tunnel._act_session_message, TS.ESTABLISHED),
    (TS.NO_SESSIONS_LEFT, TI.SESSION): (Tunnel._act_session_message, TS.NO_SESSIONS_LEFT),
    (TS.ESTABLISHED, TI.LAST_SESSION_GONE): (Tunnel._act_last_session_gone, TS.NO_SESSIONS_LEFT),
    (TS.NO_SESSIONS_LEFT, TI.SESSION_CREATED): (Tunnel._act_session_created, TS.ESTABLISHED),
    (TS.NO_SESSIONS_LEFT, TI.IDLE_TIMEOUT): (Tunnel._act_idle_timeout, TS.SHUTTING_DOWN),
    # A peer-opened tunnel that never carried a session (its idle deadline starts when it is
    # established).
    (TS.ESTABLISHED, TI.IDLE_TIMEOUT): (Tunnel._act_idle_timeout, TS.SHUTTING_DOWN),
    # Half-open tunnels are bounded in time whatever went wrong.
    (TS.IDLE, TI.SETUP_TIMEOUT): (Tunnel._act_setup_timeout, TS.CLOSED),
    (TS.WAIT_CTL_REPLY, TI.SETUP_TIMEOUT): (Tunnel._act_setup_timeout, TS.CLOSED),
    (TS.WAIT_CTL_CONN, TI.SETUP_TIMEOUT): (Tunnel._act_setup_timeout, TS.CLOSED),
    # Tear-down.
    (TS.IDLE, TI.CLOSE): (Tunnel._act_close_idle, TS.CLOSED),
    (TS.SHUTTING_DOWN, TI.CLOSE): (Tunnel._act_nothing, TS.SHUTTING_DOWN),
    (TS.CLOSED, TI.CLOSE): (Tunnel._act_nothing, TS.CLOSED),
    (TS.SHUTTING_DOWN, TI.STOP_ACKED): (Tunnel._act_stop_acked, TS.CLOSED),
    (TS.SHUTTING_DOWN, TI.STOPCCN): (Tunnel._act_stopccn, TS.CLOSED),
    (TS.IDLE, TI.RETRIES_EXHAUSTED): (Tunnel._act_retries_exhausted, TS.CLOSED),
    (TS.SHUTTING_DOWN, TI.RETRIES_EXHAUSTED): (Tunnel._act_retries_exhausted, TS.CLOSED),
    **{(s, TI.CLOSE): (Tunnel._act_close, TS.SHUTTING_DOWN) for s in _LIVE},
    **{(s, TI.STOPCCN): (Tunnel._act_stopccn, TS.CLOSED) for s in _LIVE},
    **{(s, TI.RETRIES_EXHAUSTED): (Tunnel._act_retries_exhausted, TS.CLOSED) for s in _LIVE},
    # While closing, the peer's messages still in flight are acked and ignored; once closed,
    # anything (a retransmitted StopCCN above all) is only re-acked.
    **{
        (TS.SHUTTING_DOWN, r): (Tunnel._act_nothing, TS.SHUTTING_DOWN)
        for r in _RECEIVED
        if r is not TI.STOPCCN
    },
    **{(TS.CLOSED, r): (Tunnel._act_nothing, TS.CLOSED) for r in _RECEIVED},
}
"""(state, input) -> (action, next state). A missing pair is a protocol error: StopCCN
result 7 (FSM error) for a received message, CommandError for a command."""

TUNNEL_INPUTS = frozenset(TunnelInput)
"""Every input the tunnel table knows."""
