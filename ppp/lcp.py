"""LCP option handling (RFC 1661 section 6, RFC 1662 for ACCM) and keepalive.

:class:`Lcp` is the LCP :class:`ppp.fsm.OptionHandler`: what we ask for (``want_*``, which are
the negotiated values once the peer has acked), what the peer asked for and we acked
(``peer_*``), Magic-Number loop detection, and the Echo-Request keepalive.
"""

from __future__ import annotations

import attrs

from ppp.config import AuthMethod, LcpConfig
from ppp.frame import Code, PppDecodeError, Proto, decode_options, encode_option
from ppp.fsm import Event, Fsm, State, build_reply
from ppp.services import LayerDown, LayerFinished, LayerUp, LcpServices, ProtocolRejected

__all__ = [
    "AUTH_OPTION_VALUES",
    "DEFAULT_MRU",
    "EchoTimeout",
    "Lcp",
    "LcpOption",
    "auth_method_from_option",
    "describe_lcp_option",
]

DEFAULT_MRU = 1500
_DEFAULT_ACCM = 0xFFFFFFFF


class LcpOption:
    """LCP Configuration Option types (RFC 1661 6, RFC 1570, RFC 1990)."""

    MRU = 1
    ACCM = 2
    AUTH = 3
    QUALITY = 4
    MAGIC = 5
    PFC = 7
    ACFC = 8
    CALLBACK = 13
    MRRU = 17
    ENDPOINT = 19


AUTH_OPTION_VALUES: dict[AuthMethod, bytes] = {
    AuthMethod.PAP: b"\xc0\x23",
    AuthMethod.CHAP: b"\xc2\x23\x05",
    AuthMethod.MSCHAPV2: b"\xc2\x23\x81",
}
"""Authentication-Protocol option values (RFC 1334 for PAP, RFC 1994 / 2759 for CHAP)."""
_AUTH_BY_VALUE = {value: method for method, value in AUTH_OPTION_VALUES.items()}


def auth_method_from_option(value: bytes) -> AuthMethod | None:
    """The method an Authentication-Protocol option value names, None if unsupported."""
    return _AUTH_BY_VALUE.get(value)


def describe_lcp_option(option_type: int, value: bytes) -> str:
    """One option as the IOS trace shows it, e.g. ``MagicNumber 0x109D08F2``."""
    if option_type == LcpOption.MRU and len(value) == 2:
        return f"MRU {int.from_bytes(value, 'big')}"
    if option_type == LcpOption.ACCM and len(value) == 4:
        return f"ACCM 0x{value.hex().upper()}"
    if option_type == LcpOption.AUTH:
        method = auth_method_from_option(value)
        names = {AuthMethod.PAP: "PAP", AuthMethod.CHAP: "CHAP", AuthMethod.MSCHAPV2: "MSCHAP_V2"}
        return f"AuthProto {names[method] if method else '0x' + value.hex().upper()}"
    if option_type == LcpOption.MAGIC and len(value) == 4:
        return f"MagicNumber 0x{value.hex().upper()}"
    if option_type == LcpOption.PFC:
        return "PFC"
    if option_type == LcpOption.ACFC:
        return "ACFC"
    if option_type == LcpOption.MRRU and len(value) == 2:
        return f"MRRU {int.from_bytes(value, 'big')}"
    if option_type == LcpOption.ENDPOINT and value:
        return f"EndpointDisc {value[0]} Local"
    return f"Option {option_type}"


@attrs.frozen(slots=True)
class EchoTimeout:
    """Keepalive gave up: the peer left ``count`` Echo-Requests in a row unanswered."""

    count: int
    """Echo-Requests that went unanswered."""


class Lcp:
    """LCP option handler and keepalive for one link.

    Args:
        services: the link's services (which also say the authentication methods in play).
        config: LCP's settings.
    """

    __slots__ = (
        "auth_naked",
        "auth_tried",
        "config",
        "echo_deadline",
        "echo_id",
        "echo_pending",
        "fsm",
        "heard",
        "loops",
        "peer_accm",
        "peer_acfc",
        "peer_auth",
        "peer_magic",
        "peer_mru",
        "peer_pfc",
        "services",
        "want_accm",
        "want_acfc",
        "want_auth",
        "want_magic",
        "want_mru",
        "want_pfc",
    )

    def __init__(self, services: LcpServices, config: LcpConfig) -> None:
        self.services = services
        self.config = config
        self.fsm = Fsm(self, config.fsm)
        self.loops = 0
        self.echo_deadline: float | None = None
        self.echo_pending = 0
        self.echo_id = 0
        self.heard = False
        """A frame came from the peer since the last echo interval (``echo_adaptive``); the
        link sets it for every frame it receives."""
        self.auth_tried = 0
        self.auth_naked: AuthMethod | None = None
        """The fallback method the peer asked for and we Nak'd in this negotiation: asked
        again, it is taken (``LinkConfig.fallback_auth``)."""
        self.want_mru: int | None = None
        self.want_accm: int | None = None
        self.want_auth: AuthMethod | None = None
        self.want_magic: int | None = None
        self.want_pfc = False
        self.want_acfc = False
        self._clear_peer()

    def send(self, code: int, identifier: int, data: bytes) -> None:
        """Send an LCP packet."""
        self.services.control_send(Proto.LCP, self.fsm.prior, code, identifier, data)

    def _clear_peer(self) -> None:
        self.peer_mru = DEFAULT_MRU
        self.peer_accm = _DEFAULT_ACCM
        self.peer_auth: AuthMethod | None = None
        self.peer_magic = 0
        self.peer_pfc = False
        self.peer_acfc = False

    def _new_magic(self, avoid: int = 0) -> int:
        while True:
            magic = self.services.rng.getrandbits(32)
            if magic and magic != avoid:
                return magic

    # -- OptionHandler -------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a negotiation from the configured wishes (pppd lcp_resetci)."""
        config = self.config
        self.want_mru = config.mru if config.mru != DEFAULT_MRU else None
        self.want_accm = config.accm
        auth = self.services.demanded_auth
        self.want_auth = auth[0] if auth else None
        self.auth_tried = 0
        self.auth_naked = None
        self.want_magic = self._new_magic() if config.magic else None
        self.want_pfc = config.pfc
        self.want_acfc = config.acfc
        self.loops = 0

    def add_ci(self) -> bytes:
        """Our Configure-Request options."""
        out = []
        if self.want_mru is not None:
            out.append(encode_option(LcpOption.MRU, self.want_mru.to_bytes(2, "big")))
        if self.want_accm is not None:
            out.append(encode_option(LcpOption.ACCM, self.want_accm.to_bytes(4, "big")))
        if self.want_auth is not None:
            out.append(encode_option(LcpOption.AUTH, AUTH_OPTION_VALUES[self.want_auth]))
        if self.want_magic is not None:
            out.append(encode_option(LcpOption.MAGIC, self.want_magic.to_bytes(4, "big")))
        if self.want_pfc:
            out.append(encode_option(LcpOption.PFC))
        if self.want_acfc:
            out.append(encode_option(LcpOption.ACFC))
        return b"".join(out)

    def ack_ci(self, data: bytes) -> bool:
        """The peer acked exactly what we asked: ``want_*`` are now the negotiated values."""
        return True

    def _sent(self, option_type: int) -> bool:
        return {
            LcpOption.MRU: self.want_mru is not None,
            LcpOption.ACCM: self.want_accm is not None,
            LcpOption.AUTH: self.want_auth is not None,
            LcpOption.MAGIC: self.want_magic is not None,
            LcpOption.PFC: self.want_pfc,
            LcpOption.ACFC: self.want_acfc,
        }.get(option_type, False)

    def _drop(self, option_type: int) -> None:
        if option_type == LcpOption.MRU:
            self.want_mru = None
        elif option_type == LcpOption.ACCM:
            self.want_accm = None
        elif option_type == LcpOption.AUTH:
            self.want_auth = None
        elif option_type == LcpOption.MAGIC:
            self.want_magic = None
        elif option_type == LcpOption.PFC:
            self.want_pfc = False
        elif option_type == LcpOption.ACFC:
            self.want_acfc = False

    def nak_ci(self, data: bytes, treat_as_reject: bool) -> bool:
        """Take the peer's suggestions (pppd lcp_nakci)."""
        try:
            options = decode_options(data)
        except PppDecodeError:
            return False
        for option_type, value in options:
            if not self._sent(option_type):
                continue  # a hint for an option we did not ask for: we do not want it
            if option_type == LcpOption.MAGIC:
                # never dropped for Max-Failure: that would disable loop detection
                self.want_magic = self._new_magic(avoid=self.want_magic or 0)
            elif treat_as_reject or option_type in (LcpOption.PFC, LcpOption.ACFC):
                self._drop(option_type)
            elif option_type == LcpOption.MRU and len(value) == 2:
                mru = int.from_bytes(value, "big")
                if mru <= self.config.mru or mru <= DEFAULT_MRU:
                    self.want_mru = mru
            elif option_type == LcpOption.ACCM and len(value) == 4:
                self.want_accm = (self.want_accm or 0) | int.from_bytes(value, "big")
            elif option_type == LcpOption.AUTH and self.want_auth is not None:
                self._next_auth(self.want_auth, auth_method_from_option(value))
        return True

    def _next_auth(self, current: AuthMethod, suggested: AuthMethod | None) -> None:
        """The peer will not do ``current``: its suggestion if we have not tried it, else our
        next untried method, else none."""
        methods = self.services.demanded_auth
        self.auth_tried |= 1 << methods.index(current)
        untried = [m for i, m in enumerate(methods) if not self.auth_tried & (1 << i)]
        if suggested in untried:
            self.want_auth = suggested
        else:
            self.want_auth = untried[0] if untried else None

    def reject_ci(self, data: bytes) -> bool:
        """Stop asking for what the peer rejected (pppd lcp_rejci)."""
        try:
            options = decode_options(data)
        except PppDecodeError:
            return False
        if not all(self._sent(t) for t, _ in options):
            return False  # rejects something we never asked for: a bad Configure-Reject
        for option_type, _ in options:
            self._drop(option_type)
        return True

    def request_ci(self, data: bytes, reject_if_disagree: bool) -> tuple[int, bytes]:
        """Judge the peer's Configure-Request (pppd lcp_reqci)."""
        self._clear_peer()
        try:
            options = decode_options(data)
        except PppDecodeError:
            return Code.CONFREJ, data
        naks: list[bytes] = []
        rejects: list[bytes] = []
        naked: AuthMethod | None = None

        def nak(option_type: int, value: bytes) -> None:
            if reject_if_disagree:
                rejects.append(encode_option(option_type, original))
            else:
                naks.append(encode_option(option_type, value))

        for option_type, original in options:
            size = len(original)
            if option_type == LcpOption.MRU and size == 2:
                mru = int.from_bytes(original, "big")
                clamped = min(max(mru, self.config.min_peer_mru), self.config.max_peer_mru)
                if clamped != mru:
                    nak(option_type, clamped.to_bytes(2, "big"))
                self.peer_mru = mru
            elif option_type == LcpOption.ACCM and size == 4:
                self.peer_accm = int.from_bytes(original, "big")
            elif option_type == LcpOption.AUTH and size >= 2:
                method = auth_method_from_option(original)
                willing = self.services.willing_auth
                if method is not None and (
                    method in willing
                    or (method is self.auth_naked and method in self.services.insisted_auth)
                ):
                    self.peer_auth = method
                elif willing and not reject_if_disagree:
                    if method is not None and method in self.services.insisted_auth:
                        naked = method  # we prefer ours; asked again, we take it
                    naks.append(encode_option(option_type, AUTH_OPTION_VALUES[willing[0]]))
                else:
                    rejects.append(encode_option(option_type, original))
            elif option_type == LcpOption.MAGIC and size == 4:
                magic = int.from_bytes(original, "big")
                if magic == 0 or (self.want_magic is not None and magic == self.want_magic):
                    if magic:
                        self.loops += 1  # our own number came back: maybe a loop
                    # always a Nak, even past Max-Failure (as pppd): rejecting the option
                    # would switch loop detection off just when it matters
                    fresh = self._new_magic(avoid=magic)
                    naks.append(encode_option(option_type, fresh.to_bytes(4, "big")))
                else:
                    self.peer_magic = magic
            elif option_type == LcpOption.PFC and size == 0:
                self.peer_pfc = True
            elif option_type == LcpOption.ACFC and size == 0:
                self.peer_acfc = True
            else:
                rejects.append(encode_option(option_type, original))
        code, reply = build_reply(data, naks, rejects, reject_if_disagree)
        if code == Code.CONFNAK and naked is not None:
            self.auth_naked = naked  # the peer heard our preference: asked again, it insists
        return code, reply

    def up(self, now: float) -> None:
        """This-Layer-Up: start keepalive, tell the link."""
        self.loops = 0
        self.echo_pending = 0
        self.heard = False
        if self.config.echo_interval > 0:
            self.echo_deadline = now + self.config.echo_interval
        self.services.signal(LayerUp(Proto.LCP), now)

    def down(self, now: float) -> None:
        """This-Layer-Down."""
        self.echo_deadline = None
        self.services.signal(LayerDown(Proto.LCP), now)

    def starting(self, now: float) -> None:
        """This-Layer-Started: the L2TP session is our lower layer and is already up."""

    def finished(self, now: float) -> None:
        """This-Layer-Finished: the link is Dead."""
        self.echo_deadline = None
        self.services.signal(LayerFinished(Proto.LCP), now)

    def extended_code(self, code: int, identifier: int, data: bytes, now: float) -> Event | None:
        """LCP codes 8-13 (RFC 1661 5.7-5.9, RFC 1570)."""
        opened = self.fsm.state is State.OPENED
        if code == Code.PROTREJ:
            if not opened or len(data) < 2:
                return Event.RXJ_PLUS
            protocol = int.from_bytes(data[:2], "big")
            if protocol == Proto.LCP:
                return Event.RXJ_MINUS
            self.services.signal(ProtocolRejected(protocol), now)
            return Event.RXJ_PLUS
        if code == Code.ECHOREP:
            if opened and len(data) >= 4:
                magic = int.from_bytes(data[:4], "big")
                if magic == 0 or magic != self.want_magic:
                    self.echo_pending = 0
        elif code not in (Code.ECHOREQ, Code.DISCREQ, Code.IDENT, Code.TIMEREM):
            return None
        return Event.RXR

    def code_rejected(self, code: int) -> None:
        """The peer cannot do Echo: stop the keepalive rather than kill the link for it."""
        if code == Code.ECHOREQ:
            self.echo_deadline = None

    def echo_reply(self, data: bytes) -> bytes:
        """Echo-Reply data: our Magic-Number, then the request's data after its number."""
        return (self.want_magic or 0).to_bytes(4, "big") + data[4:]

    # -- keepalive -----------------------------------------------------------------------------

    def handle_echo_timer(self, now: float) -> EchoTimeout | None:
        """Send the next Echo-Request (with ``echo_adaptive``, only if the peer was silent
        for the interval); after ``echo_failure`` misses, report the timeout."""
        if self.echo_deadline is None or now < self.echo_deadline:
            return None
        self.echo_deadline = now + self.config.echo_interval
        if self.heard and self.config.echo_adaptive:
            self.heard = False  # the peer spoke this interval: no Echo-Request needed
            self.echo_pending = 0
            return None
        if self.echo_pending >= self.config.echo_failure:
            self.echo_deadline = None
            return EchoTimeout(self.echo_pending)
        self.heard = False
        self.echo_pending += 1
        self.echo_id = (self.echo_id + 1) & 0xFF
        self.send(Code.ECHOREQ, self.echo_id, (self.want_magic or 0).to_bytes(4, "big"))
        return None

    # -- proxy LCP -----------------------------------------------------------------------------

    def force(self, last_sent: bytes, last_received: bytes) -> bool:
        """Adopt options negotiated by the LAC (RFC 2661 4.4.5) if we can live with them.

        Args:
            last_sent: the LAC's last Configure-Request options to the peer (now ours).
            last_received: the peer's last Configure-Request options (acked by the LAC).

        Returns:
            True when both are acceptable and now in force; False: renegotiate.
        """
        try:
            ours = decode_options(last_sent)
        except PppDecodeError:
            return False
        self.reset()
        self.want_mru = self.want_accm = self.want_auth = self.want_magic = None
        self.want_pfc = self.want_acfc = False
        for option_type, value in ours:
            if option_type == LcpOption.MRU and len(value) == 2:
                self.want_mru = int.from_bytes(value, "big")
            elif option_type == LcpOption.ACCM and len(value) == 4:
                self.want_accm = int.from_bytes(value, "big")
            elif option_type == LcpOption.AUTH:
                method = auth_method_from_option(value)
                if method is None or method not in self.services.demanded_auth:
                    return False
                self.want_auth = method
            elif option_type == LcpOption.MAGIC and len(value) == 4:
                self.want_magic = int.from_bytes(value, "big")
            elif option_type == LcpOption.PFC and not value:
                self.want_pfc = True
            elif option_type == LcpOption.ACFC and not value:
                self.want_acfc = True
            else:
                return False
        if self.services.demanded_auth and self.want_auth is None:
            return False  # we must authenticate the peer, and the LAC agreed no protocol
        verdict, _ = self.request_ci(last_received, False)
        return verdict == Code.CONFACK

    @property
    def mru(self) -> int:
        """Our negotiated MRU."""
        return self.want_mru if self.want_mru is not None else DEFAULT_MRU
