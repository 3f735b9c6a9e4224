"""LCP's option handler alone (RFC 1661 section 6, RFC 1662 ACCM): what it asks for, what a
Configure-Nak or -Reject changes in the next request, how it judges the peer's request, and
keepalive, each driven through its automaton on recorded services."""

from __future__ import annotations

import pytest

from ppp.config import AuthMethod, LcpConfig, LinkConfig
from ppp.frame import Code, Proto, encode_option
from ppp.fsm import FsmConfig, State
from ppp.lcp import EchoTimeout, Lcp, LcpOption, describe_lcp_option
from ppp.services import LayerDown, LayerUp

from .fakes import FakeServices, ScriptedRandom, Sent

CHAP = b"\xc2\x23\x05"
MSCHAPV2 = b"\xc2\x23\x81"
PAP = b"\xc0\x23"
EAP = b"\xc2\x27"


def start(
    auth: tuple[AuthMethod, ...] = (),
    services: FakeServices | None = None,
    **lcp: object,
) -> tuple[FakeServices, Lcp]:
    """An LCP handler with its first Configure-Request sent (Req-Sent)."""
    config = LinkConfig(lcp=LcpConfig(**lcp), auth=auth)  # type: ignore[arg-type]
    if services is None:
        services = FakeServices(config)
    else:
        services.config = config
    handler = Lcp(services, config.lcp)
    handler.fsm.up(0.0)
    handler.fsm.open(0.0)
    return services, handler


def state(handler: Lcp) -> State:
    """The automaton's state (a call, so the type checker does not narrow it between steps)."""
    return handler.fsm.state


def last_request(services: FakeServices) -> Sent:
    requests = [s for s in services.sent if s.code == Code.CONFREQ]
    assert requests, "no Configure-Request sent"
    return requests[-1]


def answer(handler: Lcp, services: FakeServices, code: int, options: bytes) -> list[Sent]:
    """Answer our last request with ``code`` carrying ``options``; return what that caused."""
    ident = last_request(services).ident
    services.take()
    handler.fsm.receive(code, ident, options, b"", 1.0)
    return services.take()


def mru(value: int) -> bytes:
    return encode_option(LcpOption.MRU, value.to_bytes(2, "big"))


def accm(value: int) -> bytes:
    return encode_option(LcpOption.ACCM, value.to_bytes(4, "big"))


def magic(value: int) -> bytes:
    return encode_option(LcpOption.MAGIC, value.to_bytes(4, "big"))


def auth_option(value: bytes) -> bytes:
    return encode_option(LcpOption.AUTH, value)


# -- Configure-Nak of our request ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "naked", "next_mru"),
    [
        (1400, 1300, 1300),  # smaller: take it
        (1400, 1450, 1450),  # above what we asked but within the default: we can take it
        (1400, 1600, 1400),  # above both: keep asking for ours
        (2000, 1800, 1800),  # a jumbo link: anything up to what we asked for
        (2000, 4000, 2000),
    ],
)
def test_mru_nak_sets_the_next_request(ours: int, naked: int, next_mru: int) -> None:
    services, handler = start(mru=ours)
    first = last_request(services)
    assert first.options[LcpOption.MRU] == ours.to_bytes(2, "big")

    sent = answer(handler, services, Code.CONFNAK, mru(naked))

    (again,) = sent
    assert again.code == Code.CONFREQ and again.ident != first.ident
    assert again.options[LcpOption.MRU] == next_mru.to_bytes(2, "big")
    assert again.options[LcpOption.MAGIC] == first.options[LcpOption.MAGIC]  # untouched
    assert handler.fsm.state is State.REQ_SENT
    assert handler.mru == next_mru


def test_accm_nak_adds_the_peers_characters_to_ours() -> None:
    services, handler = start(accm=0x000A0000)
    assert last_request(services).options[LcpOption.ACCM] == bytes.fromhex("000a0000")

    (again,) = answer(handler, services, Code.CONFNAK, accm(0x00000001))

    assert again.options[LcpOption.ACCM] == bytes.fromhex("000a0001")  # escape both sets
    assert handler.want_accm == 0x000A0001


def test_auth_nak_walks_our_preferences_then_gives_up() -> None:
    services, handler = start(auth=(AuthMethod.CHAP, AuthMethod.MSCHAPV2, AuthMethod.PAP))
    assert last_request(services).options[LcpOption.AUTH] == CHAP

    # the peer suggests PAP, which we accept and have not tried: take it
    (again,) = answer(handler, services, Code.CONFNAK, auth_option(PAP))
    assert again.options[LcpOption.AUTH] == PAP
    assert handler.want_auth is AuthMethod.PAP

    # it suggests CHAP, which it already refused: our next untried one instead
    (again,) = answer(handler, services, Code.CONFNAK, auth_option(CHAP))
    assert again.options[LcpOption.AUTH] == MSCHAPV2

    # it suggests EAP, which we do not do, and we have nothing left: stop asking
    (again,) = answer(handler, services, Code.CONFNAK, auth_option(EAP))
    assert LcpOption.AUTH not in again.options
    assert handler.want_auth is None
    assert handler.fsm.state is State.REQ_SENT


def test_pfc_and_acfc_naks_are_dropped_one_by_one() -> None:
    services, handler = start(pfc=True, acfc=True)
    first = last_request(services).options
    assert first[LcpOption.PFC] == first[LcpOption.ACFC] == b""

    (again,) = answer(handler, services, Code.CONFNAK, encode_option(LcpOption.PFC))

    assert LcpOption.PFC not in again.options and LcpOption.ACFC in again.options
    assert (handler.want_pfc, handler.want_acfc) == (False, True)


def test_nak_of_an_option_we_did_not_ask_for_changes_nothing() -> None:
    services, handler = start()  # MRU 1500 (not sent), no ACCM
    before = last_request(services)

    (again,) = answer(handler, services, Code.CONFNAK, mru(1400) + accm(0))

    assert again.data == before.data  # same options, new identifier
    assert again.ident != before.ident
    assert handler.want_mru is None and handler.want_accm is None


def test_magic_nak_picks_a_fresh_number_never_zero_nor_the_naked_one() -> None:
    # reset draws 0x11111111; after the Nak the generator offers the same again, then zero
    services = FakeServices(rng=ScriptedRandom(0x11111111, 0x11111111, 0, 0x22222222))
    services, handler = start(services=services)
    assert last_request(services).options[LcpOption.MAGIC] == bytes.fromhex("11111111")

    (again,) = answer(handler, services, Code.CONFNAK, magic(0x11111111))

    assert again.options[LcpOption.MAGIC] == bytes.fromhex("22222222")


def test_after_max_failure_naks_count_as_rejects_but_magic_stays() -> None:
    services, handler = start(mru=1400, fsm=FsmConfig(max_failure=2))
    first_magic = last_request(services).options[LcpOption.MAGIC]

    (again,) = answer(handler, services, Code.CONFNAK, mru(1300))
    assert again.options[LcpOption.MRU] == (1300).to_bytes(2, "big")

    # the second Nak reaches Max-Failure: its options are given up, except the magic
    # number (dropping it would turn loop detection off)
    (again,) = answer(handler, services, Code.CONFNAK, mru(1200) + magic(0x12345678))
    assert LcpOption.MRU not in again.options
    assert LcpOption.MAGIC in again.options
    assert again.options[LcpOption.MAGIC] != first_magic


def test_malformed_nak_and_reject_are_discarded() -> None:
    services, handler = start(mru=1400)
    request = last_request(services)

    assert answer(handler, services, Code.CONFNAK, b"\x01\x01") == []  # length 1: impossible
    assert answer(handler, services, Code.CONFREJ, b"\x01\x05\x00") == []  # runs past the end
    assert handler.fsm.state is State.REQ_SENT
    assert handler.want_mru == 1400

    # the request is still the one in force: an Ack of it is taken
    handler.fsm.receive(Code.CONFACK, request.ident, request.data, b"", 1.0)
    assert state(handler) is State.ACK_RCVD


# -- Configure-Reject of our request ---------------------------------------------------------


def test_reject_stops_asking_for_exactly_the_rejected_options() -> None:
    services, handler = start(auth=(AuthMethod.CHAP,), mru=1400, accm=0, pfc=True, acfc=True)
    first = last_request(services).options
    assert set(first) == {1, 2, 3, 5, 7, 8}

    rejected = mru(1400) + accm(0) + encode_option(LcpOption.PFC) + encode_option(LcpOption.ACFC)
    (again,) = answer(handler, services, Code.CONFREJ, rejected)

    assert set(again.options) == {LcpOption.AUTH, LcpOption.MAGIC}
    assert again.options[LcpOption.MAGIC] == first[LcpOption.MAGIC]

    (again,) = answer(handler, services, Code.CONFREJ, magic(handler.want_magic or 0))
    assert set(again.options) == {LcpOption.AUTH}
    assert handler.want_magic is None


def test_reject_of_an_option_we_never_sent_is_discarded() -> None:
    services, handler = start()  # no MRU in the request
    assert answer(handler, services, Code.CONFREJ, mru(1500)) == []
    assert handler.fsm.state is State.REQ_SENT
    assert handler.want_magic is not None


# -- the peer's Configure-Request ------------------------------------------------------------


def peer_request(handler: Lcp, services: FakeServices, options: bytes, ident: int = 0x42) -> Sent:
    services.take()
    handler.fsm.receive(Code.CONFREQ, ident, options, b"", 1.0)
    (reply,) = [s for s in services.take() if s.code != Code.CONFREQ]
    assert reply.ident == ident
    return reply


def test_peer_link_options_are_acked_and_reported_once_opened() -> None:
    services, handler = start()
    options = accm(0x000A0000) + magic(0x55667788) + encode_option(7) + encode_option(8)

    reply = peer_request(handler, services, options)

    assert (reply.code, reply.data) == (Code.CONFACK, options)
    assert handler.peer_accm == 0x000A0000
    assert handler.peer_magic == 0x55667788
    assert (handler.peer_pfc, handler.peer_acfc) == (True, True)
    assert handler.fsm.state is State.ACK_SENT

    ours = last_request(services)
    handler.fsm.receive(Code.CONFACK, ours.ident, ours.data, b"", 1.0)
    assert state(handler) is State.OPENED
    assert services.signals == [LayerUp(Proto.LCP)]


def test_unknown_options_are_rejected_alone() -> None:
    services, handler = start()
    callback = encode_option(LcpOption.CALLBACK, b"\x06")
    mrru = encode_option(LcpOption.MRRU, b"\x05\xdc")

    reply = peer_request(handler, services, callback + magic(0x01020304) + mrru)

    assert (reply.code, reply.data) == (Code.CONFREJ, callback + mrru)


def test_malformed_request_is_rejected_whole() -> None:
    services, handler = start()
    reply = peer_request(handler, services, b"\x05\x06\x01")
    assert (reply.code, reply.data) == (Code.CONFREJ, b"\x05\x06\x01")
    assert handler.fsm.state is State.REQ_SENT


def test_peer_mru_out_of_range_is_naked_then_rejected_after_max_failure() -> None:
    services, handler = start(max_peer_mru=1400, fsm=FsmConfig(max_failure=1))

    nak = peer_request(handler, services, mru(1492))
    assert (nak.code, nak.data) == (Code.CONFNAK, mru(1400))

    reject = peer_request(handler, services, mru(1492), ident=0x43)
    assert (reject.code, reject.data) == (Code.CONFREJ, mru(1492))


def test_zero_magic_is_naked_with_a_fresh_number_and_is_no_loop() -> None:
    services, handler = start()
    reply = peer_request(handler, services, magic(0))
    assert reply.code == Code.CONFNAK
    suggested = int.from_bytes(reply.options[LcpOption.MAGIC], "big")
    assert suggested not in (0, handler.want_magic)
    assert handler.loops == 0


@pytest.mark.parametrize(
    ("willing", "asked", "code", "data"),
    [
        ((AuthMethod.PAP,), CHAP, Code.CONFNAK, auth_option(PAP)),  # we suggest ours
        ((AuthMethod.PAP, AuthMethod.CHAP), EAP, Code.CONFNAK, auth_option(PAP)),
        ((), CHAP, Code.CONFREJ, auth_option(CHAP)),  # no credentials: we cannot
        ((AuthMethod.CHAP,), CHAP, Code.CONFACK, auth_option(CHAP)),
    ],
)
def test_peer_auth_demand(
    willing: tuple[AuthMethod, ...], asked: bytes, code: int, data: bytes
) -> None:
    config = LinkConfig(username="u", password="p", accept_auth=willing)
    services = FakeServices(config)
    handler = Lcp(services, config.lcp)
    handler.fsm.up(0.0)
    handler.fsm.open(0.0)
    reply = peer_request(handler, services, auth_option(asked))
    assert (reply.code, reply.data) == (code, data)
    expected = AuthMethod.CHAP if code == Code.CONFACK else None
    assert handler.peer_auth is expected


# -- codes beyond Configure: Protocol-Reject, Echo, Code-Reject -------------------------------


def opened(
    echo_interval: float = 30.0, echo_failure: int = 3, echo_adaptive: bool = False
) -> tuple[FakeServices, Lcp]:
    services, handler = start(
        echo_interval=echo_interval, echo_failure=echo_failure, echo_adaptive=echo_adaptive
    )
    peer_request(handler, services, magic(0x0A0B0C0D))
    ours = last_request(services)
    handler.fsm.receive(Code.CONFACK, ours.ident, ours.data, b"", 1.0)
    assert handler.fsm.state is State.OPENED
    services.take()
    services.signals.clear()
    return services, handler


def test_protocol_reject_of_lcp_itself_stops_the_link() -> None:
    services, handler = opened()
    handler.fsm.receive(Code.PROTREJ, 9, b"\xc0\x21" + b"\x01\x01\x00\x04", b"", 2.0)
    assert handler.fsm.state is State.STOPPING
    assert services.signals == [LayerDown(Proto.LCP)]
    assert [s.code for s in services.take()] == [Code.TERMREQ]


def test_short_protocol_reject_is_ignored() -> None:
    services, handler = opened()
    handler.fsm.receive(Code.PROTREJ, 9, b"\x80", b"", 2.0)
    assert handler.fsm.state is State.OPENED
    assert services.signals == [] and services.take() == []


def test_echo_reply_with_our_own_magic_is_no_answer() -> None:
    services, handler = opened(echo_interval=5.0, echo_failure=2)  # opened at 1.0
    assert handler.handle_echo_timer(6.0) is None  # first Echo-Request
    (echo,) = services.take()
    assert echo.code == Code.ECHOREQ and handler.echo_pending == 1

    own = (handler.want_magic or 0).to_bytes(4, "big")
    handler.fsm.receive(Code.ECHOREP, echo.ident, own, b"", 7.0)  # looped back
    assert handler.echo_pending == 1
    handler.fsm.receive(Code.ECHOREP, echo.ident, bytes.fromhex("0a0b0c0d"), b"", 7.0)
    assert handler.echo_pending == 0


def test_echo_timeout_is_returned_for_the_link_to_act_on() -> None:
    services, handler = opened(echo_interval=5.0, echo_failure=2)  # opened at 1.0
    assert handler.handle_echo_timer(5.9) is None  # not due
    assert services.take() == []
    assert handler.handle_echo_timer(6.0) is None
    assert handler.handle_echo_timer(11.0) is None
    assert [s.code for s in services.take()] == [Code.ECHOREQ, Code.ECHOREQ]
    assert handler.handle_echo_timer(16.0) == EchoTimeout(2)
    assert handler.echo_deadline is None
    assert services.take() == []


def test_adaptive_echo_skips_an_interval_in_which_the_peer_spoke() -> None:
    services, handler = opened(echo_interval=5.0, echo_failure=2, echo_adaptive=True)
    handler.heard = True  # the link saw a frame from the peer (its own Echo-Request, say)
    assert handler.handle_echo_timer(6.0) is None
    assert services.take() == [] and handler.echo_deadline == 11.0
    # Silent for the next interval: now it asks, and a reply counts as hearing the peer.
    assert handler.handle_echo_timer(11.0) is None
    (echo,) = services.take()
    assert echo.code == Code.ECHOREQ and handler.echo_pending == 1
    handler.fsm.receive(Code.ECHOREP, echo.ident, bytes.fromhex("0a0b0c0d"), b"", 12.0)
    handler.heard = True
    assert handler.echo_pending == 0
    assert handler.handle_echo_timer(16.0) is None and services.take() == []


def test_adaptive_echo_still_finds_a_silent_peer() -> None:
    services, handler = opened(echo_interval=5.0, echo_failure=2, echo_adaptive=True)
    handler.heard = True
    assert handler.handle_echo_timer(6.0) is None  # the peer spoke: skipped
    assert handler.handle_echo_timer(11.0) is None
    assert handler.handle_echo_timer(16.0) is None
    assert [s.code for s in services.take()] == [Code.ECHOREQ, Code.ECHOREQ]
    assert handler.handle_echo_timer(21.0) == EchoTimeout(2)
    assert handler.echo_deadline is None


def test_without_adaptive_echo_a_talking_peer_is_still_asked() -> None:
    services, handler = opened(echo_interval=5.0)
    handler.heard = True
    assert handler.handle_echo_timer(6.0) is None
    assert [s.code for s in services.take()] == [Code.ECHOREQ]


def test_code_reject_of_echo_request_stops_keepalive_only() -> None:
    services, handler = opened(echo_interval=5.0)
    assert handler.echo_deadline == 6.0
    handler.fsm.receive(Code.CODEREJ, 3, bytes((Code.ECHOREQ, 1, 0, 8)) + b"\0" * 4, b"", 2.0)
    assert handler.echo_deadline is None
    assert handler.fsm.state is State.OPENED
    assert services.signals == []


# -- trace names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option_type", "value", "text"),
    [
        (1, b"\x05\xd4", "MRU 1492"),
        (2, b"\x00\x0a\x00\x00", "ACCM 0x000A0000"),
        (3, PAP, "AuthProto PAP"),
        (3, MSCHAPV2, "AuthProto MSCHAP_V2"),
        (3, EAP, "AuthProto 0xC227"),
        (5, b"\x10\x9d\x08\xf2", "MagicNumber 0x109D08F2"),
        (7, b"", "PFC"),
        (8, b"", "ACFC"),
        (17, b"\x05\xdc", "MRRU 1500"),
        (19, b"\x01abc", "EndpointDisc 1 Local"),
        (13, b"\x06", "Option 13"),
        (1, b"\x05", "Option 1"),  # wrong length: shown as unknown
    ],
)
def test_describe_lcp_option(option_type: int, value: bytes, text: str) -> None:
    assert describe_lcp_option(option_type, value) == text


def test_nak_with_a_value_of_the_wrong_length_is_ignored() -> None:
    services, handler = start(auth=(AuthMethod.PAP,), mru=1400, accm=0)
    before = last_request(services)
    bad = encode_option(LcpOption.MRU, b"\x05\x00\x00") + encode_option(LcpOption.ACCM, b"\x01")
    (again,) = answer(handler, services, Code.CONFNAK, bad)
    assert again.data == before.data
    assert (handler.want_mru, handler.want_accm) == (1400, 0)


def test_short_or_early_echo_reply_is_ignored() -> None:
    services, handler = start(echo_interval=5.0)
    services.take()
    handler.fsm.receive(Code.ECHOREP, 1, b"\x00\x00\x00\x00", b"", 0.5)  # not Opened yet
    assert handler.fsm.state is State.REQ_SENT and services.take() == []

    services, handler = opened(echo_interval=5.0)
    handler.handle_echo_timer(6.0)
    handler.fsm.receive(Code.ECHOREP, 1, b"\x0a\x0b", b"", 7.0)  # no room for a magic
    assert handler.echo_pending == 1


def test_code_reject_of_discard_request_changes_nothing() -> None:
    _, handler = opened(echo_interval=5.0)
    handler.fsm.receive(Code.CODEREJ, 3, bytes((Code.DISCREQ, 1, 0, 8)) + b"\0" * 4, b"", 2.0)
    assert handler.echo_deadline == 6.0
    assert handler.fsm.state is State.OPENED


# -- proxy LCP: adopting what the LAC negotiated (RFC 2661 4.4.5) ------------------------------


def test_force_adopts_every_link_option_the_lac_agreed() -> None:
    config = LinkConfig(auth=(AuthMethod.CHAP,))
    services = FakeServices(config)
    handler = Lcp(services, config.lcp)
    ours = (
        mru(1400)
        + accm(0)
        + auth_option(CHAP)
        + magic(0x10203040)
        + encode_option(LcpOption.PFC)
        + encode_option(LcpOption.ACFC)
    )
    theirs = mru(1460) + accm(0x000A0000) + magic(0x50607080) + encode_option(LcpOption.PFC)

    assert handler.force(ours, theirs)

    assert (handler.want_mru, handler.want_accm, handler.want_auth) == (1400, 0, AuthMethod.CHAP)
    assert (handler.want_magic, handler.want_pfc, handler.want_acfc) == (0x10203040, True, True)
    assert (handler.peer_mru, handler.peer_accm, handler.peer_magic) == (
        1460,
        0x000A0000,
        0x50607080,
    )
    assert (handler.peer_pfc, handler.peer_acfc) == (True, False)
    assert services.sent == []  # nothing on the wire: the LAC did the talking


@pytest.mark.parametrize(
    ("demanded", "ours", "theirs"),
    [
        ((), b"\x01\x04\x05", magic(1)),  # the LAC's request is malformed
        ((), encode_option(LcpOption.CALLBACK, b"\x06"), magic(1)),  # an option we cannot do
        ((AuthMethod.PAP,), auth_option(CHAP), magic(1)),  # a method we do not accept
        ((AuthMethod.PAP,), magic(2), magic(1)),  # we must authenticate, the LAC agreed none
        ((), magic(2), magic(0)),  # the peer's request is one we would Nak
    ],
)
def test_force_refuses_values_we_cannot_live_with(
    demanded: tuple[AuthMethod, ...], ours: bytes, theirs: bytes
) -> None:
    config = LinkConfig(auth=demanded)
    handler = Lcp(FakeServices(config), config.lcp)
    assert not handler.force(ours, theirs)
