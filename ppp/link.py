"""One PPP link: the RFC 1661 section 3.2 phases over LCP, authentication and the NCPs.

The driver's loop, aioquic style::

    link = Link(config, rng=rng, name="Vi4")
    link.open(now)                        # or open(now, proxy_lcp=..., proxy_auth=...)
    for frame in link.frames_to_send():   # complete PPP frames (ff 03 + protocol + packet)
        send(frame)
    # on every frame from the peer:   link.receive_frame(frame, now)
    # when link.get_timer() is due:   link.handle_timer(now)
    while (event := link.next_event()) is not None:
        ...  # AuthRequest -> link.auth_result(...); AddressRequest -> link.address_result(...)
             # LinkDown -> hang up the L2TP session (reason -> CDN result)

Output frames are complete PPP frames: ``ff 03`` (unless ``send_address_control`` is off), the
two-octet protocol and the packet; a channel that adds the address/control field itself (a
/dev/ppp channel) strips the first two octets. Input may come with or without ``ff 03`` and
with a compressed protocol field. Network-layer data (IPv4, IPv6) is not this core's business:
it is dropped here, the data plane carries it.

The roles differ only by :class:`ppp.config.LinkConfig` values: the LNS demands ``auth`` and
assigns the peer's address; the LAC's subscriber has ``username``/``password`` and asks for an
address.

The protocol handlers know nothing of this class: the link is their services object
(:mod:`ppp.services`), and it acts on what they return (:class:`ppp.auth.AuthDone`,
:class:`ppp.lcp.EchoTimeout`, an :class:`ppp.events.AuthRequest`) and on the layer signals
they report.
"""

from __future__ import annotations

import enum
import logging
import random
import re
from collections.abc import Callable
from ipaddress import IPv4Address

from ppp.auth import (
    AuthDone,
    AuthOutcome,
    ChapAuthenticator,
    ChapCode,
    ChapPeer,
    PapAuthenticator,
    PapCode,
    PapPeer,
)
from ppp.config import AuthMethod, LinkConfig, ProxyMode
from ppp.events import (
    AddressRequest,
    Authenticated,
    AuthRequest,
    DownReason,
    Ipv6Up,
    LinkDown,
    LinkUp,
    NetworkDown,
    NetworkUp,
    PppEvent,
)
from ppp.frame import (
    Code,
    PppDecodeError,
    Proto,
    decode_frame,
    decode_options,
    decode_packet,
    encode_frame,
    encode_packet,
)
from ppp.fsm import STATE_NAMES, Event, State
from ppp.ipcp import Ipcp, describe_ipcp_option, requested_address
from ppp.ipv6cp import Ipv6cp, describe_ipv6cp_option
from ppp.lcp import Lcp, describe_lcp_option
from ppp.ncp import Ncp
from ppp.proxy import ProxyAuth, ProxyAuthType, ProxyLcp
from ppp.services import LayerDown, LayerUp, ProtocolRejected, Signal

__all__ = ["Link", "Phase", "logger", "printable"]

logger = logging.getLogger("kl2tp.ppp")

_UNSAFE = re.compile(r"[^\x20-\x7e]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character (CR, LF, ESC, bidi overrides) written as
    ``\\xNN`` / ``\\uNNNN``, as ``kl2tp.log.escape`` does: trace lines hold names and
    messages the peer chose, and a peer must not forge log lines or drive a terminal."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_char, text)


class Phase(enum.Enum):
    """RFC 1661 section 3.2 link phases; values as the IOS trace names them."""

    DEAD = "DOWN"
    ESTABLISH = "ESTABLISHING"
    AUTHENTICATE = "AUTHENTICATING"
    NETWORK = "UP"
    TERMINATE = "TERMINATING"


_PROTO_NAMES: dict[int, str] = {
    Proto.LCP: "LCP",
    Proto.IPCP: "IPCP",
    Proto.IPV6CP: "IPV6CP",
    Proto.PAP: "PAP",
    Proto.CHAP: "CHAP",
}
_DESCRIBE: dict[int, Callable[[int, bytes], str]] = {
    Proto.LCP: describe_lcp_option,
    Proto.IPCP: describe_ipcp_option,
    Proto.IPV6CP: describe_ipv6cp_option,
}
_LIVE = frozenset({State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT, State.OPENED})
_AUTH_PROTOCOLS = frozenset({Proto.PAP, Proto.CHAP})
_ECHO_CODES = (bytes((Code.ECHOREQ,)), bytes((Code.ECHOREP,)))
"""First octets of the LCP packets `Link._receive_echo` takes (a held link's keepalive)."""
_NOT_STARTED = frozenset({State.INITIAL, State.STARTING})


class Link:
    """One PPP link (sans-IO). See the module docstring for the driver's loop.

    Args:
        config: shared configuration; it decides the role.
        rng: randomness for magic numbers, challenges and interface ids.
        name: prefix of this link's debug trace lines (e.g. the interface or session): a
            string, or an object whose ``str()`` is one, made only when a line is written
            (a string per held session costs ~70 bytes).
        drops: where to count frames dropped as malformed, by reason (the driver may share
            one dict between links); None: a dict of the link's own.
    """

    __slots__ = (
        "_events",
        "_out",
        "address_pending",
        "authenticated_with",
        "authenticator",
        "authenticator_ok",
        "been_up",
        "config",
        "down_message",
        "down_reason",
        "drops",
        "frames_in",
        "identity",
        "ipcp",
        "ipv6cp",
        "lcp",
        "name",
        "peer",
        "peer_ok",
        "pending_ipcp_request",
        "phase",
        "phase_deadline",
        "proxy_auth",
        "proxy_lcp_forced",
        "restarts",
        "rng",
        "setup_deadline",
        "username",
    )

    def __init__(
        self,
        config: LinkConfig,
        *,
        rng: random.Random,
        name: object = "",
        drops: dict[str, int] | None = None,
    ) -> None:
        self.config = config
        self.drops: dict[str, int] = {} if drops is None else drops
        """Frames from the peer dropped as malformed, by reason."""
        self.identity: str | None = None
        """The name the peer authenticated as, fixed from its first success: a later
        authentication under another name ends the link (``IDENTITY_CHANGED``)."""
        self.setup_deadline: float | None = None
        """``config.setup_timeout`` after ``open``, until the first network protocol opens."""
        self.restarts = 0
        """Times LCP went down under the link once it had been up (``config.max_restarts``)."""
        self.been_up = False
        """The link reached the Network phase at least once."""
        self.frames_in = 0
        """Frames from the peer of any protocol but LCP: a driver's idle detection where the
        data plane keeps no counters (LCP, Echo-Replies included, says the link is alive,
        not that its user is active)."""
        self.rng = rng
        self.name = name
        self.phase = Phase.DEAD
        self.phase_deadline: float | None = None
        self.lcp = Lcp(self, config.lcp)
        fsm = config.lcp.fsm
        self.ipcp = Ipcp(self, config.ipcp, fsm) if config.ipcp.enabled else None
        self.ipv6cp = Ipv6cp(self, config.ipv6cp, fsm) if config.ipv6cp.enabled else None
        self.authenticator: PapAuthenticator | ChapAuthenticator | None = None
        self.authenticated_with: AuthMethod | None = None
        """The method of an authenticator retired once the network opened (`_ncp_up`)."""
        self.peer: PapPeer | ChapPeer | None = None
        self.authenticator_ok = False
        self.peer_ok = False
        self.username = ""
        self.proxy_auth: ProxyAuth | None = None
        self.proxy_lcp_forced = False
        self.address_pending = False
        self.pending_ipcp_request: bytes | None = None
        self.down_reason: DownReason | None = None
        self.down_message = ""
        self._events: list[PppEvent] | None = None
        self._out: list[bytes] | None = None
        """Frames queued for `frames_to_send`; None while there are none (a held link keeps
        no empty list: 56 bytes)."""

    # -- driver surface ------------------------------------------------------------------------

    def open(
        self,
        now: float,
        *,
        proxy_lcp: ProxyLcp | None = None,
        proxy_auth: ProxyAuth | None = None,
    ) -> None:
        """Start the link (the L2TP session is up).

        Args:
            now: the clock.
            proxy_lcp: LCP values the LAC negotiated (LNS); forced into Opened when
                acceptable and ``config.proxy_lcp`` is ``accept``, else LCP starts afresh.
            proxy_auth: the LAC's authentication exchange (LNS); used instead of our own
                challenge when acceptable and ``config.proxy_auth`` is ``accept``.
        """
        if self.alive or self.down_reason is not None:
            raise RuntimeError("a link opens once")
        self._set_phase(Phase.ESTABLISH, now + self.config.establish_timeout)
        if self.config.setup_timeout > 0:
            self.setup_deadline = now + self.config.setup_timeout
        self.proxy_auth = proxy_auth
        if proxy_lcp is not None and self.config.proxy_lcp is ProxyMode.ACCEPT:
            if self.tracing:
                self._trace_forced(proxy_lcp)
            if self.lcp.force(proxy_lcp.last_sent, proxy_lcp.last_received):
                self.proxy_lcp_forced = True
                self.lcp.fsm.force_opened(now)
                return
            if self.tracing:
                self.trace("LCP", "proxy values not acceptable: renegotiating")
        self.lcp.fsm.up(now)
        self.lcp.fsm.open(now)

    def close(self, now: float, reason: DownReason = DownReason.ADMIN, message: str = "") -> None:
        """Terminate the link: LCP Terminate-Request, then Dead and :class:`LinkDown`.

        The first reason given (here or found by the core) is the one reported.
        """
        if self.phase is Phase.DEAD:
            return
        self._set_reason(reason, message)
        if self.tracing:
            self.trace("PPP", f"closing: {reason.value}{' (' + message + ')' if message else ''}")
        self.setup_deadline = None
        if self.phase is not Phase.TERMINATE:  # a second close does not extend the deadline
            self._set_phase(Phase.TERMINATE, now + self.config.terminate_timeout)
        self.lcp.fsm.close(now)
        if self.lcp.fsm.state in (State.INITIAL, State.CLOSED) and self.alive:
            self._dead(now)

    def lower_down(self, now: float) -> None:
        """The L2TP session is gone: no Terminate exchange, straight to Dead."""
        if self.phase is Phase.DEAD:
            return
        self._set_reason(DownReason.LOWER_LAYER_DOWN, "")
        if self.lcp.fsm.state not in _NOT_STARTED:
            self.lcp.fsm.down(now)
        self._dead(now)

    def receive_frame(self, data: bytes, now: float) -> None:
        """Feed one PPP frame from the peer."""
        if self.phase is Phase.DEAD:
            return
        try:
            protocol, information = decode_frame(data)
        except PppDecodeError as exc:
            self.drop("bad-frame")
            if self.tracing:
                self.trace("PPP", f"bad frame: {exc.message}")
            return
        lcp = self.lcp
        lcp.heard = True
        if protocol != Proto.LCP:
            self.frames_in += 1
        if protocol == Proto.LCP:
            if (
                information[:1] in _ECHO_CODES
                and lcp.fsm.state is State.OPENED
                and not self.tracing
            ):
                self._receive_echo(information, now)
                return
            self._receive_control(protocol, information, now)
            if self.lcp.loops >= self.config.lcp.max_loops:
                self.close(now, DownReason.LOOPBACK, "magic number keeps coming back")
        elif protocol in _AUTH_PROTOCOLS:
            if self.phase in (Phase.AUTHENTICATE, Phase.NETWORK):
                self._receive_auth(protocol, information, now)
        elif (protocol == Proto.IPCP and self.ipcp is not None) or (
            protocol == Proto.IPV6CP and self.ipv6cp is not None
        ):
            if self.phase is Phase.NETWORK:
                self._receive_control(protocol, information, now)
        elif protocol in (Proto.IPV4, Proto.IPV6):
            pass  # data belongs to the data plane; before the NCP opens, RFC 1661 drops it
        elif self.lcp.fsm.state is State.OPENED:
            # RFC 1661 5.7: Protocol-Reject, Rejected-Information cut to the peer's MRU
            room = max(self.lcp.peer_mru - 6, 0)
            payload = protocol.to_bytes(2, "big") + information[:room]
            self.control_send(Proto.LCP, State.OPENED, Code.PROTREJ, self.lcp.fsm.new_id(), payload)

    def frames_to_send(self) -> list[bytes]:
        """PPP frames to transmit, oldest first; the list is handed over (the link queues
        into a new one)."""
        out = self._out
        if out is None:
            return []
        self._out = None
        return out

    def get_timer(self) -> float | None:
        """The next moment :meth:`handle_timer` must run, or None."""
        if self.phase is Phase.DEAD:
            return None
        best = self.phase_deadline
        for deadline in (
            self.setup_deadline,
            self.lcp.fsm.deadline,
            self.lcp.echo_deadline,
            self.ipcp.fsm.deadline if self.ipcp is not None else None,
            self.ipv6cp.fsm.deadline if self.ipv6cp is not None else None,
            self.authenticator.deadline if self.authenticator is not None else None,
            self.peer.deadline if self.peer is not None else None,
        ):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def handle_timer(self, now: float) -> None:
        """Run whatever is due."""
        if self.phase is Phase.DEAD:
            return
        if self.phase_deadline is not None and now >= self.phase_deadline:
            self.phase_deadline = None
            self._phase_timeout(now)
        if self.setup_deadline is not None and now >= self.setup_deadline and self.alive:
            self.setup_deadline = None
            self.close(
                now,
                DownReason.SETUP_TIMEOUT,
                f"not up {self.config.setup_timeout:g} s after the start ({self.phase.value})",
            )
        for fsm in (
            self.lcp.fsm,
            self.ipcp.fsm if self.ipcp is not None else None,
            self.ipv6cp.fsm if self.ipv6cp is not None else None,
        ):
            if fsm is not None and self.alive:
                fsm.handle_timer(now)
        if self.alive:
            echo = self.lcp.handle_echo_timer(now)
            if echo is not None:
                self.close(
                    now, DownReason.ECHO_TIMEOUT, f"no response to {echo.count} echo-requests"
                )
        if self.authenticator is not None and self.alive:
            self._authenticator_outcome(self.authenticator.handle_timer(now), now)
        if self.peer is not None and self.alive:
            self._peer_outcome(self.peer.handle_timer(now), now)

    def next_event(self) -> PppEvent | None:
        """The oldest pending event, or None."""
        events = self._events
        if events is None:
            return None
        event = events.pop(0)
        if not events:
            self._events = None  # a held link keeps no empty list (56 bytes)
        return event

    def auth_result(
        self,
        now: float,
        accepted: bool,
        *,
        message: str = "",
        authenticator_response: str | None = None,
        address: IPv4Address | None = None,
        dns: tuple[IPv4Address, ...] = (),
    ) -> None:
        """The verdict on the last :class:`AuthRequest`.

        Args:
            now: the clock.
            accepted: let the peer in.
            message: text for the PAP/CHAP message field (says nothing useful to attackers).
            authenticator_response: MS-CHAPv2 only, the ``"S=..."`` proof for the Success.
            address: the peer's IPv4 address (AAA Framed-IP-Address or pool), if known now;
                255.255.255.255 lets the peer keep the address it asks for.
            dns: DNS servers to offer instead of the configured ones.
        """
        if self.phase is Phase.DEAD or self.authenticator is None:
            return
        if self.ipcp is not None:
            if address is not None:
                self.ipcp.assign(address)
            if dns:
                self.ipcp.dns_offer = tuple(int(a) for a in dns[:2])
        outcome = self.authenticator.verdict(now, accepted, message, authenticator_response)
        self._authenticator_outcome(outcome, now)

    def address_result(
        self, now: float, address: IPv4Address | None, *, dns: tuple[IPv4Address, ...] = ()
    ) -> None:
        """The answer to :class:`AddressRequest`; None: no address, the link goes down."""
        if self.phase is Phase.DEAD or self.ipcp is None:
            return
        if address is None:
            self.close(now, DownReason.NO_ADDRESS, "no address for the peer")
            return
        self.ipcp.assign(address)
        if dns:
            self.ipcp.dns_offer = tuple(int(a) for a in dns[:2])
        self.address_pending = False
        pending, self.pending_ipcp_request = self.pending_ipcp_request, None
        if pending is not None and self.phase is Phase.NETWORK:
            self._receive_control(Proto.IPCP, pending, now, replay=True)  # now we can answer it

    # -- state for show commands ---------------------------------------------------------------

    @property
    def peer_address(self) -> IPv4Address | None:
        """The peer's IPv4 address once IPCP is Opened."""
        if self.ipcp is None or self.ipcp.fsm.state is not State.OPENED:
            return None
        return IPv4Address(self.ipcp.peer_address)

    @property
    def auth_method(self) -> AuthMethod | None:
        """The method the peer is authenticated with (LNS) or we are (subscriber)."""
        if self.authenticator is not None:
            return self.authenticator.method
        if self.authenticated_with is not None:
            return self.authenticated_with
        if self.peer is not None:
            return self.peer.method
        return None

    # -- services for the protocol handlers (ppp.services) ------------------------------------

    @property
    def tracing(self) -> bool:
        """Debug trace on (guard any costly formatting with it)."""
        return logger.isEnabledFor(logging.DEBUG)

    def trace(self, category: str, text: str) -> None:
        """One IOS-style trace line: ``<name> <category>: <text>``; the text is made
        printable (it may hold the peer's names and messages)."""
        logger.debug("%s %s: %s", self.name, category, printable(text))

    def drop(self, reason: str) -> None:
        """Count a packet from the peer dropped as malformed."""
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def control_send(self, protocol: int, state: State, code: int, ident: int, data: bytes) -> None:
        """Queue a control packet of ``protocol``."""
        packet = encode_packet(code, ident, data)
        if self.tracing:
            self._trace_packet("O", protocol, state, code, ident, data)
        self._queue(
            encode_frame(protocol, packet, address_control=self.config.send_address_control)
        )

    def auth_send(self, protocol: int, code: int, ident: int, data: bytes) -> None:
        """Queue a PAP or CHAP packet (their handlers trace it themselves)."""
        packet = encode_packet(code, ident, data)
        self._queue(
            encode_frame(protocol, packet, address_control=self.config.send_address_control)
        )

    def _queue(self, frame: bytes) -> None:
        if self._out is None:
            self._out = [frame]
        else:
            self._out.append(frame)

    @property
    def demanded_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we demand of the peer, preferred first (``config.auth``)."""
        return self.config.auth

    @property
    def willing_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we would authenticate ourselves with (we need a name and a password)."""
        return self.config.willing_auth

    @property
    def insisted_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we take when the peer insists (``config.fallback_auth``)."""
        return self.config.insisted_auth

    def signal(self, signal: Signal, now: float) -> None:
        """A handler's layer signal (This-Layer-Up/-Down/-Finished, a Protocol-Reject)."""
        if isinstance(signal, ProtocolRejected):
            self._protocol_rejected(signal.protocol, now)
            return
        if signal.protocol == Proto.LCP:
            if isinstance(signal, LayerUp):
                self._lcp_up(now)
            elif isinstance(signal, LayerDown):
                self._lcp_down(now)
            else:  # LayerFinished
                self._lcp_finished(now)
            return
        ncp = self.ipcp if signal.protocol == Proto.IPCP else self.ipv6cp
        assert ncp is not None  # only a running NCP signals
        if isinstance(signal, LayerUp):
            self._ncp_up(ncp, now)
        elif isinstance(signal, LayerDown):
            self._emit(NetworkDown(ncp.protocol))
        else:  # LayerFinished
            self._ncp_finished(ncp, now)

    @property
    def alive(self) -> bool:
        """Not Dead yet."""
        return self.phase is not Phase.DEAD

    # -- internals -----------------------------------------------------------------------------

    def _lcp_up(self, now: float) -> None:
        """LCP This-Layer-Up: report, then Authenticate or Network phase."""
        lcp = self.lcp
        if self.tracing:
            self.trace("LCP", "State is Open")
        self._emit(
            LinkUp(
                mru=lcp.mru,
                peer_mru=lcp.peer_mru,
                magic=lcp.want_magic or 0,
                peer_magic=lcp.peer_magic,
                send_accm=lcp.peer_accm,
                receive_accm=lcp.want_accm if lcp.want_accm is not None else 0xFFFFFFFF,
                pfc=lcp.peer_pfc,
                acfc=lcp.peer_acfc,
                auth=lcp.want_auth,
                peer_auth=lcp.peer_auth,
                proxy=self.proxy_lcp_forced,
            )
        )
        if self.config.auth and lcp.want_auth is None:
            self.close(now, DownReason.AUTH_REFUSED, "peer refused to authenticate")
            return
        if lcp.want_auth is not None or lcp.peer_auth is not None:
            self._enter_authenticate(now)
        else:
            self._emit(Authenticated("", None))
            self._enter_network(now)

    def _lcp_down(self, now: float) -> None:
        """LCP This-Layer-Down: the NCPs and authentication go down with it."""
        if self.tracing:
            self.trace("LCP", f"State is {STATE_NAMES[self.lcp.fsm.state]}")
        for ncp in (self.ipcp, self.ipv6cp):
            if ncp is not None and ncp.fsm.state not in _NOT_STARTED:
                ncp.fsm.down(now)
        self.authenticator = None
        self.authenticated_with = None
        self.peer = None
        self.authenticator_ok = self.peer_ok = False
        self.address_pending = False
        self.pending_ipcp_request = None
        if self.lcp.fsm.state in (State.CLOSING, State.STOPPING):
            self._set_phase(Phase.TERMINATE, now + self.config.terminate_timeout)
        else:
            self._set_phase(Phase.ESTABLISH, now + self.config.establish_timeout)
            if self.been_up:
                self.restarts += 1
                limit = self.config.max_restarts
                if limit and self.restarts > limit:
                    self.close(now, DownReason.TOO_MANY_RESTARTS, f"LCP restarted {limit}+ times")
                    return
            if self.setup_deadline is None and self.config.setup_timeout > 0:
                # A renegotiation must also finish in time: otherwise a peer that restarts
                # LCP before each phase timeout holds its session (and address) forever.
                self.setup_deadline = now + self.config.setup_timeout

    def _lcp_finished(self, now: float) -> None:
        """LCP This-Layer-Finished: the link is Dead."""
        if self.down_reason is None:
            if self.phase is Phase.ESTABLISH:
                if self.lcp.fsm.restart_count <= 0:
                    self._set_reason(DownReason.LCP_TIMEOUT, "no answer to LCP requests")
                else:
                    self._set_reason(DownReason.LCP_FAILED, "LCP negotiation failed")
            else:
                self._set_reason(DownReason.PEER_TERMINATED, "")
        self._dead(now)

    def _protocol_rejected(self, protocol: int, now: float) -> None:
        """The peer Protocol-Rejected one of ours (RFC 1661 5.7)."""
        if self.tracing:
            self.trace("LCP", f"protocol 0x{protocol:04X} rejected by the peer")
        for ncp in (self.ipcp, self.ipv6cp):
            if ncp is not None and ncp.protocol == protocol:
                if ncp.fsm.state not in _NOT_STARTED:
                    ncp.fsm.event(Event.RXJ_MINUS, now)
                else:
                    self.address_pending = False
                    self._ncp_finished(ncp, now)
                return
        if protocol in _AUTH_PROTOCOLS and self.phase is Phase.AUTHENTICATE:
            self.close(now, DownReason.AUTH_REFUSED, "peer rejected the authentication protocol")

    def _authenticator_outcome(self, outcome: AuthOutcome | None, now: float) -> None:
        """Act on what our authenticator returned: pass a request on, or go on / go down."""
        if outcome is None:
            return
        if isinstance(outcome, AuthRequest):
            if self.identity is not None and outcome.username != self.identity:
                # Finding 5 of issue 8: a link's identity is fixed once authenticated; a
                # different name after an LCP restart is not a re-authentication but
                # another subscriber, and it gets neither the session nor its address.
                self.close(now, DownReason.IDENTITY_CHANGED, "peer changed its identity")
                return
            self.username = outcome.username
            self._emit(outcome)
            return
        if not outcome.ok:
            reason = DownReason.AUTH_TIMEOUT if outcome.timeout else DownReason.AUTH_FAILED
            self.close(now, reason, outcome.message)
            return
        self.authenticator_ok = True
        if self.identity is None:
            self.identity = self.username
        self._auth_progress(now)

    def _peer_outcome(self, outcome: AuthDone | None, now: float) -> None:
        """Act on the end of the peer's authentication of us."""
        if outcome is None:
            return
        if not outcome.ok:
            reason = DownReason.AUTH_TIMEOUT if outcome.timeout else DownReason.AUTH_FAILED
            self.close(now, reason, outcome.message)
            return
        self.peer_ok = True
        if self.authenticator is None:
            self.username = self.config.username or ""
        self._auth_progress(now)

    def _ncp_up(self, ncp: Ncp, now: float) -> None:
        """An NCP opened."""
        self.phase_deadline = None
        self.setup_deadline = None
        if self.tracing:
            self.trace(_PROTO_NAMES.get(ncp.protocol, "NCP"), "State is Open")
        if isinstance(ncp, Ipcp):
            local, peer, dns = ncp.network_up_values()
            if not int(peer) or not int(local):
                self.close(now, DownReason.NO_ADDRESS, "IPCP opened without addresses")
                return
            self._emit(NetworkUp(local, peer, dns))
        elif isinstance(ncp, Ipv6cp):
            self._emit(Ipv6Up(ncp.want_id or 0, ncp.peer_id))
        self._retire_authenticator()

    def _retire_authenticator(self) -> None:
        """A network protocol opened, so the peer had our Success: an authenticator with
        no re-challenge ahead (``chap_rechallenge`` off) has nothing left to do. Only its
        method is kept (`auth_method`): ~200 bytes less per held session. A peer's retransmitted
        Response is then ignored (it went on to the network phase: it had the Success)."""
        authenticator = self.authenticator
        if authenticator is not None and self.authenticator_ok and authenticator.deadline is None:
            self.authenticated_with = authenticator.method
            self.authenticator = None

    def _ncp_finished(self, ncp: Ncp, now: float) -> None:
        """An NCP gave up; with no NCP left the link has no purpose."""
        if self.tracing:
            self.trace(_PROTO_NAMES.get(ncp.protocol, "NCP"), "State is Closed")
        if self.phase is not Phase.NETWORK:
            return
        for other in (self.ipcp, self.ipv6cp):
            if other is not None and (
                other.fsm.state in _LIVE or (other is self.ipcp and self.address_pending)
            ):
                return
        self.close(now, DownReason.NCP_FAILED, "no network protocols running")

    def _emit(self, event: PppEvent) -> None:
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    def _set_reason(self, reason: DownReason, message: str) -> None:
        if self.down_reason is None:
            self.down_reason = reason
            self.down_message = message

    def _set_phase(self, phase: Phase, deadline: float | None) -> None:
        if self.phase is not phase and self.tracing:
            self.trace("PPP", f"Phase is {phase.value}")
        self.phase = phase
        self.phase_deadline = deadline

    def _dead(self, now: float) -> None:
        if self.phase is Phase.DEAD:
            return
        self._set_phase(Phase.DEAD, None)
        self.authenticator = None
        self.peer = None
        self.lcp.echo_deadline = None
        reason = self.down_reason or DownReason.ADMIN
        self.down_reason = reason
        self._emit(LinkDown(reason, self.down_message))

    def _phase_timeout(self, now: float) -> None:
        phase = self.phase
        if phase is Phase.ESTABLISH:
            self.close(now, DownReason.LCP_TIMEOUT, "Establish phase timed out")
        elif phase is Phase.AUTHENTICATE:
            self.close(now, DownReason.AUTH_TIMEOUT, "Authenticate phase timed out")
        elif phase is Phase.NETWORK:
            self.close(now, DownReason.NCP_TIMEOUT, "no network protocol opened in time")
        elif phase is Phase.TERMINATE:
            self._dead(now)

    def _enter_authenticate(self, now: float) -> None:
        self._set_phase(Phase.AUTHENTICATE, now + self.config.auth_timeout)
        self.authenticator_ok = self.peer_ok = False
        method = self.lcp.want_auth
        peer_method = self.lcp.peer_auth
        if peer_method is not None:
            self.peer = (
                PapPeer(self) if peer_method is AuthMethod.PAP else ChapPeer(self, peer_method)
            )
        if method is not None:
            self.authenticator = (
                PapAuthenticator(self)
                if method is AuthMethod.PAP
                else ChapAuthenticator(self, method)
            )
        proxy = self._usable_proxy_auth(method)
        self.proxy_auth = None  # proxy values serve the first authentication only
        if self.peer is not None:
            self.peer.start(now)
        if self.authenticator is not None and self.phase is Phase.AUTHENTICATE:
            self._authenticator_outcome(self.authenticator.start(now, proxy), now)

    def _usable_proxy_auth(self, method: AuthMethod | None) -> ProxyAuth | None:
        proxy = self.proxy_auth
        if (
            proxy is None
            or method is None
            or not self.proxy_lcp_forced
            or self.config.proxy_auth is not ProxyMode.ACCEPT
        ):
            return None
        if method is AuthMethod.CHAP and proxy.type == ProxyAuthType.CHAP:
            if proxy.ident is not None and proxy.challenge and len(proxy.response) == 16:
                return proxy
        elif method is AuthMethod.PAP and proxy.type in (ProxyAuthType.PAP, ProxyAuthType.TEXTUAL):
            return proxy
        if self.tracing:
            self.trace("PPP", "proxy authentication not usable: authenticating afresh")
        return None

    def _auth_progress(self, now: float) -> None:
        if self.phase is not Phase.AUTHENTICATE:
            return  # a re-challenge succeeded: nothing changes
        if self.authenticator is not None and not self.authenticator_ok:
            return
        if self.peer is not None and not self.peer_ok:
            return
        self._emit(Authenticated(self.username, self.auth_method))
        self._enter_network(now)

    def _enter_network(self, now: float) -> None:
        self.been_up = True
        self._set_phase(Phase.NETWORK, now + self.config.network_timeout)
        if self.ipcp is None and self.ipv6cp is None:
            self.phase_deadline = None
            return
        if self.ipcp is not None:
            self.ipcp.fsm.up(now)
            self.ipcp.fsm.open(now)
        if self.ipv6cp is not None and self.phase is Phase.NETWORK:
            self.ipv6cp.fsm.up(now)
            self.ipv6cp.fsm.open(now)

    def _receive_control(
        self, protocol: int, information: bytes, now: float, *, replay: bool = False
    ) -> None:
        try:
            code, ident, data = decode_packet(information)
        except PppDecodeError:
            self.drop("bad-packet")  # a Length field that lies: RFC 1661 5 says discard
            return
        handler = (
            self.lcp
            if protocol == Proto.LCP
            else (self.ipcp if protocol == Proto.IPCP else self.ipv6cp)
        )
        assert handler is not None
        fsm = handler.fsm
        if self.tracing and not replay:  # a held request was traced when it arrived
            self._trace_packet("I", protocol, fsm.state, code, ident, data)
        if (
            code == Code.CONFREQ
            and handler is self.ipcp
            and self.ipcp.needs_address()
            and fsm.state in _LIVE
        ):
            # hold the request until the driver names the peer's address (a hint for the
            # pool: the address the peer asks for)
            self.pending_ipcp_request = information
            if not self.address_pending:
                self.address_pending = True
                self._emit(AddressRequest(self.username, requested_address(data)))
            return
        if protocol == Proto.LCP and code == Code.TERMREQ and fsm.state is not State.CLOSING:
            self._set_reason(DownReason.PEER_TERMINATED, "peer sent Terminate-Request")
        fsm.receive(code, ident, data, information, now)

    def _receive_echo(self, information: bytes, now: float) -> None:
        """An Echo-Request or -Reply on an opened link, the keepalive of every held session:
        what the automaton would do (RXR in Opened: the ``ser`` action, no state change),
        without its general dispatch."""
        try:
            code, ident, data = decode_packet(information)
        except PppDecodeError:
            self.drop("bad-packet")
            return
        lcp = self.lcp
        if lcp.extended_code(code, ident, data, now) is Event.RXR:
            lcp.fsm.answer_echo(code, ident, data)

    def _receive_auth(self, protocol: int, information: bytes, now: float) -> None:
        try:
            code, ident, data = decode_packet(information)
        except PppDecodeError:
            self.drop("bad-packet")  # a Length field that lies: RFC 1661 5 says discard
            return
        if protocol == Proto.PAP:
            to_authenticator = code == PapCode.REQUEST
        else:
            to_authenticator = code == ChapCode.RESPONSE
        is_pap = protocol == Proto.PAP
        if to_authenticator:
            authenticator = self.authenticator
            if authenticator is not None and (authenticator.method is AuthMethod.PAP) == is_pap:
                self._authenticator_outcome(authenticator.receive(code, ident, data, now), now)
        else:
            peer = self.peer
            if peer is not None and (peer.method is AuthMethod.PAP) == is_pap:
                self._peer_outcome(peer.receive(code, ident, data, now), now)

    def _trace_packet(
        self, direction: str, protocol: int, state: State, code: int, ident: int, data: bytes
    ) -> None:
        proto_name = _PROTO_NAMES.get(protocol, f"0x{protocol:04X}")
        try:
            code_name = Code(code).name
        except ValueError:
            code_name = f"CODE{code}"
        self.trace(
            proto_name,
            f"{direction} {code_name} [{STATE_NAMES[state]}] id {ident} len {4 + len(data)}",
        )
        describe = _DESCRIBE.get(protocol)
        if describe is not None and Code.CONFREQ <= code <= Code.CONFREJ:
            self._trace_options(proto_name, describe, data)

    def _trace_options(
        self, proto_name: str, describe: Callable[[int, bytes], str], data: bytes
    ) -> None:
        try:
            options = decode_options(data)
        except PppDecodeError:
            self.trace(proto_name, f"   malformed options 0x{data.hex().upper()}")
            return
        for option_type, value in options:
            raw = bytes((option_type, len(value) + 2)) + value
            self.trace(proto_name, f"   {describe(option_type, value)} (0x{raw.hex().upper()})")

    def _trace_forced(self, proxy: ProxyLcp) -> None:
        self.trace("LCP", f"I FORCED CONFREQ len {len(proxy.last_sent)}")
        self._trace_options("LCP", describe_lcp_option, proxy.last_sent)
