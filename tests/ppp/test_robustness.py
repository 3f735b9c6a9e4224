"""Hypothesis: whatever arrives, a link raises nothing and stays in a sane state; secrets never
reach the trace."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppp.config import AuthMethod, Ipv6cpConfig
from ppp.events import LinkDown
from ppp.frame import Proto, encode_frame, encode_packet
from ppp.link import Link, Phase

from .helpers import Pair, lns_config, subscriber_config

PROTOCOLS = [Proto.LCP, Proto.IPCP, Proto.IPV6CP, Proto.PAP, Proto.CHAP, Proto.CCP, 0x0021]


def _pair_in(stage: str, method: AuthMethod) -> Pair:
    v6 = Ipv6cpConfig(enabled=True)
    pair = Pair(lns_config(method, ipv6cp=v6), subscriber_config(ipv6cp=v6))
    if stage == "network":
        pair.open()
    elif stage == "establish":
        pair.server.open(0.0)
        pair.client.open(0.0)
    return pair


packet = st.tuples(
    st.sampled_from(PROTOCOLS),
    st.integers(0, 16),
    st.integers(0, 255),
    st.binary(max_size=24),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from(["idle", "establish", "network"]),
    st.sampled_from(list(AuthMethod)),
    st.lists(packet, max_size=12),
    st.booleans(),
)
def test_random_packets_never_break_a_link(
    stage: str,
    method: AuthMethod,
    inputs: list[tuple[int, int, int, bytes]],
    raw: bool,
) -> None:
    pair = _pair_in(stage, method)
    for link in (pair.server, pair.client):
        now = 1.0
        for protocol, code, ident, data in inputs:
            if raw:
                frame = encode_frame(protocol, data, address_control=bool(code & 1))
            else:
                frame = encode_frame(protocol, encode_packet(code, ident, data))
            link.receive_frame(frame, now)
            link.frames_to_send()
            timer = link.get_timer()
            assert timer is None or timer >= now or link.phase is not Phase.DEAD
            if timer is not None:
                link.handle_timer(timer)
                now = max(now, timer)
        events = []
        while (event := link.next_event()) is not None:
            events.append(event)
        downs = [e for e in events if isinstance(e, LinkDown)]
        assert len(downs) <= 1
        assert (link.phase is Phase.DEAD) == bool(downs) or stage == "idle"


def test_passwords_never_reach_the_trace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kl2tp.ppp")
    for method in AuthMethod:
        pair = Pair(lns_config(method), subscriber_config("bob", "s3cr3t-pw"))
        pair.open()
        assert pair.server.phase is Phase.NETWORK
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "s3cr3t-pw" not in text
    assert b"s3cr3t-pw".hex() not in text.lower()
    assert "lns CHAP: O CHALLENGE id" in text
    assert "sub PAP: O AUTH-REQ id" in text
    assert "lns LCP: State is Open" in text


def test_no_trace_work_when_debug_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kl2tp.ppp")
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config())
    pair.open()
    assert not [r for r in caplog.records if r.name == "kl2tp.ppp"]


def test_a_link_opens_once() -> None:
    link = Link(lns_config(AuthMethod.PAP), rng=random.Random(1))
    link.open(0.0)
    with pytest.raises(RuntimeError):
        link.open(0.0)
