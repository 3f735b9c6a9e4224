"""The guest kernel has what the kernel data plane needs; the lab plumbing works."""

from __future__ import annotations

import os

import pytest
from labutil import Link, netns, run

from kl2tp.dataplane.capability import check_kernel
from kl2tp.dataplane.netlink import RtNetlink

pytestmark = pytest.mark.lab


def test_capability_check_passes_in_the_guest() -> None:
    assert check_kernel() is None


def test_guest_writes_go_to_the_overlay_not_the_host(tmp_path: object) -> None:
    # The checkout is the host's, read-only below a tmpfs overlay: writing here is safe and
    # visible to this guest only.
    marker = os.path.join(os.getcwd(), ".lab-overlay-probe")
    with open(marker, "w") as f:
        f.write("guest")
    os.unlink(marker)
    assert os.environ["KL2TP_LAB"] in ("uml", "qemu")


def test_namespaces_are_joined_by_veth(veth_pair: Link) -> None:
    proc = run("ip", "netns", "exec", veth_pair.a, "ping", "-c", "1", "-W", "5", veth_pair.b_addr)
    assert " 0% packet loss" in proc.stdout
    # Netlink sockets belong to the namespace they were opened in (sysfs would not: it shows
    # the namespace it was mounted from).
    with netns(veth_pair.b), RtNetlink() as rt:
        names = {link.name for link in rt.list_links()}
    assert "veth-b" in names
    assert "veth-a" not in names
