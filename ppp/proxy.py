"""Values an L2TP LAC hands the LNS in the ICCN (RFC 2661 4.4.5, AVPs 26-33)."""

from __future__ import annotations

import enum

import attrs

__all__ = ["ProxyAuth", "ProxyAuthType", "ProxyLcp"]


class ProxyAuthType(enum.IntEnum):
    """Proxy Authen Type AVP (29) values."""

    TEXTUAL = 1
    CHAP = 2
    PAP = 3
    NONE = 4
    MSCHAPV1 = 5


@attrs.frozen
class ProxyLcp:
    """Proxy LCP: the LCP options the LAC negotiated with the peer (AVPs 26-28), raw."""

    last_sent: bytes
    """Last Sent LCP CONFREQ options: the LAC's own request, which the peer acked (AVP 27)."""
    last_received: bytes
    """Last Received LCP CONFREQ options: the peer's request, which the LAC acked (AVP 28)."""
    initial_received: bytes | None = None
    """Initial Received LCP CONFREQ (AVP 26), informational."""


@attrs.frozen
class ProxyAuth:
    """Proxy authentication: the LAC's exchange with the peer (AVPs 29-33)."""

    type: int
    """Proxy Authen Type (AVP 29), see :class:`ProxyAuthType`."""
    name: str
    """Proxy Authen Name (AVP 30)."""
    challenge: bytes = b""
    """Proxy Authen Challenge (AVP 31), CHAP only."""
    ident: int | None = None
    """Proxy Authen ID (AVP 32), CHAP only."""
    response: bytes = attrs.field(default=b"", repr=False)
    """Proxy Authen Response (AVP 33): the CHAP response, or the PAP password in clear."""
