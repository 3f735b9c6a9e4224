"""An LNS link and a subscriber link negotiating back to back: success, Nak and Reject loops,
failures, keepalive, termination."""

from __future__ import annotations

import logging
import random
from ipaddress import IPv4Address

import pytest

from ppp.config import AuthMethod, IpcpConfig, Ipv6cpConfig, LcpConfig, LinkConfig
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials
from ppp.events import (
    AddressRequest,
    Authenticated,
    AuthRequest,
    DownReason,
    Ipv6Up,
    LinkDown,
    LinkUp,
    NetworkUp,
)
from ppp.frame import Code, Proto, decode_frame, encode_frame, encode_option, encode_packet
from ppp.lcp import AUTH_OPTION_VALUES, LcpOption
from ppp.link import Link, Phase

from .helpers import DNS, LNS_ADDRESS, Aaa, Pair, events_of, lns_config, packets, subscriber_config

POOL_FIRST = IPv4Address("10.0.0.5")
CREDENTIAL_TYPES = {
    AuthMethod.PAP: PapCredentials,
    AuthMethod.CHAP: ChapCredentials,
    AuthMethod.MSCHAPV2: MsChapV2Credentials,
}


@pytest.mark.parametrize("method", list(AuthMethod))
def test_negotiation_reaches_network_up(method: AuthMethod) -> None:
    pair = Pair(lns_config(method), subscriber_config())
    pair.open()

    (request,) = events_of(pair.server_events, AuthRequest)
    assert isinstance(request, AuthRequest)
    assert request.username == "alice"
    assert request.method is method
    assert isinstance(request.credentials, CREDENTIAL_TYPES[method])
    assert not request.proxy

    assert events_of(pair.server_events, NetworkUp) == [NetworkUp(LNS_ADDRESS, POOL_FIRST, DNS)]
    assert events_of(pair.client_events, NetworkUp) == [NetworkUp(POOL_FIRST, LNS_ADDRESS, DNS)]
    assert events_of(pair.server_events, Authenticated) == [Authenticated("alice", method)]
    assert events_of(pair.client_events, Authenticated) == [Authenticated("alice", method)]
    (server_up,) = events_of(pair.server_events, LinkUp)
    (client_up,) = events_of(pair.client_events, LinkUp)
    assert isinstance(server_up, LinkUp) and isinstance(client_up, LinkUp)
    assert (server_up.auth, client_up.peer_auth) == (method, method)
    assert server_up.magic == client_up.peer_magic != 0
    assert client_up.magic == server_up.peer_magic != server_up.magic
    for link in (pair.server, pair.client):
        assert link.phase is Phase.NETWORK
        assert link.auth_method is method
        assert link.username == "alice"
    assert pair.server.peer_address == POOL_FIRST
    assert not events_of(pair.server_events + pair.client_events, LinkDown)


@pytest.mark.parametrize("method", list(AuthMethod))
def test_wrong_password_fails_and_costs_no_address(method: AuthMethod) -> None:
    pair = Pair(lns_config(method), subscriber_config(password="guess"))
    pair.open()
    pair.advance(30.0)
    (server_down,) = events_of(pair.server_events, LinkDown)
    (client_down,) = events_of(pair.client_events, LinkDown)
    assert isinstance(server_down, LinkDown) and isinstance(client_down, LinkDown)
    assert server_down.reason is DownReason.AUTH_FAILED
    assert client_down.reason is DownReason.AUTH_FAILED
    assert not events_of(pair.server_events, AddressRequest)
    assert not events_of(pair.server_events, NetworkUp)
    assert pair.aaa.pool == [POOL_FIRST]
    if method is AuthMethod.MSCHAPV2:
        (failure,) = [p for p in packets(pair.to_client, Proto.CHAP) if p[0] == 4]
        assert failure[2].startswith(b"E=691 R=0 C=")
        assert b" V=3 M=" in failure[2]


def test_bad_mschapv2_server_proof_is_refused_by_the_subscriber() -> None:
    class LyingAaa(Aaa):
        def decide(self, link: Link, event: AuthRequest, now: float) -> None:
            link.auth_result(now, True, authenticator_response="S=" + "0" * 40)

    pair = Pair(lns_config(AuthMethod.MSCHAPV2), subscriber_config(), aaa=LyingAaa())
    pair.open()
    pair.advance(30.0)
    (client_down,) = events_of(pair.client_events, LinkDown)
    assert isinstance(client_down, LinkDown)
    assert client_down.reason is DownReason.AUTH_FAILED
    assert not events_of(pair.client_events, NetworkUp)


def test_lns_preference_order_and_subscriber_nak() -> None:
    """The LNS prefers MS-CHAPv2; a subscriber that only does PAP Naks, the LNS falls back."""
    pair = Pair(
        lns_config(AuthMethod.MSCHAPV2, AuthMethod.CHAP, AuthMethod.PAP),
        subscriber_config(accept_auth=(AuthMethod.PAP,)),
    )
    pair.open()
    lcp = packets(pair.to_server, Proto.LCP)
    assert any(code == Code.CONFNAK for code, _, _ in lcp)
    assert events_of(pair.server_events, Authenticated) == [Authenticated("alice", AuthMethod.PAP)]
    assert events_of(pair.client_events, NetworkUp)


def test_subscriber_without_credentials_rejects_auth_and_lns_refuses() -> None:
    """A peer rejecting the Authentication-Protocol option: the LNS will not go on."""
    pair = Pair(lns_config(AuthMethod.CHAP), LinkConfig(ipcp=IpcpConfig()))
    pair.open()
    pair.advance(30.0)
    rejects = [p for p in packets(pair.to_server, Proto.LCP) if p[0] == Code.CONFREJ]
    assert rejects and rejects[0][2] == b"\x03\x05\xc2\x23\x05"
    (down,) = events_of(pair.server_events, LinkDown)
    assert isinstance(down, LinkDown)
    assert down.reason is DownReason.AUTH_REFUSED
    (client_down,) = events_of(pair.client_events, LinkDown)
    assert isinstance(client_down, LinkDown)
    assert client_down.reason is DownReason.PEER_TERMINATED


def test_rejected_dns_is_dropped_and_link_still_comes_up() -> None:
    """The LNS has no DNS to give: it Rejects options 129/131, the subscriber stops asking."""
    server = lns_config(
        AuthMethod.CHAP, ipcp=IpcpConfig(local_address=LNS_ADDRESS, assign_peer_address=True)
    )
    pair = Pair(server, subscriber_config())
    pair.open()
    rejects = [p for p in packets(pair.to_client, Proto.IPCP) if p[0] == Code.CONFREJ]
    assert rejects[0][2] == bytes.fromhex("810600000000 830600000000")
    assert events_of(pair.client_events, NetworkUp) == [NetworkUp(POOL_FIRST, LNS_ADDRESS, ())]


def test_peer_asking_for_a_taken_address_is_naked_with_the_assigned_one() -> None:
    taken = IPv4Address("10.0.0.9")
    aaa = Aaa(pool=[IPv4Address("10.0.0.7")])  # 10.0.0.9 belongs to someone else
    client = subscriber_config(ipcp=IpcpConfig(local_address=taken, accept_local=True))
    pair = Pair(lns_config(AuthMethod.CHAP), client, aaa=aaa)
    pair.open()
    assert aaa.address_hints == [taken]
    naks = [p for p in packets(pair.to_client, Proto.IPCP) if p[0] == Code.CONFNAK]
    assert naks[0][2] == bytes.fromhex("03060a000007")
    assert events_of(pair.client_events, NetworkUp) == [
        NetworkUp(IPv4Address("10.0.0.7"), LNS_ADDRESS, ())
    ]
    assert pair.server.peer_address == IPv4Address("10.0.0.7")


def test_peer_keeps_a_free_address_it_asks_for() -> None:
    wanted = IPv4Address("10.0.0.8")
    aaa = Aaa(pool=[IPv4Address("10.0.0.7"), wanted])
    client = subscriber_config(ipcp=IpcpConfig(local_address=wanted, accept_local=True))
    pair = Pair(lns_config(AuthMethod.PAP), client, aaa=aaa)
    pair.open()
    assert not [p for p in packets(pair.to_client, Proto.IPCP) if p[0] == Code.CONFNAK]
    assert events_of(pair.server_events, NetworkUp) == [NetworkUp(LNS_ADDRESS, wanted, ())]


def test_no_address_left_brings_the_link_down() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config(), aaa=Aaa(pool=[]))
    pair.open()
    pair.advance(30.0)
    (down,) = events_of(pair.server_events, LinkDown)
    assert isinstance(down, LinkDown)
    assert down.reason is DownReason.NO_ADDRESS
    assert not events_of(pair.client_events, NetworkUp)


def test_address_from_the_auth_verdict_skips_the_address_request() -> None:
    class FramedAaa(Aaa):
        def decide(self, link: Link, event: AuthRequest, now: float) -> None:
            link.auth_result(now, True, address=IPv4Address("10.9.9.9"))

    pair = Pair(lns_config(AuthMethod.PAP), subscriber_config(), aaa=FramedAaa())
    pair.open()
    assert not events_of(pair.server_events, AddressRequest)
    assert events_of(pair.client_events, NetworkUp) == [
        NetworkUp(IPv4Address("10.9.9.9"), LNS_ADDRESS, DNS)
    ]


class _FirstMagic(random.Random):
    """A random source whose first 32-bit draw is fixed: two of them collide once."""

    def __init__(self, seed: int, first: int) -> None:
        super().__init__(seed)
        self.first: int | None = first

    def getrandbits(self, k: int) -> int:
        if k == 32 and self.first is not None:
            value, self.first = self.first, None
            return value
        return super().getrandbits(k)


def test_magic_number_collision_is_detected_and_renegotiated() -> None:
    magic = 0x109D08F2
    pair = Pair(
        lns_config(AuthMethod.CHAP),
        subscriber_config(),
        server_rng=_FirstMagic(1, magic),
        client_rng=_FirstMagic(2, magic),
    )
    pair.open()
    naks = [p for p in packets(pair.to_client + pair.to_server, Proto.LCP) if p[0] == 3]
    assert len(naks) == 2  # each side saw its own number come back once
    for _, _, data in naks:
        assert data[:2] == b"\x05\x06" and data[2:] != magic.to_bytes(4, "big")
    (server_up,) = events_of(pair.server_events, LinkUp)
    assert isinstance(server_up, LinkUp)
    assert server_up.magic != server_up.peer_magic
    assert magic not in (server_up.magic, server_up.peer_magic)
    assert events_of(pair.client_events, NetworkUp)


def test_looped_back_line_is_detected() -> None:
    """Our own Configure-Requests come back to us: Magic-Number says loopback."""
    link = Link(lns_config(AuthMethod.CHAP), rng=random.Random(5), name="loop")
    link.open(0.0)
    for _ in range(50):
        frames = link.frames_to_send()
        if not frames:
            break
        for frame in frames:
            link.receive_frame(frame, 0.0)
    events = []
    while (event := link.next_event()) is not None:
        events.append(event)
    assert events == [LinkDown(DownReason.LOOPBACK, "magic number keeps coming back")]


@pytest.mark.parametrize(("asked", "agreed"), [(1492, 1400), (100, 128)])
def test_mru_nak(asked: int, agreed: int) -> None:
    server = lns_config(AuthMethod.PAP, lcp=LcpConfig(max_peer_mru=1400))
    pair = Pair(server, subscriber_config(lcp=LcpConfig(mru=asked)))
    pair.open()
    naks = [p for p in packets(pair.to_client, Proto.LCP) if p[0] == Code.CONFNAK]
    assert naks[0][2] == b"\x01\x04" + agreed.to_bytes(2, "big")
    (client_up,) = events_of(pair.client_events, LinkUp)
    (server_up,) = events_of(pair.server_events, LinkUp)
    assert isinstance(client_up, LinkUp) and isinstance(server_up, LinkUp)
    assert client_up.mru == server_up.peer_mru == agreed
    assert events_of(pair.client_events, NetworkUp)


def test_echo_keepalive_answers_and_failure() -> None:
    server = lns_config(AuthMethod.CHAP, lcp=LcpConfig(echo_interval=10.0, echo_failure=3))
    pair = Pair(server, subscriber_config(lcp=LcpConfig(echo_interval=0)))
    pair.open()
    pair.advance(100.0)
    echoes = [p for p in packets(pair.to_client, Proto.LCP) if p[0] == Code.ECHOREQ]
    replies = [p for p in packets(pair.to_server, Proto.LCP) if p[0] == Code.ECHOREP]
    assert len(echoes) == len(replies) == 10
    assert not events_of(pair.server_events, LinkDown)

    pair.drop_to_server = lambda frame: True  # the subscriber vanishes
    sent_before = len(echoes)
    pair.advance(200.0)
    (down,) = events_of(pair.server_events, LinkDown)
    assert isinstance(down, LinkDown)
    assert down.reason is DownReason.ECHO_TIMEOUT
    echoes = [p for p in packets(pair.to_client, Proto.LCP) if p[0] == Code.ECHOREQ]
    assert len(echoes) - sent_before == 3


def test_adaptive_echo_lets_the_talking_side_carry_the_keepalive() -> None:
    # The subscriber echoes every 10 s as pppd does; the adaptive LNS then sends none of its
    # own: each of the subscriber's requests proves the link. Alone, it asks again.
    lcp = LcpConfig(echo_interval=10.0, echo_failure=3, echo_adaptive=True)
    server = lns_config(AuthMethod.CHAP, lcp=lcp)
    pair = Pair(server, subscriber_config(lcp=LcpConfig(echo_interval=10.0)))
    pair.open()
    pair.advance(100.0)
    asked = [p for p in packets(pair.to_client, Proto.LCP) if p[0] == Code.ECHOREQ]
    answered = [p for p in packets(pair.to_client, Proto.LCP) if p[0] == Code.ECHOREP]
    assert asked == [] and len(answered) >= 9
    assert not events_of(pair.server_events, LinkDown)

    pair.drop_to_server = lambda frame: True  # the subscriber vanishes
    pair.advance(200.0)
    (down,) = events_of(pair.server_events, LinkDown)
    assert isinstance(down, LinkDown) and down.reason is DownReason.ECHO_TIMEOUT
    asked = [p for p in packets(pair.to_client, Proto.LCP) if p[0] == Code.ECHOREQ]
    assert len(asked) == 3


def test_echo_reply_carries_our_magic() -> None:
    pair = Pair(lns_config(AuthMethod.PAP), subscriber_config())
    pair.open()
    pair.server.receive_frame(b"\xff\x03\xc0\x21" + bytes.fromhex("0977000a 11223344 abcd"), 0)
    (reply,) = [p for p in packets(pair.server.frames_to_send(), Proto.LCP)]
    assert reply[:2] == (Code.ECHOREP, 0x77)
    assert reply[2] == (pair.server.lcp.want_magic or 0).to_bytes(4, "big") + b"\xab\xcd"


def test_echo_on_an_opened_link_is_answered_as_the_automaton_would_and_a_bad_one_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Untraced, a held link's Echo-Request skips the automaton's dispatch; traced, it goes
    # through it: the same answer either way. A Length that lies is dropped and counted.
    pair = Pair(lns_config(AuthMethod.PAP), subscriber_config())
    pair.open()
    server = pair.server
    request = b"\xff\x03\xc0\x21" + bytes.fromhex("0905000a 11223344 abcd")
    server.receive_frame(request, 0)
    fast = server.frames_to_send()
    with caplog.at_level(logging.DEBUG, logger="kl2tp.ppp"):
        assert server.tracing
        server.receive_frame(request, 0)
        traced = server.frames_to_send()
    assert fast == traced and len(fast) == 1
    server.receive_frame(b"\xff\x03\xc0\x21" + bytes.fromhex("0906003c 11223344"), 0)
    assert server.frames_to_send() == []
    assert server.drops == {"bad-packet": 1}
    assert not events_of(pair.server_events, LinkDown)


def test_lcp_timeout_without_a_peer() -> None:
    link = Link(lns_config(AuthMethod.CHAP, establish_timeout=60.0), rng=random.Random(1))
    link.open(0.0)
    now = 0.0
    confreqs = 0
    while (deadline := link.get_timer()) is not None:
        now = deadline
        link.handle_timer(now)
        confreqs += sum(p[0] == Code.CONFREQ for p in packets(link.frames_to_send(), Proto.LCP))
    confreqs += sum(p[0] == Code.CONFREQ for p in packets(link.frames_to_send(), Proto.LCP))
    assert confreqs == 10  # Max-Configure
    assert link.next_event() == LinkDown(DownReason.LCP_TIMEOUT, "no answer to LCP requests")
    assert now == pytest.approx(30.0)


def test_admin_close_and_peer_terminate() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config())
    pair.open()
    pair.server.close(pair.now, DownReason.ADMIN, "operator")
    pair.pump()
    pair.advance(10.0)
    assert events_of(pair.server_events, LinkDown) == [LinkDown(DownReason.ADMIN, "operator")]
    (client_down,) = events_of(pair.client_events, LinkDown)
    assert isinstance(client_down, LinkDown)
    assert client_down.reason is DownReason.PEER_TERMINATED
    assert pair.server.phase is pair.client.phase is Phase.DEAD
    assert pair.server.get_timer() is None


def test_lower_layer_down_is_immediate() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config())
    pair.open()
    pair.server.lower_down(pair.now)
    events = []
    while (event := pair.server.next_event()) is not None:
        events.append(event)
    assert events[-1] == LinkDown(DownReason.LOWER_LAYER_DOWN, "")
    assert pair.server.frames_to_send() == []


def test_unknown_protocol_and_code_are_rejected_and_lcp_extras_tolerated() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config())
    pair.open()
    server = pair.server
    server.receive_frame(b"\xff\x03\x80\xfd\x01\x01\x00\x04", 0)  # CCP: not ours
    server.receive_frame(b"\xc0\x21\x20\x05\x00\x06\xaa\xbb", 0)  # LCP code 32, no ff03
    for code in (Code.DISCREQ, Code.IDENT, Code.TIMEREM):
        server.receive_frame(b"\xff\x03\xc0\x21" + bytes((code, 9, 0, 8)) + b"\0\0\0\0", 0)
    sent = packets(server.frames_to_send(), Proto.LCP)
    assert [p[0] for p in sent] == [Code.PROTREJ, Code.CODEREJ]
    assert sent[0][2] == b"\x80\xfd\x01\x01\x00\x04"
    assert sent[1][2] == b"\x20\x05\x00\x06\xaa\xbb"
    assert server.phase is Phase.NETWORK


def test_protocol_reject_of_ipv6cp_leaves_ipcp_running() -> None:
    server = lns_config(AuthMethod.PAP, ipv6cp=Ipv6cpConfig(enabled=True))
    pair = Pair(server, subscriber_config())  # the subscriber does no IPv6CP
    pair.open()
    protrejs = [p for p in packets(pair.to_server, Proto.LCP) if p[0] == Code.PROTREJ]
    assert protrejs and protrejs[0][2][:2] == b"\x80\x57"
    assert events_of(pair.server_events, NetworkUp)
    assert not events_of(pair.server_events, Ipv6Up)
    assert pair.server.phase is Phase.NETWORK


def test_ipv6cp_interface_ids() -> None:
    v6 = Ipv6cpConfig(enabled=True)
    pair = Pair(lns_config(AuthMethod.PAP, ipv6cp=v6), subscriber_config(ipv6cp=v6))
    pair.open()
    (server_up,) = events_of(pair.server_events, Ipv6Up)
    (client_up,) = events_of(pair.client_events, Ipv6Up)
    assert isinstance(server_up, Ipv6Up) and isinstance(client_up, Ipv6Up)
    assert server_up.interface_id == client_up.peer_interface_id != 0
    assert client_up.interface_id == server_up.peer_interface_id != 0
    assert server_up.interface_id != server_up.peer_interface_id


def test_ipv6cp_collision_is_naked() -> None:
    same = Ipv6cpConfig(enabled=True, interface_id=0x0200_5EFF_FE00_0001)
    pair = Pair(lns_config(AuthMethod.PAP, ipv6cp=same), subscriber_config(ipv6cp=same))
    pair.open()
    naks = [p for p in packets(pair.to_server + pair.to_client, Proto.IPV6CP) if p[0] == 3]
    assert naks
    (server_up,) = events_of(pair.server_events, Ipv6Up)
    assert isinstance(server_up, Ipv6Up)
    assert server_up.interface_id != server_up.peer_interface_id
    assert 0 not in (server_up.interface_id, server_up.peer_interface_id)


def test_chap_rechallenge() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP, chap_rechallenge=60.0), subscriber_config())
    pair.open()
    pair.advance(130.0)
    assert len(events_of(pair.server_events, AuthRequest)) == 3
    challenges = [p for p in packets(pair.to_client, Proto.CHAP) if p[0] == 1]
    assert len({p[1] for p in challenges}) == 3  # a fresh identifier each time
    assert pair.server.phase is Phase.NETWORK
    assert len(events_of(pair.server_events, NetworkUp)) == 1

    pair.aaa.defer = True
    pair.advance(200.0)
    pair.server.auth_result(pair.now, False, message="revoked")
    pair.pump()
    pair.advance(230.0)
    (down,) = events_of(pair.server_events, LinkDown)
    assert isinstance(down, LinkDown)
    assert down.reason is DownReason.AUTH_FAILED


def test_lossy_wire_still_converges() -> None:
    loss = random.Random(7)
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config())
    pair.drop_to_client = lambda frame: loss.random() < 0.3
    pair.drop_to_server = lambda frame: loss.random() < 0.3
    pair.open()
    pair.advance(60.0)
    assert events_of(pair.server_events, NetworkUp)
    assert events_of(pair.client_events, NetworkUp)
    assert not events_of(pair.server_events + pair.client_events, LinkDown)


def test_verdict_that_never_comes_times_out() -> None:
    aaa = Aaa()
    aaa.defer = True
    pair = Pair(lns_config(AuthMethod.PAP, auth_timeout=20.0), subscriber_config(), aaa=aaa)
    pair.open()
    pair.advance(40.0)
    (down,) = events_of(pair.server_events, LinkDown)
    assert isinstance(down, LinkDown)
    assert down.reason is DownReason.AUTH_TIMEOUT


def test_links_are_slotted() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP, chap_rechallenge=60.0), subscriber_config())
    pair.open()
    link = pair.server
    for obj in (link, link.lcp, link.lcp.fsm, link.ipcp, link.authenticator):
        assert obj is not None
        assert not hasattr(obj, "__dict__"), type(obj).__name__


@pytest.mark.parametrize("method", [AuthMethod.CHAP, AuthMethod.PAP])
def test_authenticator_retired_once_the_network_opens(method: AuthMethod) -> None:
    """Without re-challenges the authenticator goes once IPCP opens; its method stays shown,
    and a replayed Response draws no second verdict."""
    pair = Pair(lns_config(method), subscriber_config())
    pair.open()
    link = pair.server
    assert link.phase is Phase.NETWORK and events_of(pair.server_events, NetworkUp)
    assert link.authenticator is None
    assert link.auth_method is method
    requests = len(events_of(pair.server_events, AuthRequest))
    proto = Proto.CHAP if method is AuthMethod.CHAP else Proto.PAP
    [answer] = [f for f in pair.to_server if decode_frame(f)[0] == proto]
    link.receive_frame(answer, pair.now)
    pair.pump()
    assert len(events_of(pair.server_events, AuthRequest)) == requests
    assert link.phase is Phase.NETWORK


def test_authenticator_kept_for_rechallenges() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP, chap_rechallenge=60.0), subscriber_config())
    pair.open()
    assert pair.server.authenticator is not None
    assert pair.server.auth_method is AuthMethod.CHAP


def test_terminate_phase_has_a_hard_deadline() -> None:
    """A peer that never acks Terminate-Request cannot keep the link out of Dead."""
    pair = Pair(lns_config(AuthMethod.CHAP, terminate_timeout=4.0), subscriber_config())
    pair.open()
    pair.drop_to_server = lambda frame: True
    pair.server.close(pair.now)
    pair.server.close(pair.now + 1.0)  # a second close does not extend the deadline
    pair.advance(4.0)
    assert events_of(pair.server_events, LinkDown) == [LinkDown(DownReason.ADMIN, "")]


def _lcp_request(identifier: int, *options: bytes) -> bytes:
    return encode_frame(Proto.LCP, encode_packet(Code.CONFREQ, identifier, b"".join(options)))


CHAP_MD5 = encode_option(LcpOption.AUTH, AUTH_OPTION_VALUES[AuthMethod.CHAP])
MAGIC = encode_option(LcpOption.MAGIC, b"\x12\x34\x56\x78")


def test_subscriber_prefers_its_method_but_takes_chap_md5_when_the_lns_insists() -> None:
    """l2tpns asks for CHAP-MD5 and ignores a Nak: an MS-CHAPv2 subscriber that can do
    CHAP-MD5 suggests MS-CHAPv2 once, and takes CHAP-MD5 when asked for it again."""
    config = subscriber_config(accept_auth=(AuthMethod.MSCHAPV2,), fallback_auth=(AuthMethod.CHAP,))
    link = Link(config, rng=random.Random(3), name="sub")
    link.open(0.0)
    link.receive_frame(_lcp_request(1, CHAP_MD5, MAGIC), 0.0)
    replies = [p for p in packets(link.frames_to_send(), Proto.LCP) if p[0] != Code.CONFREQ]
    mschapv2 = encode_option(LcpOption.AUTH, AUTH_OPTION_VALUES[AuthMethod.MSCHAPV2])
    assert replies == [(Code.CONFNAK, 1, mschapv2)]
    link.receive_frame(_lcp_request(2, CHAP_MD5, MAGIC), 0.1)
    replies = [p for p in packets(link.frames_to_send(), Proto.LCP) if p[0] != Code.CONFREQ]
    assert replies == [(Code.CONFACK, 2, CHAP_MD5 + MAGIC)]


def test_a_fallback_needs_a_nak_the_lns_heard() -> None:
    """A request we answer with a Reject (of other options) never showed the LNS our
    preference: CHAP-MD5 in the next request is Nak'd, not yet taken."""
    config = subscriber_config(accept_auth=(AuthMethod.MSCHAPV2,), fallback_auth=(AuthMethod.CHAP,))
    link = Link(config, rng=random.Random(3), name="sub")
    link.open(0.0)
    mrru = encode_option(LcpOption.MRRU, b"\x05\xdc")
    link.receive_frame(_lcp_request(1, CHAP_MD5, mrru, MAGIC), 0.0)
    replies = [p for p in packets(link.frames_to_send(), Proto.LCP) if p[0] != Code.CONFREQ]
    assert replies == [(Code.CONFREJ, 1, mrru)]
    link.receive_frame(_lcp_request(2, CHAP_MD5, MAGIC), 0.1)
    replies = [p for p in packets(link.frames_to_send(), Proto.LCP) if p[0] != Code.CONFREQ]
    assert [code for code, _, _ in replies] == [Code.CONFNAK]


def test_subscriber_without_the_fallback_never_takes_chap_md5() -> None:
    link = Link(subscriber_config(accept_auth=(AuthMethod.MSCHAPV2,)), rng=random.Random(3))
    link.open(0.0)
    for identifier in range(1, 4):
        link.receive_frame(_lcp_request(identifier, CHAP_MD5, MAGIC), 0.0)
        replies = [p for p in packets(link.frames_to_send(), Proto.LCP) if p[0] != Code.CONFREQ]
        assert [code for code, _, _ in replies] == [Code.CONFNAK]


def test_a_peer_that_takes_the_nak_gets_the_preferred_method() -> None:
    """kl2tp-lns offering CHAP first but allowing MS-CHAPv2 follows the subscriber's Nak."""
    pair = Pair(
        lns_config(AuthMethod.CHAP, AuthMethod.MSCHAPV2),
        subscriber_config(accept_auth=(AuthMethod.MSCHAPV2,), fallback_auth=(AuthMethod.CHAP,)),
    )
    pair.open()
    assert events_of(pair.server_events, Authenticated) == [
        Authenticated("alice", AuthMethod.MSCHAPV2)
    ]


def _is_lcp_nak(frame: bytes) -> bool:
    return any(code == Code.CONFNAK for code, _, _ in packets([frame], Proto.LCP))


def test_fallback_to_chap_md5_authenticates_end_to_end() -> None:
    """An LNS that never hears the Nak asks for CHAP-MD5 again (as l2tpns does after
    hearing it): the subscriber takes it and the link comes up with CHAP-MD5."""
    pair = Pair(
        lns_config(AuthMethod.CHAP),
        subscriber_config(accept_auth=(AuthMethod.MSCHAPV2,), fallback_auth=(AuthMethod.CHAP,)),
    )
    pair.drop_to_server = _is_lcp_nak
    pair.open()
    pair.advance(10.0)
    assert events_of(pair.client_events, Authenticated) == [Authenticated("alice", AuthMethod.CHAP)]
    assert events_of(pair.client_events, NetworkUp)
