"""An LNS and a LAC of kl2tp's own in one process, on loopback, with the real endpoints and
PPP session handlers: the AAA back end, link configurations and endpoint pair the in-process
session tests share."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import attrs
import trio

from kl2tp.aaa import base as aaa
from kl2tp.aaa.pool import AddressPool
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.ppp_session import PppSessions
from kl2tp.daemon.sessions import DataPlaneSessions
from kl2tp.dataplane.base import DataPlane
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig
from ppp.config import AuthMethod, IpcpConfig, LcpConfig, LinkConfig
from ppp.fsm import FsmConfig

POOL = "10.9.0.2-10.9.0.9"
"""The LNS's pool (its own address is 10.9.0.1)."""


@attrs.define
class Aaa:
    """Accepts everyone, or no one; records what it was asked."""

    accept: bool = True
    counters: aaa.AaaCounters = attrs.field(factory=aaa.AaaCounters)
    requests: list[aaa.AuthRequest] = attrs.field(factory=list)
    records: list[aaa.AccountingRecord] = attrs.field(factory=list)
    recorded: trio.Event = attrs.field(factory=trio.Event)
    """Set (and replaced) at every accounting record."""

    async def wait_for_records(self, n: int) -> None:
        while len(self.records) < n:
            await self.recorded.wait()

    async def authenticate(self, request: aaa.AuthRequest) -> aaa.AuthResult:
        self.requests.append(request)
        return aaa.AuthResult(self.accept, "Welcome" if self.accept else "Authentication failed")

    async def account(self, record: aaa.AccountingRecord) -> None:
        self.records.append(record)
        self.recorded.set()
        self.recorded = trio.Event()


def fsm(restart: float, tries: int) -> LcpConfig:
    return LcpConfig(fsm=FsmConfig(restart_timer=restart, max_configure=tries))


def lns_link(**changes: object) -> LinkConfig:
    """The LNS: quick to give up, so it always decides before the subscriber does."""
    values: dict[str, object] = {
        "lcp": fsm(0.1, 4),
        "auth": (AuthMethod.CHAP,),
        "hostname": "lns",
        "ipcp": IpcpConfig(
            local_address=ipaddress.IPv4Address("10.9.0.1"), assign_peer_address=True
        ),
        "send_address_control": False,
        "auth_timeout": 1.0,
        "network_timeout": 1.0,
    }
    values.update(changes)
    return LinkConfig(**values)  # type: ignore[arg-type]


def subscriber_link(**changes: object) -> LinkConfig:
    """A patient subscriber: it never gives up before the LNS."""
    values: dict[str, object] = {
        "lcp": fsm(5.0, 10),
        "hostname": "user1",
        "username": "user1",
        "password": "pass1",
        "accept_auth": (AuthMethod.CHAP,),
        "ipcp": IpcpConfig(request_dns=True),
        "send_address_control": False,
    }
    values.update(changes)
    return LinkConfig(**values)  # type: ignore[arg-type]


def lns_sessions(plane: DataPlane, backend: Any, **options: Any) -> PppSessions:
    """The LNS's session handler on ``plane`` with AAA ``backend``: `lns_link`, the pool
    `POOL`, a seeded generator; ``options`` replace or add `PppSessions` arguments."""
    values: dict[str, Any] = {
        "link_config": lambda _n: lns_link(),
        "authenticator": backend,
        "pool": AddressPool(POOL),
        "rng": random.Random(1),
    }
    values.update(options)
    return PppSessions(plane, lns=True, **values)


def endpoints(
    lns_handler: DataPlaneSessions,
    lac_plane: DataPlane | None = None,
    subscriber: LinkConfig | None = None,
) -> tuple[Endpoint, Endpoint]:
    """An LNS serving ``lns_handler`` (on its data plane) and a LAC on ``lac_plane`` (a null
    one by default) whose subscribers run ``subscriber`` (`subscriber_link` by default)."""
    lns = Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(hostname="lns", hello_interval=0),
        dataplane=lns_handler.dataplane,
        listen=("127.0.0.1", 0),
        handler=lns_handler,
    )
    lac_plane = NullDataPlane() if lac_plane is None else lac_plane
    link = subscriber_link() if subscriber is None else subscriber
    lac = Endpoint(
        role="lac",
        tunnel_config=TunnelConfig(hostname="lac", hello_interval=0),
        dataplane=lac_plane,
        listen=("127.0.0.1", 0),
        handler=PppSessions(
            lac_plane, lns=False, link_config=lambda _n: link, rng=random.Random(2)
        ),
    )
    return lns, lac
