"""After kill -9, a new instance removes exactly the kernel objects its journal names."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
from labutil import Link

from kl2tp.dataplane.kernel import KernelMechanics
from kl2tp.dataplane.netlink import L2tpNetlink, RtNetlink
from kl2tp.dataplane.pppox import open_session_channel

pytestmark = pytest.mark.lab

HELPER = pathlib.Path(__file__).with_name("stale_instance.py")


def wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_cleanup_removes_only_what_the_killed_instance_journaled(
    peer_ns: Link, tmp_path: pathlib.Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(tmp_path), peer_ns.a_addr, peer_ns.b_addr],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = 0
    foreign_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    nl = L2tpNetlink()
    rt = RtNetlink()
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        child, stale_ifname = info["child"], info["ifname"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # Tunnel 31 had no other holder: the kernel removes it by itself.
        wait_for(lambda: nl.get_tunnel(31) is None, "the kernel to drop tunnel 31")
        assert nl.get_tunnel(30) is not None
        assert rt.link_by_name(stale_ifname) is not None

        # Other software now uses tunnel id 31 (another peer port) and a look-alike interface.
        foreign_sock.bind((peer_ns.a_addr, 1702))
        foreign_sock.connect((peer_ns.b_addr, 1702))
        nl.create_tunnel(foreign_sock.fileno(), 31, 99)
        nl.create_session(31, 310, 910)
        foreign_ppp = open_session_channel(
            foreign_sock.fileno(), (peer_ns.b_addr, 1702), 31, 310, 99, 910
        )
        foreign_index = socket.if_nametoindex(foreign_ppp.kernel_ifname)
        rt.set_link(foreign_index, name="kl9999")

        mech = KernelMechanics(instance="stale", state_dir=str(tmp_path), ifname_template="kl%d")
        try:
            assert mech.cleanup_stale() == 2  # tunnel 30 (with its session) and its interface
            assert nl.get_tunnel(30) is None
            assert nl.get_session(30, 300) is None
            assert rt.link_by_name(stale_ifname) is None
            foreign = nl.get_tunnel(31)
            assert foreign is not None
            assert foreign.peer_tunnel_id == 99
            assert nl.get_session(31, 310) is not None
            assert rt.link_by_name("kl9999") is not None
            # A second look finds nothing more to do.
            assert mech.cleanup_stale() == 0
        finally:
            mech.close()
        assert not (tmp_path / "stale.journal").exists()
        foreign_ppp.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if child:
            os.kill(child, signal.SIGKILL)
        nl.delete_tunnel(31)
        foreign_sock.close()
        nl.close()
        rt.close()


def test_a_live_instance_keeps_its_journal(tmp_path: pathlib.Path) -> None:
    from kl2tp.dataplane.base import DataPlaneError

    first = KernelMechanics(instance="twice", state_dir=str(tmp_path))
    try:
        with pytest.raises(DataPlaneError, match="another kl2tp with instance name 'twice'"):
            KernelMechanics(instance="twice", state_dir=str(tmp_path))
    finally:
        first.close()
