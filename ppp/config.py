"""Configuration values for one PPP link. Frozen and shared: one instance serves every link.

The LNS (authenticator) and the LAC's simulated subscriber (peer) run the same code; only these
values differ: the LNS demands ``auth`` and assigns the peer's address, the subscriber carries
``username``/``password`` and asks for an address with 0.0.0.0.
"""

from __future__ import annotations

import enum
from ipaddress import IPv4Address

import attrs

from ppp.fsm import FsmConfig

__all__ = [
    "AuthMethod",
    "IpcpConfig",
    "Ipv6cpConfig",
    "LcpConfig",
    "LinkConfig",
    "ProxyMode",
]


class AuthMethod(enum.StrEnum):
    """Authentication protocols, named as the ``[ppp] auth`` setting names them."""

    PAP = "pap"
    CHAP = "chap"
    MSCHAPV2 = "mschapv2"


class ProxyMode(enum.StrEnum):
    """What the LNS does with the LAC's proxy LCP / proxy authentication (RFC 2661 4.4.5)."""

    ACCEPT = "accept"
    RENEGOTIATE = "renegotiate"


@attrs.frozen(kw_only=True)
class LcpConfig:
    """LCP options and keepalive (RFC 1661 section 6), plus the automaton's counters."""

    mru: int = 1500
    """Maximum-Receive-Unit we ask for; 1500 (the default) is not sent."""
    min_peer_mru: int = 128
    """Smallest MRU we accept from the peer; smaller requests are Nak'd up to it."""
    max_peer_mru: int = 65535
    """Largest MRU we accept from the peer (so we never send frames the path would
    fragment); larger requests are Nak'd down to it."""
    accm: int | None = None
    """Async-Control-Character-Map to ask for; None: not requested (L2TP is synchronous)."""
    magic: bool = True
    """Negotiate a Magic-Number (loop detection)."""
    pfc: bool = False
    """Ask for Protocol-Field-Compression."""
    acfc: bool = False
    """Ask for Address-and-Control-Field-Compression."""
    echo_interval: float = 30.0
    """Seconds between LCP Echo-Requests once Opened; 0 disables keepalive."""
    echo_failure: int = 3
    """Unanswered Echo-Requests before the link is declared dead."""
    echo_adaptive: bool = False
    """Send an Echo-Request only if nothing came from the peer since the last interval
    (pppd's ``lcp-echo-adaptive``): a frame from the peer proves the link as well as a reply
    would. A silent peer is still declared dead after ``echo_failure`` misses, at most one
    interval later than without it."""
    max_loops: int = 10
    """Magic-Number collisions in a row before the line is declared looped back."""
    fsm: FsmConfig = attrs.field(factory=FsmConfig)
    """Restart timer, Max-Configure, Max-Terminate, Max-Failure."""


@attrs.frozen(kw_only=True)
class IpcpConfig:
    """IPCP (RFC 1332, RFC 1877)."""

    enabled: bool = True
    """Run IPCP."""
    local_address: IPv4Address | None = None
    """Our address; None: ask the peer for one with 0.0.0.0 and take its Nak (subscriber)."""
    accept_local: bool = False
    """Take the peer's Nak of a configured ``local_address`` (pppd ``ipcp-accept-local``);
    without a ``local_address`` the peer's suggestion is always taken."""
    assign_peer_address: bool = False
    """The peer's address comes from the driver (AAA / pool) and is Nak'd to the peer (LNS);
    False: accept whatever non-zero address the peer asks for (subscriber)."""
    dns: tuple[IPv4Address, ...] = ()
    """Primary and secondary DNS to offer (options 129 and 131); extra AAA values override."""
    request_dns: bool = False
    """Ask the peer for DNS servers (subscriber)."""


@attrs.frozen(kw_only=True)
class Ipv6cpConfig:
    """IPv6CP (RFC 5072)."""

    enabled: bool = False
    """Run IPv6CP."""
    interface_id: int | None = None
    """Our interface identifier; None: a random non-zero one per link."""


@attrs.frozen(kw_only=True)
class LinkConfig:
    """Everything one link needs; role follows from the values (see the module docstring)."""

    lcp: LcpConfig = attrs.field(factory=LcpConfig)
    """LCP."""
    auth: tuple[AuthMethod, ...] = ()
    """Methods we demand from the peer, preferred first (authenticator role); empty: none."""
    hostname: str = "kl2tp"
    """Our name in CHAP Challenges."""
    username: str | None = None
    """Name we authenticate with when the peer demands it (peer role)."""
    password: str | None = attrs.field(default=None, repr=False)
    """Password for ``username``; never logged."""
    accept_auth: tuple[AuthMethod, ...] = (AuthMethod.CHAP, AuthMethod.MSCHAPV2, AuthMethod.PAP)
    """Methods we agree to authenticate with (peer role), preferred first."""
    fallback_auth: tuple[AuthMethod, ...] = ()
    """Methods we take only when the peer insists (peer role): offered one, we Nak with our
    preferred method, and accept it when the peer asks for it again (pppd would ack at once;
    l2tpns never takes a Nak of its CHAP-MD5)."""
    chap_rechallenge: float = 0.0
    """Seconds between CHAP re-challenges once authenticated (RFC 1994 3); 0: never."""
    ipcp: IpcpConfig = attrs.field(factory=IpcpConfig)
    """IPCP."""
    ipv6cp: Ipv6cpConfig = attrs.field(factory=Ipv6cpConfig)
    """IPv6CP."""
    proxy_lcp: ProxyMode = ProxyMode.ACCEPT
    """Honour proxy LCP values from L2TP (LNS)."""
    proxy_auth: ProxyMode = ProxyMode.ACCEPT
    """Honour proxy authentication values from L2TP (LNS)."""
    establish_timeout: float = 30.0
    """Seconds the Establish phase (LCP) may take."""
    auth_timeout: float = 30.0
    """Seconds the Authenticate phase may take (includes the AAA verdict)."""
    network_timeout: float = 30.0
    """Seconds from Network phase until an NCP is open (includes the address verdict)."""
    terminate_timeout: float = 10.0
    """Seconds the Terminate phase may take before the link is declared Dead anyway."""
    setup_timeout: float = 0.0
    """Seconds from ``Link.open`` until the first network protocol opens, across LCP
    restarts (the per-phase timeouts start again at each restart), and likewise from an LCP
    restart of a link that was up until a network protocol opens again; 0: no such bound."""
    max_restarts: int = 0
    """LCP restarts (renegotiations) allowed once the link was up, each of which costs a
    re-authentication; one more ends the link (``TOO_MANY_RESTARTS``); 0: no limit."""
    send_address_control: bool = True
    """Prefix outgoing frames with ``ff 03`` (as L2TP data messages usually carry them)."""

    @property
    def willing_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we would authenticate ourselves with: ``accept_auth``, when we have a name
        and a password to do it with; none otherwise."""
        if self.username is None or self.password is None:
            return ()
        return self.accept_auth

    @property
    def insisted_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we authenticate with when the peer insists: ``fallback_auth``, when we
        have a name and a password; none otherwise."""
        if self.username is None or self.password is None:
            return ()
        return self.fallback_auth
