"""A ``[[peer]]``'s interface_template in the kernel: the data plane names each session's
interface by the template its SessionSpec carries (the session's policy's), else by its own."""

from __future__ import annotations

import ipaddress
import pathlib

import pytest
from labutil import Link, run

from kl2tp.dataplane.base import NetworkSpec, SessionSpec, TunnelSpec
from kl2tp.dataplane.kernel import KernelDataPlane
from kl2tp.dataplane.netlink import RtNetlink

pytestmark = pytest.mark.lab


async def test_a_session_spec_template_names_the_interface(
    peer_ns: Link, tmp_path: pathlib.Path
) -> None:
    dp = await KernelDataPlane.open(
        instance="lab-policy", state_dir=str(tmp_path), ifname_template="kl%d"
    )
    try:
        await dp.open_tunnel(TunnelSpec(11, 21, (peer_ns.a_addr, 1701), (peer_ns.b_addr, 1701)))
        names = {}
        for sid, template in ((101, "pa%d"), (102, None)):
            await dp.open_session(
                SessionSpec(11, 21, sid, sid + 100, lns_mode=True, ifname_template=template),
                sink=lambda frame: None,
            )
            peer = ipaddress.IPv4Address(f"10.203.0.{sid - 90}")
            local = ipaddress.IPv4Address("10.203.0.1")
            names[sid] = await dp.session_up(11, sid, NetworkSpec(local, peer, mtu=1400))
        assert names[101] is not None and names[101].startswith("pa")
        assert names[101][2:].isdigit()
        assert names[102] is not None and names[102].startswith("kl")
        assert "10.203.0.11" in run("ip", "-o", "-4", "addr", "show", "dev", names[101]).stdout
        for sid in (101, 102):
            await dp.close_session(11, sid)
        with RtNetlink() as rt:
            assert rt.link_by_name(str(names[101])) is None
        await dp.close_tunnel(11)
    finally:
        await dp.aclose()
