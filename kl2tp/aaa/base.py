"""The AAA interface: what the LNS asks a back end, and what it answers.

The PPP core emits "authenticate this" with the credentials it saw (`ppp.credentials`: the
same types here, bytes as they came off the wire); the daemon wraps them in an `AuthRequest`,
awaits `Authenticator.authenticate`, and feeds the `AuthResult` back into the core. Back ends:
`kl2tp.aaa.local.LocalAuthenticator` (users file) now, RADIUS (pyrad's packet codec over a trio
UDP socket) later; both implement the `Authenticator` protocol, so the daemon does not know
which one it talks to.

Address assignment: a back end may return ``framed_address`` (a static address from the users
file, RADIUS Framed-IP-Address); when it does not, the daemon takes one from the
`kl2tp.aaa.pool.AddressPool`, preferring the address the peer asked for in IPCP.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Protocol, runtime_checkable

import attrs

from kl2tp.log import escape
from ppp.config import AuthMethod
from ppp.credentials import Credentials

__all__ = [
    "AaaCounters",
    "AccountingKind",
    "AccountingRecord",
    "AuthRequest",
    "AuthResult",
    "Authenticator",
    "SessionContext",
    "log_decision",
]


@attrs.frozen
class SessionContext:
    """Where an authentication or accounting request comes from (RADIUS NAS-* attributes)."""

    tunnel_id: int = 0
    """Our local tunnel id."""
    session_id: int = 0
    """Our local session id."""
    peer_address: str = ""
    """The LAC's address, ``"ADDR:PORT"``."""
    peer_hostname: str = ""
    """The LAC's Host Name AVP."""
    calling_number: str = ""
    """Calling Number AVP (RADIUS Calling-Station-Id)."""
    called_number: str = ""
    """Called Number AVP (RADIUS Called-Station-Id)."""
    nas_port: int = 0
    """NAS-Port: a number unique per session on this LNS."""
    interface: str = ""
    """The session's network interface, once it has one."""
    acct_session_id: str = ""
    """RADIUS Acct-Session-Id: unique and stable for the session, the same in its
    Access-Request and every accounting record ("" : the back end makes one)."""


@attrs.frozen
class AuthRequest:
    """One authentication to decide."""

    username: str
    """The name the peer gave (PAP Peer-ID, CHAP/MS-CHAPv2 Name)."""
    credentials: Credentials
    """Method-specific proof."""
    context: SessionContext = attrs.field(factory=SessionContext)
    """Session the request belongs to."""

    @property
    def method(self) -> AuthMethod:
        """PAP, CHAP or MS-CHAPv2 (a ``str`` enum: ``"pap"``, ...), from the credentials."""
        return self.credentials.method


@attrs.frozen
class AuthResult:
    """A back end's verdict."""

    accepted: bool
    """True: let the subscriber in."""
    message: str = ""
    """Reply message for the peer (PAP/CHAP message field); says nothing an attacker can use."""
    reason: str = ""
    """Why, for logs and failure counters only (e.g. ``"unknown-user"``, ``"bad-password"``)."""
    framed_address: IPv4Address | None = None
    """Address to assign; None: take one from the pool."""
    dns: tuple[IPv4Address, ...] = ()
    """DNS servers for this subscriber; empty: the ``[ppp] dns`` default."""
    authenticator_response: str | None = None
    """MS-CHAPv2 only: the ``"S=<40 hex>"`` string for the Success packet (RFC 2759 5)."""
    attributes: Mapping[str, object] = attrs.field(factory=dict, hash=False)
    """Further back-end attributes (RADIUS reply), by name."""


class AccountingKind(enum.Enum):
    """RADIUS Acct-Status-Type values we send."""

    START = 1
    STOP = 2
    INTERIM = 3


@attrs.frozen
class AccountingRecord:
    """One accounting event for a subscriber session."""

    kind: AccountingKind
    """Start, stop or interim update."""
    username: str
    """The authenticated user name."""
    context: SessionContext
    """The session."""
    address: IPv4Address | None = None
    """The subscriber's address."""
    session_time: float = 0.0
    """Seconds since the session came up."""
    input_octets: int = 0
    """Octets received from the subscriber."""
    output_octets: int = 0
    """Octets sent to the subscriber."""
    input_packets: int = 0
    """Packets received from the subscriber."""
    output_packets: int = 0
    """Packets sent to the subscriber."""
    terminate_cause: str = ""
    """Stop only: why the session ended, an RFC 2866 Acct-Terminate-Cause in lower case
    (``"user-request"``, ``"lost-carrier"``, ``"idle-timeout"``, ``"admin-reboot"``, ...)."""
    classes: tuple[bytes, ...] = ()
    """RADIUS Class attributes from the Access-Accept, echoed in accounting."""


@attrs.define
class AaaCounters:
    """Running totals a back end keeps, for ``kl2tpctl show summary``."""

    requests: int = 0
    """Authentication requests received."""
    accepts: int = 0
    """Requests accepted."""
    rejects: int = 0
    """Requests rejected."""
    errors: int = 0
    """Requests that could not be decided (back end unreachable, timeout)."""
    by_method: dict[str, int] = attrs.field(factory=dict)
    """Requests per method name."""
    reject_reasons: dict[str, int] = attrs.field(factory=dict)
    """Rejects per reason."""
    accounting: dict[str, int] = attrs.field(factory=dict)
    """Accounting records per kind name (``start``, ``stop``, ``interim``)."""

    def count_result(self, request: AuthRequest, result: AuthResult) -> None:
        """Record one decided request."""
        self.requests += 1
        self.by_method[request.method] = self.by_method.get(request.method, 0) + 1
        if result.accepted:
            self.accepts += 1
        else:
            self.rejects += 1
            reason = result.reason or "rejected"
            self.reject_reasons[reason] = self.reject_reasons.get(reason, 0) + 1

    def count_accounting(self, record: AccountingRecord) -> None:
        """Record one accounting record."""
        name = record.kind.name.lower()
        self.accounting[name] = self.accounting.get(name, 0) + 1


@runtime_checkable
class Authenticator(Protocol):
    """An AAA back end. Methods are async: RADIUS waits on the network; local answers at once.

    ``authenticate`` must not raise for a wrong password or an unknown user: it returns a
    rejecting `AuthResult`. A back end that cannot decide (timeout) returns
    ``AuthResult(accepted=False, reason="backend-timeout")`` and counts it in ``errors``.
    """

    counters: AaaCounters
    """Running totals."""

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """Decide one authentication."""
        ...

    async def account(self, record: AccountingRecord) -> None:
        """Record accounting (start, stop, interim); may be a no-op."""
        ...


def log_decision(
    logger: logging.Logger, source: str, request: AuthRequest, result: AuthResult
) -> None:
    """The debug line every back end writes for a decided request (``source``: ``""`` for
    the users file, ``"RADIUS "``); the user name escaped, no credential."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            'AAA: %s%s %s for "%s" (tunnel %d session %d)%s',
            source,
            request.method.upper(),
            "accepted" if result.accepted else "rejected",
            escape(request.username),
            request.context.tunnel_id,
            request.context.session_id,
            "" if result.accepted else f": {result.reason}",
        )
