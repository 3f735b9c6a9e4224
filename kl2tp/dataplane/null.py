"""The null data plane: records what it would program; PPP frames ride L2TP data messages.

Used by tests and on machines whose kernel has no L2TP. The records are exact enough for
tests to assert the order and the parameters of every call the kernel back end would get.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence

import attrs
import trio

from kl2tp.dataplane.base import (
    Counters,
    FrameSink,
    NetworkSpec,
    SessionSpec,
    TunnelSpec,
)

CALL_LOG = 1024
"""How many of the latest data-plane calls `NullDataPlane.calls` keeps."""


@attrs.define(slots=True)
class NullTunnelHandle:
    """A tunnel the null back end 'programmed'."""

    spec: TunnelSpec
    """What was asked for."""

    @property
    def socket(self) -> object | None:
        """The null back end adds no socket: the shared one serves."""
        return None


class NullChannel:
    """PPP frames to and from the tunnel task, in memory. An `InlineChannel`: with a
    ``receiver`` set, frames go to it as they arrive, and the queue a reader task would
    wait on is never made (it costs ~1.5 KB per session).

    It is also the back end's whole record of the session (`spec`, `network`, `mru`): one
    object per session, not one per kind of record."""

    __slots__ = (
        "_closed",
        "_depth",
        "_recv",
        "_send",
        "_sink",
        "dropped",
        "mru",
        "network",
        "receiver",
        "spec",
    )

    def __init__(self, sink: FrameSink, depth: int) -> None:
        self._sink = sink
        self._depth = depth
        self._send: trio.MemorySendChannel[bytes] | None = None
        self._recv: trio.MemoryReceiveChannel[bytes] | None = None
        self._closed = False
        self.receiver: Callable[[bytes], None] | None = None
        self.dropped = 0
        self.spec: SessionSpec | None = None
        """What the session was opened with (`NullDataPlane.sessions`)."""
        self.network: NetworkSpec | None = None
        """Its interface's configuration (`NullDataPlane.networks`)."""
        self.mru: int | None = None
        """The MRU set on its unit (`NullDataPlane.mrus`)."""

    def _queue(self) -> tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]]:
        if self._send is None or self._recv is None:
            self._send, self._recv = trio.open_memory_channel[bytes](self._depth)
        return self._send, self._recv

    def send_nowait(self, frame: bytes) -> None:
        """Send a frame: the tunnel task wraps it into a data message."""
        self._sink(frame)

    async def send(self, frame: bytes) -> None:
        """Send a frame (`send_nowait`)."""
        self.send_nowait(frame)

    async def receive(self) -> bytes:
        """Next frame that arrived as a data message."""
        if self._closed:
            raise trio.EndOfChannel
        return await self._queue()[1].receive()

    def deliver(self, frame: bytes) -> bool:
        """A frame from the tunnel task: to the receiver, else queued; dropped and counted
        when the queue is full or the channel closed."""
        if self._closed:
            self.dropped += 1
            return False
        if self.receiver is not None:
            self.receiver(frame)
            return True
        try:
            self._queue()[0].send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.dropped += 1
            return False
        return True

    async def aclose(self) -> None:
        """Close both ends; a pending receive() ends with EndOfChannel."""
        self.close()

    def close(self) -> None:
        """`aclose`, at once."""
        self._closed = True
        self.receiver = None
        if self._send is not None and self._recv is not None:
            self._send.close()
            self._recv.close()


@attrs.define
class NullDataPlane:
    """Records every call; keeps what is 'programmed' in dicts."""

    name: str = "null"
    """Back-end name, as config and logs say it."""
    carries_frames: bool = True
    """Every PPP frame rides an L2TP data message through the tunnel task."""
    kernel_counters: bool = False
    """No kernel, no counters."""
    channel_depth: int = 64
    """Frames queued per session before drops."""
    tunnels: dict[int, TunnelSpec] = attrs.field(factory=dict)
    """Programmed tunnels by local id."""
    calls: collections.deque[tuple[str, tuple[int, ...]]] = attrs.field(
        factory=lambda: collections.deque(maxlen=CALL_LOG)
    )
    """The latest `CALL_LOG` calls in order: (method, ids). Bounded: a daemon running on the
    null data plane for months must not grow with every call it ever made."""
    _programmed: dict[tuple[int, int], NullChannel] = attrs.field(factory=dict)
    """Every programmed session's channel and records, by (local tunnel id, local session
    id): one table, not one per kind of record (each key and entry costs ~100 bytes per
    session)."""

    @property
    def sessions(self) -> dict[tuple[int, int], SessionSpec]:
        """Programmed sessions by (local tunnel id, local session id)."""
        return {key: p.spec for key, p in self._programmed.items() if p.spec is not None}

    @property
    def networks(self) -> dict[tuple[int, int], NetworkSpec]:
        """Interfaces configured, by session key."""
        return {key: p.network for key, p in self._programmed.items() if p.network is not None}

    @property
    def mrus(self) -> dict[tuple[int, int], int]:
        """MRU set on each session's unit once LCP opened."""
        return {key: p.mru for key, p in self._programmed.items() if p.mru is not None}

    def set_channel(self, key: tuple[int, int], channel: NullChannel) -> None:
        """Make ``channel`` the session's (a subclass that opens channels of its own)."""
        old = self._programmed[key]
        channel.spec, channel.network, channel.mru = old.spec, old.network, old.mru
        self._programmed[key] = channel

    async def open_tunnel(self, spec: TunnelSpec) -> NullTunnelHandle:
        self.tunnels[spec.local_tunnel_id] = spec
        self.calls.append(("open_tunnel", (spec.local_tunnel_id,)))
        return NullTunnelHandle(spec)

    async def close_tunnel(self, local_tunnel_id: int) -> None:
        self.calls.append(("close_tunnel", (local_tunnel_id,)))
        self.tunnels.pop(local_tunnel_id, None)
        for key in [k for k in self._programmed if k[0] == local_tunnel_id]:
            await self.close_session(*key)

    # Every call below completes at once: each has a synchronous ``*_now`` form the session
    # handlers call without a task (``kl2tp.daemon.sessions.at_once``); the coroutine is what
    # a subclass overrides to wait or fail (tests), and the handlers then await it.

    async def open_session(self, spec: SessionSpec, sink: FrameSink) -> NullChannel:
        return self.open_session_now(spec, sink)

    def open_session_now(self, spec: SessionSpec, sink: FrameSink) -> NullChannel:
        """`open_session`, at once."""
        key = (spec.local_tunnel_id, spec.local_session_id)
        channel = NullChannel(sink, self.channel_depth)
        channel.spec = spec
        self._programmed[key] = channel
        self.calls.append(("open_session", key))
        return channel

    async def set_mru(self, local_tunnel_id: int, local_session_id: int, mru: int) -> None:
        self.set_mru_now(local_tunnel_id, local_session_id, mru)

    def set_mru_now(self, local_tunnel_id: int, local_session_id: int, mru: int) -> None:
        """`set_mru`, at once."""
        programmed = self._programmed.get((local_tunnel_id, local_session_id))
        if programmed is not None:
            programmed.mru = mru
        self.calls.append(("set_mru", (local_tunnel_id, local_session_id, mru)))

    async def session_up(
        self, local_tunnel_id: int, local_session_id: int, net: NetworkSpec
    ) -> str | None:
        return self.session_up_now(local_tunnel_id, local_session_id, net)

    def session_up_now(
        self, local_tunnel_id: int, local_session_id: int, net: NetworkSpec
    ) -> str | None:
        """`session_up`, at once."""
        key = (local_tunnel_id, local_session_id)
        programmed = self._programmed.get(key)
        if programmed is not None:
            programmed.network = net
        self.calls.append(("session_up", key))
        return None

    async def close_session(self, local_tunnel_id: int, local_session_id: int) -> None:
        self.close_session_now(local_tunnel_id, local_session_id)

    def close_session_now(self, local_tunnel_id: int, local_session_id: int) -> None:
        """`close_session`, at once."""
        key = (local_tunnel_id, local_session_id)
        self.calls.append(("close_session", key))
        channel = self._programmed.pop(key, None)
        if channel is not None:
            channel.close()

    async def tunnel_counters(self, local_tunnel_id: int) -> Counters | None:
        return None

    async def session_counters(
        self, local_tunnel_id: int, local_session_id: int
    ) -> Counters | None:
        return None

    async def sessions_counters(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Counters]:
        # Per session, so a subclass that only overrides session_counters answers here too.
        out = {}
        for key in keys:
            counters = await self.session_counters(*key)
            if counters is not None:
                out[key] = counters
        return out

    async def cleanup_stale(self) -> int:
        return 0

    async def aclose(self) -> None:
        for key in list(self._programmed):
            await self.close_session(*key)
        self.tunnels.clear()
