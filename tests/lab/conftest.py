"""Lab test plumbing: runs only inside the guest kernel booted by tests/lab/run.

Tests marked ``lab`` need L2TP and PPP in the kernel. On the host (no ``KL2TP_LAB`` in the
environment) they are deselected here, so a plain ``pytest`` stays green and fast; inside the
guest ``tests/lab/run`` runs ``pytest -m lab tests/lab``. Helpers live in ``labutil``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from labutil import Link, run

IN_GUEST = bool(os.environ.get("KL2TP_LAB"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_GUEST:
        return
    lab = [item for item in items if item.get_closest_marker("lab")]
    if lab:
        config.hook.pytest_deselected(items=lab)
        items[:] = [item for item in items if not item.get_closest_marker("lab")]


@pytest.fixture
def veth_pair() -> Iterator[Link]:
    """Namespaces lab-a (10.99.0.1) and lab-b (10.99.0.2) joined by veth, removed afterwards."""
    link = Link("lab-a", "lab-b", "10.99.0.1", "10.99.0.2")
    for ns in (link.a, link.b):
        run("ip", "netns", "add", ns)
    try:
        run("ip", "link", "add", "veth-a", "netns", link.a, "type", "veth",
            "peer", "name", "veth-b", "netns", link.b)  # fmt: skip
        for ns, dev, addr in ((link.a, "veth-a", link.a_addr), (link.b, "veth-b", link.b_addr)):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        yield link
    finally:
        for ns in (link.a, link.b):
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def peer_ns() -> Iterator[Link]:
    """The guest's initial namespace (10.98.0.1, where async data-plane code runs: trio's
    worker threads stay there) joined by veth to namespace lab-p (10.98.0.2)."""
    link = Link("", "lab-p", "10.98.0.1", "10.98.0.2")
    run("ip", "netns", "add", link.b)
    try:
        run("ip", "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-p",
            "netns", link.b)  # fmt: skip
        run("ip", "addr", "add", f"{link.a_addr}/24", "dev", "veth-r")
        run("ip", "link", "set", "veth-r", "up")
        run("ip", "-n", link.b, "link", "set", "lo", "up")
        run("ip", "-n", link.b, "addr", "add", f"{link.b_addr}/24", "dev", "veth-p")
        run("ip", "-n", link.b, "link", "set", "veth-p", "up")
        yield link
    finally:
        run("ip", "link", "del", "veth-r", check=False)
        run("ip", "netns", "del", link.b, check=False)
