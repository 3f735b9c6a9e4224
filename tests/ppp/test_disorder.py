"""PPP over a link that reorders and duplicates (L2TP without data sequencing, RFC 2661 5.4).

RFC 1661 assumes a link that keeps order; L2TP data messages carry no sequence numbers by
default, so a stale LCP or CHAP packet can arrive late. A stale LCP Configure-Request makes LCP
renegotiate, by the book, and authentication starts afresh; the CHAP Challenge of the first
authentication can then reach the subscriber after the second one. These tests replay, frame by
frame, the sequence the daemons' fake network produced (tests/daemon/test_fakenet.py):

    LNS  O CHALLENGE id A             (held up in the network)
    sub  I CONFREQ [Open] id 1        (a stale copy of the LNS's request: LCP renegotiates)
    LNS  O CHALLENGE id B             (the new authentication)
    sub  O RESPONSE id B
    sub  I CHALLENGE id A             (the stale one) -> sub O RESPONSE id A
    LNS  I RESPONSE id B, O SUCCESS id B; I RESPONSE id A: not its Identifier, ignored
    sub  I SUCCESS id B

The subscriber used to take the stale Challenge for the current one and wait for a Success with
Identifier A, which never comes: it resent RESPONSE id A, the LNS (rightly, RFC 1994 4.2)
ignored it, and the LNS's IPCP gave up on a subscriber still authenticating.
"""

from __future__ import annotations

import random

import pytest

from ppp.auth import ChapCode
from ppp.config import AuthMethod
from ppp.events import Authenticated, LinkDown, NetworkUp
from ppp.frame import Code, Proto, decode_frame, decode_packet
from ppp.link import Phase

from .helpers import Pair, events_of, lns_config, packets, subscriber_config


def packet_of(frame: bytes) -> tuple[int, int, int]:
    """(protocol, code, identifier) of a control frame."""
    protocol, information = decode_frame(frame)
    code, ident, _ = decode_packet(information)
    return protocol, code, ident


def is_chap(frame: bytes) -> bool:
    return decode_frame(frame)[0] == Proto.CHAP


def renegotiated_pair(method: AuthMethod = AuthMethod.CHAP) -> tuple[Pair, bytes, bytes]:
    """Up to the subscriber's two Challenges: (pair, stale Challenge A, current Challenge B).

    Nothing CHAP reaches the subscriber on the way; a stale copy of the LNS's first LCP
    Configure-Request makes both ends renegotiate after the first Challenge went out.
    """
    pair = Pair(
        lns_config(method),
        subscriber_config(accept_auth=(method,)),
        server_rng=random.Random(5),
    )
    held: list[bytes] = []
    pair.drop_to_client = lambda frame: is_chap(frame) and not held.append(frame)
    pair.open()
    assert pair.server.phase is Phase.AUTHENTICATE
    assert pair.client.phase is Phase.AUTHENTICATE
    stale_confreq = next(f for f in pair.to_client if packet_of(f)[:2] == (Proto.LCP, Code.CONFREQ))
    pair.client.receive_frame(stale_confreq, pair.now)  # in Opened: LCP renegotiates
    assert pair.client.phase is Phase.ESTABLISH
    pair.pump()
    assert pair.server.phase is Phase.AUTHENTICATE
    challenge_a, challenge_b = held
    (_, ident_a, _), (_, ident_b, _) = packets(held, Proto.CHAP)
    assert ident_a != ident_b
    pair.drop_to_client = lambda frame: False
    return pair, challenge_a, challenge_b


@pytest.mark.parametrize("method", [AuthMethod.CHAP, AuthMethod.MSCHAPV2])
def test_a_stale_challenge_after_lcp_renegotiated_does_not_strand_the_subscriber(
    method: AuthMethod,
) -> None:
    pair, challenge_a, challenge_b = renegotiated_pair(method)
    pair.client.receive_frame(challenge_b, pair.now)
    pair.client.receive_frame(challenge_a, pair.now)  # late, from the first authentication
    pair.pump()
    responses = packets(pair.to_server, Proto.CHAP)
    ident_a, ident_b = packet_of(challenge_a)[2], packet_of(challenge_b)[2]
    assert [(code, ident) for code, ident, _ in responses] == [
        (ChapCode.RESPONSE, ident_b),
        (ChapCode.RESPONSE, ident_a),  # RFC 1994: every Challenge is answered
    ]
    # the LNS took B's Response, ignored A's, and its Success B let the subscriber in
    assert [(c, i) for c, i, _ in packets(pair.to_client, Proto.CHAP)][-1:] == [
        (ChapCode.SUCCESS, ident_b)
    ]
    assert pair.client.phase is Phase.NETWORK and pair.server.phase is Phase.NETWORK
    assert events_of(pair.client_events, Authenticated)
    assert events_of(pair.client_events, NetworkUp) and events_of(pair.server_events, NetworkUp)
    assert not events_of(pair.client_events + pair.server_events, LinkDown)
    pair.advance(120.0)  # and it stays up
    assert not events_of(pair.client_events + pair.server_events, LinkDown)


def test_a_lost_success_after_a_stale_challenge_is_recovered() -> None:
    pair, challenge_a, challenge_b = renegotiated_pair()
    lost: list[bytes] = []
    pair.drop_to_client = lambda frame: is_chap(frame) and not lost and not lost.append(frame)
    pair.client.receive_frame(challenge_b, pair.now)
    pair.client.receive_frame(challenge_a, pair.now)
    pair.pump()
    assert [packet_of(f)[1:] for f in lost] == [(ChapCode.SUCCESS, packet_of(challenge_b)[2])]
    assert pair.client.phase is Phase.AUTHENTICATE
    sent = len(pair.to_server)
    pair.advance(pair.now + 3.0)  # the restart timer: both Responses again
    ident_a, ident_b = packet_of(challenge_a)[2], packet_of(challenge_b)[2]
    assert [packet_of(f) for f in pair.to_server[sent:]][:2] == [
        (Proto.CHAP, ChapCode.RESPONSE, ident_b),
        (Proto.CHAP, ChapCode.RESPONSE, ident_a),
    ]
    # the LNS answered B's again with its Success (and ignored A's)
    assert pair.client.phase is Phase.NETWORK and pair.server.phase is Phase.NETWORK
    pair.advance(pair.now + 10.0)  # the LNS's IPCP request the subscriber dropped, again
    assert events_of(pair.client_events, NetworkUp) and events_of(pair.server_events, NetworkUp)
    assert not events_of(pair.client_events + pair.server_events, LinkDown)
