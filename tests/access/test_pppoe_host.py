"""kl2tp-lac's PPPoE access side end to end on the host: a subscriber over a veth pair ->
kl2tp-lac (mode pppoe) -> kl2tp-lns, both daemons real processes with the null data plane
inside a network namespace of the test's own (the host kernel has no PPP; AF_PACKET and veth
are all this needs). The subscriber is our own PPPoE Discovery plus a ``ppp.Link``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import trio

from kl2tp.access.port import PacketPort
from ppp.events import LinkDown, NetworkUp
from ppp.frame import Proto
from tests.access.subscriber import Subscriber, subscriber_link_config
from tests.daemon.harness import BIN, Daemon, ctl, wait_for, write_configs
from tests.parts import missing

CONFREQ, CHAP_CHALLENGE, CHAP_SUCCESS = 1, 1, 3
POOL = IPv4Network("10.20.0.0/24")
BOUND = 30.0

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def _in_netns(name: str) -> Iterator[None]:
    """This thread in network namespace ``name`` for the block (sockets made stay there)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            _libc.setns(home, CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(home)


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with lo up and a veth pair: acc0 (the LAC's access side), sub0."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing("the PPPoE host test needs root and iproute2 (network namespaces)")
    name = f"kl2tp-pppoe-{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        missing(f"cannot make a network namespace: {exc.stderr.decode().strip()}")
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "acc0", "type", "veth", "peer", "name", "sub0")
        _ip("-n", name, "link", "set", "acc0", "up")
        _ip("-n", name, "link", "set", "sub0", "up")
        yield name
    finally:
        _ip("netns", "del", name)


@pytest.fixture
def daemons(netns: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """kl2tp-lns and kl2tp-lac (mode pppoe on acc0) in the namespace; reaped on any exit."""
    lns_cfg, lac_cfg, lns_sock, lac_sock = write_configs(
        tmp_path,
        "s3cret",
        lac_extra='[pppoe]\ninterface = "acc0"\nac_name = "test-ac"\nsetup_timeout = 10\n',
        idle_timeout=0,
    )
    text = lac_cfg.read_text()
    lac_cfg.write_text('[lac]\nmode = "pppoe"\n' + text)
    prefix = ["ip", "netns", "exec", netns]
    started: list[Daemon] = []
    try:
        lns = Daemon([*prefix, str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp_path / "lns.log")
        started.append(lns)
        wait_for(lns_sock.exists, "the LNS's control socket")
        lac = Daemon([*prefix, str(BIN / "kl2tp-lac"), "-c", str(lac_cfg)], tmp_path / "lac.log")
        started.append(lac)
        wait_for(lambda: "PPPoE on acc0" in lac.output(), "the LAC's access side")
        yield {"lns": lns, "lac": lac, "lns_sock": lns_sock, "lac_sock": lac_sock}
        for daemon in (lac, lns):
            assert daemon.stop() == 0, daemon.output()
    finally:
        for daemon in started:
            daemon.kill()


@pytest.fixture
def ports(netns: str) -> Iterator[list[PacketPort]]:
    """The subscribers' ports on sub0, closed after the test."""
    opened: list[PacketPort] = []
    yield opened
    for port in opened:
        port.close()


async def _subscriber(
    netns: str, nursery: trio.Nursery, ports: list[PacketPort], **kw: Any
) -> Subscriber:
    with _in_netns(netns):
        port = PacketPort.open("sub0")
    ports.append(port)
    sub = Subscriber.make(port, subscriber_link_config(**kw))
    nursery.start_soon(port.run, sub.deliver)
    return sub


def _up(sub: Subscriber) -> bool:
    return any(isinstance(e, NetworkUp) for e in sub.events)


def _down(sub: Subscriber) -> bool:
    return any(isinstance(e, LinkDown) for e in sub.events)


def _sessions(sock: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ctl(sock, "show", "sessions")
    return rows


async def _no_sessions(sock: Path, what: str) -> None:
    await trio.to_thread.run_sync(lambda: wait_for(lambda: not _sessions(sock), what, BOUND))


async def _connect(
    netns: str, nursery: trio.Nursery, ports: list[PacketPort], **kw: Any
) -> Subscriber:
    sub = await _subscriber(netns, nursery, ports, **kw)
    await sub.discover()
    sub.link.open(trio.current_time())
    await sub.run(lambda s: _up(s) or _down(s))
    return sub


async def test_subscriber_reaches_the_lns_through_the_lac(
    netns: str, daemons: dict[str, Any], ports: list[PacketPort]
) -> None:
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            sub = await _connect(netns, nursery, ports)
            assert _up(sub), sub.events
            # LCP was negotiated once, with the LAC: the LNS took it over as proxy LCP and
            # answered the LAC's Challenge with its own Success.
            chap = [(c, i) for p, c, i in sub.received if p == Proto.CHAP]
            assert [c for c, _i in chap] == [CHAP_CHALLENGE, CHAP_SUCCESS]
            assert chap[0][1] == chap[1][1]
            first_auth = next(n for n, (p, _c, _i) in enumerate(sub.received) if p == Proto.CHAP)
            after = sub.received[first_auth:]
            assert not [1 for p, c, _i in after if p == Proto.LCP and c == CONFREQ]
            lns_rows = await trio.to_thread.run_sync(_sessions, daemons["lns_sock"])
            lac_rows = await trio.to_thread.run_sync(_sessions, daemons["lac_sock"])
            assert [r.get("username") for r in lns_rows] == ["user1"]
            assert IPv4Address(lns_rows[0]["address"]) in POOL
            assert [r.get("username") for r in lac_rows] == ["user1"]
            # The subscriber hangs up: PADT -> CDN, and the LNS forgets the session.
            sub.hang_up()
            await _no_sessions(daemons["lns_sock"], "the CDN")
            await _no_sessions(daemons["lac_sock"], "the LAC's cleanup")
            summary = await trio.to_thread.run_sync(ctl, daemons["lac_sock"], "show", "summary")
            nursery.cancel_scope.cancel()
    pppoe = summary["ppp"]["pppoe"]
    assert (pppoe["calls_up"], pppoe["in_PADT"], pppoe["sessions"]) == (1, 1, 0), pppoe


async def test_lns_clearing_the_call_ends_the_pppoe_session(
    netns: str, daemons: dict[str, Any], ports: list[PacketPort]
) -> None:
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            sub = await _connect(netns, nursery, ports)
            assert _up(sub), sub.events
            await trio.to_thread.run_sync(ctl, daemons["lns_sock"], "clear", "user", "user1")
            await sub.run(lambda s: False)  # until the LAC's PADT
            assert sub.padt.is_set()
            await _no_sessions(daemons["lac_sock"], "the LAC's cleanup")
            nursery.cancel_scope.cancel()


async def test_wrong_password_is_refused_by_the_lns(
    netns: str, daemons: dict[str, Any], ports: list[PacketPort]
) -> None:
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            sub = await _connect(netns, nursery, ports, password="wrong")
            assert not _up(sub)
            await sub.run(lambda s: sub.padt.is_set())
            assert sub.padt.is_set()
            chap = [c for p, c, _i in sub.received if p == Proto.CHAP]
            assert chap[0] == CHAP_CHALLENGE and CHAP_SUCCESS not in chap
            rows = await trio.to_thread.run_sync(_sessions, daemons["lns_sock"])
            assert rows == []
            nursery.cancel_scope.cancel()
