"""The operator's event lines and the drain, in one process (issue 10): byte counts in
"session down" when the data plane has kernel counters, a refused call while draining, an
authentication failure, and the history ring."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio

from kl2tp.aaa.pool import AddressPool
from kl2tp.daemon import oplog
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.ppp_session import PppSessions
from kl2tp.daemon.service import ControlApi, simulate
from kl2tp.dataplane.base import Counters
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig
from tests.daemon.inprocess import Aaa, lns_link, subscriber_link

BOUND = 60.0


@attrs.define
class CountingPlane(NullDataPlane):
    """The null data plane with the kernel's per-session counters."""

    kernel_counters: bool = True

    async def session_counters(
        self, local_tunnel_id: int, local_session_id: int
    ) -> Counters | None:
        return Counters(rx_packets=3, rx_bytes=1234, tx_packets=4, tx_bytes=5678)


class Events(logging.Handler):
    """Collects the event lines (records with ``event``)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None):
            self.records.append(record)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [dict(r.fields) for r in self.records if r.event == event]  # type: ignore[attr-defined]


@pytest.fixture
def events() -> Iterator[Events]:
    handler = Events()
    logger = logging.getLogger("kl2tp.daemon")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # A fresh event log: the process-wide one's rate limiter (20 lines a minute per kind)
    # has seen every earlier test's failures when the whole suite runs in one process.
    token = oplog.EVENTS.set(oplog.EventLog())
    yield handler
    oplog.EVENTS.reset(token)
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def pair(plane: NullDataPlane, backend: Aaa) -> tuple[Endpoint, Endpoint]:
    lns = Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(hostname="lns", hello_interval=0),
        dataplane=plane,
        listen=("127.0.0.1", 0),
        handler=PppSessions(
            plane,
            lns=True,
            link_config=lambda _n: lns_link(),
            authenticator=backend,
            pool=AddressPool("10.9.0.2-10.9.0.9"),
            rng=random.Random(1),
        ),
    )
    lac_plane = NullDataPlane()
    lac = Endpoint(
        role="lac",
        tunnel_config=TunnelConfig(hostname="lac-\x1b[1mbold", hello_interval=0),
        dataplane=lac_plane,
        listen=("127.0.0.1", 0),
        handler=PppSessions(
            lac_plane, lns=False, link_config=lambda _n: subscriber_link(), rng=random.Random(2)
        ),
    )
    return lns, lac


async def run_calls(lns: Endpoint, lac: Endpoint, n: int, before: Any = None) -> Any:
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns_addr = await nursery.start(lns.serve)
            await nursery.start(lac.serve)
            if before is not None:
                await before()
            peers = [(lns_addr, TunnelConfig(hostname="lac", hello_interval=0))]
            result = await simulate(lac, peers, n, hold=0)
            with trio.move_on_after(2):
                for runner in list(lns.tunnels.values()):
                    await runner.closed.wait()
            nursery.cancel_scope.cancel()
    return result


async def test_session_down_carries_the_kernel_byte_counts(events: Events) -> None:
    oplog.EVENTS.set(oplog.EventLog(size=1))
    lns, lac = pair(CountingPlane(), Aaa())
    result = await run_calls(lns, lac, 2)
    assert result.established == 2
    ups, downs = events.of("session-up"), events.of("session-down")
    lns_downs = [d for d in downs if "rx_bytes" in d]
    assert len(ups) == 4 and len(downs) == 4  # both ends log each session
    assert len(lns_downs) == 2
    for down in lns_downs:
        assert down["rx_bytes"] == 1234 and down["tx_bytes"] == 5678
        assert down["user"] == "user1" and down["address"].startswith("10.9.0.")
        assert down["duration"] >= 0 and down["cause"]
    assert {d["lac"] for d in lns_downs} == {"lac"}
    assert len(oplog.EVENTS.get().history) == 1  # the ring keeps [log] history entries


async def test_draining_refuses_calls_and_records_them(events: Events) -> None:
    oplog.EVENTS.set(oplog.EventLog())
    lns, lac = pair(NullDataPlane(), Aaa())

    async def drain_sessions_only() -> None:
        lns.draining = True  # tunnels still open (no apply_policy): the call is refused

    result = await run_calls(lns, lac, 1, drain_sessions_only)
    assert result.established == 0
    refused = events.of("session-refused")
    assert len(refused) == 1 and refused[0]["reason"] == "draining"
    refusals = [h for h in oplog.EVENTS.get().history if h["outcome"] == "refused"]
    assert len(refusals) == 1 and refusals[0]["reason"] == "draining"


async def test_drain_drops_sccrqs_and_undrain_accepts_again() -> None:
    lns, _lac = pair(NullDataPlane(), Aaa())
    api = ControlApi(lns, lns.dataplane)
    assert await api({"cmd": "drain", "what": "on"}) == {"draining": True}
    assert lns.core.config.lns is False and lns.draining
    assert (await api({"cmd": "show", "what": "summary"}))["draining"] is True
    assert await api({"cmd": "drain", "what": "off"}) == {"draining": False}
    assert lns.core.config.lns is True and not lns.draining


async def test_auth_failure_line_names_user_lac_method_and_reason(events: Events) -> None:
    lns, lac = pair(NullDataPlane(), Aaa(accept=False))
    result = await run_calls(lns, lac, 1)
    assert result.established == 0
    (failure,) = events.of("auth-failed")
    assert failure["user"] == "user1" and failure["method"] == "chap"
    assert failure["lac"] == "lac" and failure["reason"]
    failed = events.of("session-failed")  # the LNS's line and the LAC's
    assert len(failed) == 2 and all(f["failure"] == "auth failed" for f in failed)


@attrs.frozen
class FakeTunnel:
    local_tunnel_id: int = 9
    peer_tunnel_id: int = 4
    peer_addr: tuple[str, int] = ("192.0.2.7", 1701)
    peer_hostname: str = "lac"


def test_a_flood_of_auth_failures_is_rate_limited_but_counted(events: Events) -> None:
    oplog.EVENTS.set(oplog.EventLog())
    for n in range(30):
        oplog.auth_failed(FakeTunnel(), n + 1, f"user{n}", "pap", "bad-password")
    assert len(events.of("auth-failed")) == 20
    assert oplog.EVENTS.get().counts["auth-failed"] == 30
