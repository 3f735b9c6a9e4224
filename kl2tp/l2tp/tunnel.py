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

import hmac
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

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
    validate,
)
from kl2tp.l2tp.session import CallKind, Clear, CommandError, Session, dispatch
from kl2tp.l2tp.transport import Transport

__all__ = [
    "TUNNEL_STATES",
    "TUNNEL_TABLE",
    "CommandError",
    "Tunnel",
    "TunnelConfig",
    "tie_breaker_loses",
]

A = AvpType
MT = MessageType
_log = trace.log
_avp_log = trace.avp_log
_DEBUG = logging.DEBUG

CHALLENGE_LEN = 16
EARLY_FRAMES = 8
"""Data frames kept for a call whose ICCN/OCCN has not arrived yet."""
"""Bytes of the Challenge AVP we send (MD5-sized, like IOS)."""


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

    __slots__ = ("error",)

    def __init__(self, error: ProtocolError) -> None:
        self.error = error


_IGNORED = _Ignored()
_Item = ControlMessage | _Broken | _Ignored

_UP = frozenset({"established", "no-sessions-left"})
_COMMANDS = frozenset({"connect"})
_IN_KEYS = {mt: f"in_{mt.abbrev}" for mt in MessageType}
_OUT_KEYS = {mt: f"out_{mt.abbrev}" for mt in MessageType}
_HIDE_ALL = frozenset(t for t, spec in AVP_TABLE.items() if spec.may_hide)
_REQUESTS = {MT.ICRQ: CallKind.LNS_INCOMING, MT.OCRQ: CallKind.LAC_OUTGOING}


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
    ) -> None:
        self.config = config
        self.local_tunnel_id = local_tunnel_id
        self.initiator = initiator
        self.lac = initiator if lac is None else lac
        self.rng = rng
        self.created = now
        self.state = "idle"
        """IOS-style state name, one of TUNNEL_STATES."""
        self.peer_tunnel_id = 0
        self.peer_hostname = ""
        self.peer_vendor = ""
        self.peer_window = 4
        """The peer's Receive Window Size (our send window)."""
        self.sessions: dict[int, Session] = {}
        """Live sessions by our session id."""
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
        self._peer_sids: dict[int, int] = {}
        self._waiting: list[int] = []
        self._early: dict[int, list[bytes]] = {}
        """Data for calls not yet established, by our session id (at most EARLY_FRAMES)."""
        self._challenge: bytes | None = None
        self._hide = _HIDE_ALL if config.hide_avps and config.secret else frozenset()
        self._idle_deadline: float | None = None
        self._last_heard = now
        self._dropping = False
        self._prefix = trace.tunnel_prefix(local_tunnel_id)

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
            self._sequenced(ns, nr, _Broken(exc), now)
            return
        except DecodeError as exc:
            self._count("malformed")
            if _log.isEnabledFor(_DEBUG):
                trace.line(self._prefix, f"Dropped malformed packet: {exc}")
            return
        if isinstance(msg, ControlMessage):
            if _log.isEnabledFor(_DEBUG):
                trace.packet(self.local_tunnel_id, "I", data)
            if msg.msg_type is not None and _avp_log.isEnabledFor(trace.AVP_LEVEL):
                self._trace_avps(data, msg)
        self._receive(msg, now)

    def receive_message(self, msg: ControlMessage | DataMessage, now: float) -> None:
        """Feed an already decoded message (the driver decoded an SCCRQ to demux it)."""
        if isinstance(msg, ControlMessage) and _log.isEnabledFor(_DEBUG):
            trace.line(
                self._prefix,
                f"I {trace.message_name(msg.msg_type)}, tnl {msg.tunnel_id}, "
                f"cl {msg.session_id}, ns {msg.ns}, nr {msg.nr}",
            )
        self._receive(msg, now)

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
            self._input("retries-exhausted", now)
        if self._idle_deadline is not None and now >= self._idle_deadline:
            self._idle_deadline = None
            self._input("idle-timeout", now)
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
        return self.state == "closed" and self.hold_until is None

    # --- commands -----------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Initiator: send the SCCRQ."""
        self._input("connect", now)

    def close(self, now: float, result: int = 1, error: int = 0, message: str = "") -> None:
        """Clear the tunnel and every session in it with a StopCCN."""
        self._input("close", now, arg=(result, error, message))

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
        if self.state in ("shutting-down", "closed"):
            raise CommandError(f"tunnel {self.local_tunnel_id} is {self.state}")
        sid = self._allocate_sid()
        if sid is None:
            raise CommandError(f"tunnel {self.local_tunnel_id} has no free session id")
        kind = CallKind.LAC_INCOMING if self.lac else CallKind.LNS_OUTGOING
        session = Session(kind, sid, now, call)
        session.info = info
        session.defer_connect = defer_connect and kind is CallKind.LAC_INCOMING
        self._add_session(session, now)
        dispatch(self, session, "place", now)
        if self.state in _UP:
            dispatch(self, session, "tunnel-up", now)
        else:
            self._waiting.append(sid)
        return sid

    def answer_call(self, sid: int, now: float) -> None:
        """Accept a call announced by ``IncomingCall``: ICRP (LNS) or OCRP (LAC).

        A session that is already gone (the peer cleared it meanwhile) is ignored.

        Raises:
            CommandError: the session is not waiting for an answer.
        """
        session = self.sessions.get(sid)
        if session is not None:
            dispatch(self, session, "answer", now)

    def connect_call(self, sid: int, now: float, info: ConnectInfo | None = None) -> None:
        """Report the call connected: ICCN (LAC incoming call in ``wait-connect``, after
        ``CallAnswered``) or OCCN (LAC answering an OCRQ). For a LAC incoming call that has
        not seen its ICRP yet, only replaces the ICCN values given to ``place_call``.

        Args:
            info: the ICCN/OCCN values; None keeps those given to ``place_call`` (ICCN) or
                sends the defaults (OCCN).

        Raises:
            CommandError: the session cannot connect in its state.
        """
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.kind is CallKind.LAC_INCOMING and session.state in (
            "wait-for-tunnel",
            "wait-reply",
        ):
            if info is not None:
                session.info = info
            return
        dispatch(self, session, "connect", now, arg=info)

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
            dispatch(self, session, "hangup", now, arg=Clear(result, error, message, q931))

    def send_wan_error(self, sid: int, now: float, errors: CallErrors) -> None:
        """LAC: report line error counters of an established call (WEN, RFC 2661 6.14).

        Raises:
            CommandError: the call is not established or is not a LAC call.
        """
        session = self.sessions.get(sid)
        if session is not None:
            dispatch(self, session, "wan-error", now, arg=errors)

    def set_link_info(self, sid: int, now: float, send_accm: int, recv_accm: int) -> None:
        """LNS: tell the LAC the PPP ACCM of an established call (SLI, RFC 2661 6.15).

        Raises:
            CommandError: the call is not established or is not an LNS call.
        """
        session = self.sessions.get(sid)
        if session is not None:
            dispatch(self, session, "link-info", now, arg=Accm(send_accm, recv_accm))

    def send_data(self, sid: int, payload: bytes) -> None:
        """Send a PPP frame of an established session as a data message (no sequencing)."""
        session = self.sessions.get(sid)
        if session is None or session.state != "established":
            self._count("data_dropped")
            return
        self.transport.send_unsequenced(encode_data(self.peer_tunnel_id, session.peer_sid, payload))

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
        self._send(msg_type, avps, now, header_sid, quiet=True)

    def emit(self, event: Event) -> None:
        """Queue an event for the driver."""
        self._events.append(event)

    def session_changed(self, session: Session, old: str, new: str, now: float) -> None:
        """Trace the change; forget the session when it is back to idle."""
        if _log.isEnabledFor(_DEBUG):
            prefix = trace.session_prefix(self.local_tunnel_id, session.local_sid)
            trace.state_change(prefix, "Session", old, new)
        if new == "established" and self._early:
            # Frames that overtook the ICCN/OCCN (data is not windowed, the ICCN may be)
            # follow the CallEstablished the action just emitted.
            for payload in self._early.pop(session.local_sid, ()):
                self._events.append(DataReceived(session.local_sid, payload))
        if new != "idle":
            return
        sid = session.local_sid
        self._early.pop(sid, None)
        self.sessions.pop(sid, None)
        if session.peer_sid and self._peer_sids.get(session.peer_sid) == sid:
            del self._peer_sids[session.peer_sid]
        if not self.sessions and not self._dropping and self.state == "established":
            self._input("last-session-gone", now)

    # --- receive path -----------------------------------------------------------------------

    def _data(self, sid: int, payload: bytes) -> None:
        session = self.sessions.get(sid)
        if session is None or session.state == "idle":
            self._count("data_dropped")
            return
        if session.state != "established":
            # The peer's PPP may start before its ICCN (which can wait for our window, or
            # be lost and resent) reaches us: keep a few frames until the call is up.
            early = self._early.setdefault(sid, [])
            if len(early) < EARLY_FRAMES:
                early.append(payload)
                self._count("data_early")
            else:
                self._count("data_dropped")
            return
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
        if self.state == "shutting-down" and self.transport.unacked == 0:
            self._input("stop-acked", now)

    def _deliver(self, item: _Item, now: float) -> None:
        if isinstance(item, _Ignored):
            return
        if isinstance(item, _Broken):
            self._protocol_error(item.error, now, None)
            return
        mt = item.msg_type
        assert mt is not None  # ZLBs are never delivered
        try:
            validate(item)
            if mt in SESSION_MESSAGES:
                self._input("session", now, item)
            else:
                self._input(mt.abbrev, now, item)
        except ProtocolError as exc:
            self._protocol_error(exc, now, item)

    def _protocol_error(self, exc: ProtocolError, now: float, msg: ControlMessage | None) -> None:
        """Turn a ProtocolError into a CDN (session scope) or a StopCCN (tunnel scope)."""
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"Protocol error: {exc.message or exc}")
        self._count("protocol_errors")
        if self.state in ("shutting-down", "closed"):
            return
        msg_type = exc.msg_type if exc.msg_type is not None else (msg and msg.msg_type)
        if msg_type in SESSION_MESSAGES and self.state in _UP:
            self._session_error(exc, now, msg)
            return
        if self.state == "idle":
            if not self.peer_tunnel_id:
                # Nobody to tell (no peer tunnel id yet): just go away.
                self._finish(TunnelClosed(exc.result, exc.error, exc.message, False), now)
                return
            # The SCCRQ was refused (authentication, version): answer it with a StopCCN.
            self._act_close(None, (exc.result, exc.error, exc.message), now)
            self._set_state("shutting-down", now)
            return
        self._input("close", now, arg=(exc.result, exc.error, exc.message))

    def _session_error(self, exc: ProtocolError, now: float, msg: ControlMessage | None) -> None:
        clear = Clear(CdnResult.GENERAL_ERROR, exc.error, exc.message)
        session: Session | None = None
        if exc.session_id:
            session = self.sessions.get(exc.session_id)
        elif msg is not None and msg.session_id:
            session = self.sessions.get(msg.session_id)
        if session is not None and session.state != "idle":
            dispatch(self, session, "hangup", now, arg=clear)
            return
        # A bad ICRQ/OCRQ: refuse it without creating a session, if we can address the peer.
        peer_sid = msg.get(A.ASSIGNED_SESSION_ID) if msg is not None else None
        if isinstance(peer_sid, int) and peer_sid:
            rc = ResultCode(clear.result, clear.error, clear.message or None)
            avps = [Avp(A.ASSIGNED_SESSION_ID, self._allocate_sid() or 1), Avp(A.RESULT_CODE, rc)]
            self._send(MT.CDN, avps, now, peer_sid)
        else:
            self._count("rejected_requests")

    # --- the tunnel state machine ---------------------------------------------------------------

    def _input(
        self, event: str, now: float, msg: ControlMessage | None = None, arg: Any = None
    ) -> None:
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
        if self.state == old and new != old:
            self._set_state(new, now)

    def _set_state(self, new: str, now: float) -> None:
        old = self.state
        self.state = new
        if _log.isEnabledFor(_DEBUG):
            trace.state_change(self._prefix, "Tunnel", old, new)
            if new == "no-sessions-left" and self.config.idle_timeout > 0:
                trace.line(
                    self._prefix,
                    "No more sessions in tunnel, shutdown (likely) in "
                    f"{self.config.idle_timeout:g} seconds",
                )
        if new == "established" and old in ("wait-ctl-reply", "wait-ctl-conn"):
            waiting, self._waiting = self._waiting, []
            for sid in waiting:
                session = self.sessions.get(sid)
                if session is not None and session.state == "wait-for-tunnel":
                    dispatch(self, session, "tunnel-up", now)

    # Actions: (tunnel, received message or None, command argument, now). They run in the old
    # state; the table's next state is set afterwards unless the action moved the state itself.

    def _act_nothing(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        return None

    def _act_connect(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        avps = self._start_avps()
        if self.tie_breaker is not None:
            avps.append(Avp(A.TIE_BREAKER, self.tie_breaker))
        self._send(MT.SCCRQ, avps, now)

    def _act_sccrq(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        assert msg is not None
        self._learn_peer(msg, now)
        self.peer_tie_breaker = msg.get(A.TIE_BREAKER)
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"I SCCRQ from {self.peer_hostname} tnl {self.peer_tunnel_id}")
        avps = self._start_avps()
        avps.extend(self._answer_challenge(msg, MT.SCCRP))
        self._send(MT.SCCRP, avps, now)

    def _act_sccrp(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        assert msg is not None
        self._learn_peer(msg, now)
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"I SCCRP from {self.peer_hostname}")
        response = self._answer_challenge(msg, MT.SCCCN)
        self._check_response(msg, MT.SCCRP)
        self._send(MT.SCCCN, response, now)
        self._established()

    def _act_scccn(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        assert msg is not None
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"I SCCCN from {self.peer_hostname} tnl {self.peer_tunnel_id}")
        self._check_response(msg, MT.SCCCN)
        self._established()

    def _act_stopccn(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        """The peer clears the tunnel: ack at once, drop everything, keep re-acking a while."""
        assert msg is not None
        rc = msg.get(A.RESULT_CODE)
        result, error, text = 0, 0, ""
        if isinstance(rc, ResultCode):
            result, error, text = rc.result, rc.error or 0, rc.message or ""
        if _log.isEnabledFor(_DEBUG):
            trace.line(
                self._prefix, f"I StopCCN from {self.peer_hostname} tnl {self.peer_tunnel_id}"
            )
            trace.line(self._prefix, "Shutdown tunnel")
        self.transport.ack_now(now)
        self.hold_until = now + retransmission_cycle(self.config)
        reason = self.close_reason  # set when both sides sent a StopCCN
        self._finish(reason or TunnelClosed(result, error, text, True), now)

    def _act_close(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        """Send a StopCCN; closed once it is acknowledged (or its retries run out)."""
        result, error, text = arg if arg is not None else (1, 0, "")
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

    def _act_close_idle(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        """Never connected: nothing to tell anyone."""
        result, error, text = arg if arg is not None else (1, 0, "")
        self._finish(TunnelClosed(result, error, text, False), now)

    def _act_idle_timeout(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        self._act_close(None, (StopCcnResult.CLEAR_CONNECTION, 0, ""), now)

    def _act_retries_exhausted(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        n = self.config.max_retries
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, f"No response after {n} retransmissions, shutdown tunnel")
        reason = self.close_reason or TunnelClosed(
            StopCcnResult.GENERAL_ERROR, 0, f"no acknowledgement after {n} retransmissions", False
        )
        self._finish(reason, now)

    def _act_stop_acked(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        if _log.isEnabledFor(_DEBUG):
            trace.line(self._prefix, "Shutdown tunnel")
        assert self.close_reason is not None
        self._finish(self.close_reason, now)

    def _act_last_session_gone(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        timeout = self.config.idle_timeout
        if timeout > 0:
            self._idle_deadline = now + timeout

    def _act_session_created(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        self._idle_deadline = None

    def _act_session_message(self, msg: ControlMessage | None, arg: Any, now: float) -> None:
        assert msg is not None and msg.msg_type is not None
        mt = msg.msg_type
        name = mt.abbrev
        kind = _REQUESTS.get(mt)
        if kind is not None:
            peer_sid = int(msg.get(A.ASSIGNED_SESSION_ID))
            if peer_sid in self._peer_sids:
                self._count("duplicate_requests")  # same call asked for twice: one session
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
            dispatch(self, session, name, now, msg)
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
            dispatch(self, found, name, now, msg)
        except ProtocolError as exc:
            exc.session_id = found.local_sid
            raise
        if mt is MT.ICRP and not found.defer_connect and found.state == "wait-connect":
            # The ICCN goes right behind the ICRP's ack unless the driver asked to connect.
            dispatch(self, found, "connect", now)

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
    ) -> None:
        msg = ControlMessage(msg_type, self.peer_tunnel_id, session_id, 0, 0, tuple(avps))
        data = encode_control(msg, self.config.secret, self._hide, self.rng)
        key = _OUT_KEYS[msg_type]
        self.counters[key] = self.counters.get(key, 0) + 1
        if not quiet and _log.isEnabledFor(_DEBUG):
            to = (
                f"  to {self.peer_hostname} tnlid {self.peer_tunnel_id}"
                if self.peer_hostname
                else ""
            )
            trace.line(self._prefix, f"O {msg_type.abbrev}{to}")
        self.transport.send(data, now)

    def _finish(self, reason: TunnelClosed, now: float) -> None:
        """Enter ``closed``: sessions gone, retransmissions stopped, TunnelClosed emitted."""
        self.close_reason = reason
        self._drop_sessions(
            Clear(CdnResult.GENERAL_ERROR, 0, "tunnel closed", by_peer=reason.by_peer)
        )
        self.transport.abandon()
        self._idle_deadline = None
        self._set_state("closed", now)
        self._events.append(reason)

    def _drop_sessions(self, clear: Clear) -> None:
        if not self.sessions:
            return
        self._dropping = True
        try:
            for session in list(self.sessions.values()):
                dispatch(self, session, "tunnel-down", 0.0, arg=clear)
        finally:
            self._dropping = False
        self._waiting.clear()

    def _add_session(self, session: Session, now: float) -> None:
        self.sessions[session.local_sid] = session
        if self.state == "no-sessions-left":
            self._input("session-created", now)

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

TunnelAction = Callable[[Tunnel, "ControlMessage | None", Any, float], None]

TUNNEL_STATES = frozenset(
    {
        "idle",
        "wait-ctl-reply",
        "wait-ctl-conn",
        "established",
        "no-sessions-left",
        "shutting-down",
        "closed",
    }
)
"""Every state a tunnel can be in."""

_LIVE = ("wait-ctl-reply", "wait-ctl-conn", "established", "no-sessions-left")
_RECEIVED = ("SCCRQ", "SCCRP", "SCCCN", "StopCCN", "HELLO", "session")

TUNNEL_TABLE: dict[tuple[str, str], tuple[TunnelAction, str]] = {
    # RFC 2661 7.2: start-up, initiator and responder.
    ("idle", "connect"): (Tunnel._act_connect, "wait-ctl-reply"),
    ("idle", "SCCRQ"): (Tunnel._act_sccrq, "wait-ctl-conn"),
    ("wait-ctl-reply", "SCCRP"): (Tunnel._act_sccrp, "established"),
    ("wait-ctl-conn", "SCCCN"): (Tunnel._act_scccn, "established"),
    # Up: HELLOs need nothing but the ack; session messages go to the session machines.
    ("established", "HELLO"): (Tunnel._act_nothing, "established"),
    ("no-sessions-left", "HELLO"): (Tunnel._act_nothing, "no-sessions-left"),
    ("established", "session"): (Tunnel._act_session_message, "established"),
    ("no-sessions-left", "session"): (Tunnel._act_session_message, "no-sessions-left"),
    ("established", "last-session-gone"): (Tunnel._act_last_session_gone, "no-sessions-left"),
    ("no-sessions-left", "session-created"): (Tunnel._act_session_created, "established"),
    ("no-sessions-left", "idle-timeout"): (Tunnel._act_idle_timeout, "shutting-down"),
    # Tear-down.
    ("idle", "close"): (Tunnel._act_close_idle, "closed"),
    ("shutting-down", "close"): (Tunnel._act_nothing, "shutting-down"),
    ("closed", "close"): (Tunnel._act_nothing, "closed"),
    ("shutting-down", "stop-acked"): (Tunnel._act_stop_acked, "closed"),
    ("shutting-down", "StopCCN"): (Tunnel._act_stopccn, "closed"),
    ("idle", "retries-exhausted"): (Tunnel._act_retries_exhausted, "closed"),
    ("shutting-down", "retries-exhausted"): (Tunnel._act_retries_exhausted, "closed"),
    **{(s, "close"): (Tunnel._act_close, "shutting-down") for s in _LIVE},
    **{(s, "StopCCN"): (Tunnel._act_stopccn, "closed") for s in _LIVE},
    **{(s, "retries-exhausted"): (Tunnel._act_retries_exhausted, "closed") for s in _LIVE},
    # While closing, the peer's messages still in flight are acked and ignored; once closed,
    # anything (a retransmitted StopCCN above all) is only re-acked.
    **{
        ("shutting-down", r): (Tunnel._act_nothing, "shutting-down")
        for r in _RECEIVED
        if r != "StopCCN"
    },
    **{("closed", r): (Tunnel._act_nothing, "closed") for r in _RECEIVED},
}
"""(state, input) -> (action, next state). Inputs: received message abbreviations
("SCCRQ", "StopCCN", ...; "session" for any call-management message) and local inputs
("connect", "close", "idle-timeout", "retries-exhausted", "stop-acked", "last-session-gone",
"session-created"). A missing pair is a protocol error: StopCCN result 7 (FSM error)."""

TUNNEL_INPUTS = frozenset(
    {
        *_RECEIVED,
        "connect",
        "close",
        "idle-timeout",
        "retries-exhausted",
        "stop-acked",
        "last-session-gone",
        "session-created",
    }
)
"""Every input the tunnel table knows."""
