"""The RADIUS AAA back end: `kl2tp.aaa.base.Authenticator` over `RadiusClient`.

Access-Request (RFC 2865, 2868, 2869; MS-CHAP attributes RFC 2548), as an LNS sends it:
User-Name; the proof (PAP User-Password; CHAP CHAP-Password = ident + response with
CHAP-Challenge, which is also how the LAC's proxy CHAP from the ICCN is checked, as in the
reference trace; MS-CHAPv2 MS-CHAP-Challenge + MS-CHAP2-Response); NAS-Identifier and
NAS-IP-Address; NAS-Port (unique per session), NAS-Port-Type Virtual, Service-Type
Framed-User, Framed-Protocol PPP; Calling-/Called-Station-Id from the ICRQ; Acct-Session-Id
(the same as in accounting); and the RFC 2868 attributes of the tunnel the call came in on
(Tunnel-Type L2TP, Tunnel-Medium-Type, Tunnel-Client-Endpoint, Tunnel-Client-Auth-Id).

Access-Accept: Framed-IP-Address (255.255.255.254: from the pool, 255.255.255.255: the
address the subscriber asks for), Framed-Pool, Framed-IP-Netmask, Framed-Route,
Session-Timeout, Idle-Timeout, Acct-Interim-Interval, Class (echoed in every accounting
record of the session), MS-CHAP2-Success (its ``S=`` string goes to the PPP core),
MS-MPPE-Send/Recv-Key (kept), MS-Primary/Secondary-DNS-Server. Access-Reject: Reply-Message
becomes the PAP/CHAP failure text. A server that never answers refuses the subscriber
(``reason="backend-timeout"``).

Accounting (RFC 2866, 2867, 2869): records go through `AccountingQueue` (never blocks the
session; retried, spooled at shutdown). Accounting-On when the back end starts,
Accounting-Off when it stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
from pyrad import packet as rp

from kl2tp.aaa.base import (
    AaaCounters,
    AccountingKind,
    AccountingRecord,
    AuthRequest,
    AuthResult,
    SessionContext,
    log_decision,
)
from kl2tp.aaa.radius import (
    ATTR_CLASS,
    ATTR_FRAMED_NETMASK,
    ATTR_FRAMED_POOL,
    ATTR_FRAMED_ROUTES,
    ATTR_IDLE_TIMEOUT,
    ATTR_INTERIM_INTERVAL,
    ATTR_SESSION_TIMEOUT,
)
from kl2tp.aaa.radius.accounting import AccountingQueue, Value
from kl2tp.aaa.radius.client import RadiusClient, set_password
from kl2tp.log import escape
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials

if TYPE_CHECKING:
    from kl2tp.config import Config

__all__ = [
    "ATTR_CLASS",
    "ATTR_FRAMED_POOL",
    "ATTR_IDLE_TIMEOUT",
    "ATTR_INTERIM_INTERVAL",
    "ATTR_SESSION_TIMEOUT",
    "TERMINATE_CAUSES",
    "RadiusAuthenticator",
]

log = logging.getLogger("kl2tp.aaa")

POOL_ADDRESS = IPv4Address("255.255.255.254")
PEER_ADDRESS = IPv4Address("255.255.255.255")
_FAILED = "authentication failed"

TERMINATE_CAUSES = {
    "user-request": "User-Request",
    "lost-carrier": "Lost-Carrier",
    "lost-service": "Lost-Service",
    "idle-timeout": "Idle-Timeout",
    "session-timeout": "Session-Timeout",
    "admin-reset": "Admin-Reset",
    "admin-reboot": "Admin-Reboot",
    "port-error": "Port-Error",
    "nas-error": "NAS-Error",
    "nas-request": "NAS-Request",
    "nas-reboot": "NAS-Reboot",
    "port-unneeded": "Port-Unneeded",
    "service-unavailable": "Service-Unavailable",
    "user-error": "User-Error",
    "host-request": "Host-Request",
}
"""`AccountingRecord.terminate_cause` -> the RFC 2866 5.10 Acct-Terminate-Cause value name."""

_STATUS = {
    AccountingKind.START: "Start",
    AccountingKind.STOP: "Stop",
    AccountingKind.INTERIM: "Interim-Update",
}


def _split64(value: int) -> tuple[int, int]:
    """RFC 2869 5.1/5.2: low 32 bits and Gigawords (how many times 2^32 wrapped)."""
    value = max(0, value)
    return value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF


class RadiusAuthenticator:
    """Authentication and accounting against RADIUS servers.

    Args:
        client: the RADIUS client.
        methods: methods this LNS accepts (``[ppp] auth``); others are rejected unsent.
        nas_ip_address: NAS-IP-Address to send; None: not sent.
        accounting: the accounting queue; None: no accounting is sent.
        dns: DNS servers for an accept that names none (``[ppp] dns``).
        clock: wall clock (epoch seconds) for Event-Timestamp.
    """

    def __init__(
        self,
        client: RadiusClient,
        *,
        methods: Iterable[str] = ("pap", "chap", "mschapv2"),
        nas_ip_address: IPv4Address | None = None,
        accounting: AccountingQueue | None = None,
        dns: Iterable[IPv4Address] = (),
        clock: Any = time.time,
    ) -> None:
        self.client = client
        self.methods = frozenset(methods)
        self.nas_ip_address = nas_ip_address
        self.accounting = accounting
        self.dns = tuple(dns)
        self.clock = clock
        self.counters = AaaCounters()
        self.boot_id = f"{int(clock()) & 0xFFFFFFFF:08X}"
        """Acct-Session-Id of Accounting-On/Off; also what an ``acct_session_id`` not set by
        the session code is derived from."""

    @classmethod
    def from_config(cls, config: Config) -> RadiusAuthenticator:
        """The back end ``[radius]`` describes (``[l2tp] hostname`` as NAS-Identifier when
        ``nas_identifier`` is empty)."""
        radius = config.radius
        client = RadiusClient.from_config(radius)
        if not client.nas_identifier:
            client.nas_identifier = config.l2tp.hostname
        queue = None
        if radius.accounting:
            queue = AccountingQueue(
                client,
                maxlen=radius.accounting_queue,
                spool=Path(radius.accounting_spool),
                retry_pause=max(1.0, radius.timeout),
            )
        return cls(
            client,
            methods=config.ppp.auth,
            nas_ip_address=radius.nas_ip_address,
            accounting=queue,
            dns=config.ppp.dns,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, *, stop_grace: float = 5.0) -> AsyncIterator[RadiusAuthenticator]:
        """The back end works inside the block: the client's readers and the accounting
        senders run; spooled records and Accounting-On go out first. Leaving the block sends
        Accounting-Off, waits up to ``stop_grace`` seconds for the queue to empty and
        spools what is left."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.client.run)
            queue = self.accounting
            if queue is None:
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
                return
            await trio.to_thread.run_sync(queue.load_spool)
            queue.put(self._on_off("Accounting-On"), barrier=True)
            senders = trio.CancelScope()
            stopped = trio.Event()

            async def send() -> None:
                try:
                    with senders:
                        await queue.run()
                finally:
                    stopped.set()

            nursery.start_soon(send)
            try:
                yield self
            finally:
                with trio.CancelScope(shield=True):
                    queue.put(self._on_off("Accounting-Off"), barrier=True)
                    await queue.drain(stop_grace)
                    senders.cancel()
                    await stopped.wait()  # in-flight records are back in the queue
                    await trio.to_thread.run_sync(queue.spool_unsent)
                nursery.cancel_scope.cancel()

    def _on_off(self, status: str) -> list[tuple[str, Value]]:
        attrs: list[tuple[str, Value]] = [
            ("Acct-Status-Type", status),
            ("Acct-Session-Id", self.boot_id),
            ("Event-Timestamp", int(self.clock())),
        ]
        self._nas(attrs)
        return attrs

    def summary(self) -> dict[str, object]:
        """RADIUS client and accounting queue counters for ``kl2tpctl show summary``."""
        out: dict[str, object] = {
            "client": attrs.asdict(self.client.counters),
            "servers": self.client.server_summary(),
        }
        if self.accounting is not None:
            out["accounting"] = dict(self.accounting.summary())
        return out

    # -- authentication -------------------------------------------------------------------------

    def acct_session_id(self, context: SessionContext) -> str:
        """The session's Acct-Session-Id: the one the session code set, else one made from
        this run's boot id and the NAS-Port (unique per session in a run)."""
        return context.acct_session_id or f"{self.boot_id}{context.nas_port:08X}"

    def _nas(self, attrs: list[tuple[str, Value]]) -> None:
        # (the client adds NAS-Identifier to every packet it builds)
        if self.nas_ip_address is not None:
            attrs.append(("NAS-IP-Address", str(self.nas_ip_address)))

    def _session_attrs(self, context: SessionContext) -> list[tuple[str, Value]]:
        attrs: list[tuple[str, Value]] = []
        self._nas(attrs)
        attrs += [
            ("NAS-Port", context.nas_port),
            ("NAS-Port-Type", "Virtual"),
            ("Service-Type", "Framed-User"),
            ("Framed-Protocol", "PPP"),
        ]
        if context.calling_number:
            attrs.append(("Calling-Station-Id", context.calling_number))
        if context.called_number:
            attrs.append(("Called-Station-Id", context.called_number))
        if context.interface:
            attrs.append(("NAS-Port-Id", context.interface))
        attrs.append(("Acct-Session-Id", self.acct_session_id(context)))
        # RFC 2868: the tunnel the call came in on (RFC 2867 names it in accounting).
        peer = context.peer_address.rpartition(":")[0].strip("[]")
        attrs += [
            ("Tunnel-Type", "L2TP"),
            ("Tunnel-Medium-Type", "IPv6" if ":" in peer else "IPv4"),
        ]
        if peer:
            attrs.append(("Tunnel-Client-Endpoint", peer))
        if context.peer_hostname:
            attrs.append(("Tunnel-Client-Auth-Id", context.peer_hostname))
        return attrs

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """Ask the servers about ``request``."""
        if request.method not in self.methods:
            result = AuthResult(False, _FAILED, reason="method-not-allowed")
            self.counters.count_result(request, result)
            return result
        packet = self.client.create_auth_packet()
        add = self.client.add_attribute
        add(packet, "User-Name", request.username)
        credentials = request.credentials
        if isinstance(credentials, PapCredentials):
            set_password(packet, credentials.password)
        elif isinstance(credentials, ChapCredentials):
            add(packet, "CHAP-Password", bytes((credentials.ident,)) + credentials.response)
            add(packet, "CHAP-Challenge", credentials.challenge)
        elif isinstance(credentials, MsChapV2Credentials):
            add(packet, "MS-CHAP-Challenge", credentials.authenticator_challenge)
            # RFC 2548 2.3.2: Ident, Flags, Peer-Challenge, 8 reserved octets, NT-Response
            add(
                packet,
                "MS-CHAP2-Response",
                b"\x00\x00" + credentials.peer_challenge + bytes(8) + credentials.nt_response,
            )
        for name, value in self._session_attrs(request.context):
            add(packet, name, value)
        reply = await self.client.auth(packet)
        if reply is None:
            self.counters.errors += 1
            result = AuthResult(False, _FAILED, reason="backend-timeout")
            log.warning('AAA: no RADIUS server answered for "%s"', escape(request.username))
        else:
            result = self._result(request, reply)
            self.counters.count_result(request, result)
        log_decision(log, "RADIUS ", request, result)
        return result

    def _result(self, request: AuthRequest, reply: rp.Packet) -> AuthResult:
        message = "".join(str(m) for m in _values(reply, "Reply-Message"))
        if reply.code != rp.AccessAccept:
            reason = "rejected" if reply.code == rp.AccessReject else "challenge-unsupported"
            return AuthResult(False, message or _FAILED, reason=reason)
        authenticator_response: str | None = None
        if isinstance(request.credentials, MsChapV2Credentials):
            success = _first(reply, "MS-CHAP2-Success")
            text = bytes(success)[1:].decode("ascii", "replace") if success else ""
            if not text.startswith("S=") or len(text) < 42:
                # Without the server's proof the peer would reject us anyway (RFC 2759 5).
                return AuthResult(False, _FAILED, reason="no-mschap2-success")
            authenticator_response = text[:42]
        attributes: dict[str, object] = {}
        framed: IPv4Address | None = None
        address = _first(reply, "Framed-IP-Address")
        if address is not None:
            framed = IPv4Address(str(address))
            if framed == POOL_ADDRESS:
                framed = None
        for key, name in (
            (ATTR_SESSION_TIMEOUT, "Session-Timeout"),
            (ATTR_IDLE_TIMEOUT, "Idle-Timeout"),
            (ATTR_INTERIM_INTERVAL, "Acct-Interim-Interval"),
        ):
            value = _first(reply, name)
            if value is not None:
                attributes[key] = int(value)
        pool = _first(reply, "Framed-Pool")
        if pool is not None:
            attributes[ATTR_FRAMED_POOL] = _text(pool)
        classes = tuple(_octets(v) for v in _values(reply, "Class"))
        if classes:
            attributes[ATTR_CLASS] = classes
        netmask = _first(reply, "Framed-IP-Netmask")
        if netmask is not None:
            attributes[ATTR_FRAMED_NETMASK] = IPv4Address(str(netmask))
        routes = tuple(_text(v) for v in _values(reply, "Framed-Route"))
        if routes:
            attributes[ATTR_FRAMED_ROUTES] = routes
        for key, name in (
            ("mppe_send_key", "MS-MPPE-Send-Key"),
            ("mppe_recv_key", "MS-MPPE-Recv-Key"),
        ):
            value = _first(reply, name)
            if value is not None:
                attributes[key] = _octets(value)
        dns = tuple(
            IPv4Address(str(v))
            for name in ("MS-Primary-DNS-Server", "MS-Secondary-DNS-Server")
            for v in _values(reply, name)[:1]
        )
        return AuthResult(
            True,
            message or "Welcome",
            reason="accepted",
            framed_address=framed,
            dns=dns or self.dns,
            authenticator_response=authenticator_response,
            attributes=attributes,
        )

    # -- accounting -----------------------------------------------------------------------------

    async def account(self, record: AccountingRecord) -> None:
        """Queue one accounting record (returns at once; see `AccountingQueue`)."""
        self.counters.count_accounting(record)
        if self.accounting is None:
            return
        attrs: list[tuple[str, Value]] = [
            ("Acct-Status-Type", _STATUS[record.kind]),
            ("User-Name", record.username),
            ("Acct-Authentic", "RADIUS"),
            ("Event-Timestamp", int(self.clock())),
        ]
        attrs += self._session_attrs(record.context)
        attrs.append(
            ("Acct-Tunnel-Connection", f"{record.context.tunnel_id}/{record.context.session_id}")
        )
        if record.address is not None:
            attrs.append(("Framed-IP-Address", str(record.address)))
        for cls in record.classes:
            attrs.append(("Class", cls))
        if record.kind is not AccountingKind.START:
            low_in, giga_in = _split64(record.input_octets)
            low_out, giga_out = _split64(record.output_octets)
            attrs += [
                ("Acct-Session-Time", max(0, int(record.session_time))),
                ("Acct-Input-Octets", low_in),
                ("Acct-Output-Octets", low_out),
                ("Acct-Input-Gigawords", giga_in),
                ("Acct-Output-Gigawords", giga_out),
                ("Acct-Input-Packets", record.input_packets & 0xFFFFFFFF),
                ("Acct-Output-Packets", record.output_packets & 0xFFFFFFFF),
            ]
        if record.kind is AccountingKind.STOP:
            cause = TERMINATE_CAUSES.get(record.terminate_cause, "NAS-Request")
            attrs.append(("Acct-Terminate-Cause", cause))
        self.accounting.put(attrs)


def _values(reply: rp.Packet, name: str) -> list[Any]:
    try:
        return list(reply[name]) if name in reply else []
    except (KeyError, ValueError):
        return []


def _first(reply: rp.Packet, name: str) -> Any:
    values = _values(reply, name)
    return values[0] if values else None


def _octets(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
