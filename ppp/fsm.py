"""The RFC 1661 option-negotiation automaton (section 4), shared by LCP, IPCP and IPv6CP.

One table, :data:`TRANSITIONS`, maps ``(state, event)`` to ``(actions, next state)`` exactly as
RFC 1661 section 4.1 draws it; a pair missing from the table is an event the RFC calls
impossible, and :meth:`Fsm.event` raises :class:`FsmError` for it. What differs between
protocols lives in an :class:`OptionHandler` (pppd's ``fsm_callbacks``): building our
Configure-Request, judging the peer's, applying Naks and Rejects, and the This-Layer-Up/Down/
Started/Finished signals.

The restart timer is a deadline (:attr:`Fsm.deadline`) the owner polls; nothing here reads a
clock.
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs

from ppp.frame import Code

__all__ = [
    "RUNNING_TIMER",
    "STATE_NAMES",
    "TRANSITIONS",
    "Action",
    "Event",
    "Fsm",
    "FsmConfig",
    "FsmError",
    "OptionHandler",
    "State",
    "build_reply",
]


class State(enum.IntEnum):
    """RFC 1661 section 4.2 states, numbered as in the table."""

    INITIAL = 0
    STARTING = 1
    CLOSED = 2
    STOPPED = 3
    CLOSING = 4
    STOPPING = 5
    REQ_SENT = 6
    ACK_RCVD = 7
    ACK_SENT = 8
    OPENED = 9


STATE_NAMES = {
    State.INITIAL: "Initial",
    State.STARTING: "Starting",
    State.CLOSED: "Closed",
    State.STOPPED: "Listen",
    State.CLOSING: "Closing",
    State.STOPPING: "Stopping",
    State.REQ_SENT: "REQsent",
    State.ACK_RCVD: "ACKrcvd",
    State.ACK_SENT: "ACKsent",
    State.OPENED: "Open",
}
"""State names as the IOS trace prints them (Stopped is IOS's "Listen")."""


class Event(enum.Enum):
    """RFC 1661 section 4.3 events."""

    # Members are singletons: identity hashing (C) instead of Enum's hash of the name
    # (Python), since every TRANSITIONS lookup hashes an Event.
    __hash__ = object.__hash__

    UP = "Up"
    DOWN = "Down"
    OPEN = "Open"
    CLOSE = "Close"
    TO_PLUS = "TO+"
    TO_MINUS = "TO-"
    RCR_PLUS = "RCR+"
    RCR_MINUS = "RCR-"
    RCA = "RCA"
    RCN = "RCN"
    RTR = "RTR"
    RTA = "RTA"
    RUC = "RUC"
    RXJ_PLUS = "RXJ+"
    RXJ_MINUS = "RXJ-"
    RXR = "RXR"


class Action(enum.Enum):
    """RFC 1661 section 4.4 actions."""

    TLU = "tlu"
    TLD = "tld"
    TLS = "tls"
    TLF = "tlf"
    IRC = "irc"
    ZRC = "zrc"
    SCR = "scr"
    SCA = "sca"
    SCN = "scn"
    STR = "str"
    STA = "sta"
    SCJ = "scj"
    SER = "ser"


_S = State
_E = Event
tlu, tld, tls, tlf = Action.TLU, Action.TLD, Action.TLS, Action.TLF
irc, zrc, scr, sca, scn = Action.IRC, Action.ZRC, Action.SCR, Action.SCA, Action.SCN
str_, sta, scj, ser = Action.STR, Action.STA, Action.SCJ, Action.SER

# RFC 1661 section 4.1, column by column. The optional "r" (restart) and "x" (crossed
# connection) variants are taken as the plain transition; "p" (passive) is the plain one too.
TRANSITIONS: dict[tuple[State, Event], tuple[tuple[Action, ...], State]] = {
    # 0 Initial
    (_S.INITIAL, _E.UP): ((), _S.CLOSED),
    (_S.INITIAL, _E.OPEN): ((tls,), _S.STARTING),
    (_S.INITIAL, _E.CLOSE): ((), _S.INITIAL),
    # 1 Starting
    (_S.STARTING, _E.UP): ((irc, scr), _S.REQ_SENT),
    (_S.STARTING, _E.OPEN): ((), _S.STARTING),
    (_S.STARTING, _E.CLOSE): ((tlf,), _S.INITIAL),
    # 2 Closed
    (_S.CLOSED, _E.DOWN): ((), _S.INITIAL),
    (_S.CLOSED, _E.OPEN): ((irc, scr), _S.REQ_SENT),
    (_S.CLOSED, _E.CLOSE): ((), _S.CLOSED),
    (_S.CLOSED, _E.RCR_PLUS): ((sta,), _S.CLOSED),
    (_S.CLOSED, _E.RCR_MINUS): ((sta,), _S.CLOSED),
    (_S.CLOSED, _E.RCA): ((sta,), _S.CLOSED),
    (_S.CLOSED, _E.RCN): ((sta,), _S.CLOSED),
    (_S.CLOSED, _E.RTR): ((sta,), _S.CLOSED),
    (_S.CLOSED, _E.RTA): ((), _S.CLOSED),
    (_S.CLOSED, _E.RUC): ((scj,), _S.CLOSED),
    (_S.CLOSED, _E.RXJ_PLUS): ((), _S.CLOSED),
    (_S.CLOSED, _E.RXJ_MINUS): ((tlf,), _S.CLOSED),
    (_S.CLOSED, _E.RXR): ((), _S.CLOSED),
    # 3 Stopped
    (_S.STOPPED, _E.DOWN): ((tls,), _S.STARTING),
    (_S.STOPPED, _E.OPEN): ((), _S.STOPPED),
    (_S.STOPPED, _E.CLOSE): ((), _S.CLOSED),
    (_S.STOPPED, _E.RCR_PLUS): ((irc, scr, sca), _S.ACK_SENT),
    (_S.STOPPED, _E.RCR_MINUS): ((irc, scr, scn), _S.REQ_SENT),
    (_S.STOPPED, _E.RCA): ((sta,), _S.STOPPED),
    (_S.STOPPED, _E.RCN): ((sta,), _S.STOPPED),
    (_S.STOPPED, _E.RTR): ((sta,), _S.STOPPED),
    (_S.STOPPED, _E.RTA): ((), _S.STOPPED),
    (_S.STOPPED, _E.RUC): ((scj,), _S.STOPPED),
    (_S.STOPPED, _E.RXJ_PLUS): ((), _S.STOPPED),
    (_S.STOPPED, _E.RXJ_MINUS): ((tlf,), _S.STOPPED),
    (_S.STOPPED, _E.RXR): ((), _S.STOPPED),
    # 4 Closing
    (_S.CLOSING, _E.DOWN): ((), _S.INITIAL),
    (_S.CLOSING, _E.OPEN): ((), _S.STOPPING),
    (_S.CLOSING, _E.CLOSE): ((), _S.CLOSING),
    (_S.CLOSING, _E.TO_PLUS): ((str_,), _S.CLOSING),
    (_S.CLOSING, _E.TO_MINUS): ((tlf,), _S.CLOSED),
    (_S.CLOSING, _E.RCR_PLUS): ((), _S.CLOSING),
    (_S.CLOSING, _E.RCR_MINUS): ((), _S.CLOSING),
    (_S.CLOSING, _E.RCA): ((), _S.CLOSING),
    (_S.CLOSING, _E.RCN): ((), _S.CLOSING),
    (_S.CLOSING, _E.RTR): ((sta,), _S.CLOSING),
    (_S.CLOSING, _E.RTA): ((tlf,), _S.CLOSED),
    (_S.CLOSING, _E.RUC): ((scj,), _S.CLOSING),
    (_S.CLOSING, _E.RXJ_PLUS): ((), _S.CLOSING),
    (_S.CLOSING, _E.RXJ_MINUS): ((tlf,), _S.CLOSED),
    (_S.CLOSING, _E.RXR): ((), _S.CLOSING),
    # 5 Stopping
    (_S.STOPPING, _E.DOWN): ((), _S.STARTING),
    (_S.STOPPING, _E.OPEN): ((), _S.STOPPING),
    (_S.STOPPING, _E.CLOSE): ((), _S.CLOSING),
    (_S.STOPPING, _E.TO_PLUS): ((str_,), _S.STOPPING),
    (_S.STOPPING, _E.TO_MINUS): ((tlf,), _S.STOPPED),
    (_S.STOPPING, _E.RCR_PLUS): ((), _S.STOPPING),
    (_S.STOPPING, _E.RCR_MINUS): ((), _S.STOPPING),
    (_S.STOPPING, _E.RCA): ((), _S.STOPPING),
    (_S.STOPPING, _E.RCN): ((), _S.STOPPING),
    (_S.STOPPING, _E.RTR): ((sta,), _S.STOPPING),
    (_S.STOPPING, _E.RTA): ((tlf,), _S.STOPPED),
    (_S.STOPPING, _E.RUC): ((scj,), _S.STOPPING),
    (_S.STOPPING, _E.RXJ_PLUS): ((), _S.STOPPING),
    (_S.STOPPING, _E.RXJ_MINUS): ((tlf,), _S.STOPPED),
    (_S.STOPPING, _E.RXR): ((), _S.STOPPING),
    # 6 Req-Sent
    (_S.REQ_SENT, _E.DOWN): ((), _S.STARTING),
    (_S.REQ_SENT, _E.OPEN): ((), _S.REQ_SENT),
    (_S.REQ_SENT, _E.CLOSE): ((irc, str_), _S.CLOSING),
    (_S.REQ_SENT, _E.TO_PLUS): ((scr,), _S.REQ_SENT),
    (_S.REQ_SENT, _E.TO_MINUS): ((tlf,), _S.STOPPED),
    (_S.REQ_SENT, _E.RCR_PLUS): ((sca,), _S.ACK_SENT),
    (_S.REQ_SENT, _E.RCR_MINUS): ((scn,), _S.REQ_SENT),
    (_S.REQ_SENT, _E.RCA): ((irc,), _S.ACK_RCVD),
    (_S.REQ_SENT, _E.RCN): ((irc, scr), _S.REQ_SENT),
    (_S.REQ_SENT, _E.RTR): ((sta,), _S.REQ_SENT),
    (_S.REQ_SENT, _E.RTA): ((), _S.REQ_SENT),
    (_S.REQ_SENT, _E.RUC): ((scj,), _S.REQ_SENT),
    (_S.REQ_SENT, _E.RXJ_PLUS): ((), _S.REQ_SENT),
    (_S.REQ_SENT, _E.RXJ_MINUS): ((tlf,), _S.STOPPED),
    (_S.REQ_SENT, _E.RXR): ((), _S.REQ_SENT),
    # 7 Ack-Rcvd
    (_S.ACK_RCVD, _E.DOWN): ((), _S.STARTING),
    (_S.ACK_RCVD, _E.OPEN): ((), _S.ACK_RCVD),
    (_S.ACK_RCVD, _E.CLOSE): ((irc, str_), _S.CLOSING),
    (_S.ACK_RCVD, _E.TO_PLUS): ((scr,), _S.REQ_SENT),
    (_S.ACK_RCVD, _E.TO_MINUS): ((tlf,), _S.STOPPED),
    (_S.ACK_RCVD, _E.RCR_PLUS): ((sca, tlu), _S.OPENED),
    (_S.ACK_RCVD, _E.RCR_MINUS): ((scn,), _S.ACK_RCVD),
    (_S.ACK_RCVD, _E.RCA): ((scr,), _S.REQ_SENT),
    (_S.ACK_RCVD, _E.RCN): ((scr,), _S.REQ_SENT),
    (_S.ACK_RCVD, _E.RTR): ((sta,), _S.REQ_SENT),
    (_S.ACK_RCVD, _E.RTA): ((), _S.REQ_SENT),
    (_S.ACK_RCVD, _E.RUC): ((scj,), _S.ACK_RCVD),
    (_S.ACK_RCVD, _E.RXJ_PLUS): ((), _S.REQ_SENT),
    (_S.ACK_RCVD, _E.RXJ_MINUS): ((tlf,), _S.STOPPED),
    (_S.ACK_RCVD, _E.RXR): ((), _S.ACK_RCVD),
    # 8 Ack-Sent
    (_S.ACK_SENT, _E.DOWN): ((), _S.STARTING),
    (_S.ACK_SENT, _E.OPEN): ((), _S.ACK_SENT),
    (_S.ACK_SENT, _E.CLOSE): ((irc, str_), _S.CLOSING),
    (_S.ACK_SENT, _E.TO_PLUS): ((scr,), _S.ACK_SENT),
    (_S.ACK_SENT, _E.TO_MINUS): ((tlf,), _S.STOPPED),
    (_S.ACK_SENT, _E.RCR_PLUS): ((sca,), _S.ACK_SENT),
    (_S.ACK_SENT, _E.RCR_MINUS): ((scn,), _S.REQ_SENT),
    (_S.ACK_SENT, _E.RCA): ((irc, tlu), _S.OPENED),
    (_S.ACK_SENT, _E.RCN): ((irc, scr), _S.ACK_SENT),
    (_S.ACK_SENT, _E.RTR): ((sta,), _S.REQ_SENT),
    (_S.ACK_SENT, _E.RTA): ((), _S.ACK_SENT),
    (_S.ACK_SENT, _E.RUC): ((scj,), _S.ACK_SENT),
    (_S.ACK_SENT, _E.RXJ_PLUS): ((), _S.ACK_SENT),
    (_S.ACK_SENT, _E.RXJ_MINUS): ((tlf,), _S.STOPPED),
    (_S.ACK_SENT, _E.RXR): ((), _S.ACK_SENT),
    # 9 Opened
    (_S.OPENED, _E.DOWN): ((tld,), _S.STARTING),
    (_S.OPENED, _E.OPEN): ((), _S.OPENED),
    (_S.OPENED, _E.CLOSE): ((tld, irc, str_), _S.CLOSING),
    (_S.OPENED, _E.RCR_PLUS): ((tld, scr, sca), _S.ACK_SENT),
    (_S.OPENED, _E.RCR_MINUS): ((tld, scr, scn), _S.REQ_SENT),
    (_S.OPENED, _E.RCA): ((tld, scr), _S.REQ_SENT),
    (_S.OPENED, _E.RCN): ((tld, scr), _S.REQ_SENT),
    (_S.OPENED, _E.RTR): ((tld, zrc, sta), _S.STOPPING),
    (_S.OPENED, _E.RTA): ((tld, scr), _S.REQ_SENT),
    (_S.OPENED, _E.RUC): ((scj,), _S.OPENED),
    (_S.OPENED, _E.RXJ_PLUS): ((), _S.OPENED),
    (_S.OPENED, _E.RXJ_MINUS): ((tld, irc, str_), _S.STOPPING),
    (_S.OPENED, _E.RXR): ((ser,), _S.OPENED),
}

RUNNING_TIMER = frozenset(
    {State.CLOSING, State.STOPPING, State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT}
)
"""States in which the restart timer runs (RFC 1661 4.6); leaving them stops it."""

_NEGOTIATING = frozenset({State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT})
_PACKETS_IGNORED = frozenset({State.INITIAL, State.STARTING})
_NO_VERDICT = frozenset({State.CLOSED, State.CLOSING, State.STOPPING})


class FsmError(Exception):
    """An event the RFC 1661 table marks impossible for the current state."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"event {event.value} is impossible in state {state.name}")
        self.state = state
        """State the automaton was in."""
        self.event = event
        """The offending event."""


@attrs.frozen
class FsmConfig:
    """RFC 1661 section 4.6 counters and timer."""

    restart_timer: float = 3.0
    """Restart timer, seconds."""
    max_configure: int = 10
    """Configure-Requests sent without an Ack before giving up (TO-)."""
    max_terminate: int = 2
    """Terminate-Requests sent without an Ack before giving up."""
    max_failure: int = 5
    """Configure-Naks sent (or received) before Naks turn into Rejects."""


class OptionHandler(Protocol):
    """The per-protocol half of the automaton (pppd ``fsm_callbacks``)."""

    def reset(self) -> None:
        """A new negotiation starts: go back to the options we want (pppd ``resetci``)."""

    def add_ci(self) -> bytes:
        """Options for our next Configure-Request (pppd ``addci``)."""

    def ack_ci(self, data: bytes) -> bool:
        """The peer acked our request (byte-identical, already checked): adopt it.
        False discards the Ack (pppd ``ackci``)."""

    def nak_ci(self, data: bytes, treat_as_reject: bool) -> bool:
        """Apply the peer's Configure-Nak to what we want. ``treat_as_reject`` after
        Max-Failure Naks. False: malformed, discard the packet (pppd ``nakci``)."""

    def reject_ci(self, data: bytes) -> bool:
        """Stop asking for the rejected options. False: malformed, discard (pppd ``rejci``)."""

    def request_ci(self, data: bytes, reject_if_disagree: bool) -> tuple[int, bytes]:
        """Judge the peer's Configure-Request: ``(Code.CONFACK, data)``,
        ``(Code.CONFNAK, nak options)`` or ``(Code.CONFREJ, rejected options)``. With
        ``reject_if_disagree`` (Max-Failure reached) answer Reject instead of Nak
        (pppd ``reqci``)."""

    def up(self, now: float) -> None:
        """This-Layer-Up."""

    def down(self, now: float) -> None:
        """This-Layer-Down."""

    def starting(self, now: float) -> None:
        """This-Layer-Started."""

    def finished(self, now: float) -> None:
        """This-Layer-Finished."""

    def extended_code(self, code: int, identifier: int, data: bytes, now: float) -> Event | None:
        """A code beyond 1-7: the event it is (RXR, RXJ+, RXJ-), or None for unknown (RUC)."""

    def code_rejected(self, code: int) -> None:
        """The peer Code-Rejected one of our optional codes (e.g. Echo-Request)."""

    def echo_reply(self, data: bytes) -> bytes:
        """Data for the Echo-Reply to an Echo-Request carrying ``data`` (LCP only)."""

    def send(self, code: int, identifier: int, data: bytes) -> None:
        """Send a control packet of this protocol."""


def build_reply(
    data: bytes, naks: list[bytes], rejects: list[bytes], reject_if_disagree: bool
) -> tuple[int, bytes]:
    """Combine per-option verdicts into one reply (RFC 1661 5.2-5.4): any Reject wins, then
    any Nak (turned into Rejects once Max-Failure is reached), else an Ack of the request."""
    if rejects:
        return Code.CONFREJ, b"".join(rejects)
    if naks:
        return Code.CONFNAK, b"".join(naks)
    return Code.CONFACK, data


class Fsm:
    """One instance of the automaton: the state, the restart counter and timer, identifiers.

    Args:
        handler: the protocol's option handler; it also sends the packets (`send`).
        config: timer and counters.
    """

    __slots__ = (
        "config",
        "deadline",
        "handler",
        "naks_received",
        "naks_sent",
        "next_id",
        "prior",
        "req_data",
        "req_id",
        "restart_count",
        "state",
    )

    # prior: the state before the transition being run, for trace lines (IOS prints the
    # state a packet was sent or received in); equal to state between events.

    def __init__(self, handler: OptionHandler, config: FsmConfig) -> None:
        self.handler = handler
        self.config = config
        self.state = State.INITIAL
        self.prior = State.INITIAL
        self.restart_count = 0
        self.deadline: float | None = None
        self.next_id = 1
        self.req_id = -1
        self.req_data = b""
        """Our Configure-Request's options while it waits for its answer (``req_id`` >= 0)."""
        self.naks_sent = 0
        self.naks_received = 0

    def answer_echo(self, code: int, identifier: int, data: bytes) -> None:
        """The ``ser`` action (RXR in Opened): an Echo-Request gets its Echo-Reply; an
        Echo-Reply or Discard-Request nothing. Also the held link's fast path for echoes."""
        if code == Code.ECHOREQ:
            self.send(Code.ECHOREP, identifier, self.handler.echo_reply(data))

    def send(self, code: int, identifier: int, data: bytes) -> None:
        """Send a control packet through the handler (a bound method kept per automaton
        would cost 64 bytes on each of a held session's two or three)."""
        self.handler.send(code, identifier, data)

    # -- commands ------------------------------------------------------------------------------

    def up(self, now: float) -> None:
        """The lower layer is up."""
        self.event(Event.UP, now)

    def down(self, now: float) -> None:
        """The lower layer is down."""
        self.event(Event.DOWN, now)

    def open(self, now: float) -> None:
        """Administrative Open."""
        self.event(Event.OPEN, now)

    def close(self, now: float) -> None:
        """Administrative Close."""
        self.event(Event.CLOSE, now)

    def force_opened(self, now: float) -> None:
        """Jump from Initial straight to Opened, as if Up, Open, RCR+ and RCA had happened:
        the options were negotiated elsewhere (L2TP proxy LCP, RFC 2661 4.4.5)."""
        if self.state is not State.INITIAL:
            raise FsmError(self.state, Event.OPEN)
        self.state = self.prior = State.OPENED
        self.deadline = None
        self.handler.up(now)

    def handle_timer(self, now: float) -> None:
        """Run the restart timer if it is due."""
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.event(Event.TO_PLUS if self.restart_count > 0 else Event.TO_MINUS, now)

    # -- packets -------------------------------------------------------------------------------

    def receive(self, code: int, identifier: int, data: bytes, raw: bytes, now: float) -> None:
        """Feed one received control packet of this protocol.

        Args:
            code, identifier, data: the decoded packet.
            raw: the whole packet as received, for a Code-Reject.
            now: the clock.
        """
        state = self.state
        if state in _PACKETS_IGNORED:
            return  # the lower layer is not up for us: RFC 1661 4.2 Initial/Starting
        if code == Code.CONFREQ:
            if state in _NO_VERDICT:
                self.event(Event.RCR_PLUS, now, identifier)
                return
            reject = self.naks_sent >= self.config.max_failure
            verdict, reply = self.handler.request_ci(data, reject)
            if verdict == Code.CONFACK:
                # Max-Failure counts the Naks sent without sending an Ack (RFC 1661 4.6, pppd
                # nakloops): a peer that renegotiates (a stale request over a link that
                # reorders) starts a new count
                self.naks_sent = 0
                self.event(Event.RCR_PLUS, now, identifier, data)
            else:
                if verdict == Code.CONFNAK:
                    self.naks_sent += 1
                self.event(Event.RCR_MINUS, now, identifier, reply, verdict)
        elif code == Code.CONFACK:
            if state in _NEGOTIATING or state is State.OPENED:
                if identifier != self.req_id or data != self.req_data:
                    return  # not an Ack of our current request: silently discarded
                if not self.handler.ack_ci(data):
                    return
                self.req_id = -1
                self.req_data = b""  # answered: a held link keeps no copy of its request
            self.event(Event.RCA, now, identifier)
        elif code in (Code.CONFNAK, Code.CONFREJ):
            if state in _NEGOTIATING or state is State.OPENED:
                if identifier != self.req_id:
                    return
                if code == Code.CONFNAK:
                    self.naks_received += 1
                    treat = self.naks_received >= self.config.max_failure
                    if not self.handler.nak_ci(data, treat):
                        return
                elif not self.handler.reject_ci(data):
                    return
                self.req_id = -1
                self.req_data = b""
            self.event(Event.RCN, now, identifier)
        elif code == Code.TERMREQ:
            self.event(Event.RTR, now, identifier)
        elif code == Code.TERMACK:
            self.event(Event.RTA, now, identifier)
        elif code == Code.CODEREJ:
            rejected = data[0] if data else 0
            if 1 <= rejected <= 7:
                self.event(Event.RXJ_MINUS, now, identifier)
            else:
                self.handler.code_rejected(rejected)
                self.event(Event.RXJ_PLUS, now, identifier)
        else:
            ext = self.handler.extended_code(code, identifier, data, now)
            if ext is None:
                self.event(Event.RUC, now, identifier, raw)
            elif ext is Event.RXR:
                self.event(Event.RXR, now, identifier, data, code)
            else:
                self.event(ext, now, identifier)

    # -- the automaton -------------------------------------------------------------------------

    def event(
        self,
        event: Event,
        now: float,
        identifier: int = 0,
        data: bytes = b"",
        code: int = 0,
    ) -> None:
        """Run one event through :data:`TRANSITIONS`.

        Args:
            event: the event.
            now: the clock.
            identifier: the received packet's identifier (for sta, sca, scn, ser).
            data: the reply options (sca: the request; scn: the Nak/Reject options), the
                rejected packet (scj) or the Echo-Request data (ser).
            code: scn: Code.CONFNAK or Code.CONFREJ; ser: the received code.

        Raises:
            FsmError: the table has no entry for (state, event).
        """
        old = self.state
        try:
            actions, new = TRANSITIONS[(old, event)]
        except KeyError:
            raise FsmError(old, event) from None
        # The state changes before the actions run: a callback (tlu, tld, tlf) may feed this
        # automaton again, and tlu/tlf are always the last action of a row.
        self.state = new
        self.prior = old
        for action in actions:
            if action is Action.IRC:
                self.restart_count = (
                    self.config.max_terminate
                    if new in (State.CLOSING, State.STOPPING)
                    else self.config.max_configure
                )
            elif action is Action.SCR:
                self._send_configure_request(now, old, event is Event.TO_PLUS)
            elif action is Action.SCA:
                self.send(Code.CONFACK, identifier, data)
            elif action is Action.SCN:
                self.send(code, identifier, data)
            elif action is Action.STR:
                self.restart_count -= 1
                self.deadline = now + self.config.restart_timer
                self.send(Code.TERMREQ, self.new_id(), b"")
            elif action is Action.STA:
                self.send(Code.TERMACK, identifier, b"")
            elif action is Action.ZRC:
                self.restart_count = 0
                self.deadline = now + self.config.restart_timer
            elif action is Action.SCJ:
                self.send(Code.CODEREJ, self.new_id(), data)
            elif action is Action.SER:
                self.answer_echo(code, identifier, data)
            elif action is Action.TLU:
                self.handler.up(now)
            elif action is Action.TLD:
                self.handler.down(now)
            elif action is Action.TLS:
                self.handler.starting(now)
            elif action is Action.TLF:
                self.handler.finished(now)
        if self.state not in RUNNING_TIMER:
            self.deadline = None
        self.prior = self.state

    def new_id(self) -> int:
        """A fresh identifier for a request we originate."""
        ident = self.next_id
        self.next_id = (ident + 1) & 0xFF
        return ident

    def _send_configure_request(self, now: float, old: State, retransmit: bool) -> None:
        if old not in _NEGOTIATING:
            # not negotiating yet: start from the options we want (pppd fsm_sconfreq)
            self.handler.reset()
            self.naks_sent = 0
            self.naks_received = 0
        if not (retransmit and self.req_id >= 0):
            self.req_data = self.handler.add_ci()
            self.req_id = self.new_id()
        self.restart_count -= 1
        self.deadline = now + self.config.restart_timer
        self.send(Code.CONFREQ, self.req_id, self.req_data)
