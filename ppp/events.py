"""Events a :class:`ppp.link.Link` emits (``next_event()``); credentials: :mod:`ppp.credentials`."""

from __future__ import annotations

import enum
from ipaddress import IPv4Address

import attrs

from ppp.config import AuthMethod
from ppp.credentials import Credentials

__all__ = [
    "AddressRequest",
    "AuthRequest",
    "Authenticated",
    "DownReason",
    "Ipv6Up",
    "LinkDown",
    "LinkUp",
    "NetworkDown",
    "NetworkUp",
    "PppEvent",
]


class DownReason(enum.Enum):
    """Why a link died; the L2TP layer maps it to a CDN Result Code."""

    ADMIN = "admin"
    """We closed it (``Link.close``)."""
    LOWER_LAYER_DOWN = "lower-layer-down"
    """The L2TP session went away under us (``Link.lower_down``)."""
    PEER_TERMINATED = "peer-terminated"
    """The peer sent LCP Terminate-Request."""
    LCP_TIMEOUT = "lcp-timeout"
    """LCP never opened: Max-Configure or the Establish phase timeout."""
    LCP_FAILED = "lcp-failed"
    """LCP could not agree (peer rejected LCP or a required option)."""
    LOOPBACK = "loopback"
    """The line is looped back (our own Magic-Number keeps coming back)."""
    AUTH_FAILED = "auth-failed"
    """Authentication was refused (wrong password, unknown user, bad server proof)."""
    AUTH_REFUSED = "auth-refused"
    """The peer would not agree on any authentication protocol we accept."""
    AUTH_TIMEOUT = "auth-timeout"
    """The Authenticate phase timed out."""
    NO_ADDRESS = "no-address"
    """No IPv4 address for the peer (pool empty, AAA refused) or none offered to us."""
    NCP_FAILED = "ncp-failed"
    """No network protocol could be opened."""
    NCP_TIMEOUT = "ncp-timeout"
    """The Network phase timed out before an NCP opened."""
    ECHO_TIMEOUT = "echo-timeout"
    """LCP Echo-Requests went unanswered."""
    SETUP_TIMEOUT = "setup-timeout"
    """No network protocol opened within ``LinkConfig.setup_timeout`` of the start, however
    many LCP restarts the peer went through."""
    IDENTITY_CHANGED = "identity-changed"
    """Re-authentication (after an LCP restart) named a different user than the link's."""
    TOO_MANY_RESTARTS = "too-many-restarts"
    """LCP went down under an established link more than ``LinkConfig.max_restarts`` times
    (each restart costs a re-authentication, an AAA request)."""


@attrs.frozen
class LinkUp:
    """LCP is Opened: the link-level options are known (an L2TP LAC reports the ACCMs in SLI)."""

    mru: int
    """Our MRU (largest frame the peer may send us)."""
    peer_mru: int
    """The peer's MRU (largest frame we may send)."""
    magic: int
    """Our Magic-Number, 0 if not negotiated."""
    peer_magic: int
    """The peer's Magic-Number, 0 if not negotiated."""
    send_accm: int
    """ACCM for frames we send (what the peer asked for)."""
    receive_accm: int
    """ACCM for frames we receive (what we asked for)."""
    pfc: bool
    """The peer may compress the protocol field of frames it sends us."""
    acfc: bool
    """The peer may drop ``ff 03`` from frames it sends us."""
    auth: AuthMethod | None
    """Method we demand of the peer (authenticator role), or None."""
    peer_auth: AuthMethod | None
    """Method the peer demands of us (peer role), or None."""
    proxy: bool
    """Opened from proxy LCP values (no negotiation with the peer)."""


@attrs.frozen
class AuthRequest:
    """Authenticate this (authenticator role): answer with ``Link.auth_result``."""

    username: str
    """Name the peer gave (PAP Peer-ID, CHAP Name)."""
    method: AuthMethod
    """Protocol used."""
    credentials: Credentials
    """Method-specific proof."""
    proxy: bool
    """Values come from L2TP proxy authentication, not from our own exchange."""


@attrs.frozen
class Authenticated:
    """The Authenticate phase succeeded (both directions that were demanded)."""

    username: str
    """Authenticator role: the peer's name; peer role: our own name; "" without auth."""
    method: AuthMethod | None
    """Method the peer was authenticated with (or we were, in peer role); None: none."""


@attrs.frozen
class AddressRequest:
    """The LNS needs an address for the peer: answer with ``Link.address_result``."""

    username: str
    """The authenticated name ("" without authentication)."""
    requested: IPv4Address | None
    """Address the peer asked for in its IPCP Configure-Request (a hint for the pool); None:
    it asked for 0.0.0.0 or none. The request is held until ``Link.address_result``."""


@attrs.frozen
class NetworkUp:
    """IPCP is Opened."""

    local_address: IPv4Address
    """Our address."""
    peer_address: IPv4Address
    """The peer's address."""
    dns: tuple[IPv4Address, ...]
    """DNS servers agreed (offered by the LNS, received by the subscriber)."""


@attrs.frozen
class Ipv6Up:
    """IPv6CP is Opened."""

    interface_id: int
    """Our 64-bit interface identifier."""
    peer_interface_id: int
    """The peer's 64-bit interface identifier."""


@attrs.frozen
class NetworkDown:
    """An NCP left Opened while the link lives on (e.g. LCP renegotiation)."""

    protocol: int
    """The NCP's protocol number (0x8021 IPCP, 0x8057 IPv6CP)."""


@attrs.frozen
class LinkDown:
    """The link is Dead; no further events follow. Hang up the L2TP session."""

    reason: DownReason
    """Why (maps to a CDN result)."""
    message: str = ""
    """Human-readable detail for logs."""


PppEvent = (
    LinkUp
    | AuthRequest
    | Authenticated
    | AddressRequest
    | NetworkUp
    | Ipv6Up
    | NetworkDown
    | LinkDown
)
