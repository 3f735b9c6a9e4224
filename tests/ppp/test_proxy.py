"""Proxy LCP and proxy authentication (RFC 2661 4.4.5) with the reference trace's values.

The trace's LNS (Vi4) forces the LAC's LCP values ("I FORCED CONFREQ"), verifies the replayed
CHAP response and answers "CHAP: O SUCCESS id 6 len 4"; then IPCP: it offers 10.51.6.82,
rejects the subscriber's VJ compression and acks 10.10.53.2.
"""

from __future__ import annotations

import logging
import random
from ipaddress import IPv4Address

import pytest

from ppp.auth import verify_chap_md5
from ppp.config import AuthMethod, IpcpConfig, LinkConfig, ProxyMode
from ppp.credentials import ChapCredentials
from ppp.events import (
    AddressRequest,
    Authenticated,
    AuthRequest,
    LinkDown,
    LinkUp,
    NetworkUp,
    PppEvent,
)
from ppp.frame import Code, Proto, encode_frame, encode_packet
from ppp.link import Link, Phase
from ppp.proxy import ProxyAuth, ProxyLcp

from .helpers import packets

LAST_SENT = bytes.fromhex("0305c223050506109d08f2")
LAST_RECEIVED = bytes.fromhex("05066ee4e865")
PROXY_LCP = ProxyLcp(last_sent=LAST_SENT, last_received=LAST_RECEIVED)
PROXY_AUTH = ProxyAuth(
    type=2,
    name="2500-1",
    challenge=bytes.fromhex("5d0d008cb1677cf8bc354556321a7a74"),
    ident=6,
    response=bytes.fromhex("ca1cc2e4fa6899e8df1b695c0a80883e"),
)
LNS_ADDRESS = IPv4Address("10.51.6.82")
SUBSCRIBER = IPv4Address("10.10.53.2")


def lns(**changes: object) -> Link:
    values: dict[str, object] = {
        "auth": (AuthMethod.CHAP,),
        "hostname": "1600-3",
        "ipcp": IpcpConfig(local_address=LNS_ADDRESS, assign_peer_address=True),
    }
    values.update(changes)
    return Link(LinkConfig(**values), rng=random.Random(3), name="Vi4")  # type: ignore[arg-type]


def phase(link: Link) -> Phase:
    """The link's phase (a call, so the type checker does not narrow it between steps)."""
    return link.phase


def drain(link: Link) -> list[PppEvent]:
    events = []
    while (event := link.next_event()) is not None:
        events.append(event)
    return events


def ipcp_frame(code: int, ident: int, options_hex: str) -> bytes:
    return encode_frame(Proto.IPCP, encode_packet(code, ident, bytes.fromhex(options_hex)))


def test_trace_call_with_proxy_lcp_and_proxy_auth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kl2tp.ppp")
    link = lns()
    link.open(0.0, proxy_lcp=PROXY_LCP, proxy_auth=PROXY_AUTH)

    # forced to Opened: no LCP negotiation, and no new challenge in accept mode
    assert link.frames_to_send() == []
    up, request = drain(link)
    assert up == LinkUp(
        mru=1500,
        peer_mru=1500,
        magic=0x109D08F2,
        peer_magic=0x6EE4E865,
        send_accm=0xFFFFFFFF,
        receive_accm=0xFFFFFFFF,
        pfc=False,
        acfc=False,
        auth=AuthMethod.CHAP,
        peer_auth=None,
        proxy=True,
    )
    assert request == AuthRequest(
        "2500-1",
        AuthMethod.CHAP,
        ChapCredentials(6, PROXY_AUTH.challenge, PROXY_AUTH.response),
        proxy=True,
    )
    assert phase(link) is Phase.AUTHENTICATE
    # the AAA back end verifies the replayed response (2500-1's password is "cisco")
    assert isinstance(request, AuthRequest)
    assert isinstance(request.credentials, ChapCredentials)
    creds = request.credentials
    assert verify_chap_md5("cisco", creds.ident, creds.challenge, creds.response)

    link.auth_result(0.1, True)
    success, ipcp_request = link.frames_to_send()
    assert success == bytes.fromhex("ff03 c223 03 06 0004")  # CHAP: O SUCCESS id 6 len 4
    assert ipcp_request == ipcp_frame(Code.CONFREQ, 1, "03060a330652")  # Address 10.51.6.82
    assert drain(link) == [Authenticated("2500-1", AuthMethod.CHAP)]
    assert phase(link) is Phase.NETWORK

    # I CONFREQ id 187: VJ 15 slots + Address 10.10.53.2 -> the address comes from AAA
    link.receive_frame(ipcp_frame(Code.CONFREQ, 187, "0206002d0f00 03060a0a3502"), 0.2)
    assert link.frames_to_send() == []
    assert drain(link) == [AddressRequest("2500-1", SUBSCRIBER)]
    link.address_result(0.3, IPv4Address("255.255.255.255"))  # Framed-IP-Address: peer's pick
    assert link.frames_to_send() == [ipcp_frame(Code.CONFREJ, 187, "0206002d0f00")]

    link.receive_frame(ipcp_frame(Code.CONFACK, 1, "03060a330652"), 0.4)
    link.receive_frame(ipcp_frame(Code.CONFREQ, 188, "03060a0a3502"), 0.5)
    assert link.frames_to_send() == [ipcp_frame(Code.CONFACK, 188, "03060a0a3502")]
    assert drain(link) == [NetworkUp(LNS_ADDRESS, SUBSCRIBER, ())]
    assert link.peer_address == SUBSCRIBER

    lines = [r.getMessage() for r in caplog.records]
    for expected in (
        "Vi4 LCP: I FORCED CONFREQ len 11",
        "Vi4 LCP:    AuthProto CHAP (0x0305C22305)",
        "Vi4 LCP:    MagicNumber 0x109D08F2 (0x0506109D08F2)",
        "Vi4 PPP: Phase is AUTHENTICATING",
        "Vi4 CHAP: O SUCCESS id 6 len 4",
        "Vi4 IPCP:    CompressType VJ 15 slots (0x0206002D0F00)",
        "Vi4 IPCP: State is Open",
    ):
        assert expected in lines
    assert not any("CHALLENGE" in line for line in lines)


def test_proxy_auth_rejected_sends_failure_with_the_lacs_id() -> None:
    link = lns()
    link.open(0.0, proxy_lcp=PROXY_LCP, proxy_auth=PROXY_AUTH)
    drain(link)
    link.auth_result(0.1, False, message="nope")
    frames = link.frames_to_send()
    assert packets(frames, Proto.CHAP) == [(4, 6, b"nope")]  # CHAP Failure, the LAC's id
    assert [p[0] for p in packets(frames, Proto.LCP)] == [Code.TERMREQ]
    events = drain(link)
    assert not any(isinstance(e, LinkDown) for e in events)  # Terminate-Request in flight
    link.handle_timer(100.0)
    link.handle_timer(200.0)
    assert isinstance(drain(link)[-1], LinkDown)


def test_proxy_auth_renegotiate_sends_a_fresh_challenge() -> None:
    link = lns(proxy_auth=ProxyMode.RENEGOTIATE)
    link.open(0.0, proxy_lcp=PROXY_LCP, proxy_auth=PROXY_AUTH)
    (challenge,) = packets(link.frames_to_send(), Proto.CHAP)
    assert challenge[0] == 1
    assert challenge[2][1:17] != PROXY_AUTH.challenge
    assert challenge[2][17:] == b"1600-3"
    assert [type(e) for e in drain(link)] == [LinkUp]


def test_proxy_lcp_renegotiate_starts_lcp_from_scratch() -> None:
    link = lns(proxy_lcp=ProxyMode.RENEGOTIATE)
    link.open(0.0, proxy_lcp=PROXY_LCP, proxy_auth=PROXY_AUTH)
    (confreq,) = packets(link.frames_to_send(), Proto.LCP)
    assert confreq[0] == Code.CONFREQ
    assert confreq[2][:5] == bytes.fromhex("0305c22305")
    assert drain(link) == []
    assert phase(link) is Phase.ESTABLISH


@pytest.mark.parametrize(
    ("last_sent", "last_received"),
    [
        (bytes.fromhex("0304c023 0506109d08f2"), LAST_RECEIVED),  # PAP: we demand CHAP
        (bytes.fromhex("0506109d08f2"), LAST_RECEIVED),  # no authentication agreed
        (LAST_SENT + bytes.fromhex("110405f4"), LAST_RECEIVED),  # MRRU: not supported
        (LAST_SENT, bytes.fromhex("05066ee4e865 0d0306")),  # peer asked for callback
        (LAST_SENT, bytes.fromhex("0506")),  # garbage
    ],
)
def test_unacceptable_proxy_lcp_is_renegotiated(last_sent: bytes, last_received: bytes) -> None:
    link = lns()
    link.open(0.0, proxy_lcp=ProxyLcp(last_sent, last_received), proxy_auth=PROXY_AUTH)
    (confreq,) = packets(link.frames_to_send(), Proto.LCP)
    assert confreq[0] == Code.CONFREQ
    assert phase(link) is Phase.ESTABLISH
    assert drain(link) == []


def test_proxy_pap() -> None:
    link = lns(auth=(AuthMethod.PAP,))
    proxy_lcp = ProxyLcp(bytes.fromhex("0304c023 0506109d08f2"), LAST_RECEIVED)
    proxy_auth = ProxyAuth(type=3, name="2500-1", response=b"cisco")
    link.open(0.0, proxy_lcp=proxy_lcp, proxy_auth=proxy_auth)
    assert link.frames_to_send() == []
    _, request = drain(link)
    assert isinstance(request, AuthRequest)
    assert request.proxy and request.method is AuthMethod.PAP
    link.auth_result(0.1, True)
    assert phase(link) is Phase.NETWORK
