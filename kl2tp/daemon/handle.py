"""What session code sees of a tunnel, and what the endpoint sees of session code.

The endpoint's tunnel task (:class:`kl2tp.daemon.endpoint.TunnelRunner`) owns the sans-IO
tunnel core; everything that runs above a session (the data-plane handler, PPP, the LAC's
client and simulator) talks to it through the narrow :class:`TunnelHandle` below and never
reaches into the core. The events the core emits carry what their consumer needs (peer
session id, call parameters, connect values), so a handler has nothing to look up.

:class:`SessionHandler` is the other direction: the calls the tunnel task makes, one per
session event, on whatever runs above the sessions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs
import trio

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.constants import CdnResult, ErrorCode, StopCcnResult
from kl2tp.l2tp.events import CallParams, ConnectInfo

Address = tuple[str, int]
"""A UDP address: host and port."""


@attrs.define(slots=True)
class SessionInfo:
    """Per-session facts the daemon keeps beside the core (for show and accounting)."""

    local_sid: int
    """Our Assigned Session ID."""
    created: float
    """trio time the session was created."""
    established: float | None = None
    """trio time the session reached established."""
    extra: dict[str, Any] = attrs.field(factory=dict)
    """Fields upper layers add (username, address, interface, auth, phase)."""
    closed: ev.CallClosed | None = None
    """Why the session closed, once it has."""
    _done: trio.Event | None = attrs.field(default=None, init=False)
    _finished: bool = attrs.field(default=False, init=False)

    @property
    def done(self) -> trio.Event:
        """Set when the session is established or closed. Made when first asked for: an
        LNS holding 100,000 sessions has nobody waiting on theirs (`set_done`)."""
        if self._done is None:
            self._done = trio.Event()
            if self._finished:
                self._done.set()
        return self._done

    @done.setter
    def done(self, event: trio.Event) -> None:
        """A new event to wait on (the next `set_done` sets it)."""
        self._done = event

    def set_done(self) -> None:
        """The session is established or closed: set `done` (now, or when it is made)."""
        self._finished = True
        if self._done is not None:
            self._done.set()


class TunnelHandle(Protocol):
    """One tunnel as session code sees it: its identity and the commands it takes.

    Commands never block: they feed the tunnel core and wake the tunnel task, which sends
    what the core then wants sent.
    """

    @property
    def local_tunnel_id(self) -> int:
        """Our Assigned Tunnel ID."""

    @property
    def peer_tunnel_id(self) -> int:
        """The peer's Assigned Tunnel ID (0 until the tunnel is established)."""

    @property
    def peer_addr(self) -> Address:
        """The peer's UDP address."""

    @property
    def peer_hostname(self) -> str:
        """The peer's Host Name AVP ("" until the peer sent it)."""

    @property
    def policy(self) -> str:
        """The name of the tunnel's per-peer policy (``[[peer]] name``; ``"default"``: the
        top-level settings); session code takes its PPP values from it."""

    @property
    def sessions(self) -> Mapping[int, SessionInfo]:
        """The daemon's record of each live session, by our session id."""

    @property
    def closed(self) -> trio.Event:
        """Set once the tunnel is down and everything above it torn down."""

    def place_call(
        self, call: CallParams, connect: ConnectInfo | None = None, *, defer_connect: bool = False
    ) -> SessionInfo:
        """Start a call (ICRQ on the LAC, OCRQ on the LNS); ``connect``: the ICCN values.

        ``defer_connect`` (LAC): hold the ICCN until the handler, told by ``call_answered``,
        calls :meth:`connect_call`.

        Raises:
            kl2tp.l2tp.session.CommandError: the tunnel cannot take calls (closing).
        """

    def connect_call(self, sid: int, connect: ConnectInfo | None = None) -> None:
        """Send the ICCN of a deferred call; ``connect`` None keeps ``place_call``'s values.
        A call already gone is ignored."""

    def connect_pending(self, sid: int) -> bool:
        """True while our ICCN for call ``sid`` waits for the peer's send window (LAC):
        frames that do not go through :meth:`send_data` (the kernel data plane) must wait
        too."""

    def data_ready(self, sid: int) -> None:
        """The session's data channel is open: the core hands over the data messages it kept
        for the session (as ``DataReceived``) and passes later ones straight on."""

    def hangup(
        self,
        sid: int,
        result: CdnResult = CdnResult.ADMINISTRATIVE,
        error: ErrorCode = ErrorCode.NO_ERROR,
        message: str = "",
    ) -> None:
        """Clear one session with a CDN. A session already gone is ignored."""

    def close(
        self,
        result: StopCcnResult = StopCcnResult.CLEAR_CONNECTION,
        error: ErrorCode = ErrorCode.NO_ERROR,
        message: str = "",
    ) -> None:
        """Clear the tunnel (and every session in it) with a StopCCN."""

    def send_data(self, sid: int, payload: bytes) -> None:
        """Send a PPP frame of a session as an L2TP data message (userspace data path)."""

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` as a task of the daemon (it outlives the current call)."""

    def count(self, key: str) -> None:
        """Add one to the endpoint-wide counter ``key`` (``kl2tpctl show summary``)."""

    def session_up(self, sid: int, info: SessionInfo | None) -> None:
        """The session is up (PPP's network phase reached): it stops counting against
        ``max_negotiating_sessions``, its setup time is recorded and "session up" logged."""


class SessionHandler(Protocol):
    """What runs above established L2TP sessions (PPP on the LNS, a subscriber on the LAC).

    The tunnel task calls these for every session event; they must not block it (start a
    task with ``tunnel.start_soon`` for anything that waits).
    """

    defers_established: bool
    """True when the handler decides when a call counts as up (e.g. once IPCP is open);
    it then sets ``SessionInfo.established`` and ``done`` itself."""

    @property
    def defers_connect(self) -> bool:
        """True when the LAC's calls must wait for ``call_answered`` before their ICCN goes
        (``place_call(defer_connect=True)``): the kernel data plane, whose session must exist
        before the LNS's first frame arrives."""

    def call_answered(self, tunnel: TunnelHandle, event: ev.CallAnswered) -> None:
        """LAC, a call placed with ``defer_connect``: the LNS answered. Make ready for its
        data (program the session), then send the ICCN with ``tunnel.connect_call``."""

    def call_established(self, tunnel: TunnelHandle, event: ev.CallEstablished) -> None:
        """The session is up at the L2TP level."""

    def call_closed(self, tunnel: TunnelHandle, event: ev.CallClosed) -> None:
        """The session is gone (CDN either way, or its tunnel went down).

        Called while ``tunnel.sessions`` still holds the session's info."""

    def data_received(self, tunnel: TunnelHandle, event: ev.DataReceived) -> None:
        """A data message for the session reached userspace."""

    def summary(self) -> dict[str, object]:
        """Figures for ``kl2tpctl show summary`` (pool, AAA counters, ...)."""
