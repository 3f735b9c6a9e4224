"""Prometheus metrics: the figures ``kl2tpctl show summary`` shows, served over HTTP.

Everything a scrape reads is kept up to date where it happens, as plain counts:
tunnels and sessions by state in one :class:`kl2tp.l2tp.tunnel.StateTally` per policy
(the tunnel cores count their own state changes), call setups in :class:`SessionStats`,
the endpoint's and handler's counters as they already are. A scrape therefore costs the
same with 100,000 sessions as with one: no loop over sessions, on the event loop or
elsewhere. The endpoint counters the tunnel cores keep per tunnel (retransmissions, ...)
are summed over live tunnels, as ``show summary`` does (O(tunnels), never per session);
the kernel's traffic totals cost one netlink query per tunnel, awaited like any other
data-plane call.

The HTTP side is a small trio server (``[metrics] listen``): GET /metrics answers with the
text exposition format prometheus-client writes; nothing else is served.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import trio
import trio.lowlevel
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from kl2tp.daemon.stats import SessionStats
from kl2tp.histogram import Histogram
from kl2tp.l2tp.endpoint import REFUSAL_COUNTERS, add_live_totals

if TYPE_CHECKING:
    from kl2tp.daemon.endpoint import Endpoint
    from kl2tp.daemon.oplog import EventLog

log = logging.getLogger("kl2tp.daemon")

# --- the Prometheus view ----------------------------------------------------------------------

REFUSAL_LIMITS: dict[str, str] = {
    **REFUSAL_COUNTERS,
    "draining": "calls_refused_draining",
    "max_tunnels": "drop_tunnel_limit",
    "max_setup_tunnels": "drop_setup_tunnel_limit",
    "sccrq_rate": "drop_sccrq_rate",
    "sccrq_total_rate": "drop_sccrq_total_rate",
    "allowed_peers": "drop_peer_not_allowed",
    "tunnel_ids": "drop_tunnel_ids_exhausted",
    "max_lingering": "linger_evicted",
    "default_peer": "tunnels_refused_unmatched",
    "peer_max_tunnels": "tunnels_refused_peer_limit",
}
"""``kl2tp_refusals_total{limit}``: each limit (its ``[l2tp]`` key, or what ran out) and the
``show summary`` counter that counts what it refused: calls refused with CDN result 4, SCCRQs
dropped, lingering tunnels forgotten early."""

KERNEL_COUNTERS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors")
"""The kernel's traffic totals over every tunnel (``show summary``'s ``kernel``)."""

GAUGE_COUNTERS = {
    "half_open_tunnels": "Tunnels peers opened that are not established yet.",
    "lingering_tunnels": "Closed tunnels kept to re-acknowledge a late StopCCN.",
    "sessions_in_setup": "Sessions admitted whose L2TP setup (ICRQ..ICCN) is not finished.",
    "sessions_negotiating": "Sessions admitted and not up yet (L2TP setup and PPP).",
}
"""Figures of ``show summary``'s counters that are levels, not counts."""


TUNNELS_PER_SLICE = 512
"""Tunnels whose counters a scrape sums before it lets other tasks run (10,000 tunnels cost
~80 ms in all on this machine: never in one piece on the event loop)."""


class Source:
    """What the collector reads: the endpoint (its counters, stats and handler), the event
    counts, and the kernel totals the server fetched just before the scrape."""

    def __init__(self, endpoint: Endpoint, events: EventLog) -> None:
        self.endpoint = endpoint
        self.events = events
        self.totals: dict[str, int] | None = None
        """The endpoint's counters with the live tunnels' added (None: sum them at collect)."""
        self.kernel: dict[str, int] | None = None
        """The kernel's traffic totals (None: the data plane keeps none)."""

    async def refresh(self) -> None:
        """Gather what grows with the tunnels (never with the sessions) in slices that let
        other tasks run in between: the tunnel cores' counters, and the kernel totals (one
        query per tunnel)."""
        core = self.endpoint.core
        totals = core.base_totals()
        entries = list(core.tunnels.values())
        for start in range(0, len(entries), TUNNELS_PER_SLICE):
            if start:
                await trio.lowlevel.checkpoint()
            add_live_totals(totals, entries[start : start + TUNNELS_PER_SLICE])
        self.totals = totals
        self.kernel = await kernel_totals(self.endpoint)


async def kernel_totals(endpoint: Endpoint) -> dict[str, int] | None:
    """Traffic totals over every tunnel from the data plane (a tunnel's counters include
    its sessions'), or None when it keeps none. The same sum ``show summary`` shows."""
    dataplane = endpoint.dataplane
    total = dict.fromkeys(KERNEL_COUNTERS, 0)
    kernel = dataplane.kernel_counters
    for runner in list(endpoint.tunnels.values()):
        counters = await dataplane.tunnel_counters(runner.local_tunnel_id)
        if counters is not None:
            kernel = True
            for key, value in counters.as_dict().items():
                total[key] = total.get(key, 0) + value
    return total if kernel else None


class Collector:
    """prometheus-client's custom collector over :class:`Source`: every family is built at
    scrape time from counts kept up to date elsewhere (O(policies + reasons + servers))."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        # No describe-time collect: registering must not read the daemon's state.
        return []

    def collect(self) -> Iterator[Metric]:
        endpoint = self.source.endpoint
        totals = self.source.totals
        if totals is None:
            totals = endpoint.counter_totals()
        stats = endpoint.stats
        yield from self._state(endpoint, stats)
        yield from self._setup(stats)
        yield from self._protocol(totals, endpoint)
        yield from self._refusals(totals, endpoint)
        yield from self._events()
        yield from self._handler(endpoint)
        yield from self._kernel()

    def _state(self, endpoint: Endpoint, stats: SessionStats) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "kl2tp_info", "The daemon's role and data plane.", labels=["role", "dataplane"]
        )
        info.add_metric(["lns" if endpoint.lns else "lac", endpoint.dataplane.name], 1)
        yield info
        yield GaugeMetricFamily(
            "kl2tp_draining",
            "1 while new tunnels and sessions are refused (kl2tpctl drain).",
            value=int(endpoint.draining),
        )
        tunnels = GaugeMetricFamily(
            "kl2tp_tunnels", "Live tunnels by state and policy.", labels=["policy", "state"]
        )
        sessions = GaugeMetricFamily(
            "kl2tp_sessions",
            "Live sessions by L2TP state and policy (established at the L2TP level includes "
            "sessions whose PPP is still negotiating: see kl2tp_sessions_negotiating).",
            labels=["policy", "state"],
        )
        for policy, tally in sorted(stats.tallies.items()):
            for state, n in sorted(tally.tunnels.items()):
                tunnels.add_metric([policy, state], n)
            for state, n in sorted(tally.sessions.items()):
                sessions.add_metric([policy, state], n)
        yield tunnels
        yield sessions
        core = endpoint.core
        levels = {
            "half_open_tunnels": core.half_open,
            "lingering_tunnels": len(core.lingering),
            "sessions_in_setup": core.setup_count,
            "sessions_negotiating": core.negotiating,
        }
        for name, text in GAUGE_COUNTERS.items():
            yield GaugeMetricFamily(f"kl2tp_{name}", text, value=levels[name])

    def _setup(self, stats: SessionStats) -> Iterator[Metric]:
        yield _counter(
            "kl2tp_session_setup_attempts",
            "Calls received (ICRQ/OCRQ) or placed, refused ones included.",
            ["policy"],
            (((policy,), n) for policy, n in stats.attempts.items()),
        )
        yield _counter(
            "kl2tp_session_setup_successes",
            "Calls that came up (PPP network phase reached).",
            ["policy"],
            (((policy,), n) for policy, n in stats.successes.items()),
        )
        yield _counter(
            "kl2tp_session_setup_failures",
            "Calls refused by a limit or cleared before they came up, by reason.",
            ["policy", "reason"],
            stats.failures.items(),
        )
        yield _histogram(
            "kl2tp_session_setup_duration_seconds",
            "Seconds from a call's first message to its PPP network phase.",
            stats.latency,
        )

    def _protocol(self, totals: Mapping[str, int], endpoint: Endpoint) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "kl2tp_control_retransmissions",
            "L2TP control messages sent again for want of an acknowledgement.",
            value=totals.get("retransmits", 0),
        )
        keepalive = CounterMetricFamily(
            "kl2tp_keepalive_failures",
            "Tunnels lost to unacknowledged control messages (Hello included), and PPP links "
            "lost to unanswered LCP Echo-Requests.",
            labels=["kind"],
        )
        keepalive.add_metric(["tunnel"], totals.get("retries_exhausted", 0))
        keepalive.add_metric(["lcp_echo"], _int(_handler_summary(endpoint).get("echo_timeouts")))
        yield keepalive
        drops = CounterMetricFamily(
            "kl2tp_dropped_datagrams",
            "Datagrams the endpoint dropped, by reason (show summary's drop_* counters).",
            labels=["reason"],
        )
        errors = CounterMetricFamily(
            "kl2tp_dataplane_errors",
            "Data-plane operations that failed, by operation.",
            labels=["operation"],
        )
        for key, n in sorted(totals.items()):
            if key.startswith("drop_"):
                drops.add_metric([key[5:]], n)
            elif key.startswith("dataplane_errors_"):
                errors.add_metric([key[17:]], n)
        yield drops
        yield errors
        yield CounterMetricFamily(
            "kl2tp_received_datagrams",
            "Datagrams the endpoint received on its shared socket.",
            value=totals.get("rx_datagrams", 0),
        )

    def _refusals(self, totals: Mapping[str, int], endpoint: Endpoint) -> Iterator[Metric]:
        refusals = CounterMetricFamily(
            "kl2tp_refusals",
            "Tunnels and calls refused, by the limit that refused them.",
            labels=["limit"],
        )
        for limit, counter in REFUSAL_LIMITS.items():
            refusals.add_metric([limit], totals.get(counter, 0))
        yield refusals
        yield _counter(
            "kl2tp_policy_refusals",
            "Tunnels and calls refused by a [[peer]] policy's own max_tunnels / max_sessions.",
            ["policy", "limit"],
            endpoint.core.policy_refusals.items(),
        )
        logins = CounterMetricFamily(
            "kl2tp_logins_refused",
            "Logins AAA accepted but the LNS refused (address in use, duplicate session).",
            labels=["reason"],
        )
        refused = _handler_summary(endpoint).get("logins_refused")
        if isinstance(refused, Mapping):
            for reason, n in sorted(refused.items()):
                logins.add_metric([str(reason)], _int(n))
        yield logins

    def _events(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "kl2tp_events",
            "Operator log events (tunnel-up, session-failed, auth-failed, ...).",
            labels=["event"],
        )
        for event, n in sorted(self.source.events.counts.items()):
            events.add_metric([event], n)
        yield events

    def _handler(self, endpoint: Endpoint) -> Iterator[Metric]:
        summary = _handler_summary(endpoint)
        size = GaugeMetricFamily("kl2tp_pool_addresses", "Addresses in each pool.", labels=["pool"])
        used = GaugeMetricFamily(
            "kl2tp_pool_addresses_in_use",
            "Addresses of each pool held by sessions.",
            labels=["pool"],
        )
        pools = summary.get("pools")
        if isinstance(pools, Mapping):
            for name, figures in sorted(pools.items()):
                size.add_metric([str(name)], _int(figures.get("size")))
                used.add_metric([str(name)], _int(figures.get("in_use")))
        yield size
        yield used
        aaa = summary.get("aaa")
        requests = CounterMetricFamily(
            "kl2tp_aaa_auth_requests", "Authentication requests by outcome.", labels=["outcome"]
        )
        if isinstance(aaa, Mapping):
            for outcome in ("accepts", "rejects", "errors"):
                requests.add_metric([outcome], _int(aaa.get(outcome)))
        yield requests
        yield from self._radius(summary.get("radius"))

    def _radius(self, radius: object) -> Iterator[Metric]:
        labels = ["server", "kind"]
        sent = CounterMetricFamily(
            "kl2tp_aaa_server_requests", "RADIUS requests sent to each server.", labels=labels
        )
        timeouts = CounterMetricFamily(
            "kl2tp_aaa_server_timeouts",
            "RADIUS requests a server left unanswered after every retransmission.",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            "kl2tp_aaa_server_request_duration_seconds",
            "Seconds from a RADIUS request's first transmission to the server's reply.",
            labels=labels,
        )
        servers = radius.get("servers") if isinstance(radius, Mapping) else None
        if isinstance(servers, Mapping):
            for server, figures in sorted(servers.items()):
                values = [str(server), str(figures.get("kind", ""))]
                sent.add_metric(values, _int(figures.get("requests")))
                timeouts.add_metric(values, _int(figures.get("timeouts")))
                hist = figures.get("latency")
                if isinstance(hist, Mapping):
                    buckets = hist.get("buckets")
                    latency.add_metric(
                        values,
                        [(k, _int(v)) for k, v in buckets.items()]
                        if isinstance(buckets, Mapping)
                        else [],
                        float(hist.get("sum") or 0.0),
                    )
        yield sent
        yield timeouts
        yield latency

    def _kernel(self) -> Iterator[Metric]:
        kernel = self.source.kernel
        if kernel is None:
            return
        for key in KERNEL_COUNTERS:
            direction, what = key.split("_", 1)
            yield CounterMetricFamily(
                f"kl2tp_kernel_{direction}_{what}",
                f"Kernel {what} {'received' if direction == 'rx' else 'sent'} over every "
                "tunnel (sessions included).",
                value=kernel.get(key, 0),
            )


def _counter(
    name: str, text: str, labels: list[str], values: Iterable[tuple[tuple[str, ...], int]]
) -> CounterMetricFamily:
    """A counter family with one sample per label-value tuple (sorted: stable output)."""
    family = CounterMetricFamily(name, text, labels=labels)
    for key, n in sorted(values):
        family.add_metric(list(key), n)
    return family


def _histogram(name: str, text: str, hist: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, text, labels=[])
    family.add_metric([], [(_bound(b), n) for b, n in hist.cumulative()], hist.sum)
    return family


def _bound(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


def _handler_summary(endpoint: Endpoint) -> Mapping[str, object]:
    handler = endpoint.handler
    summary = getattr(handler, "summary", None)
    return summary() if callable(summary) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def registry(source: Source) -> CollectorRegistry:
    """A registry holding only kl2tp's collector (no process or platform collectors: the
    figures are the daemon's, and a test's scrape must not depend on the host)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(source))
    return reg


# --- the HTTP server --------------------------------------------------------------------------

MAX_REQUEST = 8192
"""Bytes of request line and headers read before the request is refused."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client may take to send its request."""
MAX_CLIENTS = 8
"""Scrapes served at once; further connections are closed at once."""


class MetricsServer:
    """Serves ``GET /metrics`` on one TCP address with trio (HTTP/1.0-style: one request per
    connection). Each scrape first awaits :meth:`Source.refresh`, then renders every family."""

    def __init__(
        self,
        source: Source | None = None,
        *,
        render: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        """Serve ``source``'s figures, or what ``render`` returns (the supervisor of
        ``[l2tp] workers``: every worker's figures merged)."""
        self.source = source
        self.registry = registry(source) if source is not None else None
        self._render = render
        self.scrapes = 0
        self._clients = trio.CapacityLimiter(MAX_CLIENTS)

    async def serve(
        self,
        listen: tuple[str, int],
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``listen`` until cancelled; reports the bound (host, port).

        Raises:
            OSError: the address cannot be bound.
        """
        listeners = await trio.open_tcp_listeners(listen[1], host=listen[0])
        bound = listeners[0].socket.getsockname()[:2]
        log.info("metrics on http://%s/metrics", _hostport(bound[0], bound[1]))
        task_status.started(bound)
        await trio.serve_listeners(self._client, listeners)

    async def render(self) -> bytes:
        """One scrape's body."""
        self.scrapes += 1
        if self._render is not None:
            return await self._render()
        assert self.source is not None and self.registry is not None
        await self.source.refresh()
        return generate_latest(self.registry)

    async def _client(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                self._clients.acquire_nowait()
            except trio.WouldBlock:
                return
            try:
                await self._answer(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            finally:
                self._clients.release()

    async def _answer(self, stream: trio.SocketStream) -> None:
        request = b""
        with trio.move_on_after(REQUEST_TIMEOUT):
            while b"\r\n\r\n" not in request and b"\n\n" not in request:
                if len(request) > MAX_REQUEST:
                    await _reply(stream, 431, b"request too large\n")
                    return
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
        parts = request.split(b"\n", 1)[0].split()
        if len(parts) < 2:
            await _reply(stream, 400, b"bad request\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            await _reply(stream, 405, b"only GET\n")
            return
        if target != b"/metrics":
            await _reply(stream, 404, b"try /metrics\n")
            return
        body = await self.render()
        await _reply(stream, 200, body, CONTENT_TYPE_LATEST, head=method == b"HEAD")


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


async def _reply(
    stream: trio.SocketStream,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head: bool = False,
) -> None:
    header = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    await stream.send_all(header if head else header + body)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
