"""``[l2tp] workers = N``: one LNS on every core.

The supervisor (the process systemd starts) binds N UDP sockets to the listening address in
one SO_REUSEPORT group, attaches a classic BPF program to the group that picks the socket of
the worker owning each datagram's tunnel id, and starts N workers: ``kl2tp-lns`` again, each
handed its socket and one end of a socketpair (inherited file descriptors). A worker is a
whole single-process LNS (endpoint, sessions, AAA, its own kernel data plane and journal)
that allocates tunnel ids only from its own class (``tid % N == index``), so every later
datagram of its tunnels comes to it: no datagram crosses between processes. SCCRQs (tunnel
id 0) go by a hash of the source address and port, so a LAC's retransmissions reach the one
worker that answered the first.

The supervisor holds every socket for the daemon's life: a worker that dies leaves its
socket in the group at the same index (the kernel compacts the group when a socket closes,
which would re-deal the indices), its datagrams wait in that socket's buffer, and the worker
restarted in its place inherits the same socket. The supervisor owns the control socket and
the metrics endpoint and answers both by asking every worker over its socketpair and merging
(:class:`Merger`), and it owns the address pools: workers take their addresses from
:class:`kl2tp.aaa.pool.AddressPool` blocks the supervisor lends them
(:class:`kl2tp.aaa.pool.BlockLeases`, :class:`WorkerBlocks`) so no address is handed out
twice and one worker may use the whole pool, and a static address (users file, RADIUS
Framed-IP-Address) is claimed from the supervisor's
:class:`kl2tp.aaa.addresses.StaticClaims` before a worker's session takes it
(:class:`WorkerStatics`), so two workers never give one to two sessions; a dead worker's
claims are dropped with it.

The socketpair speaks JSON lines both ways (:class:`Channel`): ``{"id": n, "req": {...}}``
and ``{"id": n, "ok": true, "result": ...}``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import ipaddress
import itertools
import json
import logging
import math
import os
import signal
import socket as stdlib_socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from kl2tp.aaa.addresses import AddressBook, StaticClaims
from kl2tp.aaa.pool import AddressPool, BlockLeases
from kl2tp.daemon.control import ControlError
from kl2tp.l2tp.endpoint import Limits

log = logging.getLogger("kl2tp.daemon")

Address = tuple[str, int]
Request = dict[str, Any]
Handler = Callable[[Request], Awaitable[Any]]

SO_ATTACH_REUSEPORT_CBPF = 51
"""linux/asm-generic/socket.h (not in Python's socket module)."""
RECEIVE_BUFFER = 4 << 20
"""SO_RCVBUF of each worker's socket (the kernel caps it at net.core.rmem_max)."""


# --- the steering program ---------------------------------------------------------------------

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
_LD, _LDX, _ST, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
_W, _H, _B = 0x00, 0x08, 0x10
_IMM, _ABS, _IND, _MEM, _MSH = 0x00, 0x20, 0x40, 0x60, 0xA0
_ADD, _MUL, _RSH, _AND, _XOR, _MOD = 0x00, 0x20, 0x70, 0x50, 0xA0, 0x90
_K, _X = 0x00, 0x08
_JA, _JEQ, _JSET = 0x00, 0x10, 0x40
_RET_A = 0x10
_TAX = 0x00
_NET = 0x100000  # SKF_NET_OFF: negative offsets from here load from the IP header
_GOLDEN = 0x9E3779B1  # Fibonacci hashing: spreads nearby ports and addresses

Insn = tuple[int, int, int, int]

SCCRQ_AVPS = 16
"""AVPs of an SCCRQ the program looks through for the Assigned Tunnel ID (classic BPF has no
loops: the walk is unrolled; RFC 2661 SCCRQs carry it among the first few)."""


def _neg(offset: int) -> int:
    """``SKF_NET_OFF + offset`` as the u32 a sock_filter's k holds."""
    return (offset - _NET) & 0xFFFFFFFF


def steering_program(workers: int) -> list[Insn]:
    """The reuseport program: a datagram's socket index (= worker) from its UDP payload.

    The program sees the L2TP header at offset 0. Tunnel id (at 2, or 4 when the L bit 0x4000
    is set) non-zero: ``tid % workers``, the worker whose class holds it. Tunnel id 0 (an
    SCCRQ): :func:`flow_hash` of the SCCRQ's Assigned Tunnel ID (the peer's id for the new
    tunnel, found by walking the first AVPs) and the source address and UDP port (from the
    IP header: IPv4, or IPv6 without extension headers). A retransmitted SCCRQ carries the
    same id, so it reaches the worker that answered the first; a LAC's tunnels, all from one
    address and port, still spread over the workers. (Not the kernel's rxhash: without RSS
    or RPS, on loopback and many virtual NICs, it is 0.) A datagram too short for a load
    the program makes goes to worker 0.
    """
    if not 1 <= workers <= 65535:
        raise ValueError(f"workers must be 1..65535, got {workers}")
    labels: dict[str, int] = {}
    code: list[tuple[int, str | int, str | int, str | int]] = []

    def at(name: str) -> None:
        labels[name] = len(code)

    def op(c: int, k: str | int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        code.append((c, jt, jf, k))

    op(_LD | _H | _ABS, 0)  # A = flags and version
    op(_JMP | _JSET | _K, 0x4000, jt=0, jf="short")
    op(_LD | _H | _ABS, 4)  # L bit: the Length field comes first
    op(_JMP | _JA, "tid")
    at("short")
    op(_LD | _H | _ABS, 2)
    at("tid")
    op(_JMP | _JEQ | _K, 0, jt="flow", jf=0)
    op(_ALU | _MOD | _K, workers)
    op(_RET | _RET_A)
    at("flow")
    op(_LD | _IMM, 0)
    op(_ST, 0)  # M[0] = the peer's tunnel id, 0 until found
    op(_LDX | _IMM, 12)  # X = the first AVP (a control message's header is 12 bytes)
    for step in range(SCCRQ_AVPS):
        op(_LD | _H | _IND, 2)  # vendor id
        op(_JMP | _JEQ | _K, 0, jt=0, jf=f"next{step}")
        op(_LD | _H | _IND, 4)  # attribute type
        op(_JMP | _JEQ | _K, 9, jt="found", jf=0)  # Assigned Tunnel ID
        at(f"next{step}")
        op(_LD | _H | _IND, 0)
        op(_ALU | _AND | _K, 0x3FF)  # the AVP's length
        op(_JMP | _JEQ | _K, 0, jt="source", jf=0)  # malformed: no progress
        op(_ALU | _ADD | _X)
        op(_MISC | _TAX)
    op(_JMP | _JA, "source")
    at("found")
    op(_LD | _H | _IND, 6)
    op(_ST, 0)
    at("source")
    op(_LD | _B | _ABS, _neg(0))
    op(_ALU | _RSH | _K, 4)
    op(_JMP | _JEQ | _K, 6, jt="v6", jf=0)
    op(_LDX | _B | _MSH, _neg(0))  # X = IPv4 header length
    op(_LD | _H | _IND, _neg(0))  # A = UDP source port
    op(_MISC | _TAX)
    op(_LD | _W | _ABS, _neg(12))  # A = source address
    op(_JMP | _JA, "hash")
    at("v6")
    op(_LD | _H | _ABS, _neg(40))
    op(_MISC | _TAX)
    op(_LD | _W | _ABS, _neg(20))  # the source address's last word
    at("hash")
    op(_ALU | _XOR | _X)
    op(_LDX | _MEM, 0)
    op(_ALU | _XOR | _X)
    op(_ALU | _MUL | _K, _GOLDEN)
    op(_ALU | _RSH | _K, 16)
    op(_ALU | _MOD | _K, workers)
    op(_RET | _RET_A)
    out: list[Insn] = []
    for pc, (c, jt, jf, k) in enumerate(code):
        k_n = labels[k] - pc - 1 if isinstance(k, str) else k  # ja: k is the jump
        jt_n = labels[jt] - pc - 1 if isinstance(jt, str) else jt
        jf_n = labels[jf] - pc - 1 if isinstance(jf, str) else jf
        out.append((c, jt_n, jf_n, k_n))
    return out


def flow_hash(peer_tunnel_id: int, source: Address, workers: int) -> int:
    """The worker an SCCRQ goes to (what :func:`steering_program` computes for tunnel 0):
    for tests, and for an operator wondering where a LAC's tunnel went."""
    addr = ipaddress.ip_address(source[0])
    word = int(addr) & 0xFFFFFFFF
    value = (word ^ source[1] ^ peer_tunnel_id) * _GOLDEN & 0xFFFFFFFF
    return (value >> 16) % workers


def attach_steering(sock: stdlib_socket.socket, workers: int) -> None:
    """Attach :func:`steering_program` to ``sock``'s reuseport group.

    Raises:
        OSError: the kernel refused the program.
    """
    program = steering_program(workers)
    filters = (ctypes.c_ubyte * (8 * len(program)))()
    ctypes.memmove(
        filters, b"".join(struct.pack("=HBBI", *insn) for insn in program), 8 * len(program)
    )
    fprog = struct.pack("@HP", len(program), ctypes.addressof(filters))
    sock.setsockopt(stdlib_socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def open_listen_sockets(listen: Address, workers: int) -> list[stdlib_socket.socket]:
    """``workers`` UDP sockets bound to ``listen`` in one reuseport group, in worker order
    (the group's index is the order of binding), steered by :func:`attach_steering`.

    A probe bound without SO_REUSEPORT first makes a second daemon on the same address fail
    with EADDRINUSE (reuseport alone would let it join our group and take half the tunnels).

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    family = stdlib_socket.AF_INET6 if ":" in listen[0] else stdlib_socket.AF_INET
    if listen[1]:
        with stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM) as probe:
            probe.bind(listen)
    socks: list[stdlib_socket.socket] = []
    try:
        for _ in range(workers):
            sock = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
            # The first bind of an ephemeral port (port 0) picks it; the others take it.
            sock.bind(listen if not socks[1:] else socks[0].getsockname()[:2])
            # As the single-process socket: set after binding, SO_REUSEADDR lets the kernel
            # data plane's per-tunnel connected sockets share the port.
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        attach_steering(socks[0], workers)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


# --- the socketpair ---------------------------------------------------------------------------


class Channel:
    """Requests both ways over one stream socket, JSON lines, answered concurrently."""

    def __init__(self, stream: trio.SocketStream, handler: Handler) -> None:
        self.stream = stream
        self.handler = handler
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._send_lock = trio.Lock()
        self.closed = trio.Event()

    @classmethod
    def from_fd(cls, fd: int, handler: Handler) -> Channel:
        sock = stdlib_socket.socket(fileno=fd)
        return cls(trio.SocketStream(trio.socket.from_stdlib_socket(sock)), handler)

    async def call(self, req: Request) -> Any:
        """Send ``req`` and wait for its answer.

        Raises:
            ControlError: the other side answered with an error, or the channel closed.
        """
        if self.closed.is_set():
            raise ControlError("worker not running")
        n = next(self._ids)
        done = trio.Event()
        box: list[Any] = []
        self._waiting[n] = (done, box)
        try:
            await self._send({"id": n, "req": req})
            await done.wait()
        finally:
            self._waiting.pop(n, None)
        if not box:
            raise ControlError("worker went away")
        answer = box[0]
        if not answer.get("ok"):
            raise ControlError(str(answer.get("error", "unknown error")))
        return answer.get("result")

    async def _send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ControlError("worker went away") from exc

    async def run(self) -> None:
        """Read until the other side closes; answer its requests, wake our callers."""
        buf = bytearray()
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        chunk = await self.stream.receive_some(1 << 16)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        chunk = b""
                    if not chunk:
                        break
                    start = len(buf)
                    buf += chunk
                    while (end := buf.find(b"\n", start)) >= 0:
                        msg = json.loads(bytes(buf[:end]))
                        del buf[: end + 1]
                        start = 0
                        if "req" in msg:
                            nursery.start_soon(self._answer, msg)
                        else:
                            waiting = self._waiting.get(msg.get("id"))
                            if waiting is not None:
                                waiting[1].append(msg)
                                waiting[0].set()
                nursery.cancel_scope.cancel()
        finally:
            self.closed.set()
            for done, _box in self._waiting.values():
                done.set()

    async def _answer(self, msg: dict[str, Any]) -> None:
        try:
            answer = {"id": msg["id"], "ok": True, "result": await self.handler(msg["req"])}
        except ControlError as exc:
            answer = {"id": msg["id"], "ok": False, "error": str(exc)}
        except Exception as exc:  # a bug must not take the daemon down with it
            log.exception("worker request failed")
            answer = {"id": msg["id"], "ok": False, "error": f"internal error: {exc}"}
        with contextlib.suppress(ControlError):
            await self._send(answer)

    async def aclose(self) -> None:
        await self.stream.aclose()


class WorkerStatics:
    """A worker's :class:`kl2tp.aaa.addresses.SharedStatics`: claims go to the supervisor
    and are awaited; releases are queued and sent in order by :meth:`run`."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._send, self._releases = trio.open_memory_channel[tuple[str, int]](math.inf)

    async def claim(self, address: ipaddress.IPv4Address, token: int) -> bool:
        """The supervisor's answer; False too when it cannot be asked (we are going away)."""
        req = {"cmd": "claim-static", "address": str(address), "token": token}
        try:
            return bool(await self.channel.call(req))
        except ControlError:
            return False

    def release(self, address: ipaddress.IPv4Address, token: int) -> None:
        self._send.send_nowait((str(address), token))

    async def run(self) -> None:
        async for address, token in self._releases:
            with contextlib.suppress(ControlError):
                req = {"cmd": "release-static", "address": address, "token": token}
                await self.channel.call(req)


class WorkerBlocks:
    """A worker's :class:`kl2tp.aaa.pool.Lender`: block leases and returns go to the
    supervisor in order (:meth:`run`); a lent block goes to the pool of that name now in
    ``book`` (a reload may have replaced the one that asked)."""

    def __init__(self, channel: Channel, book: AddressBook[Any]) -> None:
        self.channel = channel
        self.book = book
        # A pool's name: lease it a block; a number: give that block back.
        self._send, self._queue = trio.open_memory_channel[str | int](math.inf)

    def attach(self) -> None:
        for pool in self.book.pools.values():
            if pool.leasing:
                pool.lender = self

    def _name(self, pool: AddressPool) -> str | None:
        for name, candidate in self.book.pools.items():
            if candidate is pool:
                return name
        return None

    def want(self, pool: AddressPool) -> None:
        name = self._name(pool)
        if name is not None:
            self._send.send_nowait(name)

    def give_back(self, block: int) -> None:
        self._send.send_nowait(block)

    async def lease(self, name: str) -> None:
        """Lease pool ``name`` one block and hand it over (awaited: a worker's first block
        of each pool, before it says it is ready)."""
        pool = self.book.pools.get(name)
        if pool is None:
            return
        try:
            block = await self.channel.call(
                {"cmd": "lease-block", "first": int(pool.range.first), "last": int(pool.range.last)}
            )
        except ControlError:
            block = None
        pool = self.book.pools.get(name)
        if block is None:
            if pool is not None:
                pool.no_block()
            return
        if pool is None or not pool.add_block(int(block)):
            self.give_back(int(block))

    async def run(self) -> None:
        async for item in self._queue:
            if isinstance(item, str):
                await self.lease(item)
                continue
            with contextlib.suppress(ControlError):
                await self.channel.call({"cmd": "return-block", "block": item})


# --- merging the workers' answers -------------------------------------------------------------

ROUTED = {("show", "tunnel"), ("show", "session"), ("clear", "tunnel"), ("clear", "session")}
"""Requests naming a tunnel: only its owner (``tid % N``) is asked."""
FIRST = {
    ("drain", "on"),
    ("drain", "off"),
    ("debug", "categories"),
    ("debug", "condition"),
    ("debug", "show"),
}
"""Requests every worker applies and answers alike: the first answer is the answer."""
LISTS = {("show", "tunnels"), ("show", "sessions")}
"""Requests whose answers are lists: concatenated in worker order."""
CLEARS = {("clear", "user"), ("clear", "address"), ("clear", "peer"), ("clear", "all")}
"""Clears that may hit several workers: merged, an error only when every worker erred."""
TAKE_FIRST_KEYS = frozenset({"role", "dataplane", "draining"})
"""Summary fields that are the same in every worker (not summed)."""


def merge_values(values: Sequence[Any]) -> Any:
    """Sum numbers, merge dicts key by key, concatenate lists, keep the first of anything
    else (strings, booleans: what every worker says alike)."""
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):
        keys: dict[str, None] = {}
        for v in values:
            if isinstance(v, dict):
                keys.update(dict.fromkeys(v))
        out: dict[str, Any] = {}
        for key in keys:
            present = [v[key] for v in values if isinstance(v, dict) and key in v]
            out[key] = present[0] if key in TAKE_FIRST_KEYS else merge_values(present)
        return out
    if isinstance(first, list):
        return [item for v in values if isinstance(v, list) for item in v]
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(numbers)


SAME_IN_EVERY_WORKER = frozenset({"kl2tp_info", "kl2tp_draining"})
"""Metric families every worker reports alike (merged by max, not summed)."""


def merge_metrics(texts: Sequence[str]) -> str:
    """Prometheus text of N workers as one: every sample summed by name and labels (kl2tp's
    families are counts, levels of counts, or histograms: sums of sums), except
    :data:`SAME_IN_EVERY_WORKER`."""
    order: list[str] = []
    values: dict[str, float] = {}
    meta: dict[str, list[str]] = {}
    family = ""
    for text in texts:
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3:
                    family = parts[2]
                    lines = meta.setdefault(family, [])
                    if line not in lines:
                        lines.append(line)
                    if family not in order:
                        order.append(family)
                continue
            key, _, value = line.rpartition(" ")
            if key not in values:
                values[key] = 0.0
                meta.setdefault(family, [])
                meta[family].append("\0" + key)
            if family in SAME_IN_EVERY_WORKER:
                values[key] = max(values[key], float(value))
            else:
                values[key] += float(value)
    out: list[str] = []
    for name in order:
        for entry in meta[name]:
            if entry.startswith("\0"):
                sample = entry[1:]
                total = values[sample]
                out.append(f"{sample} {int(total) if total.is_integer() else total!r}")
            else:
                out.append(entry)
    return "\n".join(out) + "\n"


# --- the supervisor ---------------------------------------------------------------------------


class WorkerFailed(Exception):
    """A worker exited before it was ever ready (a config it cannot load, a data plane it
    cannot open): the daemon cannot start; restarting it would only loop."""


RESTART_INITIAL = 0.5
"""Seconds before restarting a worker that died; doubled while it keeps dying."""
RESTART_CAP = 30.0
"""The longest wait before a restart."""
STABLE_AFTER = 60.0
"""A worker that ran this long before dying is restarted after RESTART_INITIAL again."""


@attrs.define(eq=False)
class Worker:
    """One worker process slot: its socket (kept for the daemon's life), its current process
    and channel, restart counts."""

    index: int
    sock: stdlib_socket.socket
    process: trio.Process | None = None
    channel: Channel | None = None
    ready: trio.Event = attrs.field(factory=trio.Event)
    restarts: int = 0
    started_at: float = 0.0

    def row(self) -> dict[str, Any]:
        proc = self.process
        return {
            "index": self.index,
            "pid": proc.pid if proc is not None and proc.returncode is None else None,
            "restarts": self.restarts,
            "up": self.ready.is_set(),
        }


class Supervisor:
    """Starts the workers, keeps them running, fans requests out and merges the answers."""

    def __init__(
        self,
        listen: Address,
        count: int,
        command: Callable[[int, int, int, int], list[str]],
        *,
        handler: Handler | None = None,
        restart_initial: float = RESTART_INITIAL,
    ) -> None:
        """``command(index, count, udp_fd, channel_fd)``: the worker's argv."""
        self.count = count
        self.socks = open_listen_sockets(listen, count)
        self.local_addr: Address = self.socks[0].getsockname()[:2]
        self.workers = [Worker(k, sock) for k, sock in enumerate(self.socks)]
        self._command = command
        self._handler = handler
        self._restart_initial = restart_initial
        self.stopping = False
        self.reloads = 0
        self.statics = StaticClaims()
        """The static addresses every worker's sessions hold."""
        self.blocks = BlockLeases()
        """The pools' address blocks lent to the workers."""

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    # -- processes ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every worker, restarting those that die, until cancelled (or :meth:`stop`).
        Reports started once every worker said it is ready."""
        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                nursery.start_soon(self._keep, worker)
            for worker in self.workers:
                await worker.ready.wait()
            task_status.started()

    async def _keep(self, worker: Worker) -> None:
        delay = self._restart_initial
        while not self.stopping:
            ours, theirs = stdlib_socket.socketpair(
                stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM
            )
            udp_fd = worker.sock.fileno()
            argv = self._command(worker.index, self.count, udp_fd, theirs.fileno())
            worker.ready = trio.Event() if worker.ready.is_set() else worker.ready
            try:
                proc = await trio.lowlevel.open_process(argv, pass_fds=(udp_fd, theirs.fileno()))
            finally:
                theirs.close()
            worker.process = proc
            worker.started_at = time.monotonic()
            channel = Channel(
                trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                functools.partial(self._from_worker, worker),
            )
            worker.channel = channel
            async with trio.open_nursery() as nursery:
                nursery.start_soon(channel.run)
                try:
                    await proc.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await channel.aclose()
                nursery.cancel_scope.cancel()
            worker.channel = None
            # Its sessions died with it: their static addresses are free for the others.
            self.statics.drop_worker(worker.index)
            self.blocks.drop_worker(worker.index)
            if self.stopping:
                return
            if not worker.ready.is_set() and worker.restarts == 0:
                raise WorkerFailed(
                    f"worker {worker.index} {_exit_text(proc.returncode)} before it was ready"
                )
            lived = time.monotonic() - worker.started_at
            if lived >= STABLE_AFTER:
                delay = self._restart_initial
            worker.restarts += 1
            log.warning(
                "worker %d (pid %d) %s; its tunnels are gone; restarting it in %.1f s",
                worker.index,
                proc.pid,
                _exit_text(proc.returncode),
                delay,
            )
            await trio.sleep(delay)
            delay = min(delay * 2, RESTART_CAP)

    async def _from_worker(self, worker: Worker, req: Request) -> Any:
        if req.get("cmd") == "ready":
            log.info("worker %d ready (pid %s)", worker.index, req.get("pid"))
            worker.ready.set()
            return None
        if req.get("cmd") in ("claim-static", "release-static"):
            return self._static(worker, req)
        if req.get("cmd") in ("lease-block", "return-block"):
            return self._block(worker, req)
        if self._handler is not None:
            return await self._handler(req)
        raise ControlError(f"unknown request {req.get('cmd')!r}")

    def _static(self, worker: Worker, req: Request) -> bool:
        try:
            address = ipaddress.IPv4Address(req["address"])
            token = int(req["token"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"bad static address request: {exc}") from None
        if req["cmd"] == "release-static":
            self.statics.release(worker.index, address, token)
            return True
        return self.statics.claim(worker.index, address, token)

    def _block(self, worker: Worker, req: Request) -> int | None:
        try:
            if req["cmd"] == "return-block":
                self.blocks.give_back(worker.index, int(req["block"]))
                return None
            return self.blocks.lease(worker.index, int(req["first"]), int(req["last"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"bad block request: {exc}") from None

    async def stop(self, grace: float) -> None:
        """SIGTERM every worker (each clears its sessions and tunnels), wait up to ``grace``
        plus a little, then SIGKILL what is left."""
        self.stopping = True
        procs = [w.process for w in self.workers if w.process is not None]
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace + 5.0):
            for proc in procs:
                await proc.wait()
        for proc in procs:
            if proc.returncode is None:
                log.warning("worker pid %d did not stop: killing it", proc.pid)
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()

    # -- requests ----------------------------------------------------------------------------

    async def _ask(self, worker: Worker, req: Request) -> Any:
        channel = worker.channel
        if channel is None or not worker.ready.is_set():
            raise ControlError(f"worker {worker.index} is restarting")
        return await channel.call(req)

    async def ask_all(self, req: Request) -> list[tuple[Any, ControlError | None]]:
        """``req`` to every worker at once: (answer, None) or (None, error) per worker."""
        results: list[tuple[Any, ControlError | None]] = [(None, None)] * self.count

        async def one(k: int) -> None:
            try:
                results[k] = (await self._ask(self.workers[k], req), None)
            except ControlError as exc:
                results[k] = (None, exc)

        async with trio.open_nursery() as nursery:
            for k in range(self.count):
                nursery.start_soon(one, k)
        return results

    async def __call__(self, req: Request) -> Any:
        """The control socket's handler: one LNS, whatever the number of workers."""
        cmd, what = req.get("cmd"), req.get("what")
        key = (cmd, what)
        if key in ROUTED:
            tid = req.get("tunnel")
            if not isinstance(tid, int) or isinstance(tid, bool):
                raise ControlError("tunnel must be an integer")
            return await self._ask(self.workers[tid % self.count], req)
        results = await self.ask_all(req)
        answers = [a for a, e in results if e is None]
        errors = [e for _a, e in results if e is not None]
        if key in LISTS:
            rows = []
            for k, (answer, _error) in enumerate(results):
                for row in answer or ():
                    row["worker"] = k
                    rows.append(row)
            return rows
        if key == ("show", "history"):
            count = req.get("count", 50)
            rows = [row for a in answers for row in a]
            rows.sort(key=lambda r: r.get("time", r.get("ended", 0)) or 0, reverse=True)
            return rows[: count if isinstance(count, int) else 50]
        if key == ("show", "summary"):
            if not answers:
                raise errors[0]
            out = merge_values(answers)  # counts and histogram buckets: sums
            out["workers"] = [w.row() for w in self.workers]
            out["reloads"] = self.reloads
            return out
        if key in CLEARS:
            if not answers:
                raise errors[0]
            return merge_values(answers)
        if key == ("reload", "config"):
            if errors and not answers:
                raise errors[0]
            ok = all(isinstance(a, dict) and a.get("ok") for a in answers) and not errors
            if ok:
                self.reloads += 1
            out = dict(answers[0]) if answers and isinstance(answers[0], dict) else {}
            out["ok"] = ok
            out["workers"] = [
                {"index": k, **(a if isinstance(a, dict) else {"error": str(e)})}
                for k, (a, e) in enumerate(results)
            ]
            return out
        # FIRST, and anything else: every worker answers alike (or says it is unknown).
        if not answers:
            raise errors[0]
        return answers[0]

    async def metrics(self) -> bytes:
        """Every worker's Prometheus text, merged (a restarting worker's is missing)."""
        results = await self.ask_all({"cmd": "metrics", "what": "text"})
        return merge_metrics([a for a, e in results if e is None and isinstance(a, str)]).encode()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "is running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


def worker_argv(base: Sequence[str]) -> Callable[[int, int, int, int], list[str]]:
    """The argv of a worker: this interpreter running kl2tp-lns with ``base`` (the
    supervisor's own options) and the hidden worker options."""

    def command(index: int, count: int, udp_fd: int, channel_fd: int) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import sys; from kl2tp.cli import lns_main; sys.exit(lns_main())",
            *base,
            "--worker",
            f"{index}/{count}:{udp_fd}:{channel_fd}",
        ]

    return command


@attrs.frozen
class WorkerSlot:
    """What a worker process is told on its command line."""

    index: int
    """This worker's number, 0..count-1: its tunnel id class and its socket's place."""
    count: int
    """Workers in all."""
    udp_fd: int
    """The inherited UDP socket (in the supervisor's reuseport group)."""
    channel_fd: int
    """The inherited socketpair end to the supervisor."""

    @classmethod
    def parse(cls, text: str) -> WorkerSlot:
        """``INDEX/COUNT:UDP_FD:CHANNEL_FD``.

        Raises:
            ValueError: anything else.
        """
        share, udp, chan = text.split(":")
        index, count = share.split("/")
        slot = cls(int(index), int(count), int(udp), int(chan))
        if not 0 <= slot.index < slot.count:
            raise ValueError(f"worker index {slot.index} outside 0..{slot.count - 1}")
        return slot


def share_limits(
    count: int, max_tunnels: int, max_sessions: int, limits: Limits
) -> tuple[int, int, Limits]:
    """One worker's part of the endpoint-wide limits (``max_tunnels``, ``max_sessions``,
    the setup and negotiating caps: ceil(x / count), 0 staying "no limit";
    ``sccrq_total_rate``: / count), at start and at every reload."""

    def part(value: int) -> int:
        return -(-value // count) if value else 0

    return (
        part(max_tunnels),
        part(max_sessions),
        attrs.evolve(
            limits,
            max_setup_tunnels=part(limits.max_setup_tunnels),
            max_setup_sessions=part(limits.max_setup_sessions),
            max_negotiating_sessions=part(limits.max_negotiating_sessions),
            sccrq_total_rate=limits.sccrq_total_rate / count,
        ),
    )


def default_workers() -> int:
    """``workers = 0``: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
