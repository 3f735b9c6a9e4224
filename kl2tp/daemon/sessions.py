"""Session handlers: what runs on top of an established L2TP session.

``DataPlaneSessions`` programs each session into the data plane and tears it down again
whatever ends it. The PPP layer (ppp/) plugs in on top of it: the handler owns one task per
session, started through the tunnel handle, so a session's work never blocks its tunnel.

Setup order with the kernel data plane, race-free by construction (as real LACs do it):
the LAC places its calls with ``defer_connect`` (``defers_connect`` says when), programs its
kernel session when the LNS answers (``call_answered``) and only then sends the ICCN; the
LNS programs its session when the ICCN arrives and then speaks first (the LAC's PPP waits,
``PppSessions.silent_start``). So no PPP frame reaches either side before its kernel
session exists. Frames that still reach userspace early (a peer that starts LCP right after
its ICCN, e.g. another vendor's LAC) are kept and counted by the tunnel core, which hands
them over once the session's channel is open (``TunnelHandle.data_ready``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from kl2tp.daemon import oplog
from kl2tp.daemon.handle import SessionInfo, TunnelHandle
from kl2tp.dataplane.base import Counters, DataPlane, DataPlaneError, PppChannel, SessionSpec
from kl2tp.l2tp import events as ev
from kl2tp.l2tp.constants import CdnResult, ErrorCode

log = logging.getLogger("kl2tp.daemon")

_AT_ONCE: dict[tuple[type, str], bool] = {}


def at_once(obj: object, name: str) -> Callable[..., Any] | None:
    """The synchronous form ``obj.<name>_now`` of the coroutine method ``obj.<name>``, or None
    when the caller must await the coroutine.

    A back end that answers without waiting (the null data plane, the users file) offers
    one beside the coroutine, which only calls it; session code then does the work in the
    tunnel task instead of starting a task for it. Only when the coroutine is the one defined
    beside the ``_now`` form: a subclass that overrides the coroutine (to wait, to fail, to
    record) gets its coroutine awaited. Looked up once per class.
    """
    cls = type(obj)
    key = (cls, name)
    found = _AT_ONCE.get(key)
    if found is None:
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        found = _AT_ONCE[key] = owner is not None and f"{name}_now" in vars(owner)
    return getattr(obj, f"{name}_now") if found else None


@attrs.define(slots=True, eq=False)
class SessionRecord:
    """The handler's state for one session."""

    tunnel: TunnelHandle
    """The tunnel the session lives in."""
    sid: int
    """Our session id."""
    peer_sid: int
    """The peer's session id."""
    info: ev.ConnectInfo
    """The ICCN/OCCN values (proxy LCP/auth)."""
    call: ev.CallParams = attrs.field(factory=ev.CallParams)
    """The call's parameters (calling and called number), once the call is established."""
    scope: trio.CancelScope | None = None
    """Cancels the session's task; None for a session without one (run in its tunnel's
    task, `DataPlaneSessions.start_inline`)."""
    channel: PppChannel | None = None
    """The session's PPP channel once the data plane has it."""
    connect: bool = False
    """LAC deferred call: send the ICCN (``tunnel.connect_call``) once the data plane has
    the session."""
    log_down: Callable[..., None] | None = None
    """The session's "session down" line, left to the task to log with the kernel's byte
    counts (``counters=``) before it removes the session."""
    final_counters: Counters | None = None
    """The kernel's counts already read for the session's end (its accounting Stop): the
    "session down" line uses them instead of asking the kernel a second time."""
    upper: object = None
    """What the handler runs above the session (PPP: its `_SessionState`)."""

    def send_frame(self, frame: bytes) -> None:
        """The session's frame sink: a PPP frame out as an L2TP data message."""
        self.tunnel.send_data(self.sid, b"\xff\x03" + frame)

    def __str__(self) -> str:
        """How log lines name the session: ``Tnl/Cl TID/SID``."""
        return f"Tnl/Cl {self.tunnel.local_tunnel_id}/{self.sid}"

    # The record is its own frame sink (`DataPlaneSessions._sink`): a bound method kept
    # per session would cost 64 bytes each (a closure ~200).
    __call__ = send_frame


class DataPlaneSessions:
    """Programs every established session into the data plane; cleans up on every path."""

    defers_established = False
    """The L2TP session counts as established by itself (PPP handlers set this True)."""

    ppp_unit = True
    """Sessions get a PPP unit (pppN); a relaying handler (the LAC's PPPoE access side)
    sets False and carries the frames itself (``SessionSpec.ppp_unit``)."""

    def __init__(self, dataplane: DataPlane, *, lns: bool, data_sequencing: bool = False) -> None:
        self.dataplane = dataplane
        self.lns = lns
        self.data_sequencing = data_sequencing
        self.records: dict[tuple[int, int], SessionRecord] = {}
        self.crashed = 0
        """Session tasks that failed with an exception (each call was cleared)."""

    @property
    def defers_connect(self) -> bool:
        """Whether the LAC should place its calls with ``defer_connect``: when the data plane
        does not carry frames through userspace (the kernel), its session must exist before
        the ICCN lets the LNS speak. Over one that does, the core keeps early frames anyway."""
        return not self.dataplane.carries_frames

    # -- SessionHandler ---------------------------------------------------------------------

    def call_answered(self, tunnel: TunnelHandle, event: ev.CallAnswered) -> None:
        """Program the session now; its task sends the ICCN once the data plane has it."""
        rec = SessionRecord(tunnel, event.sid, event.peer_sid, event.info)
        rec.connect = True
        self._start(rec)

    def call_established(self, tunnel: TunnelHandle, event: ev.CallEstablished) -> None:
        rec = self.records.get((tunnel.local_tunnel_id, event.sid))
        if rec is not None:
            # A deferred call: its task programmed the session before sending this ICCN.
            rec.info = event.info
            rec.call = event.call
            return
        self._start(SessionRecord(tunnel, event.sid, event.peer_sid, event.info, event.call))

    def _start(self, rec: SessionRecord) -> None:
        """Program the session and run what is above it: without a task when the data plane
        opens the session at once and the handler can run it in the tunnel's task
        (`start_inline`), else in a task of its own."""
        self.records[(rec.tunnel.local_tunnel_id, rec.sid)] = rec
        open_now = at_once(self.dataplane, "open_session") if self.runs_inline else None
        if open_now is None:
            self._start_task(rec)
            return
        try:
            rec.channel = open_now(self._spec(rec), self._sink(rec))
        except DataPlaneError as exc:
            self.records.pop((rec.tunnel.local_tunnel_id, rec.sid), None)
            self._open_failed(rec, exc)
            return
        try:
            self._opened(rec)
            if not self.start_inline(rec):
                self._start_task(rec)  # what is left waits in a task (frames from a channel)
        except Exception as exc:
            self._crashed(rec, exc)  # its CallClosed ends it (`end_inline`)

    def _start_task(self, rec: SessionRecord) -> None:
        rec.scope = trio.CancelScope()
        rec.tunnel.start_soon(self._session_task, rec)

    def call_closed(self, tunnel: TunnelHandle, event: ev.CallClosed) -> None:
        rec = self.records.get((tunnel.local_tunnel_id, event.sid))
        if rec is None:
            return
        if rec.scope is not None:
            rec.scope.cancel()
        else:
            self.end_inline(rec)

    def data_received(self, tunnel: TunnelHandle, event: ev.DataReceived) -> None:
        """A frame for a session whose channel is open (the core keeps earlier ones until
        ``data_ready``): hand it to the channel."""
        rec = self.records.get((tunnel.local_tunnel_id, event.sid))
        if rec is None or rec.channel is None:
            tunnel.count("drop_data_no_session")
        elif not rec.channel.deliver(_strip_ff03(event.payload)):
            tunnel.count("drop_data_channel_full")

    # -- programming the session ------------------------------------------------------------

    def _spec(self, rec: SessionRecord) -> SessionSpec:
        tunnel = rec.tunnel
        return SessionSpec(
            local_tunnel_id=tunnel.local_tunnel_id,
            peer_tunnel_id=tunnel.peer_tunnel_id,
            local_session_id=rec.sid,
            peer_session_id=rec.peer_sid,
            lns_mode=self.lns,
            data_sequencing=self.data_sequencing or rec.info.sequencing_required,
            ifname_template=self.interface_template(tunnel),
            ppp_unit=self.ppp_unit,
        )

    @staticmethod
    def _sink(rec: SessionRecord) -> Callable[[bytes], None]:
        return rec

    def _open_failed(self, rec: SessionRecord, exc: DataPlaneError) -> None:
        rec.tunnel.count("dataplane_errors_open_session")
        log.error(
            "Tnl/Cl %d/%d: data plane refused the session (%s); clearing it",
            rec.tunnel.local_tunnel_id,
            rec.sid,
            exc,
        )
        rec.tunnel.hangup(
            rec.sid,
            CdnResult.GENERAL_ERROR,
            ErrorCode.INSUFFICIENT_RESOURCES,
            "data plane error",
        )

    def _opened(self, rec: SessionRecord) -> None:
        """The data plane has the session: attach what runs above it, take the frames the
        core kept, and (LAC, deferred call) let the ICCN go."""
        self.channel_opened(rec)
        # The channel takes frames now: the core hands over what it kept.
        rec.tunnel.data_ready(rec.sid)
        if rec.connect:
            # The session exists: now the LNS may have our ICCN and speak.
            rec.tunnel.connect_call(rec.sid)

    def _crashed(self, rec: SessionRecord, exc: Exception) -> None:
        """A bug in one session must not take the daemon down: clear that call."""
        key = (rec.tunnel.local_tunnel_id, rec.sid)
        if _only_closed_channel(exc):
            log.debug("Tnl/Cl %d/%d: channel closed under the session", *key)
            return
        log.error("Tnl/Cl %d/%d: session task failed; clearing the call", *key, exc_info=exc)
        self.crashed += 1
        rec.tunnel.hangup(rec.sid, CdnResult.GENERAL_ERROR, message="internal error")

    # -- a session with a task --------------------------------------------------------------

    async def _session_task(self, rec: SessionRecord) -> None:
        tunnel = rec.tunnel
        key = (tunnel.local_tunnel_id, rec.sid)
        oplog.enter_session(tunnel, rec.sid, self.session_info(rec))
        programmed = rec.channel is not None
        assert rec.scope is not None
        try:
            with rec.scope:
                if rec.channel is None:
                    try:
                        rec.channel = await self.dataplane.open_session(
                            self._spec(rec), self._sink(rec)
                        )
                    except DataPlaneError as exc:
                        self._open_failed(rec, exc)
                        return
                    programmed = True
                    try:
                        self._opened(rec)
                    except Exception as exc:
                        self._crashed(rec, exc)
                        return
                try:
                    await self.run_session(rec)
                except Exception as exc:
                    self._crashed(rec, exc)
        finally:
            self.records.pop(key, None)
            if programmed:
                with trio.CancelScope(shield=True):
                    await self._remove(rec)
            elif rec.log_down is not None:
                rec.log_down(counters=None)

    async def _remove(self, rec: SessionRecord) -> None:
        """Take the session out of the data plane; log its "session down" line if left to
        us (with the kernel's counts); then `session_removed`."""
        key = (rec.tunnel.local_tunnel_id, rec.sid)
        counters: dict[str, int] | None = None
        if rec.log_down is not None:
            got = rec.final_counters
            if got is None:
                with contextlib.suppress(DataPlaneError):
                    got = await self.dataplane.session_counters(*key)
            counters = got.as_dict() if got is not None else None
        try:
            await self.dataplane.close_session(*key)
        except DataPlaneError as exc:
            self._close_failed(rec, exc)
        if rec.log_down is not None:
            rec.log_down(counters=counters)
        self.session_removed(rec)

    def _close_failed(self, rec: SessionRecord, exc: DataPlaneError) -> None:
        rec.tunnel.count("dataplane_errors_close_session")
        log.error(
            "Tnl/Cl %d/%d: could not remove the session: %s",
            rec.tunnel.local_tunnel_id,
            rec.sid,
            exc,
        )

    # -- a session without a task -------------------------------------------------------------

    runs_inline = False
    """Whether `start_inline` may run sessions without a task (the bare handler waits in
    `run_session`)."""

    def start_inline(self, rec: SessionRecord) -> bool:
        """Run what is above the session without a task (called in the tunnel's task once
        the data plane opened it at once); False: it needs a task (`run_session`)."""
        return False

    def end_inline(self, rec: SessionRecord) -> None:
        """A session run without a task is gone: `remove_inline` it."""
        self.remove_inline(rec)

    def remove_inline(self, rec: SessionRecord) -> None:
        """Take a session run without a task out of the data plane: at once when it answers
        at once (and keeps no counters a "session down" line would wait for), else in a
        short task."""
        close = at_once(self.dataplane, "close_session")
        if close is None or self.dataplane.kernel_counters:
            rec.tunnel.start_soon(self._remove_task, rec)
            return
        self.records.pop((rec.tunnel.local_tunnel_id, rec.sid), None)
        try:
            close(rec.tunnel.local_tunnel_id, rec.sid)
        except DataPlaneError as exc:
            self._close_failed(rec, exc)
        if rec.log_down is not None:
            rec.log_down(counters=None)
        self.session_removed(rec)

    async def _remove_task(self, rec: SessionRecord) -> None:
        self.records.pop((rec.tunnel.local_tunnel_id, rec.sid), None)
        with trio.CancelScope(shield=True):
            await self._remove(rec)

    # -- hooks ------------------------------------------------------------------------------

    def session_removed(self, rec: SessionRecord) -> None:
        """The session is out of the data plane (or never got in): the last thing that
        happens to it."""

    def channel_opened(self, rec: SessionRecord) -> None:
        """The data plane has the session and its channel (``rec.channel``), and no frame
        has reached the channel yet (e.g. to attach a receiver to an `InlineChannel`)."""

    async def run_session(self, rec: SessionRecord) -> None:
        """The session's life above L2TP; the bare handler just waits to be cancelled."""
        await trio.sleep_forever()

    def summary(self) -> dict[str, object]:
        """Handler figures for ``kl2tpctl show summary``."""
        out: dict[str, object] = {"active": len(self.records)}
        if self.crashed:
            out["crashed"] = self.crashed
        return out

    def interface_template(self, tunnel: TunnelHandle) -> str | None:
        """The interface name template of ``tunnel``'s sessions; None: the data plane's."""
        return None

    def session_info(self, rec: SessionRecord) -> SessionInfo | None:
        """The endpoint's record of the session (for show fields)."""
        return rec.tunnel.sessions.get(rec.sid)


def _strip_ff03(payload: bytes) -> bytes:
    return payload[2:] if payload[:2] == b"\xff\x03" else payload


def _only_closed_channel(exc: BaseException) -> bool:
    """True when ``exc`` (or every exception in a group) says the channel went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_closed_channel(e) for e in exc.exceptions)
    return isinstance(exc, trio.ClosedResourceError | trio.EndOfChannel | trio.BrokenResourceError)
