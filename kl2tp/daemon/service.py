"""The daemons: wiring of endpoint, data plane, sessions, control socket and signals.

``run_daemon`` is the whole of kl2tp-lns and kl2tp-lac's long-running mode; ``simulate``
is kl2tp-lac's load generator. Both take a :class:`Settings` the CLI builds from the config.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import math
import os
import random
import re
import signal
import socket as stdlib_socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import trio
import trio.lowlevel

from kl2tp import log as kl2tp_log
from kl2tp.aaa.addresses import AddressBook
from kl2tp.daemon import oplog
from kl2tp.daemon.client import Backoff, subscriber_call
from kl2tp.daemon.control import ControlError, serve_control
from kl2tp.daemon.endpoint import Endpoint, TunnelRunner, TunnelSetupError, UdpTransport
from kl2tp.daemon.handle import Address, SessionHandler, SessionInfo, TunnelHandle
from kl2tp.daemon.metrics import MetricsServer, Source, kernel_totals
from kl2tp.daemon.notify import Notifier
from kl2tp.daemon.workers import (
    Channel,
    WorkerBlocks,
    WorkerFailed,
    WorkerSlot,
    WorkerStatics,
)
from kl2tp.dataplane.base import DataPlane
from kl2tp.l2tp.constants import CdnResult, StopCcnResult
from kl2tp.l2tp.endpoint import Limits
from kl2tp.l2tp.events import CallParams, ConnectInfo
from kl2tp.l2tp.session import CommandError
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.lac.tunnels import NoTunnel, TunnelPicker
from kl2tp.policy import PolicyTable

log = logging.getLogger("kl2tp.daemon")

_jitter = random.Random()
"""Spreads ``--simulate``'s redials (not a secret: any generator will do)."""


@attrs.frozen
class Settings:
    """Everything a daemon needs, already validated."""

    role: str
    """"lns" or "lac"."""
    listen: Address
    """UDP address to bind."""
    tunnel: TunnelConfig
    """Values for every tunnel core."""
    control_socket: str | None = None
    """Path of the control socket, None for none."""
    lns_peers: tuple[tuple[Address, TunnelConfig], ...] = ()
    """LAC: the LNSs to dial, each with its tunnel values (host name and secret may differ)."""
    allowed_peers: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """LNS: networks allowed to open tunnels (empty: any)."""
    max_tunnels: int = 0
    """Overload limit on tunnels (0: none)."""
    max_sessions: int = 0
    """Overload limit on sessions (0: none)."""
    queue_depth: int = 256
    """Per-tunnel receive queue depth."""
    limits: Limits = attrs.field(factory=Limits)
    """Endpoint-wide bounds on peer-created state (``[l2tp]``)."""
    policies: PolicyTable | None = None
    """LNS: per-peer policy (``[[peer]]``); None: every LAC gets ``tunnel``."""
    shutdown_grace: float = 5.0
    """Seconds to wait for CDN/StopCCN acks on SIGTERM."""
    history: int = oplog.HISTORY_SIZE
    """Ended and failed sessions ``show history`` keeps."""
    metrics_listen: Address | None = None
    """Where the Prometheus endpoint listens (``[metrics] listen``); None: nowhere."""
    worker: WorkerSlot | None = None
    """This daemon is one worker of a supervisor (``[l2tp] workers``): its socket, its
    tunnel id class and its channel to the supervisor (which serves the control socket and
    the metrics); None: a daemon of its own."""


def make_endpoint(
    settings: Settings,
    dataplane: DataPlane,
    handler: SessionHandler | None,
    rng: random.Random | None = None,
) -> Endpoint:
    """Build the endpoint a daemon serves."""
    return Endpoint(
        role=settings.role,
        tunnel_config=settings.tunnel,
        dataplane=dataplane,
        listen=settings.listen,
        handler=handler,
        allowed_peers=settings.allowed_peers,
        max_tunnels=settings.max_tunnels,
        max_sessions=settings.max_sessions,
        queue_depth=settings.queue_depth,
        limits=settings.limits,
        rng=rng,
        policies=settings.policies,
        tunnel_id_class=(
            (settings.worker.index, settings.worker.count) if settings.worker else (0, 1)
        ),
    )


Request = dict[str, Any]
"""One control-socket request: ``{"cmd": ..., "what": ..., more keys}``."""

SESSION_FILTERS = ("user", "peer", "tunnel", "state", "address", "interface")
"""``show sessions`` filters, each matched against one show field (``peer``: the tunnel's
peer address, with or without the port)."""


class ControlApi:
    """Answers control-socket requests from the endpoint's state.

    Requests dispatch through :attr:`handlers`, a table ``(cmd, what) -> method``.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        dataplane: DataPlane,
        *,
        reload: Reload | None = None,
        events: oplog.EventLog | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.dataplane = dataplane
        self._reload = reload
        self.events = events if events is not None else oplog.EVENTS.get()
        """The daemon's event counts and session history."""
        self.reloads = 0
        """Reloads that took effect."""
        self.handlers: dict[tuple[str, str], Callable[[Request], Awaitable[Any]]] = {
            ("show", "tunnels"): lambda _req: self.tunnels(),
            ("show", "tunnel"): self.show_tunnel,
            ("show", "sessions"): self.sessions,
            ("show", "session"): self.show_session,
            ("show", "summary"): lambda _req: self.summary(),
            ("show", "history"): self.history,
            ("clear", "tunnel"): self.clear_tunnel,
            ("clear", "session"): self.clear_session,
            ("clear", "user"): self.clear_matching,
            ("clear", "address"): self.clear_matching,
            ("clear", "peer"): self.clear_matching,
            ("clear", "all"): self.clear_matching,
            ("drain", "on"): lambda _req: self.drain(True),
            ("drain", "off"): lambda _req: self.drain(False),
            ("reload", "config"): self.reload,
            ("debug", "categories"): self.debug_categories,
            ("debug", "condition"): self.debug_condition,
            ("debug", "show"): lambda _req: self.debug_show(),
        }
        """Every request the socket answers, by (cmd, what)."""
        kl2tp_log.STATE.session_lookup = self._session_fields
        kl2tp_log.STATE.peer_lookup = self._tunnel_peer

    async def __call__(self, req: Request) -> Any:
        cmd, what = req.get("cmd"), req.get("what")
        handler = None
        if isinstance(cmd, str) and isinstance(what, str):
            handler = self.handlers.get((cmd, what))
        if handler is None:
            raise ControlError(f"unknown request {cmd!r} {what!r}")
        return await handler(req)

    # -- lookups for the debug condition (O(1)) -------------------------------------------------

    def _session_fields(self, tid: int, sid: int) -> dict[str, Any] | None:
        runner = self.endpoint.tunnels.get(tid)
        info = runner.sessions.get(sid) if runner is not None else None
        return info.extra if info is not None else None

    def _tunnel_peer(self, tid: int) -> str | None:
        runner = self.endpoint.tunnels.get(tid)
        return runner.peer_addr[0] if runner is not None else None

    # -- clear --------------------------------------------------------------------------------

    async def clear_tunnel(self, req: Request) -> dict[str, Any]:
        """``clear tunnel TID``: StopCCN."""
        runner = self._runner(req)
        runner.close(StopCcnResult.CLEAR_CONNECTION, message="cleared by operator")
        return {"cleared": runner.local_tunnel_id}

    async def clear_session(self, req: Request) -> dict[str, Any]:
        """``clear session TID SID``: CDN."""
        runner = self._runner(req)
        sid = _int(req, "session")
        if sid not in runner.sessions:
            raise ControlError(f"no session {sid} in tunnel {runner.local_tunnel_id}")
        runner.hangup(sid, CdnResult.ADMINISTRATIVE, message="cleared by operator")
        return {"cleared": [runner.local_tunnel_id, sid]}

    async def clear_matching(self, req: Request) -> dict[str, Any]:
        """``clear user NAME``, ``clear address A``, ``clear peer P``: CDN every session
        that matches; ``clear all``: StopCCN every tunnel."""
        what = req["what"]
        if what == "all":
            tids = []
            for runner in list(self.endpoint.tunnels.values()):
                runner.close(StopCcnResult.CLEAR_CONNECTION, message="cleared by operator")
                tids.append(runner.local_tunnel_id)
            return {"cleared": {"tunnels": len(tids)}}
        value = _str(req, "value")
        if what == "peer":
            cleared_tunnels = 0
            for runner in list(self.endpoint.tunnels.values()):
                if _peer_matches(runner.peer_addr, value):
                    runner.close(StopCcnResult.CLEAR_CONNECTION, message="cleared by operator")
                    cleared_tunnels += 1
            if not cleared_tunnels:
                raise ControlError(f"no tunnel from {value}")
            return {"cleared": {"tunnels": cleared_tunnels}}
        key = {"user": "username", "address": "address"}[what]
        pairs = [
            (runner, sid)
            for runner in list(self.endpoint.tunnels.values())
            for sid, info in list(runner.sessions.items())
            if info.extra.get(key) == value
        ]
        if not pairs:
            raise ControlError(f"no session with {what} {value}")
        for runner, sid in pairs:
            runner.hangup(sid, CdnResult.ADMINISTRATIVE, message="cleared by operator")
        return {"cleared": {"sessions": [[r.local_tunnel_id, sid] for r, sid in pairs]}}

    def _runner(self, req: Request) -> TunnelRunner:
        tid = _int(req, "tunnel")
        runner = self.endpoint.tunnels.get(tid)
        if runner is None:
            raise ControlError(f"no tunnel {tid}")
        return runner

    # -- drain, reload, debug -----------------------------------------------------------------

    async def drain(self, on: bool) -> dict[str, Any]:
        """``drain``: no new tunnels (SCCRQs dropped) or sessions (CDN, temporary lack of
        resources); the existing stay. ``undrain``: back to normal."""
        endpoint = self.endpoint
        endpoint.draining = on
        apply_policy(endpoint)
        log.info(
            "%s: %d tunnels, %d sessions stay",
            "draining" if on else "undrained",
            len(endpoint.tunnels),
            endpoint.session_count(),
        )
        return {"draining": on}

    async def reload(self, _req: Request) -> dict[str, Any]:
        """``reload`` (and SIGHUP): re-read the configuration and apply it."""
        if self._reload is None:
            raise ControlError("this daemon cannot reload (no configuration file)")
        result = await self._reload()
        if result.get("ok"):
            self.reloads += 1
        return result

    async def debug_categories(self, req: Request) -> dict[str, Any]:
        """``debug l2tp,ppp on|off``."""
        text = _str(req, "categories")
        on = req.get("on")
        if not isinstance(on, bool):
            raise ControlError("on must be true or false")
        try:
            names, avp = kl2tp_log.parse_categories(text)
        except kl2tp_log.UsageError as exc:
            raise ControlError(str(exc)) from None
        kl2tp_log.set_debug(names or list(kl2tp_log.CATEGORIES), on, avp=avp)
        log.info("debug %s %s (operator)", ",".join(names) or "all", "on" if on else "off")
        return kl2tp_log.debug_state()

    async def debug_condition(self, req: Request) -> dict[str, Any]:
        """``debug condition user NAME|peer ADDR|tunnel TID`` or ``debug condition clear``."""
        kind = req.get("kind")
        if kind == "clear":
            kl2tp_log.STATE.condition = None
        elif kind in ("user", "peer", "tunnel"):
            value = _str(req, "value")
            if kind == "tunnel" and not value.isdigit():
                raise ControlError(f"tunnel must be a number, got {value!r}")
            kl2tp_log.STATE.condition = kl2tp_log.DebugCondition(kind, value)
        else:
            raise ControlError("kind must be user, peer, tunnel or clear")
        log.info("debug condition %s (operator)", kind if kind == "clear" else f"{kind} {value}")
        return kl2tp_log.debug_state()

    async def debug_show(self) -> dict[str, Any]:
        """``debug`` without arguments: what is on."""
        return kl2tp_log.debug_state()

    # -- show ---------------------------------------------------------------------------------

    async def tunnels(self) -> list[dict[str, Any]]:
        out = []
        for runner in list(self.endpoint.tunnels.values()):
            out.append(await self._tunnel_row(runner))
        return out

    async def _tunnel_row(self, runner: TunnelRunner) -> dict[str, Any]:
        row = runner.snapshot()
        counters = await self.dataplane.tunnel_counters(runner.local_tunnel_id)
        if counters is not None:
            row["kernel"] = counters.as_dict()
        return row

    async def show_tunnel(self, req: Request) -> dict[str, Any]:
        """``show tunnel TID``: the tunnel, its counters and its sessions."""
        runner = self._runner(req)
        row = await self._tunnel_row(runner)
        core = runner.core
        row["messages"] = dict(core.counters)
        row["peer_vendor"] = getattr(core, "peer_vendor", "")
        row["peer_window"] = getattr(core, "peer_window", None)
        row["established_uptime"] = (
            round(trio.current_time() - runner.established_at, 3)
            if runner.established_at is not None
            else None
        )
        row["session_list"] = await self._session_rows([runner], {})
        return row

    async def sessions(self, req: Request) -> list[dict[str, Any]]:
        """``show sessions [user U] [peer P] ...``: one row per matching session."""
        filters = req.get("filters") or {}
        if not isinstance(filters, dict):
            raise ControlError("filters must be an object")
        unknown = set(filters) - set(SESSION_FILTERS)
        if unknown:
            raise ControlError(
                f"unknown filter {sorted(unknown)[0]!r} (choose from {', '.join(SESSION_FILTERS)})"
            )
        runners = list(self.endpoint.tunnels.values())
        if "tunnel" in filters:
            tid = str(filters["tunnel"])
            runner = self.endpoint.tunnels.get(int(tid)) if tid.isdigit() else None
            runners = [runner] if runner is not None else []
        if "peer" in filters:
            runners = [r for r in runners if _peer_matches(r.peer_addr, str(filters["peer"]))]
        return await self._session_rows(runners, filters)

    async def _session_rows(
        self, runners: list[TunnelRunner], filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        checks = [
            (field, str(filters[name]))
            for name, field in (
                ("user", "username"),
                ("state", "state"),
                ("address", "address"),
                ("interface", "interface"),
            )
            if name in filters
        ]
        out = []
        for runner in runners:
            peer = _hostport(*runner.peer_addr)
            for row in runner.session_snapshots():
                if any(str(row.get(field, "")) != want for field, want in checks):
                    continue
                row["peer_address"] = peer
                row["lac"] = runner.peer_hostname
                out.append(row)
        # One data-plane query for every row (a single kernel dump), not one per session:
        # per-session netlink round trips made 200 sessions outlast kl2tpctl's wait.
        all_counters = await self.dataplane.sessions_counters(
            [(row["tunnel_id"], row["local_id"]) for row in out]
        )
        for row in out:
            counters = all_counters.get((row["tunnel_id"], row["local_id"]))
            if counters is not None:
                kernel = counters.as_dict()
                row["kernel"] = kernel
                row["rx_bytes"] = kernel.get("rx_bytes", 0)
                row["tx_bytes"] = kernel.get("tx_bytes", 0)
                row["rx_packets"] = kernel.get("rx_packets", 0)
                row["tx_packets"] = kernel.get("tx_packets", 0)
        return out

    async def show_session(self, req: Request) -> dict[str, Any]:
        """``show session TID SID``: everything known about one session."""
        runner = self._runner(req)
        sid = _int(req, "session")
        rows = [r for r in await self._session_rows([runner], {}) if r["local_id"] == sid]
        if not rows:
            raise ControlError(f"no session {sid} in tunnel {runner.local_tunnel_id}")
        row = rows[0]
        info = runner.sessions.get(sid)
        if info is not None and info.established is not None:
            row["established_uptime"] = round(trio.current_time() - info.established, 3)
        row["ppp"] = _ppp_detail(self.endpoint.handler, runner.local_tunnel_id, sid)
        core_sess = runner.core.sessions.get(sid)
        if core_sess is not None:
            call = getattr(core_sess, "call", None)
            if call is not None:
                row["call"] = {
                    k: v
                    for k, v in attrs.asdict(call).items()
                    if v is not None and not isinstance(v, bytes)
                }
        return row

    async def history(self, req: Request) -> list[dict[str, Any]]:
        """``show history [N]``: the last N ended, failed and refused sessions, newest first."""
        count = req.get("count", 50)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ControlError("count must be a positive integer")
        entries = list(self.events.history)[-count:]
        entries.reverse()
        return entries

    async def summary(self) -> dict[str, Any]:
        tunnels: Counter[str] = Counter()
        sessions: Counter[str] = Counter()
        for runner in self.endpoint.tunnels.values():
            tunnels[runner.state] += 1
            sessions.update(runner.session_states())
        out = {
            "role": "lns" if self.endpoint.lns else "lac",
            "dataplane": self.dataplane.name,
            "draining": self.endpoint.draining,
            "tunnels": {"total": sum(tunnels.values()), "by_state": dict(tunnels)},
            "sessions": {"total": sum(sessions.values()), "by_state": dict(sessions)},
            # data_rx and data_early are always shown: 0 is the figure operators look for.
            "counters": {"data_rx": 0, "data_early": 0, **self.endpoint.counter_totals()},
            "ppp": self._handler_summary(),
            "events": dict(self.events.counts),
            "reloads": self.reloads,
            "setup": self.endpoint.stats.summary(),
            "policies": self._policy_summary(),
        }
        # Kernel totals: a tunnel's counters include all its sessions' traffic, so one
        # netlink query per tunnel (not per session) sums the whole daemon.
        kernel = await kernel_totals(self.endpoint)
        if kernel is not None:
            out["kernel"] = kernel
        cost = getattr(self.dataplane, "kernel_cost", None)
        if cost is not None:  # the kernel data plane's setup cost counters
            out["kernel_cost"] = cost()
        return out

    def _policy_summary(self) -> dict[str, dict[str, int]]:
        """Tunnels and sessions now, and refusals so far, per ``[[peer]]`` policy (the
        endpoint core keeps them: O(policies))."""
        core = self.endpoint.core
        names = [core.policies.default.name, *(p.name for p in core.policies.rules)]
        out: dict[str, dict[str, int]] = {}
        for name in dict.fromkeys([*names, *core.policy_tunnels, *core.policy_sessions]):
            out[name] = {
                "tunnels": core.policy_tunnels[name],
                "sessions": core.policy_sessions[name],
                "refused_max_tunnels": core.policy_refusals[(name, "max_tunnels")],
                "refused_max_sessions": core.policy_refusals[(name, "max_sessions")],
            }
        return out

    def _handler_summary(self) -> dict[str, object]:
        handler = self.endpoint.handler
        return handler.summary() if handler is not None else {}


def apply_policy(endpoint: Endpoint, **changes: Any) -> None:
    """Set endpoint policy (``max_tunnels``, ``max_sessions``, ``allowed_peers``) and keep
    the drain: a draining LNS answers no SCCRQ."""
    core = endpoint.core
    base = attrs.evolve(core.config, **changes) if changes else core.config
    core.config = attrs.evolve(base, lns=endpoint.lns and not endpoint.draining)


def _peer_matches(addr: Address, value: str) -> bool:
    return value in (addr[0], _hostport(addr[0], addr[1]))


def _ppp_detail(handler: object, tid: int, sid: int) -> dict[str, Any]:
    """The negotiated PPP options of a running session (empty without PPP)."""
    running = getattr(handler, "running", None)
    state = running.get((tid, sid)) if isinstance(running, Mapping) else None
    if state is None:
        return {}
    link = state.link
    lcp = link.lcp
    out: dict[str, Any] = {
        "phase": link.phase.value.lower(),
        "auth": link.auth_method.value if link.auth_method is not None else None,
        "lcp": {
            "our_mru": getattr(lcp, "want_mru", None),
            "peer_mru": getattr(lcp, "peer_mru", None),
            "peer_magic": f"{getattr(lcp, 'peer_magic', 0):08x}",
            "peer_pfc": getattr(lcp, "peer_pfc", None),
            "peer_acfc": getattr(lcp, "peer_acfc", None),
        },
        "proxy_lcp": bool(getattr(link, "proxy_lcp_forced", False)),
        "peer_address": str(link.peer_address) if link.peer_address is not None else None,
        "nas_port": getattr(state, "nas_port", None),
    }
    book = getattr(handler, "addresses", None)
    address = getattr(state, "address", None)
    holding = book.holding(address) if book is not None and address is not None else None
    if holding is not None:
        out["address_source"] = (
            "static" if holding.static else f"pool {holding.pool or '(default)'}"
        )
    reply = getattr(state, "reply", None)
    if isinstance(reply, dict) and reply:
        out["aaa"] = {str(k): _aaa_value(str(k), v) for k, v in reply.items()}
    routes = getattr(state, "routes", None)
    if isinstance(routes, tuple) and routes:
        out["routes"] = [str(r) for r in routes]
    for key in ("acct_session_id", "session_timeout", "idle_timeout"):
        value = getattr(state, key, None)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            out[key] = value
    return out


_HIDDEN_ATTRIBUTE = re.compile(r"key|password|secret|mppe", re.IGNORECASE)


def _aaa_value(name: str, value: object) -> object:
    """An AAA reply attribute as ``show session`` prints it: keys and passwords (MS-MPPE
    keys, tunnel passwords) never leave the daemon."""
    if _HIDDEN_ATTRIBUTE.search(name):
        return "(hidden)"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_aaa_value(name, v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _int(req: Request, key: str) -> int:
    value = req.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError(f"{key} must be an integer")
    return value


def _str(req: Request, key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{key} must be a non-empty string")
    return value


class StartupError(Exception):
    """The daemon cannot start (address in use, control socket taken): one line, exit 1."""


Reload = Callable[[], Awaitable[dict[str, Any]]]
"""Re-reads the configuration and applies it; returns what ``kl2tpctl reload`` prints."""

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
"""SIGTERM/SIGINT: graceful shutdown; SIGHUP: reload; SIGUSR1: summary to the log."""


async def run_daemon(
    settings: Settings,
    dataplane: DataPlane,
    handler: SessionHandler | None = None,
    *,
    rng: random.Random | None = None,
    dialer: Callable[[Endpoint], Awaitable[None]] | None = None,
    reload: Reload | None = None,
    notifier: Notifier | None = None,
    task_status: trio.TaskStatus[Endpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a daemon until SIGTERM/SIGINT (or cancellation); shut down gracefully.

    SIGHUP calls ``reload`` (the daemon keeps running whatever it says); SIGUSR1 writes the
    summary to the log. ``notifier`` tells systemd (READY, RELOADING, STOPPING, WATCHDOG).

    ``dialer`` (LAC) replaces the default "keep a tunnel to every LNS" task, e.g. the client
    mode's one call (:func:`kl2tp.daemon.client.keep_call`). It is cancelled first on a
    signal, so it never redials what the shutdown clears.

    Raises:
        StartupError: the listening address or the control socket is in use (one line).
    """
    notifier = notifier if notifier is not None else Notifier(None)
    endpoint = make_endpoint(settings, dataplane, handler, rng)
    events = oplog.EventLog(size=settings.history)
    oplog.EVENTS.set(events)
    api = ControlApi(endpoint, dataplane, reload=reload, events=events)
    worker = settings.worker
    handled: tuple[signal.Signals, ...] = HANDLED_SIGNALS
    if worker is not None:
        endpoint.transport = transport = UdpTransport.from_socket(
            stdlib_socket.socket(fileno=worker.udp_fd)
        )
        endpoint.sock = transport.sock
        # The supervisor gets the terminal's ^C and the operator's SIGHUP and tells us.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        handled = (signal.SIGTERM, signal.SIGUSR1)
    try:
        with trio.open_signal_receiver(*handled) as signals:
            async with trio.open_nursery() as nursery:
                try:
                    addr = await nursery.start(endpoint.serve)
                except OSError as exc:
                    host, port = settings.listen
                    hint = " (is another kl2tp daemon running?)" if _in_use(exc) else ""
                    raise StartupError(
                        f"cannot listen on {_hostport(host, port)}: {exc.strerror or exc}{hint}"
                    ) from None
                if settings.control_socket:
                    try:
                        await nursery.start(serve_control, settings.control_socket, api)
                    except (OSError, ControlError) as exc:
                        raise StartupError(f"control socket: {_one_line(exc)}") from None
                waiting = trio.CancelScope()
                if worker is not None:
                    await nursery.start(_serve_supervisor, worker, api, endpoint, events, waiting)
                if settings.metrics_listen is not None and worker is None:
                    server = MetricsServer(Source(endpoint, events))
                    try:
                        await nursery.start(server.serve, settings.metrics_listen)
                    except OSError as exc:
                        host, port = settings.metrics_listen
                        raise StartupError(
                            f"cannot serve metrics on {_hostport(host, port)}: "
                            f"{exc.strerror or exc}"
                        ) from None
                log.info(
                    "%s listening on %s (data plane: %s)",
                    settings.role.upper(),
                    _hostport(addr[0], addr[1]),
                    dataplane.name,
                )
                nursery.start_soon(notifier.watchdog)
                dialers = trio.CancelScope()
                if settings.role == "lac":

                    async def dial() -> None:
                        with dialers:
                            if dialer is not None:
                                await dialer(endpoint)
                                return
                            async with trio.open_nursery() as inner:
                                for peer, tunnel_config in settings.lns_peers:
                                    inner.start_soon(_keep_tunnel, endpoint, peer, tunnel_config)

                    nursery.start_soon(dial)
                notifier.ready(f"{settings.role.upper()} serving")
                task_status.started(endpoint)
                with waiting:
                    async for signum in signals:
                        if signum == signal.SIGHUP:
                            log.info("SIGHUP: reloading the configuration")
                            try:
                                await api.reload({})
                            except ControlError as exc:
                                log.warning("SIGHUP: %s", exc)
                            continue
                        if signum == signal.SIGUSR1:
                            summary = await api.summary()
                            log.info("summary: %s", json.dumps(summary, sort_keys=True))
                            continue
                        name = signal.Signals(signum).name
                        log.info("%s: clearing sessions and tunnels", name)
                        break
                notifier.stopping()
                dialers.cancel()
                await endpoint.shutdown(settings.shutdown_grace)
                nursery.cancel_scope.cancel()
    finally:
        notifier.close()
        with trio.CancelScope(shield=True):
            await dataplane.aclose()


async def _serve_supervisor(
    worker: WorkerSlot,
    api: ControlApi,
    endpoint: Endpoint,
    events: oplog.EventLog,
    waiting: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A worker's side of the socketpair: answer the supervisor's requests (control socket
    requests, metrics scrapes) with this worker's state, say we are ready, and shut down
    (cancel ``waiting``) when the supervisor goes away."""
    metrics = MetricsServer(Source(endpoint, events))

    async def handle(req: Request) -> Any:
        if req.get("cmd") == "metrics":
            return (await metrics.render()).decode()
        return await api(req)

    channel = Channel.from_fd(worker.channel_fd, handle)
    statics = WorkerStatics(channel)
    book = getattr(endpoint.handler, "addresses", None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.run)
        if isinstance(book, AddressBook):  # one pool and one view of static addresses
            book.shared = statics
            nursery.start_soon(statics.run)
            blocks = WorkerBlocks(channel, book)
            blocks.attach()
            for name in list(book.pools):
                await blocks.lease(name)  # a first block of each pool before the first call
            nursery.start_soon(blocks.run)
        await channel.call({"cmd": "ready", "pid": os.getpid()})
        task_status.started()
        await channel.closed.wait()
    log.info("worker %d: the supervisor went away: clearing sessions and tunnels", worker.index)
    waiting.cancel()


def _in_use(exc: OSError) -> bool:
    return exc.errno == errno.EADDRINUSE


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


hostport = _hostport
"""``host:port``, ``[v6]:port``."""


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else text


def startup_failure(exc: BaseException) -> str | None:
    """The one line to print for an exception (or a group holding just one) that means the
    daemon could not start; None for anything else (a bug: let it show its traceback)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, StartupError | WorkerFailed):
        return str(exc)
    if isinstance(exc, OSError | ControlError):
        return _one_line(exc)
    return None


async def _keep_tunnel(
    endpoint: Endpoint,
    peer: Address,
    tunnel_config: TunnelConfig,
    *,
    backoff: Backoff | None = None,
    setup_timeout: float = 60.0,
) -> None:
    """LAC: keep a tunnel to ``peer`` up, redialling with ``backoff`` (the client's, by
    default) while dials fail."""
    backoff = backoff if backoff is not None else Backoff()
    delay = backoff.initial
    while True:
        try:
            runner = await endpoint.dial(peer, tunnel_config, setup_timeout=setup_timeout)
        except TunnelSetupError as exc:
            log.warning("%s; retrying in %.0f s", exc, delay)
            await trio.sleep(delay)
            delay = backoff.next(delay)
            continue
        delay = backoff.initial
        await runner.closed.wait()
        await trio.sleep(delay)


@attrs.define
class SimulationResult:
    """What ``kl2tp-lac --simulate`` prints."""

    requested: int
    """Calls asked for."""
    established: int = 0
    """Calls that came up."""
    failed: Counter[str] = attrs.field(factory=Counter)
    """Failures by reason."""
    setup_ms: list[float] = attrs.field(factory=list)
    """Setup time of every established call, in ms."""
    first_started: float | None = None
    """trio time the first call was placed."""
    last_established: float | None = None
    """trio time the last call came up."""
    cleared_by_peer: int = 0
    """Calls that came up and that the LNS cleared before the end of the hold."""
    tunnels: int = 0
    """Tunnels the calls were spread over."""
    cpu_s: float | None = None
    """The load generator's own CPU time (user + system) over the run, when measured."""
    redials: Counter[str] = attrs.field(factory=Counter)
    """Failed attempts of calls that were placed again (``redial``), by reason."""

    def summary(self) -> dict[str, Any]:
        """The summary as one JSON-friendly object. ``report`` has the figures under the
        names BNG Blaster's JSON report gives them (``setup-time`` from the first call
        placed to the last one up, in ms; ``setup-rate`` = established / that time)."""
        times = sorted(self.setup_ms)
        span = None
        if self.first_started is not None and self.last_established is not None:
            span = self.last_established - self.first_started
        cps = (
            self.established / span
            if span
            else (float(self.established) if self.established else 0.0)
        )
        pcts = {f"p{p}": _percentile(times, p) for p in (50, 95, 99)}
        out: dict[str, Any] = {
            "requested": self.requested,
            "established": self.established,
            "failed": dict(self.failed),
            "setup_ms": pcts,
            "cps": round(cps, 1),
            "tunnels": self.tunnels,
        }
        report: dict[str, Any] = {
            "sessions": self.requested,
            "sessions-established": self.established,
            "sessions-failed": sum(self.failed.values()),
            "sessions-flapped": self.cleared_by_peer,
            "setup-time": round(span * 1000.0) if span is not None else None,
            "setup-rate": round(cps, 2),
            **{f"setup-time-{k}": v for k, v in pcts.items()},
            "failures": dict(self.failed),
        }
        if self.redials:
            out["redials"] = dict(self.redials)
            report["setup-retries"] = sum(self.redials.values())
            report["retry-reasons"] = dict(self.redials)
        if self.cpu_s is not None:
            per_call = self.cpu_s * 1000.0 / self.established if self.established else None
            out["cpu_s"] = round(self.cpu_s, 3)
            out["cpu_ms_per_call"] = round(per_call, 3) if per_call is not None else None
            report["cpu-ms-per-session"] = out["cpu_ms_per_call"]
        out["report"] = report
        return out

    def raw(self, clock_offset: float) -> dict[str, Any]:
        """What :meth:`merged` needs from one ``--processes`` part: the counts, every setup
        time and the first/last instants moved onto the machine's monotonic clock
        (``clock_offset`` = ``time.monotonic() - trio.current_time()``: trio's clock has a
        random offset of its own per process)."""

        def mono(t: float | None) -> float | None:
            return None if t is None else t + clock_offset

        return {
            "requested": self.requested,
            "established": self.established,
            "failed": dict(self.failed),
            "setup_ms": self.setup_ms,
            "first_started": mono(self.first_started),
            "last_established": mono(self.last_established),
            "cleared_by_peer": self.cleared_by_peer,
            "tunnels": self.tunnels,
            "cpu_s": self.cpu_s,
            "redials": dict(self.redials),
        }

    @classmethod
    def merged(cls, parts: Iterable[dict[str, Any]]) -> SimulationResult:
        """One result from the :meth:`raw` of every part (percentiles over all calls, the
        setup span from the earliest start to the latest establishment, CPU summed)."""
        out = cls(requested=0, cpu_s=0.0)
        for part in parts:
            out.requested += part["requested"]
            out.established += part["established"]
            out.failed.update(part["failed"])
            out.redials.update(part.get("redials", {}))
            out.setup_ms.extend(part["setup_ms"])
            out.cleared_by_peer += part["cleared_by_peer"]
            out.tunnels += part["tunnels"]
            out.cpu_s = (out.cpu_s or 0.0) + (part["cpu_s"] or 0.0)
            first, last = part["first_started"], part["last_established"]
            if first is not None and (out.first_started is None or first < out.first_started):
                out.first_started = first
            if last is not None and (out.last_established is None or last > out.last_established):
                out.last_established = last
        return out


def _percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)
    return round(sorted_values[k], 3)


async def simulate(
    endpoint: Endpoint,
    peers: Sequence[tuple[Address, TunnelConfig]],
    count: int,
    *,
    rate: float | None = None,
    hold: float = 0.0,
    setup_timeout: float = 60.0,
    call_factory: Callable[[int], CallParams] | None = None,
    connect_factory: Callable[[int], ConnectInfo | None] | None = None,
    stop: trio.Event | None = None,
    picker: TunnelPicker | None = None,
    username_of: Callable[[int], str] | None = None,
    max_outstanding: int = 0,
    first: int = 1,
    barrier: Callable[[], Awaitable[None]] | None = None,
    redial: float | None = None,
    redial_max: float | None = None,
) -> SimulationResult:
    """Place ``count`` calls across tunnels to ``peers``, hold them, clear them.

    One tunnel per entry of ``peers`` (repeat an entry for more tunnels to one LNS); call
    ``n`` goes into tunnel ``n`` modulo their number. At most ``max_outstanding`` calls
    (0: no limit) are in setup at once; a call waiting for its turn is not yet placed, and
    its setup time counts from its placing.

    A call counts as established when its session handler says so (``SessionInfo.done``
    with ``established`` set): the bare L2TP session without PPP, the IPCP-open subscriber
    with it. Setting ``stop`` ends the hold early (the calls are then cleared as usual).

    With a ``picker`` (LAC tunnel selection) each call asks it for the tunnel of subscriber
    ``n`` (``username_of(n)`` and the call's called number) instead of going round the
    tunnels to ``peers``; a call it finds none for fails as ``no tunnel`` / ``no LNS
    answered``.

    The calls are numbered ``first`` .. ``first + count - 1`` (a ``--processes`` part
    places its own slice of the numbers, so subscriber names stay unique). ``barrier``, when
    given, is awaited once every call of this process is up (or failed) and before the hold
    begins: ``--processes`` parts start their holds together through it. Once ``stop`` is
    set no further call is placed (those count as ``not placed (stopped)``); the calls in
    setup finish it and are cleared.

    With ``redial`` (seconds) a call that fails setup is placed again after 0.5-1.5 times
    that, as a subscriber redials, until it is up or ``stop`` is set: ``redials`` counts the
    failed attempts by reason, ``failed`` only the calls that never came up, and a call's
    setup time counts from its first placing (the time its subscriber waited). With
    ``redial_max`` too, each failed attempt of a call doubles its pause, up to that (a
    subscriber that backs off, as most CPE do).
    """
    stop = stop if stop is not None else trio.Event()
    result = SimulationResult(requested=count)
    runners: list[TunnelHandle] = []
    for peer, tunnel_config in peers if picker is None else ():
        try:
            runners.append(await endpoint.dial(peer, tunnel_config, setup_timeout=setup_timeout))
        except TunnelSetupError as exc:
            log.error("%s", exc)
    if not runners and picker is None:
        result.failed["tunnel setup failed"] = count
        return result
    result.tunnels = len(runners)
    make_call = call_factory or subscriber_call
    all_up = trio.Event()
    holding = trio.Event()  # all up, and the barrier (if any) passed
    pending = [count]
    turns = trio.Semaphore(max_outstanding) if max_outstanding > 0 else None

    def finished_setup() -> None:
        if turns is not None:
            turns.release()
        pending[0] -= 1
        if pending[0] == 0:
            all_up.set()

    async def place(n: int, placed: list[float]) -> tuple[TunnelHandle, SessionInfo] | str:
        """One attempt at call ``n`` (its placing time appended to ``placed``): its tunnel
        and info once it is up, or the name of why it failed."""
        call = make_call(n)
        runner: TunnelHandle
        if picker is not None:
            try:
                runner = await picker.tunnel_for(username_of(n) if username_of else "", call)
            except NoTunnel as exc:
                return str(exc)
        else:
            runner = runners[n % len(runners)]
        if runner.closed.is_set():
            return "tunnel closed"
        start = trio.current_time()
        if result.first_started is None:
            result.first_started = start
        placed.append(start)
        connect = connect_factory(n) if connect_factory is not None else None
        try:
            info = runner.place_call(call, connect, defer_connect=endpoint.defers_connect)
        except CommandError:  # the tunnel began to close since it was picked
            return "tunnel closed"
        info.extra["n"] = n
        with trio.move_on_after(setup_timeout):
            await info.done.wait()
        if info.established is None:
            if info.closed is None:
                runner.hangup(info.local_sid, CdnResult.ADMINISTRATIVE, message="setup timed out")
            return _failure_reason(info)
        return runner, info

    async def one_call(n: int) -> None:
        placed: list[float] = []  # every attempt's placing time; setup counts from the first
        reason = "not placed (stopped)"
        pause = redial or 0.0
        while True:
            if turns is not None:
                await turns.acquire()
            if stop.is_set():  # stopped before its (next) turn: not placed again
                result.failed[reason] += 1
                finished_setup()
                return
            outcome = await place(n, placed)
            if not isinstance(outcome, str):
                break
            reason = outcome
            if redial is None or stop.is_set():
                result.failed[reason] += 1
                finished_setup()
                return
            # A subscriber that failed dials again after a while (jittered, so a refused
            # crowd does not come back in step), out of the setup cap meanwhile.
            result.redials[reason] += 1
            if turns is not None:
                turns.release()
            with trio.move_on_after(pause * (0.5 + _jitter.random())):
                await stop.wait()
            if redial_max is not None:
                pause = min(pause * 2, redial_max)
        runner, info = outcome
        start = placed[0]
        up = info.established
        assert up is not None
        result.established += 1
        result.setup_ms.append((up - start) * 1000.0)
        if result.last_established is None or up > result.last_established:
            result.last_established = up
        finished_setup()
        # Hold until every call is up (so they are all up at once) and then ``hold`` more;
        # a call the LNS clears meanwhile (CDN) ends its hold and no longer counts as up.
        await holding.wait()
        if info.closed is None and not stop.is_set():
            info.done = trio.Event()  # the endpoint sets it again when the call closes
            held[n] = info
            with trio.move_on_after(hold):
                await info.done.wait()  # or `end_holds` sets it
            held.pop(n, None)
        if info.closed is not None and info.closed.by_peer:
            result.established -= 1
            result.cleared_by_peer += 1
            # Named by the Result Code, never the peer's free text (DESIGN: failure names).
            result.failed[f"cleared by peer (cdn result {info.closed.result})"] += 1
            return
        if info.closed is None:
            info.done = trio.Event()
            runner.hangup(info.local_sid, CdnResult.LOSS_OF_CARRIER, message="simulation done")
            with trio.move_on_after(setup_timeout):
                await info.done.wait()

    # The calls in their hold, by number: ``stop`` ends all their holds at once (one task,
    # not one per call).
    held: dict[int, SessionInfo] = {}

    async def end_holds() -> None:
        await stop.wait()
        for info in held.values():
            info.done.set()

    async def release_holds() -> None:
        await all_up.wait()
        if barrier is not None:
            async with trio.open_nursery() as waiting:

                async def on_stop() -> None:
                    await stop.wait()
                    waiting.cancel_scope.cancel()

                waiting.start_soon(on_stop)
                await barrier()
                waiting.cancel_scope.cancel()
        holding.set()

    if count == 0:
        all_up.set()
    async with trio.open_nursery() as outer:
        outer.start_soon(end_holds)
        outer.start_soon(release_holds)
        async with trio.open_nursery() as nursery:
            interval = 1.0 / rate if rate else 0.0
            next_at = trio.current_time()
            for n in range(first, first + count):
                nursery.start_soon(one_call, n)
                if interval and not stop.is_set():  # stopped: the rest go at once, unplaced
                    next_at += interval
                    await trio.sleep_until(next_at)
                elif n % 64 == 0:
                    await trio.lowlevel.checkpoint()
        outer.cancel_scope.cancel()
    if picker is not None:
        runners = list(picker.live_tunnels())
    for runner in runners:
        if not runner.closed.is_set():
            runner.close(StopCcnResult.CLEAR_CONNECTION, message="simulation done")
    with trio.move_on_after(setup_timeout):
        for runner in runners:
            await runner.closed.wait()
    return result


def _failure_reason(info: SessionInfo) -> str:
    closed = info.closed
    if closed is None:
        return str(info.extra.get("failure", "setup timeout"))
    reason = info.extra.get("failure")
    if reason:
        return str(reason)
    text = f"cdn result {closed.result}"
    if closed.message:
        text += f": {closed.message}"
    return text
