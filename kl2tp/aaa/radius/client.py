"""A RADIUS client on trio: pyrad's packet and dictionary classes as the codec, our own I/O.

pyrad's own clients block (``socket`` + ``select``) or need asyncio; this one sends pyrad
packets over trio UDP sockets.

- **Identifiers**: each server port (auth, acct) has its own sockets, each socket its own
  space of 256 Identifiers; a reply is matched by socket and Identifier. When every
  Identifier of every socket is waiting for a reply, another socket is opened (up to
  ``max_sockets`` per port), then senders wait for a free one. At most ``max_outstanding``
  requests await a reply from one port at once: a burst is paced by the server's answers
  (800 in flight took FreeRADIUS twice as long to answer, docs/PERFORMANCE.md section 19;
  a burst beyond a server's socket buffer would also be dropped, each drop costing a
  ``timeout``).
- **Retransmission**: a request goes to a server ``1 + retries`` times, the same bytes each
  time (RFC 5080 2.2.1: same Identifier, same authenticator), ``timeout`` seconds apart.
- **Failover**: servers are tried in the configured order; one that never answered is
  *dead* for ``dead_time`` seconds and skipped. After that the next request probes it
  while the others still go elsewhere; once it answers, it is first again. When every
  server is dead, each one is tried anyway.
- **BlastRADIUS** (CVE-2024-3596): every Access-Request carries a Message-Authenticator and
  replies to it must carry a valid one (``message_authenticator = false`` for old servers
  only relaxes the requirement on replies). Replies whose Response Authenticator is wrong,
  or that come with Proxy-State we did not send, are dropped and counted.

A packet is encoded afresh for each server it goes to (the secret is in the authenticators
and in the User-Password hiding), so the caller builds it once with `create_auth_packet` /
`create_acct_packet` and sets the password with `set_password`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio
from pyrad import packet as rp
from pyrad.dictionary import Dictionary

from kl2tp.aaa.radius.dictionary import load_dictionary
from kl2tp.histogram import AAA_BUCKETS, Histogram
from kl2tp.l2tp.avp import md5_chain
from kl2tp.values import Secret

if TYPE_CHECKING:
    from kl2tp.config import RadiusConfig

__all__ = ["RadiusClient", "RadiusCounters", "RadiusServer", "hide_password", "set_password"]

log = logging.getLogger("kl2tp.aaa")

_FAST_TYPES = frozenset({"string", "octets", "integer", "ipaddr"})
USER_PASSWORD = 2
MESSAGE_AUTHENTICATOR = 80
MAX_PACKET = 4096


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 5.2: User-Password hiding (any octets, padded with zeros to 16n, max 128)."""
    if len(password) > 128:
        raise ValueError("a User-Password is at most 128 octets")
    padded = password + b"\x00" * (-len(password) % 16 or (16 if not password else 0))
    # b1 = MD5(S + RA), bi = MD5(S + c(i-1)): the L2TP hiding chain with another first key
    return md5_chain(padded, secret, hashlib.md5(secret + authenticator).digest())


@attrs.frozen
class RadiusServer:
    """One RADIUS server, as ``[[radius.server]]`` lists it."""

    address: str
    """IP address literal."""
    secret: Secret
    """Shared secret."""
    auth_port: int = 1812
    """Authentication port."""
    acct_port: int = 1813
    """Accounting port."""

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return host


class _Pending:
    __slots__ = ("event", "reply", "request")

    def __init__(self, request: rp.Packet) -> None:
        self.request = request
        self.event = trio.Event()
        self.reply: rp.Packet | None = None


class _Socket:
    """One UDP socket towards one server port, with its own 256 Identifiers."""

    def __init__(self, sock: trio.socket.SocketType, raw: socket.socket) -> None:
        self.sock = sock
        self.raw = raw
        """The same socket, for a non-blocking read outside the reader task."""
        self.pending: dict[int, _Pending] = {}
        ids = list(range(256))
        secrets.SystemRandom().shuffle(ids)
        self.free: deque[int] = deque(ids)


class _Port:
    """A server's auth or acct port: its sockets and how to reach it."""

    def __init__(self, server: RadiusServer, port: int, kind: str) -> None:
        self.server = server
        self.sockaddr = (server.address, port)
        self.kind = kind
        self.sockets: list[_Socket] = []
        self.outstanding = 0
        """Requests awaiting a reply (`RadiusClient.max_outstanding` at most)."""
        self.waiting = trio.lowlevel.ParkingLot()
        """Requests waiting for a place among those, first come first served."""
        self.dead_until = -math.inf
        self.probing = False
        self.requests = 0
        """Requests sent to this port (each with its retransmissions)."""
        self.replies = 0
        """Of those, the ones it answered."""
        self.timeouts = 0
        """Of those, the ones it did not answer after every retransmission."""
        self.latency = Histogram(AAA_BUCKETS)
        """Seconds from a request's first transmission to its reply."""

    def summary(self) -> dict[str, object]:
        """This port's figures for ``kl2tpctl show summary``."""
        return {
            "kind": self.kind,
            "requests": self.requests,
            "replies": self.replies,
            "timeouts": self.timeouts,
            "latency": self.latency.summary(),
        }

    def __str__(self) -> str:
        return f"{self.server}:{self.sockaddr[1]}"


@attrs.define
class RadiusCounters:
    """What the client saw, for ``kl2tpctl show summary``."""

    requests: int = 0
    """Requests handed to the client."""
    transmissions: int = 0
    """Datagrams sent (first sends and retransmissions)."""
    retransmissions: int = 0
    """Datagrams sent again after a timeout."""
    replies: int = 0
    """Valid replies matched to a request."""
    timeouts: int = 0
    """Requests no server answered."""
    failovers: int = 0
    """Times a server was declared dead."""
    bad_replies: int = 0
    """Replies dropped: undecodable, bad authenticator, missing Message-Authenticator."""
    unknown_replies: int = 0
    """Replies for no outstanding request (late duplicates, strays)."""


class RadiusClient:
    """RADIUS client over trio UDP sockets.

    Args:
        servers: in order of preference.
        timeout: seconds to wait for a reply before retransmitting.
        retries: retransmissions to one server before the next one is tried.
        message_authenticator: require a valid Message-Authenticator in replies to
            Access-Requests (requests always carry one).
        nas_identifier: NAS-Identifier put in every packet built here ("" for none).
        dead_time: seconds a server that did not answer is skipped.
        max_sockets: sockets (256 Identifiers each) per server port.
        max_outstanding: requests awaiting a reply from one server port at once (0: as
            many as it has Identifiers).
        dictionary: the pyrad dictionary; default: the one shipped in the package.

    Run it with ``async with client.running():`` (or ``await nursery.start(client.run)``)
    before sending: replies are read by tasks in that nursery.
    """

    def __init__(
        self,
        servers: Sequence[RadiusServer],
        *,
        timeout: float = 3.0,
        retries: int = 2,
        message_authenticator: bool = True,
        nas_identifier: str = "",
        dead_time: float = 30.0,
        max_sockets: int = 16,
        max_outstanding: int = 128,
        dictionary: Dictionary | None = None,
    ) -> None:
        if not servers:
            raise ValueError("a RADIUS client needs at least one server")
        self.servers = tuple(servers)
        self.timeout = timeout
        self.retries = retries
        self.message_authenticator = message_authenticator
        self.nas_identifier = nas_identifier
        self.dead_time = dead_time
        self.max_sockets = max_sockets
        ids = max_sockets * 256
        self.max_outstanding = min(max_outstanding, ids) if max_outstanding else ids
        self.dictionary = dictionary if dictionary is not None else load_dictionary()
        self.counters = RadiusCounters()
        self._auth = [_Port(s, s.auth_port, "auth") for s in self.servers]
        self._acct = [_Port(s, s.acct_port, "acct") for s in self.servers]
        self._nursery: trio.Nursery | None = None
        self._fast: dict[str, tuple[Any, Any, bool]] = {}

    @classmethod
    def from_config(cls, radius: RadiusConfig) -> RadiusClient:
        """The client ``[radius]`` and ``[[radius.server]]`` describe."""
        return cls(
            [RadiusServer(s.address, s.secret, s.auth_port, s.acct_port) for s in radius.server],
            timeout=radius.timeout,
            retries=radius.retries,
            message_authenticator=radius.message_authenticator,
            nas_identifier=radius.nas_identifier,
            dead_time=radius.dead_time,
            max_outstanding=radius.max_outstanding,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: the reply readers live in this task's nursery."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for port in (*self._auth, *self._acct):
                for s in port.sockets:
                    s.sock.close()
                    for pending in s.pending.values():
                        pending.event.set()
                port.sockets.clear()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RadiusClient]:
        """``async with client.running():`` the client works inside the block."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()

    # -- packets --------------------------------------------------------------------------------

    def create_auth_packet(self, **attributes: Any) -> rp.AuthPacket:
        """An Access-Request with ``attributes`` (``User_Name="x"``: ``_`` for ``-``).

        ``User_Password`` may be given as ``str`` or ``bytes``: it is hidden per server.
        """
        password = attributes.pop("User_Password", None)
        packet = rp.AuthPacket(rp.AccessRequest, id=0, dict=self.dictionary, **attributes)
        if self.nas_identifier and "NAS-Identifier" not in packet:
            packet["NAS-Identifier"] = self.nas_identifier
        if password is not None:
            set_password(packet, password)
        return packet

    def add_attribute(self, packet: rp.Packet, name: str, value: Any) -> None:
        """``packet.AddAttribute(name, value)``, several times faster for the plain types
        (string, octets, integer, ipaddr, neither encrypted nor tagged by the caller): pyrad's
        generic path costs ~9 us an attribute, and a call sends ~50 of them."""
        entry = self._fast.get(name)
        if entry is None:
            attr = self.dictionary.attributes[name]
            simple = attr.type in _FAST_TYPES and not attr.encrypt and not attr.is_sub_attribute
            entry = self._fast[name] = (packet._EncodeKey(name), attr, simple)
        key, attr, simple = entry
        if not simple:
            packet.AddAttribute(name, value)
            return
        kind = attr.type
        if isinstance(value, str) and attr.values.HasForward(value):
            raw = attr.values.GetForward(value)
        elif kind in ("string", "octets"):
            raw = value.encode() if isinstance(value, str) else bytes(value)
        elif kind == "integer":
            raw = struct.pack("!I", int(value))
        else:
            raw = ipaddress.IPv4Address(value).packed
        if attr.has_tag and kind != "integer" and raw and raw[0] <= 0x1F:
            raw = b"\x00" + raw  # RFC 2868 3: an untagged value must not look like a tag
        if len(raw) > 253:
            raise ValueError(f"{name}: value longer than 253 octets")
        OrderedDict.setdefault(packet, key, []).append(raw)

    def create_acct_packet(self, **attributes: Any) -> rp.AcctPacket:
        """An Accounting-Request with ``attributes``."""
        packet = rp.AcctPacket(rp.AccountingRequest, id=0, dict=self.dictionary, **attributes)
        if self.nas_identifier and "NAS-Identifier" not in packet:
            packet["NAS-Identifier"] = self.nas_identifier
        return packet

    async def auth(self, packet: rp.Packet) -> rp.Packet | None:
        """Send an Access-Request (or Status-Server); the verified reply, or None when no
        server answered."""
        return await self._exchange(packet, self._auth)

    async def acct(self, packet: rp.Packet) -> rp.Packet | None:
        """Send an Accounting-Request; the verified Accounting-Response, or None."""
        return await self._exchange(packet, self._acct)

    # -- the exchange ---------------------------------------------------------------------------

    def server_summary(self) -> dict[str, dict[str, object]]:
        """Per server port (``ADDR:PORT``): requests, replies, timeouts, reply latency."""
        return {str(p): p.summary() for p in (*self._auth, *self._acct)}

    def _candidates(self, ports: Sequence[_Port], now: float) -> list[_Port]:
        alive = [p for p in ports if p.dead_until <= now and not p.probing]
        return alive or list(ports)

    async def _exchange(self, packet: rp.Packet, ports: Sequence[_Port]) -> rp.Packet | None:
        if self._nursery is None:
            raise RuntimeError("RadiusClient is not running (use `async with client.running()`)")
        self.counters.requests += 1
        tried: set[int] = set()
        while True:
            now = trio.current_time()
            port = next(
                (p for p in self._candidates(ports, now) if id(p) not in tried),
                None,
            )
            if port is None:
                self.counters.timeouts += 1
                return None
            tried.add(id(port))
            probe = port.dead_until > -math.inf and port.dead_until <= now
            if probe:
                port.probing = True
            try:
                reply = await self._try_port(packet, port)
            finally:
                if probe:
                    port.probing = False
            if reply is not None:
                if port.dead_until > -math.inf:
                    log.info("RADIUS %s server %s answers again", port.kind, port)
                port.dead_until = -math.inf
                return reply
            if port.dead_until <= now:
                self.counters.failovers += 1
                log.warning(
                    "RADIUS %s server %s did not answer %d tries; skipping it for %gs",
                    port.kind,
                    port,
                    self.retries + 1,
                    self.dead_time,
                )
            port.dead_until = trio.current_time() + self.dead_time

    async def _try_port(self, packet: rp.Packet, port: _Port) -> rp.Packet | None:
        sock, ident = await self._allocate(port)
        pending = _Pending(packet)
        sock.pending[ident] = pending
        port.requests += 1
        started = trio.current_time()
        try:
            data = self._encode(packet, port.server, ident)
            for attempt in range(self.retries + 1):
                if attempt:
                    self.counters.retransmissions += 1
                self.counters.transmissions += 1
                try:
                    await sock.sock.send(data)
                except OSError as exc:  # e.g. ICMP port unreachable from an earlier send
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("RADIUS send to %s: %s", port, exc)
                with trio.move_on_after(self.timeout):
                    await pending.event.wait()
                if pending.reply is None and sock.sock.fileno() >= 0:
                    self._read_now(port, sock)
                if pending.reply is not None:
                    port.replies += 1
                    port.latency.observe(trio.current_time() - started)
                    return pending.reply
                if sock.sock.fileno() < 0:  # the client stopped
                    return None
            port.timeouts += 1
            return None
        finally:
            self._release(port, sock, ident)

    async def _allocate(self, port: _Port) -> tuple[_Socket, int]:
        """A place among the port's ``max_outstanding`` (in turn: a released place passes
        to the first waiter, see `_release`), then a free Identifier (there is always one:
        ``max_outstanding`` is at most the Identifiers of ``max_sockets`` sockets)."""
        if port.outstanding >= self.max_outstanding or port.waiting:
            await port.waiting.park()  # woken with the place of a request that ended
        else:
            port.outstanding += 1
        for s in port.sockets:
            if s.free:
                return s, s.free.popleft()
        return (s := self._open_socket(port)), s.free.popleft()

    @staticmethod
    def _release(port: _Port, sock: _Socket, ident: int) -> None:
        del sock.pending[ident]
        sock.free.append(ident)
        if port.waiting:
            port.waiting.unpark()  # the place goes to the first waiter, counted still
        else:
            port.outstanding -= 1

    def _open_socket(self, port: _Port) -> _Socket:
        # Synchronous (connecting a UDP socket to an address literal does not block), so that
        # concurrent senders never open a socket each.
        family = socket.AF_INET6 if ":" in port.sockaddr[0] else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_DGRAM)
        try:
            raw.connect(port.sockaddr)  # the kernel drops datagrams from anyone else
        except OSError:
            raw.close()
            raise
        s = _Socket(trio.socket.from_stdlib_socket(raw), raw)
        port.sockets.append(s)
        assert self._nursery is not None
        self._nursery.start_soon(self._reader, port, s)
        return s

    def _encode(self, packet: rp.Packet, server: RadiusServer, ident: int) -> bytes:
        packet.id = ident
        secret = packet.secret = server.secret.reveal()
        if packet.code not in (rp.AccessRequest, rp.StatusServer):
            packet.authenticator = None
            return bytes(packet.RequestPacket())
        authenticator = packet.authenticator = os.urandom(16)
        password = getattr(packet, "kl2tp_password", None)
        if password is not None:
            hidden = hide_password(password, secret, authenticator)
            OrderedDict.__setitem__(packet, USER_PASSWORD, [hidden])
        # Message-Authenticator first (BlastRADIUS), computed over the packet with 16 zero
        # octets in its place (RFC 3579 3.2). One encoding pass: pyrad's would take two.
        packet.message_authenticator = False
        OrderedDict.__setitem__(packet, MESSAGE_AUTHENTICATOR, [bytes(16)])
        packet.move_to_end(MESSAGE_AUTHENTICATOR, last=False)
        attrs = packet._PktEncodeAttributes()
        header = struct.pack("!BBH16s", packet.code, ident, 20 + len(attrs), authenticator)
        if len(header) + len(attrs) > MAX_PACKET or attrs[:2] != b"\x50\x12":
            raise ValueError("Access-Request too long or malformed")
        digest = hmac.new(secret, header + attrs, hashlib.md5).digest()
        OrderedDict.__setitem__(packet, MESSAGE_AUTHENTICATOR, [digest])
        return bytes(header + attrs[:2] + digest + attrs[18:])

    async def _reader(self, port: _Port, s: _Socket) -> None:
        while True:
            try:
                data = await s.sock.recv(MAX_PACKET)
            except (ConnectionRefusedError, OSError) as exc:
                if s.sock.fileno() < 0:
                    return
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("RADIUS %s: %s", port, exc)
                continue
            self._datagram(port, s, data)

    def _datagram(self, port: _Port, s: _Socket, data: bytes) -> None:
        if len(data) < 20:
            self.counters.bad_replies += 1
            return
        pending = s.pending.get(data[1])
        if pending is None or pending.reply is not None:
            self.counters.unknown_replies += 1
            return
        reply = self._verify(pending.request, data, port)
        if reply is None:
            self.counters.bad_replies += 1
            return
        self.counters.replies += 1
        pending.reply = reply
        pending.event.set()

    def _read_now(self, port: _Port, s: _Socket) -> None:
        """Handle what already waits in the socket. A busy event loop may reach a request's
        deadline before the reader task runs: the reply is there, only unread."""
        while True:
            try:
                data = s.raw.recv(MAX_PACKET, socket.MSG_DONTWAIT)
            except OSError:  # nothing waiting (BlockingIOError), or an ICMP error
                return
            self._datagram(port, s, data)

    def _verify(self, request: rp.Packet, data: bytes, port: _Port) -> rp.Packet | None:
        try:
            reply = request.CreateReply(packet=data)
            # Salt-encrypted values (MS-MPPE keys, Tunnel-Password) in a reply are hidden
            # with the Request Authenticator (RFC 2548 2.4.2, RFC 2868 3.5); pyrad decodes
            # them lazily with this one, else with the reply's own authenticator.
            reply.request_authenticator = request.authenticator
        except Exception as exc:  # pyrad raises assorted errors on junk
            log.warning("RADIUS %s: undecodable reply dropped (%s)", port, exc)
            return None
        enforce = self.message_authenticator and request.code == rp.AccessRequest
        if not request.VerifyReply(reply, data, enforce_ma=enforce):
            log.warning(
                "RADIUS %s: reply id %d dropped: bad authenticator%s",
                port,
                data[1],
                " or no valid Message-Authenticator" if enforce else "",
            )
            return None
        expected = _REPLY_CODES.get(request.code, ())
        if reply.code not in expected:
            log.warning(
                "RADIUS %s: reply code %d to request code %d dropped",
                port,
                reply.code,
                request.code,
            )
            return None
        return reply


_REPLY_CODES: dict[int, Iterable[int]] = {
    rp.AccessRequest: (rp.AccessAccept, rp.AccessReject, rp.AccessChallenge),
    rp.StatusServer: (rp.AccessAccept, rp.AccountingResponse),
    rp.AccountingRequest: (rp.AccountingResponse,),
}


def set_password(packet: rp.Packet, password: str | bytes) -> None:
    """Give an Access-Request its User-Password (hidden per server when it is sent)."""
    raw = password.encode() if isinstance(password, str) else bytes(password)
    if len(raw) > 128:
        raise ValueError("a User-Password is at most 128 octets")
    packet.kl2tp_password = raw
    OrderedDict.__setitem__(packet, USER_PASSWORD, [b"\x00" * 16])
