"""What a peer proved its identity with, as the authenticator saw it on the wire.

One set of types, shared by the PPP core (which fills them in :class:`ppp.events.AuthRequest`)
and the AAA back ends (which decide on them): no conversion on the way. Everything that came
off the wire stays bytes, so a password that is not UTF-8 reaches the back end intact and can
match a stored one byte for byte.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ppp.config import AuthMethod

__all__ = ["ChapCredentials", "Credentials", "MsChapV2Credentials", "PapCredentials"]


@attrs.frozen
class PapCredentials:
    """What a PAP Authenticate-Request carries (RFC 1334 2.2.1), or the LAC's proxy PAP."""

    password: bytes = attrs.field(repr=False)
    """The password in clear, the octets the peer sent (never logged)."""

    method: ClassVar[AuthMethod] = AuthMethod.PAP
    """Always PAP."""


@attrs.frozen
class ChapCredentials:
    """One CHAP-MD5 exchange (RFC 1994): the challenge sent and the peer's response."""

    ident: int = attrs.field(
        validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(255))
    )
    """Identifier of the Challenge/Response (the LAC's under proxy authentication)."""
    challenge: bytes
    """The challenge value sent to the peer."""
    response: bytes = attrs.field(repr=False)
    """The peer's response value, MD5(ident, secret, challenge)."""

    method: ClassVar[AuthMethod] = AuthMethod.CHAP
    """Always CHAP."""


@attrs.frozen
class MsChapV2Credentials:
    """One MS-CHAPv2 exchange (RFC 2759)."""

    authenticator_challenge: bytes
    """The 16-octet challenge the authenticator sent."""
    peer_challenge: bytes
    """The 16-octet Peer-Challenge from the Response."""
    nt_response: bytes = attrs.field(repr=False)
    """The 24-octet NT-Response."""

    method: ClassVar[AuthMethod] = AuthMethod.MSCHAPV2
    """Always MS-CHAPv2."""


Credentials = PapCredentials | ChapCredentials | MsChapV2Credentials
"""Any of the above; ``credentials.method`` says which."""
