"""PAP and CHAP handlers alone (RFC 1334, RFC 1994, RFC 2759): the packets they send, the
outcomes they return to their link, and what they do with duplicates, strays and silence."""

from __future__ import annotations

import pytest

from ppp.auth import (
    AuthDone,
    ChapAuthenticator,
    ChapCode,
    ChapPeer,
    PapAuthenticator,
    PapCode,
    PapPeer,
    chap_md5_response,
    decode_pap_request,
)
from ppp.config import AuthMethod, LcpConfig, LinkConfig
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials
from ppp.events import AuthRequest
from ppp.frame import Proto
from ppp.fsm import FsmConfig
from ppp.proxy import ProxyAuth

from .fakes import FakeServices

TIMERS = LcpConfig(fsm=FsmConfig(restart_timer=3.0, max_configure=2))


def pap_request(name: bytes, password: bytes) -> bytes:
    return bytes((len(name),)) + name + bytes((len(password),)) + password


# -- PAP -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (pap_request(b"alice", b"pw\xff\x00"), ("alice", b"pw\xff\x00")),  # octets kept
        (pap_request(b"\xffx", b"pw"), ("\ufffdx", b"pw")),  # the name is text
        (b"", None),
        (b"\x05abc", None),  # Peer-ID runs past the end
        (b"\x01a\x04pw", None),  # Password runs past the end
    ],
)
def test_decode_pap_request(data: bytes, fields: tuple[str, bytes] | None) -> None:
    assert decode_pap_request(data) == fields


def test_pap_authenticator_request_verdict_and_lost_ack() -> None:
    services = FakeServices()
    auth = PapAuthenticator(services)
    assert auth.start(0.0) is None

    assert auth.receive(PapCode.ACK, 1, b"", 0.1) is None  # not a request: ignored
    assert auth.receive(PapCode.REQUEST, 1, b"\x09", 0.1) is None  # malformed: ignored
    outcome = auth.receive(PapCode.REQUEST, 1, pap_request(b"alice", b"\x80pw"), 0.1)
    assert outcome == AuthRequest("alice", AuthMethod.PAP, PapCredentials(b"\x80pw"), proxy=False)
    assert services.lines == ['PAP: I AUTH-REQ id 1 len 14 from "alice"']

    # the peer retransmits while the driver decides: answer the newest identifier
    assert auth.receive(PapCode.REQUEST, 2, pap_request(b"alice", b"\x80pw"), 0.2) is None
    assert auth.verdict(0.3, True, "", None) == AuthDone(True, "")
    assert services.auth_sent == [(Proto.PAP, PapCode.ACK, 2, b"\x08Login ok")]
    assert auth.verdict(0.3, False, "", None) is None  # decided already

    # our Ack was lost: a repeated request gets a bare Ack again
    assert auth.receive(PapCode.REQUEST, 3, pap_request(b"alice", b"\x80pw"), 0.4) is None
    assert services.auth_sent[-1] == (Proto.PAP, PapCode.ACK, 3, b"\x00")
    assert auth.handle_timer(100.0) is None


def test_pap_authenticator_refusal_is_final() -> None:
    services = FakeServices()
    auth = PapAuthenticator(services)
    auth.start(0.0)
    auth.receive(PapCode.REQUEST, 4, pap_request(b"bob", b"x"), 0.1)
    assert auth.verdict(0.2, False, "", None) == AuthDone(False, "")
    assert services.auth_sent == [(Proto.PAP, PapCode.NAK, 4, b"\x0fLogin incorrect")]
    assert auth.receive(PapCode.REQUEST, 5, pap_request(b"bob", b"y"), 0.3) is None
    assert len(services.auth_sent) == 1  # no second chance on this link


def test_pap_proxy_password_is_passed_on_as_octets() -> None:
    auth = PapAuthenticator(FakeServices())
    proxy = ProxyAuth(type=3, name="carol", response=b"\xfe\xff")
    assert auth.start(0.0, proxy) == AuthRequest(
        "carol", AuthMethod.PAP, PapCredentials(b"\xfe\xff"), proxy=True
    )


def pap_peer() -> tuple[FakeServices, PapPeer]:
    services = FakeServices(LinkConfig(username="alice", password="pw", lcp=TIMERS))
    peer = PapPeer(services)
    peer.start(0.0)
    return services, peer


def test_pap_peer_ignores_strays_and_takes_the_ack() -> None:
    services, peer = pap_peer()
    ((protocol, code, ident, data),) = services.auth_sent
    assert (protocol, code, data) == (Proto.PAP, PapCode.REQUEST, pap_request(b"alice", b"pw"))

    assert peer.receive(PapCode.ACK, (ident + 1) & 0xFF, b"", 0.1) is None  # other identifier
    assert peer.receive(PapCode.REQUEST, ident, b"", 0.1) is None  # not an answer
    assert peer.receive(PapCode.ACK, ident, b"\x07Welcome", 0.1) == AuthDone(True, "Welcome")
    assert peer.deadline is None
    assert peer.receive(PapCode.NAK, ident, b"", 0.2) is None  # done already


def test_pap_peer_retransmits_then_times_out() -> None:
    services, peer = pap_peer()
    assert peer.handle_timer(2.9) is None and len(services.auth_sent) == 1
    assert peer.handle_timer(3.0) is None and len(services.auth_sent) == 2  # Max-Configure 2
    assert peer.handle_timer(6.0) == AuthDone(False, "no answer to PAP requests", timeout=True)
    assert len(services.auth_sent) == 2
    assert peer.receive(PapCode.ACK, peer.ident, b"", 6.1) is None  # too late


# -- CHAP authenticator ------------------------------------------------------------------------


def chap_authenticator(
    method: AuthMethod = AuthMethod.CHAP, **config: object
) -> tuple[FakeServices, ChapAuthenticator]:
    services = FakeServices(LinkConfig(hostname="lns", lcp=TIMERS, **config))  # type: ignore[arg-type]
    auth = ChapAuthenticator(services, method)
    assert auth.start(0.0) is None
    return services, auth


def challenge_of(services: FakeServices) -> tuple[int, bytes]:
    protocol, code, ident, data = services.auth_sent[-1]
    assert (protocol, code) == (Proto.CHAP, ChapCode.CHALLENGE)
    assert data[0] == 16 and data[17:] == b"lns"
    return ident, data[1:17]


def chap_response(value: bytes, name: bytes = b"alice") -> bytes:
    return bytes((len(value),)) + value + name


def test_chap_authenticator_exchange_and_duplicate_responses() -> None:
    services, auth = chap_authenticator()
    ident, challenge = challenge_of(services)
    response = chap_md5_response(ident, b"pw", challenge)

    assert auth.receive(ChapCode.RESPONSE, ident ^ 1, chap_response(response), 0.1) is None
    assert auth.receive(ChapCode.SUCCESS, ident, b"", 0.1) is None
    assert auth.receive(ChapCode.RESPONSE, ident, b"\x20abc", 0.1) is None  # malformed
    outcome = auth.receive(ChapCode.RESPONSE, ident, chap_response(response), 0.1)
    assert outcome == AuthRequest(
        "alice", AuthMethod.CHAP, ChapCredentials(ident, challenge, response), proxy=False
    )
    # a retransmitted Response while the driver decides: nothing new
    assert auth.receive(ChapCode.RESPONSE, ident, chap_response(response), 0.2) is None
    sent = len(services.auth_sent)
    assert auth.verdict(0.3, True, "", None) == AuthDone(True, "")
    assert services.auth_sent[sent:] == [(Proto.CHAP, ChapCode.SUCCESS, ident, b"")]
    assert auth.verdict(0.3, True, "", None) is None

    # the Success was lost and the peer asks again: the same Success
    assert auth.receive(ChapCode.RESPONSE, ident, chap_response(response), 0.4) is None
    assert services.auth_sent[-1] == (Proto.CHAP, ChapCode.SUCCESS, ident, b"")


def test_chap_authenticator_failure_is_traced_and_final() -> None:
    services, auth = chap_authenticator()
    ident, _ = challenge_of(services)
    auth.receive(ChapCode.RESPONSE, ident, chap_response(b"\x00" * 16), 0.1)
    assert auth.verdict(0.2, False, "", None) == AuthDone(False, "")
    assert services.auth_sent[-1] == (
        Proto.CHAP,
        ChapCode.FAILURE,
        ident,
        b"Authentication failed",
    )
    assert services.lines[-1] == f"CHAP: O FAILURE id {ident} len 25"
    assert auth.deadline is None
    assert auth.receive(ChapCode.RESPONSE, ident, chap_response(b"\x00" * 16), 0.3) is None


def test_chap_authenticator_retransmits_the_challenge_then_gives_up() -> None:
    services, auth = chap_authenticator()
    ident, challenge = challenge_of(services)
    assert auth.handle_timer(1.0) is None and len(services.auth_sent) == 1
    assert auth.handle_timer(3.0) is None
    assert challenge_of(services) == (ident, challenge)  # the same Challenge again
    assert auth.handle_timer(6.0) == AuthDone(False, "no response to CHAP challenges", timeout=True)
    assert len(services.auth_sent) == 2


def test_mschapv2_authenticator_response_shape_and_missing_proof() -> None:
    services, auth = chap_authenticator(AuthMethod.MSCHAPV2)
    ident, challenge = challenge_of(services)
    assert auth.receive(ChapCode.RESPONSE, ident, chap_response(b"\x01" * 48), 0.1) is None
    peer_challenge, nt_response = b"\x02" * 16, b"\x03" * 24
    value = peer_challenge + bytes(8) + nt_response + b"\x00"
    outcome = auth.receive(ChapCode.RESPONSE, ident, chap_response(value), 0.1)
    assert outcome == AuthRequest(
        "alice",
        AuthMethod.MSCHAPV2,
        MsChapV2Credentials(challenge, peer_challenge, nt_response),
        proxy=False,
    )
    # accepted without the "S=" proof the Success must carry: a Failure instead
    assert auth.verdict(0.2, True, "", None) == AuthDone(
        False, "no MS-CHAPv2 authenticator response"
    )
    protocol, code, sent_ident, text = services.auth_sent[-1]
    assert (protocol, code, sent_ident) == (Proto.CHAP, ChapCode.FAILURE, ident)
    assert text.startswith(b"E=691 R=0 C=") and text.endswith(
        b" V=3 M=no MS-CHAPv2 authenticator response"
    )


# -- CHAP peer ---------------------------------------------------------------------------------


def chap_peer(method: AuthMethod = AuthMethod.CHAP) -> tuple[FakeServices, ChapPeer]:
    services = FakeServices(LinkConfig(username="alice", password="pw", lcp=TIMERS))
    peer = ChapPeer(services, method)
    peer.start(0.0)
    return services, peer


def test_chap_peer_answers_resends_and_stops_at_max_configure() -> None:
    services, peer = chap_peer()
    challenge = b"\x11" * 16
    assert peer.receive(ChapCode.CHALLENGE, 9, b"\x10" + challenge + b"lns", 0.0) is None
    expected = chap_response(chap_md5_response(9, b"pw", challenge))
    assert services.auth_sent == [(Proto.CHAP, ChapCode.RESPONSE, 9, expected)]
    assert peer.handle_timer(3.0) is None  # no verdict yet: the Response again
    assert services.auth_sent[-1] == (Proto.CHAP, ChapCode.RESPONSE, 9, expected)
    assert peer.handle_timer(6.0) is None  # Max-Configure reached: silence
    assert len(services.auth_sent) == 2
    assert peer.deadline is None


def test_chap_peer_failure_and_strays() -> None:
    services, peer = chap_peer()
    peer.receive(ChapCode.CHALLENGE, 9, b"\x10" + b"\x11" * 16, 0.0)
    assert peer.receive(ChapCode.SUCCESS, 8, b"", 0.1) is None  # another identifier
    assert peer.receive(ChapCode.FAILURE, 9, b"E=691", 0.1) == AuthDone(False, "E=691")
    # after a Failure a new Challenge is not answered
    assert peer.receive(ChapCode.CHALLENGE, 10, b"\x10" + b"\x22" * 16, 0.2) is None
    assert len(services.auth_sent) == 1


def test_mschapv2_peer_needs_a_16_octet_challenge() -> None:
    services, peer = chap_peer(AuthMethod.MSCHAPV2)
    assert peer.receive(ChapCode.CHALLENGE, 9, b"\x08" + b"\x11" * 8, 0.0) is None
    assert services.auth_sent == []
    assert peer.handle_timer(10.0) is None  # nothing to resend


def test_chap_peer_answers_a_stale_challenge_but_takes_the_verdict_on_either() -> None:
    services, peer = chap_peer()
    current, stale = b"\x10" + b"\x11" * 16, b"\x10" + b"\x22" * 16
    peer.receive(ChapCode.CHALLENGE, 9, current, 0.0)
    peer.receive(ChapCode.CHALLENGE, 200, stale, 0.1)  # late, from before LCP renegotiated
    assert [(code, ident) for _, code, ident, _ in services.auth_sent] == [
        (ChapCode.RESPONSE, 9),
        (ChapCode.RESPONSE, 200),
    ]
    # no verdict yet: both Responses again, once per restart timer
    assert peer.handle_timer(3.1) is None
    assert [ident for _, _, ident, _ in services.auth_sent[2:]] == [9, 200]
    assert peer.receive(ChapCode.SUCCESS, 8, b"", 3.2) is None  # answers no Response of ours
    assert peer.receive(ChapCode.SUCCESS, 9, b"hi", 3.2) == AuthDone(True, "hi")
    assert peer.deadline is None
    # a re-challenge is a new authentication: the old Identifiers no longer count
    peer.receive(ChapCode.CHALLENGE, 10, b"\x10" + b"\x33" * 16, 4.0)
    assert peer.receive(ChapCode.FAILURE, 9, b"", 4.1) is None
    assert peer.receive(ChapCode.FAILURE, 10, b"no", 4.1) == AuthDone(False, "no")
