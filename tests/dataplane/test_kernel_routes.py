"""KernelMechanics installs framed routes once each, exclusively, and goes on past one the
kernel refuses (the lab shows them in `ip route`; here a fake rtnetlink shows the logic)."""

from __future__ import annotations

import errno
import logging
from ipaddress import IPv4Network
from typing import Any

import pytest

from kl2tp.dataplane.base import SessionSpec
from kl2tp.dataplane.kernel import KernelMechanics, KernelSession
from kl2tp.dataplane.netlink import NetlinkError
from kl2tp.values import FramedRoute

HELD = FramedRoute(IPv4Network("10.1.0.0/24"), 1)
FREE = FramedRoute(IPv4Network("10.2.0.0/16"), 5)


class FakeRt:
    def __init__(self) -> None:
        self.added: list[tuple[int, IPv4Network, int | None, bool]] = []

    def add_route(
        self, index: int, network: IPv4Network, metric: int | None = None, **kw: Any
    ) -> None:
        if network == HELD.network:
            raise NetlinkError(errno.EEXIST, "add route: File exists")
        self.added.append((index, network, metric, kw["replace"]))


def test_routes_installed_once_exclusive_and_a_refused_one_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mech = KernelMechanics.__new__(KernelMechanics)  # no kernel: only the route logic runs
    rt = FakeRt()
    mech.rt = rt  # type: ignore[assignment]
    session = KernelSession(SessionSpec(3, 4, 30, 40, lns_mode=True), None, "ppp7", 7)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING)
    mech._add_routes(session, (HELD, FREE))
    assert rt.added == [(7, FREE.network, 5, False)]  # never replaces someone else's route
    assert session.routes == {FREE}
    [line] = [r.getMessage() for r in caplog.records]
    assert "Se 3/30: framed route 10.1.0.0/24 metric 1 not installed on ppp7" in line
    assert "ip route show 10.1.0.0/24" in line and "goes on" in line
    # IPCP reopens after an LCP restart: nothing installed twice, the refused one retried.
    mech._add_routes(session, (HELD, FREE))
    assert len(rt.added) == 1 and len(caplog.records) == 2
