"""Link paths the happy negotiations do not take: failures that pick the LinkDown reason,
Protocol-Rejects, mutual authentication, links without NCPs, held IPCP requests, timeouts,
driver calls at the wrong moment, and the trace of odd packets."""

from __future__ import annotations

import logging
import random
from ipaddress import IPv4Address

import pytest

from ppp.config import AuthMethod, IpcpConfig, Ipv6cpConfig, LinkConfig, ProxyMode
from ppp.events import (
    AddressRequest,
    Authenticated,
    AuthRequest,
    DownReason,
    LinkDown,
    NetworkUp,
    PppEvent,
)
from ppp.frame import Code, Proto, encode_frame, encode_packet
from ppp.link import Link, Phase
from ppp.proxy import ProxyAuth, ProxyLcp

from .helpers import DNS, LNS_ADDRESS, Pair, events_of, lns_config, packets, subscriber_config

PEER = IPv4Address("10.0.0.9")
PROXY_LCP = ProxyLcp(
    last_sent=bytes.fromhex("0304c023 0506109d08f2"),  # we demand PAP, magic
    last_received=bytes.fromhex("05066ee4e865"),
)


def drain(link: Link) -> list[PppEvent]:
    events = []
    while (event := link.next_event()) is not None:
        events.append(event)
    return events


def phase(link: Link) -> Phase:
    return link.phase


def frame(protocol: int, code: int, ident: int, data: bytes = b"") -> bytes:
    return encode_frame(protocol, encode_packet(code, ident, data))


def authenticating_lns(**changes: object) -> Link:
    """An LNS whose LCP was forced open by proxy LCP: waiting for the PAP request."""
    values: dict[str, object] = {
        "auth": (AuthMethod.PAP,),
        "ipcp": IpcpConfig(local_address=LNS_ADDRESS, assign_peer_address=True),
    }
    values.update(changes)
    link = Link(LinkConfig(**values), rng=random.Random(4), name="Vi9")  # type: ignore[arg-type]
    link.open(0.0, proxy_lcp=PROXY_LCP)
    assert phase(link) is Phase.AUTHENTICATE
    drain(link)
    link.frames_to_send()
    return link


def pap_request(name: bytes = b"alice", password: bytes = b"pw") -> bytes:
    return bytes((len(name),)) + name + bytes((len(password),)) + password


def networking_lns(**changes: object) -> Link:
    """An LNS past PAP, in the Network phase, its IPCP request sent."""
    link = authenticating_lns(**changes)
    link.receive_frame(frame(Proto.PAP, 1, 1, pap_request()), 0.1)
    drain(link)
    link.auth_result(0.2, True)
    assert phase(link) is Phase.NETWORK
    drain(link)
    link.frames_to_send()
    return link


# -- LinkDown reasons ---------------------------------------------------------------------


def test_code_reject_of_configure_request_is_an_lcp_failure() -> None:
    link = Link(lns_config(AuthMethod.PAP), rng=random.Random(1))
    link.open(0.0)
    ((_, ident, data),) = packets(link.frames_to_send(), Proto.LCP)
    rejected = encode_packet(Code.CONFREQ, ident, data)
    link.receive_frame(frame(Proto.LCP, Code.CODEREJ, 1, rejected), 0.1)
    assert drain(link) == [LinkDown(DownReason.LCP_FAILED, "LCP negotiation failed")]
    assert link.get_timer() is None


def test_lns_gives_up_when_the_peer_protocol_rejects_its_authentication() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config())
    pair.drop_to_server = lambda data: data[2:4] == b"\xc2\x23"  # the LNS never hears CHAP
    pair.open()
    assert phase(pair.server) is Phase.AUTHENTICATE
    # the peer says it does not speak CHAP after all
    pair.server.receive_frame(frame(Proto.LCP, Code.PROTREJ, 5, b"\xc2\x23\x01\x07"), pair.now)
    pair.pump()  # Terminate-Request, Terminate-Ack
    (down,) = events_of(pair.server_events, LinkDown)
    assert down == LinkDown(DownReason.AUTH_REFUSED, "peer rejected the authentication protocol")


def test_protocol_reject_of_an_ncp_not_started_yet_is_remembered() -> None:
    link = authenticating_lns(ipv6cp=Ipv6cpConfig(enabled=True))
    link.receive_frame(frame(Proto.LCP, Code.PROTREJ, 5, b"\x80\x57\x01\x01"), 0.1)
    assert phase(link) is Phase.AUTHENTICATE  # not in Network yet: nothing to decide
    link.receive_frame(frame(Proto.PAP, 1, 1, pap_request()), 0.2)
    drain(link)
    link.auth_result(0.3, True)
    sent = [p for p, *_ in (packets(link.frames_to_send(), Proto.IPV6CP))]
    assert sent == [Code.CONFREQ]  # a new Network phase tries IPv6CP anyway


def test_last_ncp_rejected_takes_the_link_down() -> None:
    link = networking_lns()
    link.receive_frame(frame(Proto.LCP, Code.PROTREJ, 5, b"\x80\x21\x01\x01"), 1.0)
    assert phase(link) is Phase.TERMINATE
    ((code, ident, _),) = packets(link.frames_to_send(), Proto.LCP)
    assert code == Code.TERMREQ
    link.receive_frame(frame(Proto.LCP, Code.TERMACK, ident), 1.1)
    (down,) = events_of(drain(link), LinkDown)
    assert down == LinkDown(DownReason.NCP_FAILED, "no network protocols running")


def test_ipcp_opened_without_our_address_takes_the_link_down() -> None:
    # an LNS that does not assign (it rejects 0.0.0.0) leaves the subscriber no address
    server = lns_config(
        AuthMethod.PAP, ipcp=IpcpConfig(local_address=LNS_ADDRESS, assign_peer_address=False)
    )
    pair = Pair(server, subscriber_config())
    pair.open()
    (down,) = events_of(pair.client_events, LinkDown)
    assert down == LinkDown(DownReason.NO_ADDRESS, "IPCP opened without addresses")
    assert not events_of(pair.client_events, NetworkUp)


def test_network_phase_timeout() -> None:
    pair = Pair(lns_config(AuthMethod.PAP, network_timeout=5.0), subscriber_config())
    pair.drop_to_server = lambda data: data[2:4] == b"\x80\x21"
    pair.drop_to_client = lambda data: data[2:4] == b"\x80\x21"
    pair.open()
    pair.advance(5.0)
    (down,) = events_of(pair.server_events, LinkDown)
    assert down == LinkDown(DownReason.NCP_TIMEOUT, "no network protocol opened in time")


# -- authentication both ways, and no NCP -----------------------------------------------------


def test_mutual_authentication_waits_for_both_directions() -> None:
    # the LNS demands CHAP of the subscriber, which demands PAP of the LNS in turn
    server = lns_config(AuthMethod.CHAP, username="lns", password="lns-pw")
    client = subscriber_config(auth=(AuthMethod.PAP,))
    pair = Pair(server, client)
    pair.open()
    client_request = [e for e in pair.client_events if isinstance(e, AuthRequest)]
    assert [(e.username, e.method) for e in client_request] == [("lns", AuthMethod.PAP)]
    assert pair.client.phase is Phase.AUTHENTICATE  # its own verdict is still missing
    pair.client.auth_result(pair.now, True)
    pair.pump()
    assert events_of(pair.client_events, Authenticated) == [Authenticated("lns", AuthMethod.PAP)]
    assert events_of(pair.server_events, Authenticated) == [Authenticated("alice", AuthMethod.CHAP)]
    assert events_of(pair.client_events, NetworkUp)


def test_link_without_ncps_stays_up_in_network_phase() -> None:
    no_ncp = IpcpConfig(enabled=False)
    pair = Pair(lns_config(AuthMethod.PAP, ipcp=no_ncp), subscriber_config(ipcp=no_ncp))
    pair.open()
    assert phase(pair.server) is Phase.NETWORK
    assert pair.server.get_timer() is not None  # LCP echo only, no phase deadline
    assert pair.server.phase_deadline is None
    assert pair.server.peer_address is None


def test_pap_packet_to_a_chap_authenticator_is_ignored() -> None:
    chap_lcp = ProxyLcp(bytes.fromhex("0305c22305 0506109d08f2"), bytes.fromhex("05066ee4e865"))
    link = Link(lns_config(AuthMethod.CHAP), rng=random.Random(2))
    link.open(0.0, proxy_lcp=chap_lcp)
    drain(link)
    assert link.auth_method is AuthMethod.CHAP
    link.receive_frame(frame(Proto.PAP, 1, 1, pap_request()), 0.1)
    assert drain(link) == []


def test_unusable_proxy_authentication_is_traced_and_redone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kl2tp.ppp")
    chap_lcp = ProxyLcp(bytes.fromhex("0305c22305 0506109d08f2"), bytes.fromhex("05066ee4e865"))
    link = Link(lns_config(AuthMethod.CHAP), rng=random.Random(2), name="Vi3")
    bad = ProxyAuth(type=2, name="u", challenge=b"\x01" * 16, ident=1, response=b"\x02" * 15)
    link.open(0.0, proxy_lcp=chap_lcp, proxy_auth=bad)
    assert not events_of(drain(link), AuthRequest)
    assert [p[0] for p in packets(link.frames_to_send(), Proto.CHAP)] == [1]  # a Challenge
    assert "Vi3 PPP: proxy authentication not usable: authenticating afresh" in caplog.messages


# -- IPCP requests held for the address -----------------------------------------------------


def test_ipcp_request_is_held_until_the_address_and_answered_once() -> None:
    link = networking_lns()
    link.receive_frame(frame(Proto.IPCP, Code.CONFREQ, 7, b"\x03\x06\x00\x00\x00\x00"), 1.0)
    link.receive_frame(frame(Proto.IPCP, Code.CONFREQ, 8, b"\x03\x06\x00\x00\x00\x00"), 2.0)
    assert drain(link) == [AddressRequest("alice", None)]  # one request for both
    assert link.frames_to_send() == []

    link.address_result(2.5, PEER, dns=DNS)
    (nak,) = packets(link.frames_to_send(), Proto.IPCP)
    assert nak == (Code.CONFNAK, 8, b"\x03\x06" + PEER.packed)  # the newest request
    link.receive_frame(frame(Proto.IPCP, Code.CONFREQ, 9, b"\x03\x06" + PEER.packed), 3.0)
    assert [p[0] for p in packets(link.frames_to_send(), Proto.IPCP)] == [Code.CONFACK]


def test_address_result_without_a_held_request_and_with_dns() -> None:
    link = networking_lns(ipcp=IpcpConfig(local_address=LNS_ADDRESS, assign_peer_address=True))
    link.address_result(1.0, PEER, dns=DNS)  # before the peer asked
    assert link.frames_to_send() == []
    dns_request = b"\x03\x06" + PEER.packed + b"\x81\x06" + DNS[0].packed
    link.receive_frame(frame(Proto.IPCP, Code.CONFREQ, 7, dns_request), 2.0)
    assert packets(link.frames_to_send(), Proto.IPCP) == [(Code.CONFACK, 7, dns_request)]


def test_auth_verdict_may_carry_address_and_dns() -> None:
    link = authenticating_lns()
    link.receive_frame(frame(Proto.PAP, 1, 1, pap_request()), 0.1)
    drain(link)
    link.auth_result(0.2, True, address=PEER, dns=DNS)
    assert drain(link) == [Authenticated("alice", AuthMethod.PAP)]
    link.frames_to_send()
    link.receive_frame(frame(Proto.IPCP, Code.CONFREQ, 7, b"\x03\x06\x00\x00\x00\x00"), 1.0)
    assert drain(link) == []  # no AddressRequest: the verdict named it
    (nak,) = packets(link.frames_to_send(), Proto.IPCP)
    assert nak == (Code.CONFNAK, 7, b"\x03\x06" + PEER.packed)
    assert link.ipcp is not None and link.ipcp.dns_offer == (int(DNS[0]), int(DNS[1]))


# -- the driver calling at the wrong moment ------------------------------------------------------


def test_calls_on_a_dead_link_do_nothing() -> None:
    link = networking_lns()
    link.lower_down(1.0)
    assert drain(link) == [LinkDown(DownReason.LOWER_LAYER_DOWN, "")]
    link.lower_down(2.0)
    link.close(2.0)
    link.auth_result(2.0, True)
    link.address_result(2.0, PEER)
    link.handle_timer(100.0)
    link.receive_frame(frame(Proto.LCP, Code.ECHOREQ, 1, b"\0\0\0\0"), 3.0)
    assert drain(link) == [] and link.frames_to_send() == []
    assert link.get_timer() is None
    assert link.auth_method is None and link.peer_address is None


def test_auth_result_without_an_authenticator_is_ignored() -> None:
    link = networking_lns(auth=(AuthMethod.PAP,))
    link.auth_result(1.0, False)  # PAP decided already
    assert phase(link) is Phase.NETWORK
    subscriber = Link(subscriber_config(), rng=random.Random(3))
    subscriber.open(0.0)
    subscriber.auth_result(0.0, True)  # it never authenticates anybody
    assert phase(subscriber) is Phase.ESTABLISH


# -- trace of odd packets -----------------------------------------------------------------------


def test_trace_of_odd_packets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kl2tp.ppp")
    link = Link(lns_config(AuthMethod.PAP), rng=random.Random(1), name="Vi2")
    link.open(0.0)
    link.receive_frame(b"\x00", 0.1)
    link.receive_frame(frame(Proto.LCP, 14, 3, b"\x01\x02"), 0.2)
    link.receive_frame(frame(Proto.LCP, Code.CONFREQ, 4, b"\x05\x09\x01"), 0.3)
    messages = caplog.messages
    assert any(m.startswith("Vi2 PPP: bad frame: ") for m in messages)
    assert "Vi2 LCP: I CODE14 [REQsent] id 3 len 6" in messages
    assert "Vi2 LCP:    malformed options 0x050901" in messages
    link.close(0.4, DownReason.ADMIN, "operator")
    assert "Vi2 PPP: closing: admin (operator)" in messages + caplog.messages


def test_unacceptable_proxy_lcp_is_traced_and_renegotiated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kl2tp.ppp")
    link = Link(lns_config(AuthMethod.CHAP), rng=random.Random(1), name="Vi5")
    link.open(0.0, proxy_lcp=PROXY_LCP)  # the LAC agreed PAP; we demand CHAP
    assert "Vi5 LCP: proxy values not acceptable: renegotiating" in caplog.messages
    assert [p[0] for p in packets(link.frames_to_send(), Proto.LCP)] == [Code.CONFREQ]
    assert phase(link) is Phase.ESTABLISH


def test_proxy_lcp_ignored_in_renegotiate_mode() -> None:
    link = Link(lns_config(AuthMethod.PAP, proxy_lcp=ProxyMode.RENEGOTIATE), rng=random.Random(1))
    link.open(0.0, proxy_lcp=PROXY_LCP)
    assert [p[0] for p in packets(link.frames_to_send(), Proto.LCP)] == [Code.CONFREQ]
    assert not drain(link)
