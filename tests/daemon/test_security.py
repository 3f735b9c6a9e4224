"""Security defaults of the daemon layer."""

from __future__ import annotations

import random

from kl2tp.config import load_default
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.ppp_session import PppSessions, lns_link_config
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig


def test_challenges_come_from_the_os_generator() -> None:
    """Tunnel challenges, random vectors (endpoint rng) and CHAP challenges and magic
    numbers (PPP rng) must not be predictable from values a peer sees."""
    endpoint = Endpoint(
        role="lns",
        tunnel_config=TunnelConfig(),
        dataplane=NullDataPlane(),
        listen=("127.0.0.1", 0),
    )
    assert isinstance(endpoint.rng, random.SystemRandom)
    link = lns_link_config(load_default("lns"))
    sessions = PppSessions(NullDataPlane(), lns=True, link_config=lambda _n: link)
    assert isinstance(sessions.rng, random.SystemRandom)
