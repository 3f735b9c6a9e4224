"""The kernel data plane counts what programming the kernel costs (``show summary``'s
``kernel_cost``) and raises its open-files limit; fakes stand in for netlink and /dev/ppp
here, the lab (tests/lab/test_scale_kernel.py) reads the same counters from a real kernel."""

from __future__ import annotations

import errno
import ipaddress
import logging
import resource
import socket
from typing import Any

import pytest

from kl2tp.dataplane import cost as costmod
from kl2tp.dataplane import kernel as kernelmod
from kl2tp.dataplane.base import NetworkSpec, SessionSpec, TunnelSpec
from kl2tp.dataplane.cost import fds_needed, raise_nofile_limit, sessions_room
from kl2tp.dataplane.kernel import KernelMechanics, KernelSession, KernelTunnel, TunnelRecord
from kl2tp.dataplane.netlink import NetlinkError


class Calls:
    """A fake netlink client recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kw: Any) -> bool:
            self.calls.append(name)
            return True

        return call


class FakePpp:
    unit_fd = 9

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class FakeJournal:
    def remove_link(self, index: int) -> None:
        pass

    def needs_compaction(self) -> bool:
        return False


def mechanics() -> KernelMechanics:
    mech = KernelMechanics.__new__(KernelMechanics)  # no kernel: only the bookkeeping runs
    mech.l2tp = Calls()  # type: ignore[assignment]
    mech.rt = Calls()  # type: ignore[assignment]
    mech.journal = FakeJournal()  # type: ignore[assignment]
    mech.tunnels = {}
    mech.sessions = {}
    mech.cost = costmod.KernelCost()
    mech._emfile_told = False
    mech.ppp_device = "/dev/ppp"
    return mech


def test_session_up_and_close_count_each_kind_of_call(monkeypatch: pytest.MonkeyPatch) -> None:
    mech = mechanics()
    npmodes: list[int] = []
    monkeypatch.setattr(kernelmod, "set_npmode", lambda fd, proto, mode: npmodes.append(proto))
    spec = SessionSpec(3, 4, 30, 40, lns_mode=True)
    ppp = FakePpp()
    mech.sessions[(3, 30)] = KernelSession(spec, ppp, "lns7", 7)  # type: ignore[arg-type]
    net = NetworkSpec(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.2"), 1500)

    assert mech.session_up(3, 30, net) == "lns7"
    mech.close_session(3, 30)
    mech.close_session(3, 30)  # idempotent: not counted twice

    assert mech.rt.calls == ["set_link", "add_address", "add_host_route"]  # type: ignore[attr-defined]
    assert mech.l2tp.calls == ["delete_session"]  # type: ignore[attr-defined]
    assert npmodes == [kernelmod.PPP_IP] and ppp.closed == 1
    got = mech.cost.as_dict()
    up, down = got["session_up"], got["close_session"]
    assert up["count"] == down["count"] == 1
    assert up["genl_us"] == 0 and down["rtnl_us"] == 0  # kinds that made no call stay 0
    for op in (up, down):
        # The kinds are parts of the operation's whole time.
        assert op["genl_us"] + op["rtnl_us"] + op["ppp_us"] <= op["cpu_us"] + 1
    assert got["open_session"] == {
        "count": 0, "total_us": 0, "cpu_us": 0, "genl_us": 0, "rtnl_us": 0, "ppp_us": 0
    }  # fmt: skip


def test_a_failed_open_is_counted_and_emfile_tells_the_operator_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mech = mechanics()
    tspec = TunnelSpec(3, 4, ("10.0.0.1", 1701), ("10.0.0.2", 1701))
    record = TunnelRecord(3, 4, ("10.0.0.1", 1701), ("10.0.0.2", 1701))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        mech.tunnels[3] = KernelTunnel(tspec, sock, record)
        _open_twice(mech, monkeypatch, caplog)


def _open_twice(
    mech: KernelMechanics, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_fds(*args: Any, **kw: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(kernelmod, "open_session_channel", no_fds)
    caplog.set_level(logging.WARNING)
    for sid in (30, 31):
        with pytest.raises(OSError):
            mech.open_session(SessionSpec(3, 4, sid, 40 + sid, lns_mode=True))
    assert mech.l2tp.calls == [  # type: ignore[attr-defined]
        "create_session", "delete_session", "create_session", "delete_session"
    ]  # fmt: skip
    assert mech.cost.open_session.count == 2
    assert mech.sessions == {}
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("Se 3/30: out of file descriptors")
    assert "LimitNOFILE" in line and "3 per kernel session" in line


def test_a_refused_genl_request_still_ends_the_operation() -> None:
    mech = mechanics()

    class Refuses(Calls):
        def create_session(self, *args: Any, **kw: Any) -> None:
            raise NetlinkError(errno.EEXIST, "session exists")

    mech.l2tp = Refuses()  # type: ignore[assignment]
    tspec = TunnelSpec(3, 4, ("10.0.0.1", 1701), ("10.0.0.2", 1701))
    record = TunnelRecord(3, 4, ("10.0.0.1", 1701), ("10.0.0.2", 1701))
    mech.tunnels[3] = KernelTunnel(tspec, None, record)  # type: ignore[arg-type]
    with pytest.raises(NetlinkError):
        mech.open_session(SessionSpec(3, 4, 30, 40, lns_mode=True))
    assert mech.cost.open_session.count == 1
    assert mech.cost.open_session.ns > 0
    assert mech.cost.open_session.cpu > 0


def test_fd_arithmetic() -> None:
    assert fds_needed(0) == costmod.FDS_RESERVED + 1
    assert fds_needed(5000, 4) == costmod.FDS_RESERVED + 15000 + 4
    assert sessions_room(fds_needed(5000)) == 5000
    assert sessions_room(10) == 0


class FakeLimits:
    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.limits = limits


def test_soft_limit_raised_to_a_low_hard_limit_warns_what_to_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeLimits(1024, 4096)
    monkeypatch.setattr(costmod.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(costmod.resource, "setrlimit", fake.setrlimit)
    caplog.set_level(logging.INFO, logger="kl2tp.kernel")
    assert raise_nofile_limit() == (1024, 4096)
    assert fake.limits == (4096, 4096)
    [rec] = caplog.records
    assert rec.levelno == logging.WARNING
    text = rec.getMessage()
    assert f"leaves room for {sessions_room(4096)} kernel sessions" in text
    assert f"LimitNOFILE={fds_needed(costmod.FULL_TUNNEL)}" in text


def test_soft_limit_raised_to_a_high_hard_limit_is_an_info_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeLimits(1024, 1 << 20)
    monkeypatch.setattr(costmod.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(costmod.resource, "setrlimit", fake.setrlimit)
    caplog.set_level(logging.INFO, logger="kl2tp.kernel")
    raise_nofile_limit()
    assert fake.limits == (1 << 20, 1 << 20)
    [rec] = caplog.records
    assert rec.levelno == logging.INFO
    assert "raised from 1024 to 1048576" in rec.getMessage()
    caplog.clear()
    raise_nofile_limit()  # already there: nothing to say
    assert caplog.records == []
