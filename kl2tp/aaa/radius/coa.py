"""RADIUS Dynamic Authorization (RFC 5176): Disconnect-Request and CoA-Request.

:class:`CoaCore` decides, without I/O: a datagram from a configured ``[[radius.coa_client]]``
whose Request Authenticator (and Message-Authenticator, when present) checks out is
answered; anything else is dropped, counted by reason and logged at most a few times a
minute per reason (a flood of spoofed requests must not flood the log).

- **Disconnect-Request**: the sessions named by Acct-Session-Id, User-Name or
  Framed-IP-Address (all given must match; Calling-Station-Id narrows) are cleared (the
  daemon sends the CDN; accounting stops with Admin-Reset) and the request is ACKed.
- **CoA-Request**: Session-Timeout and Idle-Timeout are applied to the named sessions and
  the request is ACKed; any other authorization attribute (or Service-Type Authorize-Only)
  gets a NAK (401 / 405): a NAS that cannot apply all of a CoA applies none of it.
- No session matches: NAK with Error-Cause 503 (Session-Context-Not-Found); no session
  identification attribute: 402; a NAS-Identifier that is not ours: 403.
- A retransmitted request (same client, Identifier and authenticator within
  ``CACHE_TIME``) gets the very reply it got before, so a retried Disconnect is not NAKed
  503 because the first one worked.
- Event-Timestamp, when present, must be within ``replay_window`` seconds of the wall
  clock (RFC 5176 3.5), else the request is dropped.

Sessions are found through :class:`SessionIndex` (dicts by Acct-Session-Id, user name and
address: O(1) per request); the daemon adds a session when it is up and removes it when it
ends. :func:`serve_coa` is the trio glue: one UDP socket, receive, ``core.receive``, send.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import socket as stdlib_socket
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, ip_address
from typing import Any, Protocol

import attrs
import trio
from pyrad import packet as rp
from pyrad.dictionary import Dictionary

from kl2tp.ratelimit import suppressed_note
from kl2tp.values import Secret

__all__ = [
    "CoaClient",
    "CoaCore",
    "CoaSession",
    "ErrorCause",
    "SessionIndex",
    "serve_coa",
]

log = logging.getLogger("kl2tp.aaa")

DISCONNECT_REQUEST, DISCONNECT_ACK, DISCONNECT_NAK = 40, 41, 42
COA_REQUEST, COA_ACK, COA_NAK = 43, 44, 45
MESSAGE_AUTHENTICATOR = 80
MAX_PACKET = 4096
CACHE_TIME = 30.0
"""Seconds a reply is kept for a retransmitted request."""
CACHE_SIZE = 4096
"""Replies kept at most (the oldest go first)."""
SERVICE_TYPE_AUTHORIZE_ONLY = 17


class ErrorCause(enum.IntEnum):
    """RFC 5176 3.5 Error-Cause values we send."""

    UNSUPPORTED_ATTRIBUTE = 401
    MISSING_ATTRIBUTE = 402
    NAS_IDENTIFICATION_MISMATCH = 403
    INVALID_REQUEST = 404
    UNSUPPORTED_SERVICE = 405
    INVALID_ATTRIBUTE_VALUE = 407
    SESSION_CONTEXT_NOT_FOUND = 503


IDENTIFICATION = frozenset(
    {"Acct-Session-Id", "User-Name", "Framed-IP-Address", "Calling-Station-Id"}
)
"""Attributes that name sessions (Acct-Session-Id, User-Name or Framed-IP-Address needed;
Calling-Station-Id only narrows)."""
ALWAYS_ALLOWED = frozenset(
    {
        "NAS-IP-Address",
        "NAS-IPv6-Address",
        "NAS-Identifier",
        "NAS-Port",
        "NAS-Port-Type",
        "Event-Timestamp",
        "Message-Authenticator",
        "Proxy-State",
        "State",
        "Called-Station-Id",
        "Service-Type",
    }
)
DISCONNECT_EXTRA = frozenset({"Acct-Terminate-Cause", "Reply-Message"})
COA_CHANGES = frozenset({"Session-Timeout", "Idle-Timeout"})


class CoaSession(Protocol):
    """A live session as the CoA server sees it (the daemon's side of it)."""

    @property
    def acct_session_id(self) -> str:
        """Its Acct-Session-Id (as in its accounting records)."""

    @property
    def username(self) -> str:
        """The authenticated user name."""

    @property
    def framed_address(self) -> IPv4Address | None:
        """The subscriber's address."""

    @property
    def calling_station_id(self) -> str:
        """The ICRQ's Calling Number ("" when none)."""

    def disconnect(self) -> None:
        """Clear the session (CDN; accounting Stop with Acct-Terminate-Cause Admin-Reset).
        Must not block."""

    def set_timeouts(self, session_timeout: float | None, idle_timeout: float | None) -> None:
        """Apply new limits, seconds from now (0: none); None leaves one as it is."""


class SessionIndex:
    """Live sessions by Acct-Session-Id, by user name and by address (all O(1))."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[CoaSession, str, IPv4Address | None]] = {}
        """Session, and the user name and address it is indexed under."""
        self._by_user: dict[str, dict[str, CoaSession]] = {}
        self._by_address: dict[IPv4Address, CoaSession] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, session: CoaSession) -> None:
        """Index a session (again: its name or address may have changed)."""
        self.remove(session)
        sid, user, address = session.acct_session_id, session.username, session.framed_address
        self._by_id[sid] = (session, user, address)
        self._by_user.setdefault(user, {})[sid] = session
        if address is not None:
            self._by_address[address] = session

    def remove(self, session: CoaSession) -> None:
        """Forget a session; unknown ones are ignored."""
        sid = session.acct_session_id
        known = self._by_id.pop(sid, None)
        if known is None:
            return
        indexed, user, address = known
        users = self._by_user.get(user)
        if users is not None:
            users.pop(sid, None)
            if not users:
                del self._by_user[user]
        if address is not None and self._by_address.get(address) is indexed:
            del self._by_address[address]

    def find(
        self,
        *,
        acct_session_id: str | None = None,
        username: str | None = None,
        framed_address: IPv4Address | None = None,
        calling_station_id: str | None = None,
    ) -> list[CoaSession]:
        """The sessions matching every given attribute (none given: none)."""
        if acct_session_id is not None:
            entry = self._by_id.get(acct_session_id)
            found: Iterable[CoaSession] = (entry[0],) if entry is not None else ()
        elif username is not None:
            found = list(self._by_user.get(username, {}).values())
        elif framed_address is not None:
            one = self._by_address.get(framed_address)
            found = (one,) if one is not None else ()
        else:
            return []
        return [
            s
            for s in found
            if (username is None or s.username == username)
            and (framed_address is None or s.framed_address == framed_address)
            and (calling_station_id is None or s.calling_station_id == calling_station_id)
        ]


@attrs.frozen
class CoaClient:
    """One ``[[radius.coa_client]]``: who may send us requests, with which secret."""

    address: str
    """The client's IP address (canonical text)."""
    secret: Secret
    """Shared secret."""


class WarnLimiter(Protocol):
    """``kl2tp.ratelimit.WarnLimiter``'s interface (tests pass their own)."""

    def should_log(self, reason: str, now: float) -> tuple[bool, int]:
        """Log this one? And how many were suppressed since the last logged line."""


class _Drop(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Nak(Exception):
    def __init__(self, cause: ErrorCause, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail


class CoaCore:
    """Decides on each request datagram; no I/O (the caller passes the clocks).

    Counters (``counters``): ``requests``, ``disconnect_ack``, ``disconnect_nak``,
    ``coa_ack``, ``coa_nak``, ``nak_<cause>``, ``sessions_disconnected``,
    ``sessions_changed``, ``retransmits``, ``drop_<reason>`` (``unknown_client``,
    ``bad_authenticator``, ``bad_message_authenticator``, ``malformed``, ``not_a_request``,
    ``stale``).
    """

    def __init__(
        self,
        clients: Sequence[CoaClient],
        index: SessionIndex,
        dictionary: Dictionary,
        *,
        nas_identifier: str = "",
        replay_window: float = 300.0,
        limiter: WarnLimiter | None = None,
    ) -> None:
        self.clients: dict[str, CoaClient] = {str(ip_address(c.address)): c for c in clients}
        self.index = index
        self.dictionary = dictionary
        self.nas_identifier = nas_identifier
        self.replay_window = replay_window
        self.limiter = limiter
        self.counters: Counter[str] = Counter()
        self._replies: OrderedDict[tuple[str, int, int, bytes], tuple[float, bytes]] = OrderedDict()

    # -- input ---------------------------------------------------------------------------

    def receive(
        self, data: bytes, addr: tuple[str, int], now: float, wall: float | None = None
    ) -> bytes | None:
        """Handle one datagram from ``addr``; the reply to send back, or None (dropped).

        Args:
            now: monotonic seconds (reply cache, log limiting).
            wall: Unix time for the Event-Timestamp check; None skips it.
        """
        try:
            return self._receive(data, addr, now, wall)
        except _Drop as exc:
            self.counters[f"drop_{exc.reason}"] += 1
            self._warn(exc.reason, now, "CoA: dropped a request from %s: %s", addr[0], exc.detail)
            return None

    def _receive(
        self, data: bytes, addr: tuple[str, int], now: float, wall: float | None
    ) -> bytes | None:
        try:
            ip = ip_address(addr[0])
        except ValueError:
            host = addr[0]
        else:
            # A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d.
            mapped = getattr(ip, "ipv4_mapped", None)
            host = str(mapped if mapped is not None else ip)
        client = self.clients.get(host)
        if client is None:
            raise _Drop("unknown_client", "not a [[radius.coa_client]]")
        if len(data) < 20 or data[0] not in (DISCONNECT_REQUEST, COA_REQUEST):
            raise _Drop("not_a_request", "not a Disconnect-Request or CoA-Request")
        self._expire(now)
        key = (host, addr[1], data[1], data[4:20])
        cached = self._replies.get(key)
        if cached is not None:
            self.counters["retransmits"] += 1
            return cached[1]
        secret = client.secret.reveal()
        request = self._decode(data, secret)
        self.counters["requests"] += 1
        if wall is not None and "Event-Timestamp" in request:
            stamp = _first(request, "Event-Timestamp")
            seconds = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
            if abs(wall - seconds) > self.replay_window:
                raise _Drop("stale", f"Event-Timestamp {abs(wall - seconds):.0f} s off")
        reply = self._answer(request)
        wire: bytes = reply.ReplyPacket()
        self._replies[key] = (now + CACHE_TIME, wire)
        if len(self._replies) > CACHE_SIZE:
            self._replies.popitem(last=False)
        return wire

    def _decode(self, data: bytes, secret: bytes) -> Any:
        length = int.from_bytes(data[2:4], "big")
        if length < 20 or length > len(data):
            raise _Drop("malformed", "bad Length")
        raw = data[:length]
        # RFC 5176 3.3: MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret)
        expected = hashlib.md5(
            raw[:4] + bytes(16) + raw[20:] + secret, usedforsecurity=False
        ).digest()
        if not hmac.compare_digest(expected, raw[4:20]):
            raise _Drop("bad_authenticator", "wrong Request Authenticator (wrong secret?)")
        try:
            request = rp.CoAPacket(secret=secret, dict=self.dictionary, packet=raw)
        except (rp.PacketError, KeyError, ValueError, IndexError) as exc:
            raise _Drop("malformed", str(exc)) from None
        if request.message_authenticator and not request.verify_message_authenticator():
            raise _Drop("bad_message_authenticator", "wrong Message-Authenticator")
        return request

    def _expire(self, now: float) -> None:
        replies = self._replies
        while replies:
            first = next(iter(replies.values()))
            if first[0] > now:
                return
            replies.popitem(last=False)

    # -- decisions -----------------------------------------------------------------------

    def _answer(self, request: Any) -> Any:
        disconnect = request.code == DISCONNECT_REQUEST
        kind = "disconnect" if disconnect else "coa"
        reply = request.CreateReply()
        if request.message_authenticator:
            reply.add_message_authenticator()
        try:
            sessions, changes = self._check(request, disconnect)
            if disconnect:
                for session in sessions:
                    session.disconnect()
                self.counters["sessions_disconnected"] += len(sessions)
            else:
                for session in sessions:
                    session.set_timeouts(*changes)
                self.counters["sessions_changed"] += len(sessions)
        except _Nak as exc:
            reply.code = DISCONNECT_NAK if disconnect else COA_NAK
            reply["Error-Cause"] = int(exc.cause)
            self.counters[f"{kind}_nak"] += 1
            self.counters[f"nak_{int(exc.cause)}"] += 1
            log.info("CoA: %s-Request NAKed (%d): %s", kind.title(), exc.cause, exc.detail)
            return reply
        self.counters[f"{kind}_ack"] += 1
        log.info(
            "CoA: %s-Request for %s: %d session(s)%s",
            kind.title(),
            _describe(request),
            len(sessions),
            "" if disconnect else f" now session/idle timeout {changes[0]}/{changes[1]}",
        )
        return reply

    def _check(
        self, request: Any, disconnect: bool
    ) -> tuple[list[CoaSession], tuple[float | None, float | None]]:
        allowed = (
            IDENTIFICATION | ALWAYS_ALLOWED | (DISCONNECT_EXTRA if disconnect else COA_CHANGES)
        )
        for name in request.keys():  # noqa: SIM118 (pyrad's keys() gives names, iter codes)
            if name not in allowed:
                raise _Nak(ErrorCause.UNSUPPORTED_ATTRIBUTE, f"attribute {name} not supported")
        authorize_only = ("Authorize-Only", SERVICE_TYPE_AUTHORIZE_ONLY)
        if not disconnect and _get(request, "Service-Type") in authorize_only:
            raise _Nak(ErrorCause.UNSUPPORTED_SERVICE, "Authorize-Only is not supported")
        nas_identifier = _get(request, "NAS-Identifier")
        if self.nas_identifier and nas_identifier not in (None, self.nas_identifier):
            raise _Nak(ErrorCause.NAS_IDENTIFICATION_MISMATCH, "not our NAS-Identifier")
        acct_id = _get(request, "Acct-Session-Id")
        user = _get(request, "User-Name")
        framed = None
        if "Framed-IP-Address" in request:
            try:
                framed = IPv4Address(_first(request, "Framed-IP-Address"))
            except ValueError:
                raise _Nak(ErrorCause.INVALID_ATTRIBUTE_VALUE, "bad Framed-IP-Address") from None
        if acct_id is None and user is None and framed is None:
            raise _Nak(
                ErrorCause.MISSING_ATTRIBUTE, "no Acct-Session-Id, User-Name or Framed-IP-Address"
            )
        calling = _get(request, "Calling-Station-Id")
        changes: tuple[float | None, float | None] = (None, None)
        if not disconnect:
            session_timeout = _seconds(request, "Session-Timeout")
            idle_timeout = _seconds(request, "Idle-Timeout")
            if session_timeout is None and idle_timeout is None:
                raise _Nak(ErrorCause.MISSING_ATTRIBUTE, "no Session-Timeout or Idle-Timeout")
            changes = (session_timeout, idle_timeout)
        sessions = self.index.find(
            acct_session_id=acct_id,
            username=user,
            framed_address=framed,
            calling_station_id=calling,
        )
        if not sessions:
            raise _Nak(ErrorCause.SESSION_CONTEXT_NOT_FOUND, f"no session for {_describe(request)}")
        return sessions, changes

    def _warn(self, reason: str, now: float, fmt: str, *args: object) -> None:
        suppressed = 0
        if self.limiter is not None:
            ok, suppressed = self.limiter.should_log(f"coa_{reason}", now)
            if not ok:
                return
        log.warning(fmt + suppressed_note(suppressed), *args)


def _first(request: Any, name: str) -> Any:
    return request[name][0]


def _get(request: Any, name: str) -> Any:
    return request[name][0] if name in request else None


def _seconds(request: Any, name: str) -> float | None:
    if name not in request:
        return None
    value = _first(request, name)
    if not isinstance(value, int) or value < 0:
        raise _Nak(ErrorCause.INVALID_ATTRIBUTE_VALUE, f"bad {name}")
    return float(value)


def _describe(request: Any) -> str:
    """The identification a request gave (for logs; user names are not secrets)."""
    parts = [
        f"{name}={_first(request, name)!s}"
        for name in ("Acct-Session-Id", "User-Name", "Framed-IP-Address")
        if name in request
    ]
    return ", ".join(parts) or "nothing"


def coa_clients(entries: Iterable[Any]) -> list[CoaClient]:
    """``[[radius.coa_client]]`` config entries (``address``, ``secret``) as clients."""
    return [CoaClient(str(ip_address(str(e.address))), e.secret) for e in entries]


async def serve_coa(
    listen: tuple[str, int],
    core: CoaCore,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer CoA/Disconnect requests on ``listen`` until cancelled; reports the bound
    address when ready.

    Raises:
        OSError: the address cannot be bound (the message names ``[radius] coa_listen``).
    """
    family = stdlib_socket.AF_INET6 if ":" in listen[0] else stdlib_socket.AF_INET
    with trio.socket.socket(family, stdlib_socket.SOCK_DGRAM) as sock:
        try:
            await sock.bind(listen)
        except OSError as exc:
            raise OSError(
                exc.errno, f"[radius] coa_listen {listen[0]}:{listen[1]}: {exc.strerror}"
            ) from None
        bound: tuple[str, int] = sock.getsockname()[:2]
        log.info("CoA/Disconnect server listening on %s:%d", *bound)
        task_status.started(bound)
        while True:
            try:
                data, addr = await sock.recvfrom(MAX_PACKET)
            except OSError as exc:  # e.g. ICMP errors reported on the socket
                log.debug("CoA receive error: %s", exc)
                continue
            reply = core.receive(data, addr[:2], trio.current_time(), time.time())
            if reply is not None:
                try:
                    await sock.sendto(reply, addr)
                except OSError as exc:
                    core.counters["send_errors"] += 1
                    log.debug("CoA reply to %s failed: %s", addr[0], exc)


def summary(core: CoaCore | None) -> Mapping[str, int]:
    """The CoA counters for ``kl2tpctl show summary`` (empty without a server)."""
    return dict(core.counters) if core is not None else {}
