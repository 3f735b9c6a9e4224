"""The operator's log: one info line per event, and the history ``kl2tpctl show history`` reads.

Tunnel up/down, session up/down (or failed before it came up), authentication failures and
refusals by limit or policy each log one line on ``kl2tp.daemon`` at INFO with the event's
fields attached (``record.fields``), so the text format shows them as ``key=value`` and the
logfmt, JSON and journal outputs as separate fields. Peer-supplied values are escaped by the
formatters (:func:`kl2tp.log.escape`).

The drivers call these functions where the events happen; the tunnel and session tasks set
:data:`kl2tp.log.CONTEXT` so that every line they log carries their ids.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from kl2tp.l2tp.constants import CdnResult, StopCcnResult
from kl2tp.log import CONTEXT, LogContext
from kl2tp.ratelimit import WarnLimiter, suppressed_note

log = logging.getLogger("kl2tp.daemon")

HISTORY_SIZE = 1000
"""Ended and failed sessions ``show history`` keeps (the oldest go first)."""


class _Tunnel(Protocol):
    @property
    def local_tunnel_id(self) -> int: ...
    @property
    def peer_tunnel_id(self) -> int: ...
    @property
    def peer_addr(self) -> tuple[str, int]: ...
    @property
    def peer_hostname(self) -> str: ...


class _Info(Protocol):
    created: float
    established: float | None
    extra: dict[str, Any]


@attrs.define
class EventLog:
    """One daemon's history of ended and failed sessions (a bounded ring) and event counts."""

    size: int = HISTORY_SIZE
    """Entries kept."""
    history: deque[dict[str, Any]] = attrs.field(factory=deque)
    """Newest last."""
    counts: dict[str, int] = attrs.field(factory=dict)
    """Events logged, by name."""
    limiter: WarnLimiter = attrs.field(factory=lambda: WarnLimiter(20, 60.0))
    """Peer-caused lines a flood could repeat (authentication failures, refusals): at most
    20 a minute of each; the next line says how many were left out."""

    def record(self, entry: dict[str, Any]) -> None:
        """Add one ended or failed session."""
        self.history.append(entry)
        while len(self.history) > self.size:
            self.history.popleft()

    def resize(self, size: int) -> None:
        """Keep at most ``size`` entries from now on."""
        self.size = size
        while len(self.history) > size:
            self.history.popleft()


_PROCESS_EVENTS = EventLog()
EVENTS: contextvars.ContextVar[EventLog] = contextvars.ContextVar(
    "kl2tp_events",
    default=_PROCESS_EVENTS,
)
"""The current daemon's :class:`EventLog` (``run_daemon`` sets its own)."""


def _emit(
    event: str,
    message: str,
    tid: int,
    sid: int,
    fields: Mapping[str, Any],
    *,
    limited: bool = False,
) -> None:
    events = EVENTS.get()
    counts = events.counts
    counts[event] = counts.get(event, 0) + 1
    if limited:
        ok, suppressed = events.limiter.should_log(event, time.monotonic())
        if not ok:
            return
        message += suppressed_note(suppressed)
    if log.isEnabledFor(logging.INFO):
        # The record made here, not by log.info: every line comes from this function, so
        # the frames need not be walked to say so (a line per session up and down).
        extra = {"event": event, "fields": fields, "tunnel_id": tid, "session_id": sid}
        where = _emit.__code__
        log.handle(
            log.makeRecord(
                log.name, logging.INFO, where.co_filename, where.co_firstlineno, message, (),
                None, where.co_name, extra,
            )
        )  # fmt: skip


def _peer(tunnel: _Tunnel) -> str:
    host, port = tunnel.peer_addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cause(result: int, error: int, message: str, by_peer: bool, *, tunnel: bool = False) -> str:
    """``peer result 3 (administrative): cleared by operator``: who, the Result Code with
    the RFC's words, and the message."""
    table: type[CdnResult] | type[StopCcnResult] = StopCcnResult if tunnel else CdnResult
    try:
        words = table(result).description
    except ValueError:
        words = ""
    text = f"{'peer' if by_peer else 'local'} result {result}"
    if words:
        text += f" ({words})"
    if error:
        text += f" error {error}"
    if message:
        text += f": {message}"
    return text


def enter_tunnel(tunnel: _Tunnel) -> None:
    """The calling task works for ``tunnel`` (its lines carry the tunnel id)."""
    CONTEXT.set(LogContext(tunnel=tunnel.local_tunnel_id, peer=tunnel.peer_addr[0]))


def enter_session(tunnel: _Tunnel, sid: int, info: _Info | None) -> None:
    """The calling task works for session ``sid`` of ``tunnel``."""
    CONTEXT.set(
        LogContext(
            tunnel=tunnel.local_tunnel_id,
            session=sid,
            peer=tunnel.peer_addr[0],
            extra=info.extra if info is not None else None,
        )
    )


def tunnel_up(tunnel: _Tunnel) -> None:
    """The tunnel is established."""
    _emit(
        "tunnel-up",
        "tunnel up",
        tunnel.local_tunnel_id,
        0,
        {
            "peer": _peer(tunnel),
            "peer_hostname": tunnel.peer_hostname,
            "local_tunnel_id": tunnel.local_tunnel_id,
            "peer_tunnel_id": tunnel.peer_tunnel_id,
        },
    )


def tunnel_down(
    tunnel: _Tunnel,
    *,
    duration: float,
    established: bool,
    result: int,
    error: int,
    message: str,
    by_peer: bool,
) -> None:
    """The tunnel is gone (``established`` False: it never came up)."""
    _emit(
        "tunnel-down" if established else "tunnel-failed",
        "tunnel down" if established else "tunnel setup failed",
        tunnel.local_tunnel_id,
        0,
        {
            "peer": _peer(tunnel),
            "peer_hostname": tunnel.peer_hostname,
            "local_tunnel_id": tunnel.local_tunnel_id,
            "peer_tunnel_id": tunnel.peer_tunnel_id,
            "duration": round(duration, 3),
            "cause": _cause(result, error, message, by_peer, tunnel=True),
        },
        # A tunnel that never came up is what a spoofed SCCRQ flood leaves behind.
        limited=not established,
    )


def _session_fields(tunnel: _Tunnel, sid: int, info: _Info | None) -> dict[str, Any]:
    extra = info.extra if info is not None else {}
    fields: dict[str, Any] = {
        "user": extra.get("username", ""),
        "address": extra.get("address", ""),
        "lac": tunnel.peer_hostname,
        "peer": _peer(tunnel),
    }
    for key in ("calling_number", "called_number", "interface"):
        if extra.get(key):
            fields[key] = extra[key]
    return fields


def session_up(tunnel: _Tunnel, sid: int, info: _Info | None) -> None:
    """The session is up (PPP's network phase reached, or the bare L2TP call connected)."""
    _emit(
        "session-up", "session up", tunnel.local_tunnel_id, sid, _session_fields(tunnel, sid, info)
    )


def session_down(
    tunnel: _Tunnel,
    sid: int,
    info: _Info | None,
    *,
    now: float,
    result: int,
    error: int,
    message: str,
    by_peer: bool,
    counters: Mapping[str, int] | None = None,
) -> None:
    """The session is gone: "session down" when it had come up, "session failed" else.
    ``counters``: the kernel's byte and packet counts when known."""
    fields = _session_fields(tunnel, sid, info)
    up = info.established if info is not None else None
    extra = info.extra if info is not None else {}
    if up is not None:
        fields["duration"] = round(now - up, 3)
    elif extra.get("failure"):
        fields["failure"] = extra["failure"]
    if counters:
        fields["rx_bytes"] = counters.get("rx_bytes", 0)
        fields["tx_bytes"] = counters.get("tx_bytes", 0)
    cause = _cause(result, error, message, by_peer)
    fields["cause"] = cause
    established = up is not None
    _emit(
        "session-down" if established else "session-failed",
        "session down" if established else "session failed",
        tunnel.local_tunnel_id,
        sid,
        fields,
        # Calls that never came up can be a flood; every session that did gets its line.
        limited=not established,
    )
    entry = {
        "time": time.time(),
        "tunnel_id": tunnel.local_tunnel_id,
        "session_id": sid,
        "outcome": "ended" if established else "failed",
        **fields,
    }
    EVENTS.get().record(entry)


def auth_failed(tunnel: _Tunnel, sid: int, user: str, method: str, reason: str) -> None:
    """A subscriber was refused by AAA."""
    _emit(
        "auth-failed",
        "authentication failed",
        tunnel.local_tunnel_id,
        sid,
        {
            "user": user,
            "lac": tunnel.peer_hostname,
            "peer": _peer(tunnel),
            "method": method,
            "reason": reason,
        },
        limited=True,
    )


def refused(tunnel: _Tunnel | None, sid: int, what: str, reason: str, **more: Any) -> None:
    """A tunnel or session refused by a limit or policy (``what``: "tunnel"/"session")."""
    fields: dict[str, Any] = {"reason": reason}
    tid = 0
    if tunnel is not None:
        tid = tunnel.local_tunnel_id
        fields["lac"] = tunnel.peer_hostname
        fields["peer"] = _peer(tunnel)
    fields.update(more)
    _emit(f"{what}-refused", f"{what} refused", tid, sid, fields, limited=True)
    if what == "session":
        EVENTS.get().record(
            {
                "time": time.time(),
                "tunnel_id": tid,
                "session_id": sid,
                "outcome": "refused",
                "user": "",
                **fields,
            }
        )
