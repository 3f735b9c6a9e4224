"""The UDP endpoint: trio glue around the sans-IO :class:`kl2tp.l2tp.endpoint.EndpointCore`.

In the manner of trio's DTLS endpoint: one receive loop takes datagrams from a
:class:`DatagramTransport` in batches and hands each to the endpoint core, which routes it to
a tunnel's bounded inbox (or a drop counter, a new tunnel, a lingering core) and never waits
on a slow tunnel. Each live tunnel has a task that drains its inbox into its sans-IO
:class:`kl2tp.l2tp.tunnel.Tunnel`, sends what the core returns, sleeps until the core's timer
and turns the core's events into data-plane and session work; awaiting the data plane there
stalls only that tunnel. A closed tunnel's core lingers in the endpoint core (RFC 2661 5.7),
whose own datagrams and timer a small endpoint task serves. This module decides nothing about
the protocol: it moves datagrams and time.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import random
import socket as stdlib_socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import trio
import trio.lowlevel

from kl2tp.daemon import oplog
from kl2tp.daemon.handle import Address, SessionHandler, SessionInfo
from kl2tp.daemon.sessions import DataPlaneSessions
from kl2tp.daemon.stats import SessionStats, failure_reason
from kl2tp.daemon.timerheap import TimerHeap
from kl2tp.dataplane.base import DataPlane, DataPlaneError, TunnelSpec
from kl2tp.l2tp import events as ev
from kl2tp.l2tp.constants import CdnResult, ErrorCode, StopCcnResult
from kl2tp.l2tp.endpoint import (
    EndpointConfig,
    EndpointCore,
    Limits,
    Network,
    TunnelEntry,
    TunnelIdsExhausted,
    TunnelOpened,
    refusal_text,
)
from kl2tp.l2tp.events import CallParams, ConnectInfo
from kl2tp.l2tp.session import SessionState
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig, TunnelState
from kl2tp.policy import PolicyTable

log = logging.getLogger("kl2tp.daemon")

RECEIVE_BUFFER = 4 << 20
"""SO_RCVBUF asked for the shared socket (the kernel caps it at net.core.rmem_max)."""
RECEIVE_BATCH = 64
"""Datagrams the receive loop takes from the socket before it lets other tasks run."""
DEFAULT_LIMITS = Limits()
"""``Endpoint``'s default bounds on peer-created state (the core's defaults)."""

_TASK_EVENTS = (ev.TunnelEstablished, ev.TunnelClosed)
"""Core events that `TunnelRunner.step` leaves to the tunnel's task: programming the
tunnel waits for the data plane, and its end is the task's to run."""


# --- transports --------------------------------------------------------------------------------


class DatagramTransport(Protocol):
    """What the endpoint sends and receives datagrams with (a UDP socket, or a test's fake)."""

    local_addr: Address
    """The bound address."""

    async def receive_batch(self, idle: Callable[[], object]) -> list[tuple[bytes, Any]]:
        """Wait for datagrams; return those available now (at least one), as (data, addr)
        with ``addr[:2]`` the sender's (host, port). Yields to other tasks between batches.
        Calls ``idle`` every time before it yields or waits: the endpoint's tunnels then
        take what the batches so far brought them, all of it in one turn."""

    def try_send(self, data: bytes, addr: Address) -> bool:
        """Send without waiting; False when it would block (then use :meth:`send`).

        Raises:
            OSError: the send failed."""

    async def send(self, data: bytes, addr: Address) -> None:
        """Send, waiting for room (the back-pressure path).

        Raises:
            OSError: the send failed."""


class UdpTransport:
    """The shared UDP socket: a non-blocking stdlib socket drained in batches (one yield per
    batch instead of two checkpoints per datagram, so a burst leaves the kernel's receive
    buffer before it overflows) and sent on directly; only a full send buffer takes trio's
    awaitable path."""

    def __init__(self, sock: trio.socket.SocketType, raw: stdlib_socket.socket) -> None:
        self.sock = sock
        """The trio socket (owns ``raw``)."""
        self.raw = raw
        """The stdlib socket under it (non-blocking)."""
        self.local_addr: Address = sock.getsockname()[:2]
        self.errors = 0
        """Receive errors (e.g. ICMP port unreachable reported on the socket)."""
        self._recvfrom = raw.recvfrom
        self._sendto = raw.sendto
        self._full = False

    @classmethod
    async def bind(cls, listen: Address) -> UdpTransport:
        """A socket bound to ``listen`` (exclusively, with a large receive buffer).

        Raises:
            OSError: EADDRINUSE when another socket (a second daemon) holds the address.
        """
        family = stdlib_socket.AF_INET6 if ":" in listen[0] else stdlib_socket.AF_INET
        raw = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
        sock = trio.socket.from_stdlib_socket(raw)  # makes it non-blocking; owns it
        try:
            # Room for a burst (PPP frames are not flow controlled); Linux caps the request
            # at net.core.rmem_max.
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, RECEIVE_BUFFER)
            # Bound without SO_REUSEADDR/SO_REUSEPORT, so a second daemon on the same address
            # fails here instead of splitting the tunnels with us. Set afterwards, SO_REUSEADDR
            # lets the kernel data plane's per-tunnel connected sockets share the port (Linux
            # checks the flag of both sockets when the later one binds).
            await sock.bind(listen)
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        except BaseException:
            sock.close()
            raise
        return cls(sock, raw)

    @classmethod
    def from_socket(cls, raw: stdlib_socket.socket) -> UdpTransport:
        """Wrap a socket bound elsewhere: a worker's, inherited from the supervisor that
        bound it in its reuseport group (``[l2tp] workers``)."""
        return cls(trio.socket.from_stdlib_socket(raw), raw)

    async def receive_batch(self, idle: Callable[[], object]) -> list[tuple[bytes, Any]]:
        if self._full:
            idle()
            await trio.lowlevel.checkpoint()  # the last batch was full: let the tunnels run
        recvfrom = self._recvfrom
        batch: list[tuple[bytes, Any]] = []
        while True:
            for _ in range(RECEIVE_BATCH):
                try:
                    batch.append(recvfrom(65536))
                except BlockingIOError:
                    break
                except OSError as exc:
                    self.errors += 1
                    log.debug("receive error: %s", exc)
            if batch:
                self._full = len(batch) >= RECEIVE_BATCH
                return batch
            idle()
            await trio.lowlevel.wait_readable(self.raw)

    def try_send(self, data: bytes, addr: Address) -> bool:
        try:
            self._sendto(data, addr)
        except BlockingIOError:
            return False
        return True

    async def send(self, data: bytes, addr: Address) -> None:
        await self.sock.sendto(data, addr)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


# --- one tunnel ---------------------------------------------------------------------------------


class TunnelRunner:
    """One tunnel's task: drains the tunnel's inbox into its core, sends, acts on events.

    Session code sees it through the narrow tunnel handle (ids, peer, sessions, ``closed``
    and the commands below).
    """

    def __init__(self, endpoint: Endpoint, entry: TunnelEntry) -> None:
        self.endpoint = endpoint
        self.entry = entry
        self.core: Tunnel = entry.tunnel
        self.created = trio.current_time()
        self.established_at: float | None = None
        self._sessions: dict[int, SessionInfo] = {}
        self._setting_up: set[int] = set()
        """Sessions admitted and not established yet (the endpoint core counts them)."""
        self._negotiating: set[int] = set()
        """Sessions admitted and not up yet (``session_up``; the endpoint core counts them)."""
        # Tunnels and sessions by state, per policy, counted by the core from now on.
        self.core.attach(endpoint.stats.tally(entry.policy))
        self.core.admission = self._admission
        self.closed = trio.Event()
        self.established = trio.Event()
        self.close_event: ev.TunnelClosed | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self._parked = False
        self._dirty = False
        self._held: object | None = None
        """An event `step` took from the core and left to the task (it needs an await)."""
        self._unsent: list[bytes] | None = None
        """Datagrams `step` could not send without waiting (a full send buffer)."""
        self._failure: Exception | None = None
        """What `step` raised: the task raises it, as if it had run the step itself."""
        self.armed = math.inf
        """The core's timer as the endpoint's `TimerHeap` holds it (it wakes the task)."""
        self._socket: Any = None
        self._reader_scope: trio.CancelScope | None = None
        self._kernel_tunnel = False
        self._torn_down = False
        self._crashed = False

    # -- the handle --------------------------------------------------------------------------

    @property
    def local_tunnel_id(self) -> int:
        """Our tunnel id."""
        return self.core.local_tunnel_id

    @property
    def peer_tunnel_id(self) -> int:
        """The peer's tunnel id (0 until its SCCRQ/SCCRP)."""
        return self.core.peer_tunnel_id

    @property
    def peer_addr(self) -> Address:
        """Where the tunnel's datagrams go (pinned per RFC 2661 8.1)."""
        return self.entry.peer_addr

    @property
    def peer_hostname(self) -> str:
        """The peer's Host Name AVP."""
        return self.core.peer_hostname

    @property
    def policy(self) -> str:
        """The name of the tunnel's policy (``[[peer]] name``; ``"default"``: top level)."""
        return self.entry.policy

    @property
    def sessions(self) -> Mapping[int, SessionInfo]:
        """The daemon's record of each live session."""
        return self._sessions

    @property
    def counters(self) -> Counter[str]:
        """Per-tunnel endpoint figures (``data_rx``, ``core_errors``, ``send_errors``, ...)."""
        return self.entry.counters

    def place_call(
        self, call: CallParams, connect: ConnectInfo | None = None, *, defer_connect: bool = False
    ) -> SessionInfo:
        """Start a call (ICRQ on the LAC, OCRQ on the LNS); ``connect``: the LAC's ICCN values.

        ``defer_connect`` (LAC): hold the ICCN until the handler, told by ``call_answered``,
        calls ``connect_call`` (it programs the kernel session first, so the LNS's first
        frame finds it).
        """
        now = trio.current_time()
        sid = self.core.place_call(now, call, connect, defer_connect=defer_connect)
        info = self._add_session(sid, now)
        self.kick()
        return info

    def connect_call(self, sid: int, connect: ConnectInfo | None = None) -> None:
        """Send the ICCN of a call the LNS answered (``CallAnswered``); ``connect`` None keeps
        the values given to ``place_call``. A call already gone is ignored."""
        if sid in self.core.sessions:
            self.core.connect_call(sid, trio.current_time(), connect)
            self.kick()

    def connect_pending(self, sid: int) -> bool:
        """True while our ICCN for ``sid`` waits for the peer's window."""
        return self.core.connect_pending(sid)

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

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` as a task of the endpoint (a session's task)."""
        self.endpoint.nursery.start_soon(fn, *args)

    def count(self, key: str) -> None:
        """Add one to an endpoint-wide counter."""
        self.endpoint.counters[key] += 1

    def session_up(self, sid: int, info: SessionInfo | None) -> None:
        """The session is up (PPP's network phase, or the bare L2TP call connected): it no
        longer counts as negotiating, its setup time is recorded (the first time only) and
        the "session up" line is logged."""
        if sid in self._negotiating:
            self._negotiating.discard(sid)
            self.endpoint.core.session_up(self.entry)
            if info is not None:
                self.endpoint.stats.success(self.policy, trio.current_time() - info.created)
        oplog.session_up(self, sid, info)

    # -- waking the task ---------------------------------------------------------------------

    def kick(self) -> None:
        """Wake the task after a command changed the core (it then flushes). Coalesced: one
        pending wake-up covers every command until the task runs (sessions kick for every
        frame they send)."""
        self._dirty = True
        if self._parked:
            self._parked = False
            self._lot.unpark()

    def wake(self) -> None:
        """Wake the task: its inbox has datagrams."""
        if self._parked:
            self._parked = False
            self._lot.unpark()

    def fire(self, now: float) -> None:
        """The endpoint's `TimerHeap`: the core's timer is due (or was, before it moved)."""
        self.wake()

    def step(self, now: float) -> None:
        """The tunnel has input (the endpoint's receive loop, about to wait for more: every
        datagram that came in one go is taken in one turn). While the task is parked, do
        here what its next turn would do, as far as nothing in it must wait: feed the
        datagrams to the core, act on its events, send what that produced. A held session's
        frame, or a call refused at a cap, then costs no task switch. The tunnel's coming up
        or going down, a full send buffer or a socket of the tunnel's own is left to the
        task, woken to finish the turn."""
        if not self._parked or self._socket is not None:
            self.wake()
            return
        # Kicks from what runs below wake nothing: this turn flushes what they queued.
        self._parked = False
        try:
            done = self._step(now)
        except Exception as exc:  # the task raises it: it costs the tunnel, as in its turn
            self._failure = exc
            done = False
        if done:
            self._dirty = False
            self._parked = True
            self.endpoint.timers.arm(self, self.core.get_timer(), self.endpoint.nursery.start_soon)
        else:
            self._lot.unpark()

    def _step(self, now: float) -> bool:
        """`step`'s turn; False when the task must finish it."""
        core = self.core
        self._take_input(now)
        data_received = self.endpoint.handler.data_received
        while True:
            out = core.datagrams_to_send(now)
            if out and not self._send_now(out):
                return False
            event = core.next_event()
            if event is None:
                return True
            if type(event) is ev.DataReceived:
                data_received(self, event)
            elif type(event) in _TASK_EVENTS:
                self._held = event
                return False
            else:
                self._handle_now(event)

    def _take_input(self, now: float) -> None:
        """Feed the tunnel's inbox to its core and run the core's timer if it is due: the
        start of every turn, the task's or `step`'s."""
        entry = self.entry
        if entry.inbox:
            self.endpoint.core.feed(entry, now)
        core = self.core
        timer = core.get_timer()
        if timer is not None and timer <= now:
            core.handle_timer(now)

    def _send_now(self, out: list[bytes]) -> bool:
        """Send without waiting; False (the rest kept for the task) at a full buffer."""
        transport = self.endpoint.transport
        addr = self.entry.peer_addr
        for i, data in enumerate(out):
            try:
                if not transport.try_send(data, addr):
                    self._unsent = out[i:]
                    return False
            except OSError as exc:
                self._send_failed(exc)
        return True

    # -- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the core until the tunnel is closed; then tear down what was above it and
        hand the core to the endpoint core to linger (RFC 2661 5.7)."""
        oplog.enter_tunnel(self)
        try:
            await self._loop()
        except Exception:
            # A bug must cost one tunnel, never the daemon: tell the peer if the core still
            # can, then tear down as on any other path, and forget the core.
            self.endpoint.counters["tunnel_task_failed"] += 1
            self.endpoint.core.warn(
                "tunnel_task_failed",
                trio.current_time(),
                "Tnl %d: internal error; clearing the tunnel (please report this)",
                self.local_tunnel_id,
                exc=True,
            )
            with contextlib.suppress(Exception):
                now = trio.current_time()
                self.core.close(
                    now, StopCcnResult.GENERAL_ERROR, ErrorCode.NO_ERROR, "internal error"
                )
                for data in self.core.datagrams_to_send(now):
                    await self._sendto(data)
            self._crashed = True
        finally:
            if not self._torn_down:
                await self._teardown()

    async def _loop(self) -> None:
        core = self.core
        inbox = self.entry.inbox
        timers = self.endpoint.timers
        start_soon = self.endpoint.nursery.start_soon
        await self._flush()
        while self.close_event is None:
            if inbox or self._dirty:
                # Work already waiting: one plain checkpoint.
                await trio.lowlevel.checkpoint()
            else:
                # The core's timer is the endpoint heap's to watch: no cancel scope and no
                # trio deadline per wake-up (a held tunnel wakes for every echo its
                # sessions send). A deadline that moved later fires early and is re-armed.
                timers.arm(self, core.get_timer(), start_soon)
                self._parked = True
                await self._lot.park()
                self._parked = False
            # The flush below covers every command so far; a later one must kick again.
            self._dirty = False
            self._take_input(trio.current_time())
            await self._flush()
        await self._teardown()

    async def _flush(self) -> None:
        """Send what the core wants sent and act on its events (first what `step` left)."""
        core = self.core
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if self._unsent is not None:
            unsent, self._unsent = self._unsent, None
            for data in unsent:
                await self._sendto(data)
        if self._held is not None:
            held, self._held = self._held, None
            await self._handle(held)
        for data in core.datagrams_to_send(trio.current_time()):
            await self._sendto(data)
        while (event := core.next_event()) is not None:
            await self._handle(event)
            # handling may have queued more (e.g. an answer to an incoming call)
            for data in core.datagrams_to_send(trio.current_time()):
                await self._sendto(data)

    async def _sendto(self, data: bytes) -> None:
        sock = self._socket
        addr = self.entry.peer_addr
        try:
            if sock is None:
                # The shared transport sends without an await; only a full send buffer takes
                # the awaitable path (the tunnel loop checkpoints once per iteration anyway).
                transport = self.endpoint.transport
                if not transport.try_send(data, addr):
                    self.entry.counters["send_waits"] += 1
                    await transport.send(data, addr)
            else:
                await sock.sendto(data, addr)
        except OSError as exc:
            self._send_failed(exc)

    def _send_failed(self, exc: OSError) -> None:
        self.entry.counters["send_errors"] += 1
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOBUFS, errno.EAGAIN):
            self.endpoint.core.warn(
                "send_failed",
                trio.current_time(),
                "Tnl %d: send to %s failed: %s",
                self.local_tunnel_id,
                self.entry.peer_addr,
                exc,
            )

    async def _handle(self, event: object) -> None:
        if isinstance(event, ev.TunnelEstablished):
            self.established_at = trio.current_time()
            self.established.set()
            oplog.tunnel_up(self)
            await self._program_tunnel()
        else:
            self._handle_now(event)

    def _handle_now(self, event: object) -> None:
        """Act on a core event other than `TunnelEstablished` (none of them waits)."""
        handler = self.endpoint.handler
        if isinstance(event, ev.DataReceived):
            handler.data_received(self, event)
        elif isinstance(event, ev.CallRefused):
            self._refused_call(event.sid, event.limit, event.message)
        elif isinstance(event, ev.IncomingCall):
            self._incoming_call(event)
        elif isinstance(event, ev.CallAnswered):
            handler.call_answered(self, event)
        elif isinstance(event, ev.CallEstablished):
            info = self._sessions.get(event.sid)
            if info is None:
                info = self._add_session(event.sid, trio.current_time())
            if event.sid in self._setting_up:
                self._setting_up.discard(event.sid)
                self.endpoint.core.session_established(self.entry)
            if not handler.defers_established:
                info.established = trio.current_time()
                info.done.set()
                self.session_up(event.sid, info)
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
            handler.call_closed(self, event)
            closed_info = self._sessions.pop(event.sid, None)
            if closed_info is not None:
                self._log_closed(closed_info, event)
                setting_up = event.sid in self._setting_up
                self._setting_up.discard(event.sid)
                negotiating = event.sid in self._negotiating
                if negotiating:
                    self._negotiating.discard(event.sid)
                    self.endpoint.stats.failure(
                        self.policy,
                        failure_reason(
                            closed_info.extra.get("failure"), event.result, event.by_peer
                        ),
                    )
                self.endpoint.core.release_session(
                    self.entry, established=not setting_up, up=not negotiating
                )
                closed_info.closed = event
                closed_info.done.set()
        elif isinstance(event, ev.TunnelClosed):
            self.close_event = event
        else:
            self.entry.counters[type(event).__name__] += 1

    def _add_session(self, sid: int, now: float) -> SessionInfo:
        info = SessionInfo(sid, now)
        self._sessions[sid] = info
        self._setting_up.add(sid)
        self._negotiating.add(sid)
        self.endpoint.stats.attempt(self.policy)
        self.endpoint.core.admit_session(self.entry, limit=False)
        return info

    def _incoming_call(self, event: ev.IncomingCall) -> None:
        now = trio.current_time()
        stats = self.endpoint.stats
        stats.attempt(self.policy)
        if self.endpoint.draining:
            self.endpoint.counters["calls_refused_draining"] += 1
            stats.failure(self.policy, "draining")
            oplog.refused(self, event.sid, "session", "draining")
            self.core.hangup(
                event.sid, now, CdnResult.NO_FACILITIES_TEMPORARY, ErrorCode.NO_ERROR, "draining"
            )
            return
        ep_core = self.endpoint.core
        refusal = ep_core.try_admit(self.entry)
        if refusal is not None:
            # Admitted by `_admission` a moment ago, refused now (an earlier call in the
            # same turn took the last place): the session exists, so it is cleared.
            why = refusal_text(refusal)
            self._refused_call(event.sid, refusal, why, attempted=True)
            self.core.hangup(
                event.sid, now, CdnResult.NO_FACILITIES_TEMPORARY, ErrorCode.NO_ERROR, why
            )
            return
        self._sessions[event.sid] = SessionInfo(event.sid, now)
        self._setting_up.add(event.sid)
        self._negotiating.add(event.sid)
        # A LAC answering an outgoing call connects at once, in the core (OCRP then OCCN).
        self.core.answer_call(
            event.sid, now, None if self.endpoint.lns else self.endpoint.connect_info()
        )

    def _admission(self) -> tuple[str, str] | None:
        """`Tunnel.admission`: the daemon's caps, asked by the core before a call request
        creates a session; a refusal is counted here and answered by the core at once."""
        if self.endpoint.draining:
            return None  # `_incoming_call` refuses it, and says why
        limit = self.endpoint.core.counted_refusal(self.entry)
        return None if limit is None else (limit, refusal_text(limit))

    def _refused_call(self, sid: int, limit: str, why: str, *, attempted: bool = False) -> None:
        """A call refused at a cap (CDN result 4: temporary, the LAC may try another LNS):
        counted against the tunnel's policy, and one rate-limited line with the peer and ids."""
        stats = self.endpoint.stats
        if not attempted:
            stats.attempt(self.policy)
        stats.failure(self.policy, limit)
        oplog.refused(self, sid, "session", why, limit=limit)

    def _log_closed(self, info: SessionInfo, event: ev.CallClosed) -> None:
        emit = functools.partial(
            oplog.session_down,
            self,
            event.sid,
            info,
            now=trio.current_time(),
            result=event.result,
            error=event.error,
            message=event.message,
            by_peer=event.by_peer,
        )
        # With kernel counters, the session task logs the line once it has read the byte
        # counts, right before it removes the kernel session.
        handler = self.endpoint.handler
        rec = (
            handler.records.get((self.local_tunnel_id, event.sid))
            if isinstance(handler, DataPlaneSessions)
            else None
        )
        if rec is not None and self.endpoint.dataplane.kernel_counters:
            rec.log_down = emit
        else:
            emit()

    def _log_tunnel_down(self) -> None:
        closed = self.close_event
        oplog.tunnel_down(
            self,
            duration=trio.current_time() - (self.established_at or self.created),
            established=self.established_at is not None,
            result=closed.result if closed is not None else 0,
            error=closed.error if closed is not None else 0,
            message=closed.message if closed is not None else "daemon stopped",
            by_peer=closed.by_peer if closed is not None else False,
        )

    async def _program_tunnel(self) -> None:
        dp = self.endpoint.dataplane
        spec = TunnelSpec(
            local_tunnel_id=self.local_tunnel_id,
            peer_tunnel_id=self.core.peer_tunnel_id,
            local_addr=self.endpoint.local_addr,
            peer_addr=self.entry.peer_addr,
        )
        try:
            handle = await dp.open_tunnel(spec)
        except DataPlaneError as exc:
            self.endpoint.counters["dataplane_errors_open_tunnel"] += 1
            log.error("Tnl %d: data plane refused the tunnel: %s", self.local_tunnel_id, exc)
            self.core.close(
                trio.current_time(),
                StopCcnResult.GENERAL_ERROR,
                ErrorCode.INSUFFICIENT_RESOURCES,
                str(exc),
            )
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
                self.endpoint.dispatch(data, addr[:2])

    async def _teardown(self) -> None:
        """Release everything above the core, whatever path ended the tunnel."""
        self._torn_down = True
        endpoint = self.endpoint
        endpoint.timers.disarm(self)
        endpoint.tunnels.pop(self.local_tunnel_id, None)
        self.core.detach()
        if self._reader_scope is not None:
            self._reader_scope.cancel()
        handler = endpoint.handler
        with trio.CancelScope(shield=True):
            for sid, info in list(self._sessions.items()):
                info.closed = ev.CallClosed(
                    sid=sid,
                    result=CdnResult.GENERAL_ERROR,
                    error=ErrorCode.NO_ERROR,
                    message="tunnel closed",
                    q931=None,
                    by_peer=False,
                )
                info.done.set()
                handler.call_closed(self, info.closed)
                self._log_closed(info, info.closed)
                if sid in self._negotiating:
                    endpoint.stats.failure(self.policy, "tunnel-closed")
            self._sessions.clear()
            self._setting_up.clear()
            self._negotiating.clear()
            self._log_tunnel_down()
            if self._kernel_tunnel:
                try:
                    await endpoint.dataplane.close_tunnel(self.local_tunnel_id)
                except DataPlaneError as exc:
                    endpoint.counters["dataplane_errors_close_tunnel"] += 1
                    log.error(
                        "Tnl %d: could not remove the kernel tunnel: %s", self.local_tunnel_id, exc
                    )
            # Only now, with the kernel tunnel gone, may its id be taken again: the core lingers
            # in the endpoint core (RFC 2661 5.7) or, done or not to be trusted, is forgotten.
            if self._crashed:
                endpoint.core.discard(self.entry)
            else:
                endpoint.core.tunnel_closed(self.entry, trio.current_time())
            endpoint.poke()
        self._socket = None  # gone with the kernel tunnel; lingering acks use the shared one
        self.closed.set()

    @property
    def state(self) -> TunnelState:
        """The tunnel core's state (IOS name)."""
        return self.core.state

    def session_states(self) -> Iterator[SessionState]:
        """The state of every session of the tunnel (``kl2tpctl show summary``)."""
        return (sess.state for sess in self.core.sessions.values())

    def session_snapshots(self) -> Iterator[dict[str, Any]]:
        """Every session of the tunnel as `kl2tpctl show sessions` prints it (without the
        kernel counters, which the data plane adds)."""
        now = trio.current_time()
        for sid, sess in list(self.core.sessions.items()):
            info = self.sessions.get(sid)
            row: dict[str, Any] = {
                "tunnel_id": self.local_tunnel_id,
                "local_id": sid,
                "peer_id": sess.peer_sid,
                "peer_tunnel_id": self.core.peer_tunnel_id,
                "state": sess.state,
                "uptime": round(now - info.created, 3) if info else 0.0,
            }
            if info is not None:
                row.update(info.extra)
            yield row

    def snapshot(self) -> dict[str, Any]:
        """The tunnel as `kl2tpctl show tunnels` prints it."""
        now = trio.current_time()
        addr = self.entry.peer_addr
        return {
            "local_id": self.local_tunnel_id,
            "peer_id": self.core.peer_tunnel_id,
            "peer_address": f"{addr[0]}:{addr[1]}",
            "peer_hostname": self.core.peer_hostname,
            "policy": self.entry.policy,
            "state": self.core.state,
            "sessions": len(self.core.sessions),
            "uptime": round(now - self.created, 3),
            "counters": dict(self.entry.counters),
        }


# --- the endpoint -----------------------------------------------------------------------------


class Endpoint:
    """The transport, the endpoint core and the tunnel tasks of one daemon."""

    def __init__(
        self,
        *,
        role: str,
        tunnel_config: TunnelConfig,
        dataplane: DataPlane,
        listen: Address,
        handler: SessionHandler | None = None,
        allowed_peers: Iterable[Network] = (),
        max_tunnels: int = 0,
        max_sessions: int = 0,
        queue_depth: int = 256,
        limits: Limits = DEFAULT_LIMITS,
        rng: random.Random | None = None,
        connect_info: Callable[[], ConnectInfo] | None = None,
        accept_incoming: bool = False,
        transport: DatagramTransport | None = None,
        policies: PolicyTable | None = None,
        tunnel_id_class: tuple[int, int] = (0, 1),
    ) -> None:
        self.lns = role == "lns"
        self.dataplane = dataplane
        self.listen = listen
        self.handler: SessionHandler = (
            handler if handler is not None else DataPlaneSessions(dataplane, lns=self.lns)
        )
        """What runs above the sessions (``DataPlaneSessions``, the bare one, by default)."""
        self.rng = rng or random.SystemRandom()
        self.core = EndpointCore(
            EndpointConfig(
                lns=self.lns,
                accept_incoming=accept_incoming,
                allowed_peers=tuple(allowed_peers),
                max_tunnels=max_tunnels,
                max_sessions=max_sessions,
                queue_depth=queue_depth,
                limits=limits,
                tunnel_id_class=tunnel_id_class,
            ),
            tunnel_config,
            rng=self.rng,
            policies=policies,
        )
        """The sans-IO endpoint: tunnel table, routing, policy, drop counters."""
        self._connect_info = connect_info
        self.draining = False
        """``kl2tpctl drain``: refuse new sessions (CDN) and tunnels; keep the existing."""
        self.tunnels: dict[int, TunnelRunner] = {}
        """Live tunnels (their tasks) by our tunnel id."""
        self.stats = SessionStats()
        """Call setups and the tunnels and sessions by state, by policy (O(1) to read)."""
        self.transport: DatagramTransport = transport  # type: ignore[assignment]
        """Where datagrams come from and go to; a UDP socket bound by ``serve`` unless given."""
        self.sock: trio.socket.SocketType | None = None
        """The UDP transport's trio socket (None with an injected transport)."""
        self.local_addr: Address = listen
        self.nursery: trio.Nursery = None  # type: ignore[assignment]
        self.timers = TimerHeap()
        """The tunnel cores' timers (Hello, retransmission, ack delay): one task for all
        (on time: a few dozen tunnels need no coalescing, and retransmission is exact)."""
        self._poked = trio.Event()
        self._armed: float | None = None

    @property
    def tunnel_config(self) -> TunnelConfig:
        """The values for every tunnel (those a peer opens; ``dial`` may pass others)."""
        return self.core.tunnel_config

    @tunnel_config.setter
    def tunnel_config(self, value: TunnelConfig) -> None:
        self.core.tunnel_config = value

    @property
    def policies(self) -> PolicyTable:
        """The per-peer policies new tunnels are matched against (``[[peer]]``; a reload
        replaces the core's)."""
        return self.core.policies

    @property
    def counters(self) -> Counter[str]:
        """Endpoint-wide counters (``rx_datagrams``, ``data_rx``, ``drop_<reason>``, ...)."""
        return self.core.counters

    def counter_totals(self) -> dict[str, int]:
        """``counters`` plus what the tunnel cores count that operators want endpoint-wide
        (``data_early``, ...), for ``kl2tpctl show summary``."""
        return self.core.totals()

    @property
    def lingering(self) -> Mapping[int, TunnelEntry]:
        """Closed tunnels whose cores still re-ack a retransmitted StopCCN."""
        return self.core.lingering

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind (unless a transport was given), then receive until cancelled. Reports the
        bound address when ready."""
        udp: UdpTransport | None = None
        if self.transport is None:
            udp = await UdpTransport.bind(self.listen)
            self.transport = udp
            self.sock = udp.sock
        try:
            self.local_addr = self.transport.local_addr
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._timer_loop)
                task_status.started(self.local_addr)
                await self._receive_loop()
        finally:
            if udp is not None:
                udp.close()

    async def _receive_loop(self) -> None:
        transport = self.transport
        receive = self.core.receive_datagram
        udp = transport if isinstance(transport, UdpTransport) else None
        run_ready = self._run_ready
        while True:
            batch = await transport.receive_batch(run_ready)
            now = trio.current_time()
            for data, addr in batch:
                receive(data, addr if len(addr) == 2 else addr[:2], now)
            if udp is not None and udp.errors:
                self.core.counters["drop_socket_error"] += udp.errors
                udp.errors = 0
            self._after_input()

    def dispatch(self, data: bytes, addr: Address) -> None:
        """Route one datagram that arrived elsewhere (a kernel tunnel's own socket)."""
        self.core.receive_datagram(data, addr, trio.current_time())
        self._after_input()
        self._run_ready()

    def _after_input(self) -> None:
        """Start tasks for new tunnels, serve the endpoint's own (the tunnels given input
        run in `_run_ready`)."""
        core = self.core
        while (event := core.next_event()) is not None:
            if isinstance(event, TunnelOpened):
                entry = core.tunnels.get(event.tunnel_id)
                if entry is not None:
                    self._start(entry)
        if core.has_output or core.get_timer() != self._armed:
            self.poke()

    def _run_ready(self) -> None:
        """The tunnels given input since the last call take it (`TunnelRunner.step`): the
        receive loop calls this when it is about to yield or wait, as their tasks would run
        then, so a burst still reaches each tunnel in one turn."""
        ready = self.core.ready()
        if ready:
            now = trio.current_time()
            tunnels = self.tunnels
            for tid in ready:
                runner = tunnels.get(tid)
                if runner is not None:
                    runner.step(now)

    def poke(self) -> None:
        """Wake the endpoint's own task (lingering tunnels' acks and timers)."""
        self._poked.set()

    async def _timer_loop(self) -> None:
        core = self.core
        transport = self.transport
        while True:
            timer = self._armed = core.get_timer()
            if not self._poked.is_set():
                with trio.move_on_at(math.inf if timer is None else timer):
                    await self._poked.wait()
            self._poked = trio.Event()
            now = trio.current_time()
            timer = core.get_timer()
            if timer is not None and timer <= now:
                core.handle_timer(now)
            for data, addr in core.datagrams_to_send(now):
                try:
                    if not transport.try_send(data, addr):
                        await transport.send(data, addr)
                except OSError as exc:
                    self.core.counters["send_errors"] += 1
                    log.debug("send to %s failed: %s", addr, exc)
            await trio.lowlevel.checkpoint()

    def _start(self, entry: TunnelEntry) -> TunnelRunner:
        runner = TunnelRunner(self, entry)
        self.tunnels[entry.tunnel_id] = runner
        self.nursery.start_soon(runner.run)
        return runner

    def drop(self, reason: str) -> None:
        """Count a dropped datagram by reason."""
        self.core.counters[f"drop_{reason}"] += 1

    # -- LAC side --------------------------------------------------------------------------

    async def dial(
        self,
        peer: Address,
        tunnel_config: TunnelConfig | None = None,
        *,
        setup_timeout: float | None = None,
    ) -> TunnelRunner:
        """Open a tunnel to an LNS and wait until it is established (or raise)."""
        try:
            entry = self.core.connect(peer, trio.current_time(), tunnel_config)
        except TunnelIdsExhausted as exc:
            raise TunnelSetupError(f"tunnel to {peer[0]}:{peer[1]} failed: {exc}") from exc
        runner = self._start(entry)
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
            runner.close(StopCcnResult.GENERAL_ERROR, ErrorCode.NO_ERROR, "setup timed out")
            raise TunnelSetupError(
                f"tunnel to {peer[0]}:{peer[1]} failed: "
                + (_describe_close(reason) if reason else "timed out")
            )
        return runner

    @property
    def defers_connect(self) -> bool:
        """Whether calls this LAC places should use ``defer_connect`` (the handler says)."""
        return self.handler.defers_connect

    def connect_info(self) -> ConnectInfo:
        """ICCN/OCCN values the LAC reports when it connects a call."""
        if self._connect_info is None:
            return ConnectInfo()
        return self._connect_info()

    # -- views -------------------------------------------------------------------------------

    def session_count(self) -> int:
        """Sessions across all tunnels (O(1))."""
        return self.core.session_count

    async def shutdown(self, grace: float) -> None:
        """CDN every session, StopCCN every tunnel, wait for them up to ``grace`` seconds."""
        for runner in list(self.tunnels.values()):
            for sid in list(runner.core.sessions):
                runner.hangup(
                    sid, CdnResult.ADMINISTRATIVE, ErrorCode.NO_ERROR, "daemon shutting down"
                )
            runner.close(StopCcnResult.SHUTTING_DOWN, ErrorCode.NO_ERROR, "daemon shutting down")
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
