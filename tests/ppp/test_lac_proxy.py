"""The LAC's half of proxy LCP/authentication: negotiate with the subscriber, hand over."""

from __future__ import annotations

import hashlib
import random

import pytest

from ppp.config import AuthMethod, LcpConfig
from ppp.events import AuthRequest, NetworkUp
from ppp.frame import Proto, decode_options
from ppp.lac import ProxyNegotiationError, pre_negotiate
from ppp.proxy import ProxyAuthType
from tests.ppp.helpers import Pair, lns_config, packets, subscriber_config

CHAP_SUCCESS = 3


def test_chap_proxy_values_are_what_the_subscriber_saw() -> None:
    result = pre_negotiate(
        subscriber_config(), AuthMethod.CHAP, 0.0, rng=random.Random(7), lac_hostname="hgw"
    )
    sent = dict(decode_options(result.lcp.last_sent))
    received = dict(decode_options(result.lcp.last_received))
    assert sent[3] == bytes.fromhex("c22305")  # the LAC demanded CHAP-MD5
    assert 5 in sent and 5 in received  # both sides' magic numbers
    assert result.lcp.initial_received is not None
    auth = result.auth
    assert auth.type == ProxyAuthType.CHAP
    assert auth.name == "alice"
    assert auth.ident is not None and len(auth.challenge) >= 16
    expected = hashlib.md5(bytes([auth.ident]) + b"wonderland" + auth.challenge).digest()
    assert auth.response == expected


def test_pap_proxy_carries_the_password() -> None:
    result = pre_negotiate(subscriber_config(), AuthMethod.PAP, 0.0, rng=random.Random(7))
    assert result.auth.type == ProxyAuthType.PAP
    assert (result.auth.name, result.auth.response) == ("alice", b"wonderland")
    assert dict(decode_options(result.lcp.last_sent))[3] == bytes.fromhex("c023")


def test_mschapv2_cannot_be_proxied() -> None:
    with pytest.raises(ProxyNegotiationError):
        pre_negotiate(subscriber_config(), AuthMethod.MSCHAPV2, 0.0, rng=random.Random(7))


@pytest.mark.parametrize("method", [AuthMethod.CHAP, AuthMethod.PAP])
def test_subscriber_carries_on_against_an_lns_that_accepts_the_proxy(method: AuthMethod) -> None:
    result = pre_negotiate(subscriber_config(), method, 0.0, rng=random.Random(3))
    pair = Pair(lns_config(method), subscriber_config())
    pair.client = result.subscriber
    pair.server.open(0.0, proxy_lcp=result.lcp, proxy_auth=result.auth)
    pair.pump()
    # PAP has no proxy identifier: the LNS's Ack reaches the subscriber once it resends its
    # Authenticate-Request.
    pair.advance(10.0)
    # No LCP negotiation and no challenge from the LNS: it replayed the LAC's exchange.
    assert packets(pair.to_client, Proto.LCP) == []
    assert all(p[0] != 1 for p in packets(pair.to_client, Proto.CHAP))
    requests = [e for e in pair.server_events if isinstance(e, AuthRequest)]
    assert len(requests) == 1 and requests[0].proxy
    assert any(isinstance(e, NetworkUp) for e in pair.server_events)
    assert any(isinstance(e, NetworkUp) for e in pair.client_events)
    if method is AuthMethod.CHAP:
        (success,) = [p for p in packets(pair.to_client, Proto.CHAP) if p[0] == CHAP_SUCCESS]
        assert success[1] == result.auth.ident  # Success carries the LAC's identifier


def test_initial_and_last_received_differ_after_a_nak() -> None:
    # the subscriber asks for an MRU below the LAC's floor: Nak'd to 128, asked again
    result = pre_negotiate(
        subscriber_config(lcp=LcpConfig(mru=100)), AuthMethod.CHAP, 0.0, rng=random.Random(7)
    )
    assert result.lcp.initial_received is not None
    assert dict(decode_options(result.lcp.initial_received))[1] == (100).to_bytes(2, "big")
    assert dict(decode_options(result.lcp.last_received))[1] == (128).to_bytes(2, "big")


def test_subscriber_that_will_not_authenticate_fails_the_negotiation() -> None:
    refuses = subscriber_config(accept_auth=(AuthMethod.PAP,))  # the LAC wants CHAP
    with pytest.raises(ProxyNegotiationError, match="LCP with the subscriber failed: auth-refused"):
        pre_negotiate(refuses, AuthMethod.CHAP, 0.0, rng=random.Random(7))
