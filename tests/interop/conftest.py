"""One l2tpns (with its FreeRADIUS) for every interop test of the run: it serves calls
only ~15 s after it starts, so the cases share it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.lac import PASSWORD, TUNNEL_SECRET
from tests.peers.l2tpns import L2tpnsPeer, l2tpns_with_radius, require_l2tpns


@pytest.fixture(scope="session")
def l2tpns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[L2tpnsPeer]:
    """Debian's l2tpns in a namespace of its own, CHAP preferred then PAP, tunnel
    authentication on, every ``user{n}`` known to its FreeRADIUS with one password."""
    require_l2tpns()
    users = f'DEFAULT Cleartext-Password := "{PASSWORD}"\n'
    with l2tpns_with_radius(
        tmp_path_factory.mktemp("l2tpns"),
        users=users,
        l2tp_secret=TUNNEL_SECRET,
        authtypes=("chap", "pap"),
    ) as peer:
        yield peer
