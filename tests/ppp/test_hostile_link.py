"""What a hostile subscriber cannot do to a link: change its identity after authenticating,
hold it in setup forever, pass a CHAP response of the wrong size to AAA, take an address
other than the one assigned, or get a malformed packet past the decoder uncounted."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from ppp.config import AuthMethod, IpcpConfig
from ppp.events import AuthRequest, DownReason, LinkDown, NetworkUp
from ppp.frame import Code, Proto, decode_options, encode_frame, encode_option, encode_packet
from ppp.ipcp import IpcpOption
from ppp.link import Link, Phase

from .helpers import USERS, Pair, events_of, lns_config, packets, subscriber_config
from .test_link_paths import drain, frame, networking_lns

OTHER = IPv4Address("10.0.0.77")
ASSIGNED = IPv4Address("10.0.0.5")


def up_pair(method: AuthMethod = AuthMethod.CHAP, **changes: object) -> Pair:
    pair = Pair(lns_config(method, **changes), subscriber_config())
    pair.open()
    assert pair.server.phase is Phase.NETWORK
    assert pair.server.peer_address == ASSIGNED
    return pair


def restart_as(pair: Pair, username: str, seed: int = 7) -> None:
    """The subscriber's side restarts LCP (a new Configure-Request on an Opened link), then
    authenticates as ``username``."""
    pair.client = Link(
        subscriber_config(username, USERS[username]), rng=random.Random(seed), name="sub2"
    )
    pair.client.open(pair.now)
    pair.pump()


def test_reauthentication_under_another_name_ends_the_link() -> None:
    for method in (AuthMethod.PAP, AuthMethod.CHAP, AuthMethod.MSCHAPV2):
        pair = up_pair(method)
        assert pair.server.identity == "alice"
        asked = len(pair.aaa.requests)
        restart_as(pair, "bob")
        # Bob's credentials never reach AAA, and the link dies for it.
        assert len(pair.aaa.requests) == asked, method
        assert pair.server.down_reason is DownReason.IDENTITY_CHANGED, method
        pair.advance(pair.now + 30)
        downs = events_of(pair.server_events, LinkDown)
        assert [d.reason for d in downs] == [DownReason.IDENTITY_CHANGED]  # type: ignore[attr-defined]
        assert pair.server.identity == "alice"


def test_reauthentication_under_the_same_name_continues() -> None:
    pair = up_pair(AuthMethod.CHAP)
    restart_as(pair, "alice")
    assert [r.username for r in pair.aaa.requests] == ["alice", "alice"]
    assert pair.server.phase is Phase.NETWORK
    assert pair.server.peer_address == ASSIGNED
    assert len(events_of(pair.server_events, NetworkUp)) == 2
    assert not events_of(pair.server_events, LinkDown)


def test_setup_timeout_bounds_a_link_that_never_finishes() -> None:
    # AAA never answers: the Authenticate phase (30 s) alone would restart with every LCP
    # restart; setup_timeout ends the link at 20 s whatever the peer does.
    pair = Pair(lns_config(AuthMethod.PAP, setup_timeout=20.0), subscriber_config())
    pair.aaa.defer = True
    pair.open()
    for t in (5.0, 10.0, 15.0):
        pair.advance(t)
        restart_as(pair, "alice", seed=int(t))
        assert pair.server.alive
    pair.advance(19.9)
    assert pair.server.alive
    pair.advance(21.0)
    assert pair.server.down_reason is DownReason.SETUP_TIMEOUT
    pair.advance(60.0)
    assert not pair.server.alive


def test_setup_timeout_is_over_once_a_network_protocol_opens() -> None:
    pair = up_pair(AuthMethod.PAP, setup_timeout=20.0)
    assert pair.server.setup_deadline is None
    pair.advance(100.0)
    assert pair.server.phase is Phase.NETWORK


def test_setup_timeout_bounds_a_renegotiation_that_never_finishes_too() -> None:
    pair = up_pair(AuthMethod.PAP, setup_timeout=20.0)
    pair.advance(100.0)
    pair.aaa.defer = True  # the re-authentication is never decided
    restart_as(pair, "alice")
    assert pair.server.phase is Phase.AUTHENTICATE
    assert pair.server.setup_deadline == 120.0
    pair.advance(119.0)
    assert pair.server.alive and pair.server.down_reason is None
    pair.advance(121.0)
    assert pair.server.down_reason is DownReason.SETUP_TIMEOUT


def test_restarts_of_an_established_link_are_bounded() -> None:
    pair = up_pair(AuthMethod.CHAP, max_restarts=3)
    for seed in range(3):
        restart_as(pair, "alice", seed=20 + seed)
        assert pair.server.phase is Phase.NETWORK, seed
    assert pair.server.restarts == 3
    asked = len(pair.aaa.requests)
    restart_as(pair, "alice", seed=30)
    assert pair.server.down_reason is DownReason.TOO_MANY_RESTARTS
    assert len(pair.aaa.requests) == asked  # the fourth never reached AAA


def test_restarts_before_the_link_was_up_are_not_counted() -> None:
    pair = Pair(lns_config(AuthMethod.PAP, max_restarts=1), subscriber_config())
    pair.aaa.defer = True
    pair.open()
    for t in (1.0, 2.0, 3.0):
        pair.advance(t)
        restart_as(pair, "alice", seed=int(t))
    assert pair.server.restarts == 0 and pair.server.down_reason is None


def test_chap_response_of_the_wrong_size_is_dropped_and_counted() -> None:
    for method, good, sizes in (
        (AuthMethod.CHAP, 16, (0, 8, 17, 255)),
        (AuthMethod.MSCHAPV2, 49, (48, 50, 16)),
    ):
        server = Link(lns_config(method), rng=random.Random(3), name="lns")
        client = Link(subscriber_config(), rng=random.Random(4), name="sub")
        server.open(0.0)
        client.open(0.0)
        # Run LCP until the server challenges; keep the subscriber's answer back.
        for _ in range(20):
            for f in server.frames_to_send():
                client.receive_frame(f, 0.0)
            out = client.frames_to_send()
            for f in out:
                if f[2:4] != b"\xc2\x23":
                    server.receive_frame(f, 0.0)
            drain(client)
            if server.phase is Phase.AUTHENTICATE and any(f[2:4] == b"\xc2\x23" for f in out):
                break
        responses = [f for f in out if f[2:4] == b"\xc2\x23"]
        assert responses, method
        code, ident, data = packets(responses, Proto.CHAP)[0]
        assert data[0] == good
        name = data[1 + good :]
        for size in sizes:
            bad = bytes((size,)) + bytes(size) + name
            server.receive_frame(encode_frame(Proto.CHAP, encode_packet(code, ident, bad)), 0.0)
            assert not events_of(drain(server), AuthRequest), (method, size)
        assert server.drops == {"chap-response-size": len(sizes)}
        # The real answer still gets through.
        server.receive_frame(responses[0], 0.0)
        assert [e.username for e in events_of(drain(server), AuthRequest)] == ["alice"]  # type: ignore[attr-defined]


def test_ipcp_request_for_another_address_is_naked_with_the_assigned_one() -> None:
    link = networking_lns(
        ipcp=IpcpConfig(local_address=IPv4Address("10.0.0.1"), assign_peer_address=True)
    )
    ask = encode_option(IpcpOption.ADDRESS, OTHER.packed)
    link.receive_frame(frame(Proto.IPCP, Code.CONFREQ, 1, ask), 0.3)
    drain(link)
    link.address_result(0.4, ASSIGNED)
    replies = packets(link.frames_to_send(), Proto.IPCP)
    naks = [r for r in replies if r[0] == Code.CONFNAK]
    assert naks and decode_options(naks[0][2]) == [(IpcpOption.ADDRESS, ASSIGNED.packed)]
    # Asking again for the other address is Nak'd again; never Acked.
    link.receive_frame(frame(Proto.IPCP, Code.CONFREQ, 2, ask), 0.5)
    replies = packets(link.frames_to_send(), Proto.IPCP)
    assert [r[0] for r in replies] == [Code.CONFNAK]
    assert link.ipcp is not None and link.ipcp.peer_address != int(OTHER)


def test_control_packets_whose_length_lies_are_dropped_and_counted() -> None:
    link = networking_lns()
    for information in (
        b"\x01\x01\x00\x40" + bytes(4),  # Length 64, 8 octets
        b"\x01\x01\x00\x02",  # Length below 4
        b"\x01\x01",  # no room for a header
    ):
        link.receive_frame(encode_frame(Proto.LCP, information), 1.0)
        link.receive_frame(encode_frame(Proto.IPCP, information), 1.0)
        link.receive_frame(encode_frame(Proto.PAP, information), 1.0)
    assert link.drops == {"bad-packet": 9}
    assert link.frames_to_send() == []
    assert link.phase is Phase.NETWORK
    link.receive_frame(b"\xff\x03", 1.0)
    assert link.drops["bad-frame"] == 1


def test_only_frames_other_than_lcp_count_as_traffic() -> None:
    pair = up_pair()
    before = pair.server.frames_in
    echo = encode_packet(Code.ECHOREQ, 1, b"\0\0\0\0")
    for address_control in (True, False):  # with or without ff 03: still LCP
        pair.server.receive_frame(
            encode_frame(Proto.LCP, echo, address_control=address_control), pair.now
        )
    assert pair.server.frames_in == before
    pair.server.receive_frame(encode_frame(Proto.IPV4, b"\x45" + bytes(19)), pair.now)
    assert pair.server.frames_in == before + 1
