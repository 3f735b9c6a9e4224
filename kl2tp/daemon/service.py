"""The daemons: wiring of endpoint, data plane, sessions, control socket and signals.

``run_daemon`` is the whole of kl2tp-lns and kl2tp-lac's long-running mode; ``simulate``
is kl2tp-lac's load generator. Both take a :class:`Settings` the CLI builds from the config.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio
import trio.lowlevel

from kl2tp.daemon.client import Backoff, subscriber_call
from kl2tp.daemon.control import ControlError, serve_control
from kl2tp.daemon.endpoint import Endpoint, TunnelRunner, TunnelSetupError
from kl2tp.daemon.handle import Address, SessionHandler, SessionInfo, TunnelHandle
from kl2tp.dataplane.base import Counters, DataPlane
from kl2tp.l2tp.constants import CdnResult, StopCcnResult
from kl2tp.l2tp.events import CallParams, ConnectInfo
from kl2tp.l2tp.session import CommandError
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.lac.tunnels import NoTunnel, TunnelPicker

log = logging.getLogger("kl2tp.daemon")


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
    shutdown_grace: float = 5.0
    """Seconds to wait for CDN/StopCCN acks on SIGTERM."""


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
        rng=rng,
    )


Request = dict[str, Any]
"""One control-socket request: ``{"cmd": ..., "what": ..., more keys}``."""


class ControlApi:
    """Answers control-socket requests from the endpoint's state.

    Requests dispatch through :attr:`handlers`, a table ``(cmd, what) -> method``.
    """

    def __init__(self, endpoint: Endpoint, dataplane: DataPlane) -> None:
        self.endpoint = endpoint
        self.dataplane = dataplane
        self.handlers: dict[tuple[str, str], Callable[[Request], Awaitable[Any]]] = {
            ("show", "tunnels"): lambda _req: self.tunnels(),
            ("show", "sessions"): lambda _req: self.sessions(),
            ("show", "summary"): lambda _req: self.summary(),
            ("clear", "tunnel"): self.clear_tunnel,
            ("clear", "session"): self.clear_session,
        }
        """Every request the socket answers, by (cmd, what)."""

    async def __call__(self, req: Request) -> Any:
        cmd, what = req.get("cmd"), req.get("what")
        handler = None
        if isinstance(cmd, str) and isinstance(what, str):
            handler = self.handlers.get((cmd, what))
        if handler is None:
            raise ControlError(f"unknown request {cmd!r} {what!r}")
        return await handler(req)

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

    def _runner(self, req: Request) -> TunnelRunner:
        tid = _int(req, "tunnel")
        runner = self.endpoint.tunnels.get(tid)
        if runner is None:
            raise ControlError(f"no tunnel {tid}")
        return runner

    async def tunnels(self) -> list[dict[str, Any]]:
        out = []
        for runner in list(self.endpoint.tunnels.values()):
            row = runner.snapshot()
            counters = await self.dataplane.tunnel_counters(runner.local_tunnel_id)
            if counters is not None:
                row["kernel"] = counters.as_dict()
            out.append(row)
        return out

    async def sessions(self) -> list[dict[str, Any]]:
        out = []
        for runner in list(self.endpoint.tunnels.values()):
            for row in runner.session_snapshots():
                counters = await self.dataplane.session_counters(
                    runner.local_tunnel_id, row["local_id"]
                )
                if counters is not None:
                    row["kernel"] = counters.as_dict()
                out.append(row)
        return out

    async def summary(self) -> dict[str, Any]:
        tunnels: Counter[str] = Counter()
        sessions: Counter[str] = Counter()
        for runner in self.endpoint.tunnels.values():
            tunnels[runner.state] += 1
            sessions.update(runner.session_states())
        out = {
            "role": "lns" if self.endpoint.lns else "lac",
            "dataplane": self.dataplane.name,
            "tunnels": {"total": sum(tunnels.values()), "by_state": dict(tunnels)},
            "sessions": {"total": sum(sessions.values()), "by_state": dict(sessions)},
            # data_rx and data_early are always shown: 0 is the figure operators look for.
            "counters": {"data_rx": 0, "data_early": 0, **self.endpoint.counter_totals()},
            "ppp": self._handler_summary(),
        }
        # Kernel totals: a tunnel's counters include all its sessions' traffic, so one
        # netlink query per tunnel (not per session) sums the whole daemon.
        total: Counter[str] = Counter(Counters().as_dict())
        kernel = self.dataplane.kernel_counters
        for runner in list(self.endpoint.tunnels.values()):
            counters = await self.dataplane.tunnel_counters(runner.local_tunnel_id)
            if counters is not None:
                kernel = True
                total.update(counters.as_dict())
        if kernel:
            out["kernel"] = dict(total)
        return out

    def _handler_summary(self) -> dict[str, object]:
        handler = self.endpoint.handler
        return handler.summary() if handler is not None else {}


def _int(req: Request, key: str) -> int:
    value = req.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError(f"{key} must be an integer")
    return value


async def run_daemon(
    settings: Settings,
    dataplane: DataPlane,
    handler: SessionHandler | None = None,
    *,
    rng: random.Random | None = None,
    dialer: Callable[[Endpoint], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[Endpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a daemon until SIGTERM/SIGINT (or cancellation); shut down gracefully.

    ``dialer`` (LAC) replaces the default "keep a tunnel to every LNS" task, e.g. the client
    mode's one call (:func:`kl2tp.daemon.client.keep_call`). It is cancelled first on a
    signal, so it never redials what the shutdown clears.
    """
    endpoint = make_endpoint(settings, dataplane, handler, rng)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(endpoint.serve)
            log.info(
                "%s listening on %s:%d (data plane: %s)",
                settings.role.upper(),
                addr[0],
                addr[1],
                dataplane.name,
            )
            if settings.control_socket:
                await nursery.start(
                    serve_control, settings.control_socket, ControlApi(endpoint, dataplane)
                )
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
            task_status.started(endpoint)
            async for signum in signals:
                log.info("signal %d: clearing sessions and tunnels", signum)
                break
            dialers.cancel()
            await endpoint.shutdown(settings.shutdown_grace)
            nursery.cancel_scope.cancel()
    with trio.CancelScope(shield=True):
        await dataplane.aclose()


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

    def summary(self) -> dict[str, Any]:
        """The summary as one JSON-friendly object."""
        times = sorted(self.setup_ms)
        span = None
        if self.first_started is not None and self.last_established is not None:
            span = self.last_established - self.first_started
        cps = (
            self.established / span
            if span
            else (float(self.established) if self.established else 0.0)
        )
        return {
            "requested": self.requested,
            "established": self.established,
            "failed": dict(self.failed),
            "setup_ms": {"p50": _percentile(times, 50), "p99": _percentile(times, 99)},
            "cps": round(cps, 1),
        }


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
) -> SimulationResult:
    """Place ``count`` calls across tunnels to ``peers``, hold them, clear them.

    A call counts as established when its session handler says so (``SessionInfo.done``
    with ``established`` set): the bare L2TP session without PPP, the IPCP-open subscriber
    with it. Setting ``stop`` ends the hold early (the calls are then cleared as usual).

    With a ``picker`` (LAC tunnel selection) each call asks it for the tunnel of subscriber
    ``n`` (``username_of(n)`` and the call's called number) instead of going round the
    tunnels to ``peers``; a call it finds none for fails as ``no tunnel`` / ``no LNS
    answered``.
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
    make_call = call_factory or subscriber_call
    all_up = trio.Event()
    pending = [count]

    def finished_setup() -> None:
        pending[0] -= 1
        if pending[0] == 0:
            all_up.set()

    async def one_call(n: int) -> None:
        call = make_call(n)
        runner: TunnelHandle
        if picker is not None:
            try:
                runner = await picker.tunnel_for(username_of(n) if username_of else "", call)
            except NoTunnel as exc:
                result.failed[str(exc)] += 1
                finished_setup()
                return
        else:
            runner = runners[n % len(runners)]
        if runner.closed.is_set():
            result.failed["tunnel closed"] += 1
            finished_setup()
            return
        start = trio.current_time()
        if result.first_started is None:
            result.first_started = start
        connect = connect_factory(n) if connect_factory is not None else None
        try:
            info = runner.place_call(call, connect, defer_connect=endpoint.defers_connect)
        except CommandError:  # the tunnel began to close since it was picked
            result.failed["tunnel closed"] += 1
            finished_setup()
            return
        info.extra["n"] = n
        with trio.move_on_after(setup_timeout):
            await info.done.wait()
        if info.established is None:
            reason = _failure_reason(info)
            result.failed[reason] += 1
            finished_setup()
            if info.closed is None:
                runner.hangup(info.local_sid, CdnResult.ADMINISTRATIVE, message="setup timed out")
            return
        up = info.established
        result.established += 1
        result.setup_ms.append((up - start) * 1000.0)
        if result.last_established is None or up > result.last_established:
            result.last_established = up
        finished_setup()
        # Hold until every call is up (so they are all up at once) and then ``hold`` more.
        await all_up.wait()
        with trio.move_on_after(hold):
            await stop.wait()
        if info.closed is None:
            info.done = trio.Event()
            runner.hangup(info.local_sid, CdnResult.LOSS_OF_CARRIER, message="simulation done")
            with trio.move_on_after(setup_timeout):
                await info.done.wait()

    async with trio.open_nursery() as nursery:
        interval = 1.0 / rate if rate else 0.0
        next_at = trio.current_time()
        for n in range(1, count + 1):
            nursery.start_soon(one_call, n)
            if interval:
                next_at += interval
                await trio.sleep_until(next_at)
            elif n % 64 == 0:
                await trio.lowlevel.checkpoint()
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
