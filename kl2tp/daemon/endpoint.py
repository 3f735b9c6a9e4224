"""The UDP endpoint: one socket, demux by tunnel id, one task per tunnel.

This is glue in the manner of trio's DTLS endpoint: a single receive loop peeks at the
tunnel id, hands the datagram to that tunnel's bounded queue and never waits on a slow
tunnel (a full queue drops and counts). Each tunnel task feeds its sans-IO
:class:`kl2tp.l2tp.tunnel.Tunnel`, sends what it returns, sleeps until its timer, and turns
the core's events into data-plane and session work.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import random
import socket as stdlib_socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from kl2tp.daemon.handle import Address, SessionHandler, SessionInfo
from kl2tp.dataplane.base import DataPlane, DataPlaneError, TunnelSpec
from kl2tp.l2tp import events as ev
from kl2tp.l2tp.constants import CdnResult, ErrorCode, StopCcnResult
from kl2tp.l2tp.errors import DecodeError, UnsupportedVersion
from kl2tp.l2tp.events import CallParams, ConnectInfo
from kl2tp.l2tp.message import ControlMessage, decode, peek
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig

log = logging.getLogger("kl2tp.daemon")

SCCRQ = 1
RESULT_ADMIN = 3
"""CDN result 3: disconnect for administrative reasons (RFC 2661 4.4.2)."""
STOPCCN_SHUTDOWN = 6
"""StopCCN result 6: requester is being shut down."""
CDN_NO_RESOURCES = 4
"""CDN result 4: temporary lack of resources."""
STOPCCN_GENERAL = 2
"""StopCCN result 2: general error."""
GENERAL_NO_RESOURCES = 4
"""General error 4: insufficient resources to handle this operation now."""
RECEIVE_BUFFER = 4 << 20
"""SO_RCVBUF asked for the shared socket (the kernel caps it at net.core.rmem_max)."""
RECEIVE_BATCH = 64
"""Datagrams the receive loop takes from the socket before it lets other tasks run."""


class TunnelRunner:
    """One tunnel's task: the core, its queue, its socket, its sessions."""

    def __init__(
        self,
        endpoint: Endpoint,
        core: Tunnel,
        peer_addr: Address,
        *,
        pinned: bool,
    ) -> None:
        self.endpoint = endpoint
        self.core = core
        self.peer_addr = peer_addr
        self.pinned = pinned
        self.created = trio.current_time()
        self.established_at: float | None = None
        self.sessions: dict[int, SessionInfo] = {}
        self.counters: Counter[str] = Counter()
        self.closed = trio.Event()
        self.established = trio.Event()
        self.close_event: ev.TunnelClosed | None = None
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, Address] | None](
            endpoint.queue_depth
        )
        self._socket: Any = None
        self._kernel_tunnel = False
        self._torn_down = False
        self._kicked = False

    @property
    def local_tunnel_id(self) -> int:
        """Our tunnel id."""
        return self.core.local_tunnel_id

    @property
    def peer_tunnel_id(self) -> int:
        """The peer's tunnel id (0 until the tunnel is established)."""
        return self.core.peer_tunnel_id

    @property
    def peer_hostname(self) -> str:
        """The peer's Host Name AVP."""
        return self.core.peer_hostname

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run a task in the endpoint's nursery (session tasks outlive the event handler)."""
        self.endpoint.nursery.start_soon(fn, *args)

    def count(self, key: str) -> None:
        """Add one to an endpoint-wide counter."""
        self.endpoint.counters[key] += 1

    # -- called by the endpoint's receive loop -------------------------------------------

    def offer(self, data: bytes, addr: Address) -> None:
        """Queue a datagram for this tunnel, or drop and count it."""
        if self.pinned:
            if addr != self.peer_addr:
                self.endpoint.drop("wrong_peer")
                return
        elif addr[0] != self.peer_addr[0]:
            self.endpoint.drop("wrong_peer")
            return
        try:
            self._send.send_nowait((data, addr))
        except trio.WouldBlock:
            self.endpoint.drop("queue_full")

    def kick(self) -> None:
        """Wake the task after a command changed the core (it then flushes)."""
        # One wake-up in the queue is enough: the task flushes everything once it takes it.
        # (Sessions kick for every frame they send; uncoalesced kicks filled the queue and
        # made it drop datagrams.) When the queue is full the task is busy and flushes after
        # its current item anyway.
        if self._kicked:
            return
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._send.send_nowait(None)
            self._kicked = True

    # -- commands (from sessions, the control socket, the LAC) ---------------------------

    def place_call(
        self, call: CallParams, connect: ConnectInfo | None = None, *, defer_connect: bool = False
    ) -> SessionInfo:
        """Start a call (ICRQ on the LAC, OCRQ on the LNS); ``connect``: the LAC's ICCN values.

        ``defer_connect`` (LAC): hold the ICCN until the handler, told by ``call_answered``,
        calls ``connect_call`` (it programs the kernel session first, so the LNS's first
        frame finds it). Without a handler the call connects at once anyway.
        """
        now = trio.current_time()
        sid = self.core.place_call(now, call, connect, defer_connect=defer_connect)
        info = SessionInfo(sid, now)
        self.sessions[sid] = info
        self.kick()
        return info

    def connect_call(self, sid: int, connect: ConnectInfo | None = None) -> None:
        """Send the ICCN of a call the LNS answered (``CallAnswered``); ``connect`` None keeps
        the values given to ``place_call``. A call already gone is ignored."""
        if sid in self.core.sessions:
            self.core.connect_call(sid, trio.current_time(), connect)
            self.kick()

    def data_ready(self, sid: int) -> None:
        """The session's channel is open: the core hands over the data it kept for it."""
        if sid in self.core.sessions:
            self.core.data_ready(sid, trio.current_time())
            self.kick()

    def hangup(
        self,
        sid: int,
        result: CdnResult = CdnResult.ADMINISTRATIVE,
        error: ErrorCode = ErrorCode.NO_ERROR,
        message: str = "",
    ) -> None:
        """Clear one session with a CDN."""
        if sid in self.core.sessions:
            self.core.hangup(sid, trio.current_time(), result, error, message)
            self.kick()

    def close(
        self,
        result: StopCcnResult = StopCcnResult.CLEAR_CONNECTION,
        error: ErrorCode = ErrorCode.NO_ERROR,
        message: str = "",
    ) -> None:
        """Clear the tunnel with a StopCCN."""
        self.core.close(trio.current_time(), result, error, message)
        self.kick()

    def send_data(self, sid: int, payload: bytes) -> None:
        """Send a PPP frame of a session as an L2TP data message (userspace data path)."""
        if sid in self.core.sessions:
            self.core.send_data(sid, payload)
            self.kick()

    # -- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the core until the tunnel is closed and its RFC 2661 5.7 hold is over.

        Once the core reports the tunnel closed, everything above it is torn down at once and
        the tunnel leaves ``show tunnels``; the core itself lingers (re-acking a retransmitted
        StopCCN) until it says it is done.
        """
        try:
            await self._loop()
        except Exception:
            # A bug must cost one tunnel, never the daemon: tell the peer if the core still
            # can, then tear down as on any other path.
            self.endpoint.counters["tunnel_task_failed"] += 1
            log.exception(
                "Tnl %d: internal error; clearing the tunnel (please report this)",
                self.local_tunnel_id,
            )
            with contextlib.suppress(Exception):
                self.core.close(trio.current_time(), STOPCCN_GENERAL, 0, "internal error")
                for data in self.core.datagrams_to_send(trio.current_time()):
                    await self._sendto(data)
        finally:
            if not self._torn_down:
                await self._teardown()
            self.endpoint.lingering.pop(self.local_tunnel_id, None)
            self._send.close()

    async def _loop(self) -> None:
        await self._flush()
        while True:
            if self.close_event is not None:
                if not self._torn_down:
                    await self._teardown()
                if self.core.done:
                    break
            timer = self.core.get_timer()
            if timer is None and self.close_event is not None:
                break
            item: tuple[bytes, Address] | None = None
            try:
                # Work already queued: one plain checkpoint, no cancel scope to build.
                item = self._recv.receive_nowait()
            except trio.WouldBlock:
                if timer is None:
                    item = await self._recv.receive()
                else:
                    with trio.move_on_at(timer):
                        item = await self._recv.receive()
            else:
                await trio.lowlevel.checkpoint()
            now = trio.current_time()
            # The flush below covers every command so far; a later one must kick again.
            self._kicked = False
            if item is not None:
                data, addr = item
                if not self.pinned:
                    self.peer_addr = addr
                    self.pinned = True
                self._feed(data, now)
                # Drain what is already queued before flushing: acks piggyback better.
                while True:
                    try:
                        more = self._recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if more is not None:
                        self._feed(more[0], now)
            timer = self.core.get_timer()
            if timer is not None and timer <= now:
                self.core.handle_timer(now)
            await self._flush()

    def _feed(self, data: bytes, now: float) -> None:
        """One datagram into the core. Malformed input is the core's business (dropped and
        counted, or answered per the RFC); an exception escaping it is a bug, and costs only
        that datagram."""
        try:
            self.core.receive_datagram(data, now)
        except Exception:
            self.counters["core_errors"] += 1
            self.endpoint.counters["core_errors"] += 1
            log.exception(
                "Tnl %d: internal error on a %d-byte datagram; dropped",
                self.local_tunnel_id,
                len(data),
            )

    async def _flush(self) -> None:
        """Send what the core wants sent and act on its events."""
        now = trio.current_time()
        for data in self.core.datagrams_to_send(now):
            await self._sendto(data)
        while (event := self.core.next_event()) is not None:
            await self._handle(event)
            # handling may have queued more (e.g. an answer to an incoming call)
            for data in self.core.datagrams_to_send(trio.current_time()):
                await self._sendto(data)

    async def _sendto(self, data: bytes) -> None:
        sock = self._socket
        try:
            if sock is None:
                # The shared socket: send on the non-blocking stdlib socket directly (trio's
                # sendto resolves the address and checkpoints twice per datagram); only a full
                # send buffer takes the awaitable path, which waits until it drains. The
                # tunnel loop checkpoints once per iteration, so the task still yields.
                try:
                    self.endpoint.raw_sock.sendto(data, self.peer_addr)
                    return
                except BlockingIOError:
                    sock = self.endpoint.sock
            await sock.sendto(data, self.peer_addr)
        except OSError as exc:
            self.counters["send_errors"] += 1
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOBUFS, errno.EAGAIN):
                log.warning(
                    "Tnl %d: send to %s failed: %s", self.local_tunnel_id, self.peer_addr, exc
                )

    async def _handle(self, event: object) -> None:
        handler = self.endpoint.handler
        if isinstance(event, ev.TunnelEstablished):
            self.established_at = trio.current_time()
            self.established.set()
            await self._program_tunnel()
        elif isinstance(event, ev.IncomingCall):
            self._incoming_call(event)
        elif isinstance(event, ev.CallAnswered):
            if handler is None:
                self.core.connect_call(event.sid, trio.current_time())
            else:
                handler.call_answered(self, event)
        elif isinstance(event, ev.CallEstablished):
            info = self.sessions.setdefault(event.sid, SessionInfo(event.sid, trio.current_time()))
            if handler is None or not handler.defers_established:
                info.established = trio.current_time()
                info.done.set()
            if handler is not None:
                handler.call_established(self, event)
        elif isinstance(event, ev.CallClosed):
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "Tnl/Cl %d/%d: call cleared %s: result %d error %d%s",
                    self.local_tunnel_id,
                    event.sid,
                    "by peer" if event.by_peer else "locally",
                    event.result,
                    event.error,
                    f" ({event.message})" if event.message else "",
                )
            # The handler runs first: it may still read and annotate the session's info.
            if handler is not None:
                handler.call_closed(self, event)
            closed_info = self.sessions.pop(event.sid, None)
            if closed_info is not None:
                closed_info.closed = event
                closed_info.done.set()
        elif isinstance(event, ev.DataReceived):
            if handler is not None:
                handler.data_received(self, event)
        elif isinstance(event, ev.TunnelClosed):
            self.close_event = event
        else:
            self.counters[type(event).__name__] += 1

    def _incoming_call(self, event: ev.IncomingCall) -> None:
        now = trio.current_time()
        limit = self.endpoint.max_sessions
        if limit and self.endpoint.session_count() >= limit:
            self.endpoint.counters["calls_refused_overload"] += 1
            self.core.hangup(event.sid, now, CDN_NO_RESOURCES, 0, "session limit reached")
            return
        self.sessions.setdefault(event.sid, SessionInfo(event.sid, now))
        # A LAC answering an outgoing call connects at once, in the core (OCRP then OCCN).
        self.core.answer_call(
            event.sid, now, None if self.endpoint.lns else self.endpoint.connect_info()
        )

    async def _program_tunnel(self) -> None:
        dp = self.endpoint.dataplane
        spec = TunnelSpec(
            local_tunnel_id=self.local_tunnel_id,
            peer_tunnel_id=self.core.peer_tunnel_id,
            local_addr=self.endpoint.local_addr,
            peer_addr=self.peer_addr,
        )
        try:
            handle = await dp.open_tunnel(spec)
        except DataPlaneError as exc:
            log.error("Tnl %d: data plane refused the tunnel: %s", self.local_tunnel_id, exc)
            self.core.close(trio.current_time(), STOPCCN_GENERAL, GENERAL_NO_RESOURCES, str(exc))
            return
        self._kernel_tunnel = True
        sock = handle.socket
        if sock is not None:
            self._socket = sock
            self.endpoint.nursery.start_soon(self._socket_reader, sock)

    async def _socket_reader(self, sock: Any) -> None:
        """Read the per-tunnel socket the kernel data plane made (control packets arrive)."""
        with trio.CancelScope() as scope:
            self._reader_scope = scope
            while True:
                try:
                    data, addr = await sock.recvfrom(65536)
                except (OSError, trio.ClosedResourceError):
                    return  # the data plane closed the socket with the kernel tunnel
                self.endpoint.dispatch(data, addr)

    async def _teardown(self) -> None:
        """Release everything above the core, whatever path ended the tunnel."""
        self._torn_down = True
        self.endpoint.forget(self)
        scope = getattr(self, "_reader_scope", None)
        if scope is not None:
            scope.cancel()
        handler = self.endpoint.handler
        with trio.CancelScope(shield=True):
            for sid, info in list(self.sessions.items()):
                info.closed = ev.CallClosed(
                    sid=sid,
                    result=2,
                    error=0,
                    message="tunnel closed",
                    q931=None,
                    by_peer=False,
                )
                info.done.set()
                if handler is not None:
                    handler.call_closed(self, info.closed)
            self.sessions.clear()
            if self._kernel_tunnel:
                try:
                    await self.endpoint.dataplane.close_tunnel(self.local_tunnel_id)
                except DataPlaneError as exc:
                    log.error(
                        "Tnl %d: could not remove the kernel tunnel: %s", self.local_tunnel_id, exc
                    )
        self._socket = None  # gone with the kernel tunnel; lingering acks use the shared one
        self.closed.set()

    def snapshot(self) -> dict[str, Any]:
        """The tunnel as `kl2tpctl show tunnels` prints it."""
        now = trio.current_time()
        return {
            "local_id": self.local_tunnel_id,
            "peer_id": self.core.peer_tunnel_id,
            "peer_address": f"{self.peer_addr[0]}:{self.peer_addr[1]}",
            "peer_hostname": self.core.peer_hostname,
            "state": self.core.state,
            "sessions": len(self.core.sessions),
            "uptime": round(now - self.created, 3),
            "counters": dict(self.counters),
        }


class Endpoint:
    """The UDP socket, the tunnel table and the tunnel tasks of one daemon."""

    def __init__(
        self,
        *,
        role: str,
        tunnel_config: TunnelConfig,
        dataplane: DataPlane,
        listen: Address,
        handler: SessionHandler | None = None,
        allowed_peers: Iterable[Any] = (),
        max_tunnels: int = 0,
        max_sessions: int = 0,
        queue_depth: int = 256,
        rng: random.Random | None = None,
        connect_info: Callable[[], Any] | None = None,
    ) -> None:
        self.lns = role == "lns"
        self.tunnel_config = tunnel_config
        self.dataplane = dataplane
        self.listen = listen
        self.handler = handler
        self.allowed_peers = list(allowed_peers)
        self.max_tunnels = max_tunnels
        self.max_sessions = max_sessions
        self.queue_depth = queue_depth
        self.rng = rng or random.SystemRandom()
        self._connect_info = connect_info
        self.tunnels: dict[int, TunnelRunner] = {}
        self.lingering: dict[int, TunnelRunner] = {}
        """Closed tunnels whose cores still re-ack a retransmitted StopCCN (RFC 2661 5.7)."""
        self._by_peer: dict[tuple[Address, int], int] = {}
        self.counters: Counter[str] = Counter()
        self.sock: Any = None
        self.raw_sock: stdlib_socket.socket = None  # type: ignore[assignment]
        """The stdlib socket under ``sock`` (non-blocking), for sends that need no await."""
        self.local_addr: Address = listen
        self.nursery: trio.Nursery = None  # type: ignore[assignment]

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, then receive until cancelled. Reports the bound address when ready."""
        family = stdlib_socket.AF_INET6 if ":" in self.listen[0] else stdlib_socket.AF_INET
        raw = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
        sock = trio.socket.from_stdlib_socket(raw)  # makes it non-blocking; owns it
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        if hasattr(stdlib_socket, "SO_REUSEPORT"):
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
        # Room for a burst (PPP frames are not flow controlled); Linux caps the request at
        # net.core.rmem_max.
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, RECEIVE_BUFFER)
        with sock:
            await sock.bind(self.listen)
            self.sock = sock
            self.raw_sock = raw
            self.local_addr = sock.getsockname()[:2]
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                task_status.started(self.local_addr)
                await self._receive_loop()

    async def _receive_loop(self) -> None:
        # Drain the non-blocking socket in batches: one yield per batch instead of two
        # checkpoints per datagram (trio's recvfrom), so a burst from the peer leaves the
        # kernel's receive buffer before it overflows, and each tunnel task gets a batch.
        raw = self.raw_sock
        recvfrom = raw.recvfrom
        dispatch = self.dispatch
        while True:
            for _ in range(RECEIVE_BATCH):
                try:
                    data, addr = recvfrom(65536)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(raw)
                    break
                except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                    self.drop("socket_error")
                    log.debug("receive error: %s", exc)
                    continue
                dispatch(data, addr[:2])
            else:
                await trio.lowlevel.checkpoint()  # a full batch: let the tunnel tasks run

    def dispatch(self, data: bytes, addr: Address) -> None:
        """Route one datagram to its tunnel (never blocks)."""
        self.counters["rx_datagrams"] += 1
        try:
            is_control, tid, sid = peek(data)
        except UnsupportedVersion as exc:
            self.drop(f"version_{exc.version}")
            return
        except DecodeError:
            self.drop("malformed")
            return
        if not is_control:
            # Every data message that reaches Python is counted: with the kernel data plane
            # this stays 0 once the kernel owns the sessions.
            self.counters["data_rx"] += 1
        if tid:
            runner = self.tunnels.get(tid) or self.lingering.get(tid)
            if runner is None:
                self.drop("unknown_tunnel")
                return
            if not is_control:
                runner.counters["data_rx"] += 1
                session = runner.core.sessions.get(sid)
                if session is None:
                    runner.counters["data_unknown_session"] += 1
                    self.drop("data_unknown_session")
                    return
            runner.offer(data, addr)
            return
        self._new_tunnel(data, addr)

    def _new_tunnel(self, data: bytes, addr: Address) -> None:
        """A datagram for tunnel 0: an SCCRQ (or junk)."""
        try:
            msg = decode(data)
        except DecodeError:
            self.drop("malformed")
            return
        except Exception:  # ProtocolError from a message we cannot even start a tunnel for
            self.drop("bad_sccrq")
            return
        if not isinstance(msg, ControlMessage) or msg.msg_type != SCCRQ:
            self.drop("not_sccrq_for_tunnel_0")
            return
        if not self.lns and not self.accept_incoming:
            self.drop("sccrq_refused")
            return
        peer_tid = msg.get(9)
        if not isinstance(peer_tid, int):
            self.drop("bad_sccrq")
            return
        existing = self._by_peer.get((addr, peer_tid))
        if existing is not None and existing in self.tunnels:
            # A retransmitted SCCRQ: the existing tunnel re-acks it.
            self.tunnels[existing].offer(data, addr)
            return
        if not self._peer_allowed(addr[0]):
            self.drop("peer_not_allowed")
            log.warning("SCCRQ from %s refused: not in allowed_peers", addr[0])
            return
        if self.max_tunnels and len(self.tunnels) >= self.max_tunnels:
            self.drop("tunnel_limit")
            return
        runner = self._make_runner(addr, initiator=False, pinned=True)
        self._by_peer[(addr, peer_tid)] = runner.local_tunnel_id
        runner.core.receive_message(msg, trio.current_time())
        self.nursery.start_soon(runner.run)

    accept_incoming = False
    """Whether a LAC accepts SCCRQs (the LNS always does, subject to allowed_peers)."""

    def _peer_allowed(self, host: str) -> bool:
        if not self.allowed_peers:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.allowed_peers)

    def _make_runner(
        self,
        addr: Address,
        *,
        initiator: bool,
        pinned: bool,
        config: TunnelConfig | None = None,
    ) -> TunnelRunner:
        tid = self._allocate_tunnel_id()
        core = Tunnel(
            config or self.tunnel_config,
            tid,
            initiator=initiator,
            rng=self.rng,
            now=trio.current_time(),
        )
        runner = TunnelRunner(self, core, addr, pinned=pinned)
        self.tunnels[tid] = runner
        return runner

    def _allocate_tunnel_id(self) -> int:
        if len(self.tunnels) >= 65535:
            raise DataPlaneError("no free tunnel id")
        while True:
            tid = self.rng.randint(1, 65535)
            if tid not in self.tunnels and tid not in self.lingering:
                return tid

    def forget(self, runner: TunnelRunner) -> None:
        """Drop a closed tunnel from the tables; it lingers for late retransmissions."""
        self.tunnels.pop(runner.local_tunnel_id, None)
        self.lingering[runner.local_tunnel_id] = runner
        for key in [k for k, v in self._by_peer.items() if v == runner.local_tunnel_id]:
            del self._by_peer[key]

    def drop(self, reason: str) -> None:
        """Count a dropped datagram by reason."""
        self.counters[f"drop_{reason}"] += 1

    # -- LAC side --------------------------------------------------------------------------

    async def dial(
        self,
        peer: Address,
        tunnel_config: TunnelConfig | None = None,
        *,
        setup_timeout: float | None = None,
    ) -> TunnelRunner:
        """Open a tunnel to an LNS and wait until it is established (or raise)."""
        runner = self._make_runner(peer, initiator=True, pinned=False, config=tunnel_config)
        runner.core.connect(trio.current_time())
        self.nursery.start_soon(runner.run)
        with trio.move_on_after(math.inf if setup_timeout is None else setup_timeout):
            async with trio.open_nursery() as wait:

                async def on_closed() -> None:
                    await runner.closed.wait()
                    wait.cancel_scope.cancel()

                async def on_up() -> None:
                    await runner.established.wait()
                    wait.cancel_scope.cancel()

                wait.start_soon(on_closed)
                wait.start_soon(on_up)
        if not runner.established.is_set():
            reason = runner.close_event
            runner.close(StopCcnResult.GENERAL_ERROR, message="setup timed out")
            raise TunnelSetupError(
                f"tunnel to {peer[0]}:{peer[1]} failed: "
                + (_describe_close(reason) if reason else "timed out")
            )
        return runner

    @property
    def defers_connect(self) -> bool:
        """Whether calls this LAC places should use ``defer_connect`` (the handler says)."""
        return self.handler is not None and self.handler.defers_connect

    def connect_info(self) -> Any:
        """ICCN/OCCN values the LAC reports when it connects a call."""
        if self._connect_info is None:
            from kl2tp.l2tp.session import ConnectInfo

            return ConnectInfo()
        return self._connect_info()

    # -- views -------------------------------------------------------------------------------

    def session_count(self) -> int:
        """Sessions across all tunnels."""
        return sum(len(r.core.sessions) for r in self.tunnels.values())

    async def shutdown(self, grace: float) -> None:
        """CDN every session, StopCCN every tunnel, wait for them up to ``grace`` seconds."""
        for runner in list(self.tunnels.values()):
            for sid in list(runner.core.sessions):
                runner.hangup(sid, CdnResult.ADMINISTRATIVE, message="daemon shutting down")
            runner.close(StopCcnResult.SHUTTING_DOWN, message="daemon shutting down")
        with trio.move_on_after(grace):
            for runner in list(self.tunnels.values()):
                await runner.closed.wait()


class TunnelSetupError(Exception):
    """A tunnel could not be established."""


def _describe_close(event: ev.TunnelClosed) -> str:
    text = f"result {event.result}"
    if event.error:
        text += f" error {event.error}"
    if event.message:
        text += f" ({event.message})"
    return text
