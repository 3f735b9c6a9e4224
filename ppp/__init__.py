"""Sans-IO PPP: frames, the RFC 1661 automaton, LCP, authentication, IPCP, IPv6CP, link phases.

The driver talks to one object per session, :class:`ppp.link.Link`::

    link = Link(config, rng=shared_rng, name="tnl 55270 sess 45")
    link.open(now, proxy_lcp=None, proxy_auth=None)
    link.receive_frame(frame, now)          # a PPP frame from the peer (ff 03 optional)
    link.frames_to_send() -> list[bytes]    # complete PPP frames: ff 03, protocol, packet
    link.get_timer() -> float | None;  link.handle_timer(now)
    link.next_event() -> PppEvent | None    # LinkUp, AuthRequest, Authenticated,
                                            # AddressRequest, NetworkUp, Ipv6Up,
                                            # NetworkDown, LinkDown(reason, message)
    link.auth_result(now, accepted, message=..., authenticator_response=..., address=..., dns=...)
    link.address_result(now, address_or_None, dns=...)
    link.close(now, reason, message);  link.lower_down(now)

Pass one ``random.Random`` shared by all links of a process (each costs 2.5 KB). The core never
reads a clock and imports nothing that does I/O; nothing here knows L2TP, RADIUS or files.
"""

from ppp.auth import chap_md5_response, verify_chap_md5
from ppp.config import AuthMethod, IpcpConfig, Ipv6cpConfig, LcpConfig, LinkConfig, ProxyMode
from ppp.credentials import ChapCredentials, Credentials, MsChapV2Credentials, PapCredentials
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
from ppp.frame import PppDecodeError, Proto
from ppp.fsm import FsmConfig
from ppp.link import Link, Phase
from ppp.proxy import ProxyAuth, ProxyAuthType, ProxyLcp

__all__ = [
    "AddressRequest",
    "AuthMethod",
    "AuthRequest",
    "Authenticated",
    "ChapCredentials",
    "Credentials",
    "DownReason",
    "FsmConfig",
    "IpcpConfig",
    "Ipv6Up",
    "Ipv6cpConfig",
    "LcpConfig",
    "Link",
    "LinkConfig",
    "LinkDown",
    "LinkUp",
    "MsChapV2Credentials",
    "NetworkDown",
    "NetworkUp",
    "PapCredentials",
    "Phase",
    "PppDecodeError",
    "PppEvent",
    "Proto",
    "ProxyAuth",
    "ProxyAuthType",
    "ProxyLcp",
    "ProxyMode",
    "chap_md5_response",
    "verify_chap_md5",
]
