"""The Prometheus endpoint (issue 12 item 3): scraped over HTTP and parsed with
prometheus-client's own parser, every figure equal to what ``kl2tpctl show summary`` says
at the same moment, while calls are up, after some were refused or failed, and once all are
gone (the incrementally kept tallies then read zero: nothing leaked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import trio

from kl2tp.daemon import oplog
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.metrics import REFUSAL_LIMITS, Collector, MetricsServer, Source
from kl2tp.daemon.service import ControlApi, SimulationResult, simulate
from kl2tp.dataplane.base import Counters
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.endpoint import Limits
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.policy import Match, Policy, PolicyTable
from tests.daemon.inprocess import Aaa, endpoints, lns_sessions
from tests.daemon.metrics_scrape import Samples, by_label, fetch, nonzero, parse, scrape, value
from tests.daemon.test_hostile_ppp import until

BOUND = 60.0
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "kl2tp.json"


@attrs.define
class KernelPlane(NullDataPlane):
    """The null data plane with the kernel's per-tunnel traffic counters."""

    kernel_counters: bool = True

    async def tunnel_counters(self, local_tunnel_id: int) -> Counters | None:
        return Counters(rx_packets=3, rx_bytes=1000, tx_packets=4, tx_bytes=2000, rx_errors=1)


def lns_endpoint(limits: Limits | None = None, accept: bool = True) -> tuple[Endpoint, Endpoint]:
    lns, lac = endpoints(lns_sessions(KernelPlane(), Aaa(accept=accept)))
    lns.core.config = attrs.evolve(lns.core.config, limits=limits or Limits())
    return lns, lac


def check_against_summary(samples: Samples, summary: dict[str, Any]) -> None:
    """Every family that mirrors a ``show summary`` figure has the same value."""
    tunnels = by_label(samples, "kl2tp_tunnels", "state")
    assert nonzero(tunnels) == summary["tunnels"]["by_state"]
    sessions = by_label(samples, "kl2tp_sessions", "state")
    assert nonzero(sessions) == summary["sessions"]["by_state"]
    setup = summary["setup"]
    assert (
        sum(by_label(samples, "kl2tp_session_setup_attempts_total", "policy").values())
        == (setup["attempts"])
    )
    assert (
        sum(by_label(samples, "kl2tp_session_setup_successes_total", "policy").values())
        == (setup["successes"])
    )
    assert by_label(samples, "kl2tp_session_setup_failures_total", "reason") == setup["failures"]
    assert value(samples, "kl2tp_session_setup_duration_seconds_count") == setup["successes"]
    assert (
        value(samples, "kl2tp_session_setup_duration_seconds_bucket", le="+Inf")
        == (setup["latency"]["count"])
    )
    counters = summary["counters"]
    for limit, counter in REFUSAL_LIMITS.items():
        assert value(samples, "kl2tp_refusals_total", limit=limit) == counters.get(counter, 0)
    drops = by_label(samples, "kl2tp_dropped_datagrams_total", "reason")
    assert drops == {k[5:]: v for k, v in counters.items() if k.startswith("drop_")}
    assert value(samples, "kl2tp_received_datagrams_total") == counters.get("rx_datagrams", 0)
    assert value(samples, "kl2tp_control_retransmissions_total") == counters.get("retransmits", 0)
    for gauge in ("half_open_tunnels", "sessions_in_setup", "sessions_negotiating"):
        assert value(samples, f"kl2tp_{gauge}") == counters[gauge]
    assert by_label(samples, "kl2tp_events_total", "event") == summary["events"]
    ppp = summary["ppp"]
    for name, pool in ppp["pools"].items():
        assert value(samples, "kl2tp_pool_addresses", pool=name) == pool["size"]
        assert value(samples, "kl2tp_pool_addresses_in_use", pool=name) == pool["in_use"]
    assert (
        value(samples, "kl2tp_keepalive_failures_total", kind="lcp_echo") == (ppp["echo_timeouts"])
    )
    assert (
        value(samples, "kl2tp_aaa_auth_requests_total", outcome="accepts")
        == (ppp["aaa"]["accepts"])
    )
    for key, n in summary.get("kernel", {}).items():
        direction, what = key.split("_", 1)
        assert value(samples, f"kl2tp_kernel_{direction}_{what}_total") == n


async def run(
    lns: Endpoint,
    lac: Endpoint,
    calls: int,
    during: Any,
) -> SimulationResult:
    """Serve the LNS (with its metrics endpoint) and the LAC, place ``calls`` calls, run
    ``during(metrics address)`` while they are held, then clear them and wait for the
    tunnels to go."""
    oplog.EVENTS.set(oplog.EventLog())
    source = Source(lns, oplog.EVENTS.get())
    server = MetricsServer(source)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            metrics_addr = await nursery.start(server.serve, ("127.0.0.1", 0))
            stop = trio.Event()
            done: list[SimulationResult] = []

            async def calls_task() -> None:
                peers = [(lns_addr, TunnelConfig(hostname="lac", hello_interval=0))]
                done.append(await simulate(lac, peers, calls, hold=BOUND, stop=stop))

            nursery.start_soon(calls_task)
            # Until every call has arrived and come up, or been refused or failed.
            await until(
                lambda: (
                    bool(done)
                    or (sum(lns.stats.attempts.values()) >= calls and not lns.core.negotiating)
                )
            )
            await during(metrics_addr)
            stop.set()
            await until(lambda: bool(done))
            with trio.move_on_after(5):
                for runner in list(lns.tunnels.values()):
                    await runner.closed.wait()
            nursery.cancel_scope.cancel()
    return done[0]


async def run_and_check(
    lns: Endpoint, lac: Endpoint, calls: int
) -> tuple[SimulationResult, Samples, dict[str, Any]]:
    """`run` with a scrape and a ``show summary`` while the calls are held, checked against
    each other (`check_against_summary`); both are returned for more checks."""
    seen: dict[str, Any] = {}

    async def during(addr: tuple[str, int]) -> None:
        samples = await scrape(addr)
        summary = await ControlApi(lns, lns.dataplane).summary()
        check_against_summary(samples, summary)
        seen["samples"], seen["summary"] = samples, summary

    result = await run(lns, lac, calls, during)
    return result, seen["samples"], seen["summary"]


async def test_scrape_equals_show_summary_while_calls_are_up() -> None:
    lns, lac = lns_endpoint()
    result, samples, summary = await run_and_check(lns, lac, 3)
    assert result.established == 3
    # The values the comparison rests on are the expected ones, not two equal zeros.
    assert value(samples, "kl2tp_sessions", policy="default", state="established") == 3
    assert value(samples, "kl2tp_tunnels", policy="default", state="established") == 1
    assert value(samples, "kl2tp_session_setup_successes_total", policy="default") == 3
    assert value(samples, "kl2tp_pool_addresses_in_use", pool="default") == 3
    assert value(samples, "kl2tp_kernel_rx_bytes_total") == 1000
    assert value(samples, "kl2tp_info", role="lns", dataplane="null") == 1
    assert summary["setup"]["by_policy"]["default"]["sessions"] == {"established": 3}
    # Gone: every tally back to zero, so a long-running daemon's gauges never drift.
    assert all(n == 0 for t in lns.stats.tallies.values() for n in t.sessions.values())
    assert all(n == 0 for t in lns.stats.tallies.values() for n in t.tunnels.values())
    assert lns.core.negotiating == 0 and lac.core.negotiating == 0


async def test_refusals_and_failures_are_counted_by_reason_in_both() -> None:
    # One call per tunnel: the second and third are refused with CDN 4.
    lns, lac = lns_endpoint(Limits(max_sessions_per_tunnel=1))
    result, samples, _summary = await run_and_check(lns, lac, 3)
    assert result.established == 1 and sum(result.failed.values()) == 2
    assert value(samples, "kl2tp_refusals_total", limit="max_sessions_per_tunnel") == 2
    assert lns.counters["calls_refused_tunnel_session_limit"] == 2
    assert (
        value(
            samples,
            "kl2tp_session_setup_failures_total",
            policy="default",
            reason="max_sessions_per_tunnel",
        )
        == 2
    )
    assert value(samples, "kl2tp_session_setup_attempts_total", policy="default") == 3


async def test_failed_logins_are_setup_failures_by_ppp_reason() -> None:
    lns, lac = lns_endpoint(accept=False)

    async def nothing(_addr: tuple[str, int]) -> None:
        pass

    result = await run(lns, lac, 2, nothing)
    assert result.established == 0
    assert lns.stats.failures == {("default", "auth-failed"): 2}
    samples = parse(_render(lns))
    assert value(samples, "kl2tp_events_total", event="auth-failed") == 2
    assert (
        value(samples, "kl2tp_session_setup_failures_total", policy="default", reason="auth-failed")
        == 2
    )


def _render(endpoint: Endpoint) -> str:
    from prometheus_client import generate_latest

    from kl2tp.daemon.metrics import registry

    return generate_latest(registry(Source(endpoint, oplog.EVENTS.get()))).decode()


class Untouchable(dict[int, Any]):
    """A session table that fails the test when anything walks it."""

    def _walked(self, *_args: object) -> Any:
        raise AssertionError("the scrape walked a tunnel's sessions")

    __iter__ = values = items = keys = _walked


async def test_a_scrape_reads_no_session() -> None:
    """The scrape's cost does not grow with the sessions: with every tunnel's session table
    booby-trapped, it still renders, and the tallies give the counts."""
    lns, lac = lns_endpoint()
    rendered: list[str] = []

    async def during(_addr: tuple[str, int]) -> None:
        saved = {}
        for tid, runner in lns.tunnels.items():
            saved[tid] = runner.core.sessions
            runner.core.sessions = Untouchable(runner.core.sessions)
        try:
            rendered.append(_render(lns))
        finally:
            for tid, table in saved.items():
                lns.tunnels[tid].core.sessions = table

    await run(lns, lac, 2, during)
    samples = parse(rendered[0])
    assert value(samples, "kl2tp_sessions", policy="default", state="established") == 2


async def test_only_get_metrics_is_served() -> None:
    lns, _lac = lns_endpoint()
    server = MetricsServer(Source(lns, oplog.EventLog()))
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(server.serve, ("127.0.0.1", 0))
            assert (await fetch(addr, b"GET / HTTP/1.1\r\n\r\n"))[0] == 404
            assert (await fetch(addr, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
            assert (await fetch(addr, b"\r\n\r\n"))[0] == 400
            assert (await fetch(addr, b"GET /metrics" + b"x" * 9000))[0] == 431
            status, body = await fetch(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            assert status == 200 and body == b""
            assert server.scrapes == 1
            nursery.cancel_scope.cancel()


def test_dashboard_parses_and_uses_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    exposed = _exposed_names()
    used = {name for expr in exprs for name in _metric_names(expr)}
    assert used, exprs
    assert used <= exposed, sorted(used - exposed)


def _exposed_names() -> set[str]:
    """Every sample name the collector can produce (families with a sample each)."""
    lns, _lac = lns_endpoint()
    source = Source(lns, oplog.EventLog())
    source.kernel = dict.fromkeys(
        ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors"), 0
    )
    names: set[str] = set()
    for family in Collector(source).collect():
        names.add(family.name)
        kind = family.type
        if kind == "counter":
            names.add(family.name + "_total")
        elif kind == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def _metric_names(expr: str) -> set[str]:
    import re

    return set(re.findall(r"\bkl2tp_[a-z_]+\b", expr))


def test_summary_table_has_a_setup_line_without_histogram_buckets() -> None:
    from kl2tp.cli import _format_summary_show

    stats = Endpoint(
        role="lns", tunnel_config=TunnelConfig(), dataplane=NullDataPlane(), listen=("::1", 0)
    ).stats
    stats.attempt("default")
    stats.attempt("default")
    stats.success("default", 0.02)
    stats.failure("default", "max_negotiating_sessions")
    result = {
        "role": "lns",
        "dataplane": "null",
        "tunnels": {"total": 0, "by_state": {}},
        "sessions": {"total": 0, "by_state": {}},
        "setup": stats.summary(),
    }
    (setup,) = [line for line in _format_summary_show(result).splitlines() if "setup" in line]
    assert setup.startswith("setup ")
    assert "attempts=2 " in setup and setup.endswith(" successes=1")
    assert "failures.max_negotiating_sessions=1" in setup
    assert "latency.count=1" in setup and "buckets" not in setup


async def test_tunnels_and_sessions_are_labelled_by_their_peer_policy() -> None:
    """A [[peer]] matching the LAC's host name: its tunnel and sessions are labelled with the
    policy's name, and its own max_sessions refusal is counted per policy too."""
    lns, lac = lns_endpoint()
    default = lns.core.policies.default
    partner = Policy("partner-a", default.tunnel, max_sessions=2, match=Match(hostnames=("lac",)))
    lns.core.policies = PolicyTable(default, (partner,))
    result, samples, summary = await run_and_check(lns, lac, 3)
    assert result.established == 2
    assert value(samples, "kl2tp_sessions", policy="partner-a", state="established") == 2
    assert value(samples, "kl2tp_tunnels", policy="partner-a", state="established") == 1
    assert by_label(samples, "kl2tp_sessions", "policy") == {"partner-a": 2}
    assert summary["policies"]["partner-a"]["sessions"] == 2  # the policy helper's count
    assert value(samples, "kl2tp_refusals_total", limit="peer_max_sessions") == 1
    assert value(samples, "kl2tp_policy_refusals_total", policy="partner-a", limit="max_sessions")
    assert (
        value(
            samples,
            "kl2tp_session_setup_failures_total",
            policy="partner-a",
            reason="peer_max_sessions",
        )
        == 1
    )
