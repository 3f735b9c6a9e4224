"""The LAC's LCP and authentication with a subscriber that dials in, then the hand-over."""

from __future__ import annotations

import hashlib
import random

import attrs
import pytest

from ppp.config import AuthMethod, IpcpConfig, LcpConfig, LinkConfig
from ppp.events import AuthRequest, NetworkUp
from ppp.frame import Proto, decode_options
from ppp.lac import LacNegotiation, ProxyNegotiationError
from ppp.link import Link
from ppp.proxy import ProxyAuthType
from tests.ppp.helpers import Pair, lns_config, packets, subscriber_config


def lac_config(method: AuthMethod) -> LinkConfig:
    return LinkConfig(
        lcp=LcpConfig(mru=1492, max_peer_mru=1492, echo_interval=0),
        auth=(method,),
        hostname="lac1",
        ipcp=IpcpConfig(enabled=False),
        send_address_control=False,
    )


def dial_in(method: AuthMethod, subscriber: Link, *, lose_first: bool = False) -> LacNegotiation:
    lac = LacNegotiation(lac_config(method), 0.0, rng=random.Random(5), name="pppoe 1")
    subscriber.open(0.0)
    now, lost = 0.0, False
    for _ in range(50):
        moved = False
        for frame in lac.frames_to_send():
            moved = True
            if lose_first and not lost:
                lost = True
                continue
            subscriber.receive_frame(frame, now)
        for frame in subscriber.frames_to_send():
            moved = True
            assert frame[:2] != b"\xff\x03"  # PPPoE carries no address and control
            lac.receive_frame(frame, now)
        if lac.result is not None or lac.down is not None:
            return lac
        deadline = lac.get_timer()
        if not moved and deadline is not None:
            now = max(now, deadline)
            lac.handle_timer(now)
            subscriber.handle_timer(now)
    raise AssertionError("never finished")


@pytest.mark.parametrize("method", [AuthMethod.CHAP, AuthMethod.PAP])
def test_lac_learns_the_user_and_the_lns_carries_on(method: AuthMethod) -> None:
    sub = Link(attrs.evolve(subscriber_config(), send_address_control=False), rng=random.Random(2))
    lac = dial_in(method, sub)
    assert lac.result is not None and lac.down is None
    username, lcp, auth = lac.result
    assert username == "alice" and auth.name == "alice"
    sent = dict(decode_options(lcp.last_sent))
    assert sent[1] == (1492).to_bytes(2, "big")  # the PPPoE MRU
    if method is AuthMethod.CHAP:
        assert auth.type == ProxyAuthType.CHAP and auth.ident is not None
        assert (
            auth.response
            == hashlib.md5(bytes([auth.ident]) + b"wonderland" + auth.challenge).digest()
        )
    else:
        assert (auth.type, auth.response) == (ProxyAuthType.PAP, b"wonderland")
    # The LNS takes over with the proxy values; the subscriber never sees LCP again.
    pair = Pair(lns_config(method), subscriber_config())
    pair.client = sub
    pair.server.open(0.0, proxy_lcp=lcp, proxy_auth=auth)
    pair.pump()
    pair.advance(10.0)
    assert packets(pair.to_client, Proto.LCP) == []
    requests = [e for e in pair.server_events if isinstance(e, AuthRequest)]
    assert len(requests) == 1 and requests[0].proxy
    assert any(isinstance(e, NetworkUp) for e in pair.client_events)


def test_lcp_restart_after_a_lost_confreq() -> None:
    sub = Link(attrs.evolve(subscriber_config(), send_address_control=False), rng=random.Random(2))
    lac = dial_in(AuthMethod.CHAP, sub, lose_first=True)
    assert lac.result is not None


def test_subscriber_refusing_the_method_ends_the_negotiation() -> None:
    refuses = attrs.evolve(
        subscriber_config(accept_auth=(AuthMethod.PAP,)), send_address_control=False
    )
    lac = dial_in(AuthMethod.CHAP, Link(refuses, rng=random.Random(2)))
    assert lac.result is None and lac.down is not None


def test_mschapv2_cannot_be_proxied() -> None:
    with pytest.raises(ProxyNegotiationError):
        LacNegotiation(lac_config(AuthMethod.MSCHAPV2), 0.0, rng=random.Random(1))
