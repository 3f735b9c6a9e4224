"""IPCP (RFC 1332, RFC 1877) and IPv6CP (RFC 5072) option handlers alone: the effect of a
Configure-Nak or -Reject on the next request, and the verdict on the peer's request."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ppp.config import IpcpConfig, Ipv6cpConfig
from ppp.frame import Code, Proto, encode_option
from ppp.fsm import FsmConfig, State
from ppp.ipcp import Ipcp, IpcpOption, describe_ipcp_option, requested_address
from ppp.ipv6cp import INTERFACE_ID, Ipv6cp, describe_ipv6cp_option
from ppp.ncp import Ncp
from ppp.services import LayerDown, LayerFinished, LayerUp

from .fakes import FakeServices, ScriptedRandom, Sent

LNS = IPv4Address("10.0.0.1")
PEER = IPv4Address("10.0.0.9")
DNS1 = IPv4Address("192.0.2.53")
DNS2 = IPv4Address("192.0.2.54")


def address(option_type: int, value: IPv4Address | str | int) -> bytes:
    return encode_option(option_type, int(IPv4Address(value)).to_bytes(4, "big"))


def interface_id(value: int) -> bytes:
    return encode_option(INTERFACE_ID, value.to_bytes(8, "big"))


def begin(handler: Ncp) -> None:
    handler.fsm.up(0.0)
    handler.fsm.open(0.0)


def last_request(services: FakeServices) -> Sent:
    return [s for s in services.sent if s.code == Code.CONFREQ][-1]


def answer(handler: Ncp, services: FakeServices, code: int, options: bytes) -> list[Sent]:
    ident = last_request(services).ident
    services.take()
    handler.fsm.receive(code, ident, options, b"", 1.0)
    return services.take()


def peer_request(handler: Ncp, services: FakeServices, options: bytes, ident: int = 7) -> Sent:
    services.take()
    handler.fsm.receive(Code.CONFREQ, ident, options, b"", 1.0)
    (reply,) = [s for s in services.take() if s.code != Code.CONFREQ]
    return reply


def ipcp(services: FakeServices | None = None, **config: object) -> tuple[FakeServices, Ipcp]:
    services = services or FakeServices()
    handler = Ipcp(services, IpcpConfig(**config), FsmConfig(max_failure=2))  # type: ignore[arg-type]
    begin(handler)
    return services, handler


# -- IPCP: our request, Naked and Rejected -----------------------------------------------------


def test_subscriber_takes_the_naked_address_and_dns() -> None:
    services, handler = ipcp(request_dns=True)
    first = last_request(services)
    assert first.protocol == Proto.IPCP
    assert first.data == address(3, 0) + address(129, 0) + address(131, 0)

    naks = address(3, PEER) + address(129, DNS1) + address(131, DNS2)
    (again,) = answer(handler, services, Code.CONFNAK, naks)

    assert again.data == naks
    assert handler.fsm.state is State.REQ_SENT


def test_nak_of_a_configured_address_is_taken_only_with_accept_local() -> None:
    services, handler = ipcp(local_address=LNS)
    (again,) = answer(handler, services, Code.CONFNAK, address(3, PEER))
    assert again.data == address(3, LNS)  # ours is ours

    services, handler = ipcp(local_address=LNS, accept_local=True)
    (again,) = answer(handler, services, Code.CONFNAK, address(3, PEER))
    assert again.data == address(3, PEER)


def test_nak_values_that_say_nothing_are_ignored() -> None:
    services, handler = ipcp()  # asks 0.0.0.0, no DNS
    wrong_length = encode_option(IpcpOption.ADDRESS, b"\x0a\x00\x00")
    zero = address(3, 0)
    unasked_dns = address(129, DNS1)
    (again,) = answer(handler, services, Code.CONFNAK, wrong_length + zero + unasked_dns)
    assert again.data == address(3, 0)


def test_at_max_failure_a_nak_drops_what_it_names() -> None:
    services, handler = ipcp(request_dns=True)  # Max-Failure 2
    (again,) = answer(handler, services, Code.CONFNAK, address(129, DNS1))
    assert again.data == address(3, 0) + address(129, DNS1) + address(131, 0)

    (again,) = answer(handler, services, Code.CONFNAK, address(3, PEER) + address(129, DNS2))
    assert again.data == address(131, 0)  # address and primary DNS given up


def test_rejected_options_are_no_longer_asked_for() -> None:
    services, handler = ipcp(request_dns=True)
    vj = encode_option(IpcpOption.COMPRESSION, b"\x00\x2d\x0f\x00")  # never asked: no effect
    (again,) = answer(handler, services, Code.CONFREJ, address(131, 0) + vj)
    assert again.data == address(3, 0) + address(129, 0)

    (again,) = answer(handler, services, Code.CONFREJ, address(129, 0))
    (again,) = answer(handler, services, Code.CONFREJ, address(3, 0))
    assert again.data == b""  # an empty Configure-Request, as RFC 1661 allows


def test_malformed_ipcp_nak_and_reject_are_discarded() -> None:
    services, handler = ipcp(request_dns=True)
    assert answer(handler, services, Code.CONFNAK, b"\x03\x06\x0a") == []
    assert answer(handler, services, Code.CONFREJ, b"\x03") == []
    assert handler.want_address == 0 and handler.want_dns == (0, 0)


# -- IPCP: the peer's request --------------------------------------------------------------


def lns(dns: tuple[IPv4Address, ...] = ()) -> tuple[FakeServices, Ipcp]:
    services, handler = ipcp(local_address=LNS, assign_peer_address=True, dns=dns)
    handler.assigned = int(PEER)  # as Link.address_result sets it
    return services, handler


def test_lns_naks_the_assigned_address_then_rejects_after_max_failure() -> None:
    services, handler = lns()
    first = peer_request(handler, services, address(3, 0))
    assert (first.code, first.data) == (Code.CONFNAK, address(3, PEER))
    second = peer_request(handler, services, address(3, "10.0.0.77"), ident=8)
    assert (second.code, second.data) == (Code.CONFNAK, address(3, PEER))
    third = peer_request(handler, services, address(3, "10.0.0.77"), ident=9)
    assert (third.code, third.data) == (Code.CONFREJ, address(3, "10.0.0.77"))


def test_max_failure_counts_naks_since_the_last_ack() -> None:
    # RFC 1661 4.6 (pppd's nakloops): a peer that renegotiates from scratch after an Ack (a
    # stale request over a link that reorders knocked it down) is Naked afresh, not Rejected
    # for the Naks of earlier rounds: the LNS used to Reject the address, and Ack a request
    # without one, and the link went down "IPCP opened without addresses"
    services, handler = lns()
    for ident in range(10, 40, 2):
        nak = peer_request(handler, services, address(3, 0), ident=ident)
        assert (nak.code, nak.data) == (Code.CONFNAK, address(3, PEER))
        ack = peer_request(handler, services, address(3, PEER), ident=ident + 1)
        assert (ack.code, ack.data) == (Code.CONFACK, address(3, PEER))


def test_lns_suggests_an_address_to_a_peer_that_asks_none_once() -> None:
    # RFC 1332 3.3: a Nak may carry an option the peer did not include
    services, handler = lns()
    first = peer_request(handler, services, b"")
    assert (first.code, first.data) == (Code.CONFNAK, address(3, PEER))
    second = peer_request(handler, services, b"", ident=8)
    assert (second.code, second.data) == (Code.CONFACK, b"")


def test_peer_without_an_address_of_its_own_is_rejected_by_a_subscriber() -> None:
    # not assigning: a non-zero address is the peer's own business, 0.0.0.0 has no answer
    services, handler = ipcp()
    reply = peer_request(handler, services, address(3, 0))
    assert (reply.code, reply.data) == (Code.CONFREJ, address(3, 0))
    reply = peer_request(handler, services, address(3, LNS), ident=8)
    assert (reply.code, reply.data) == (Code.CONFACK, address(3, LNS))
    assert handler.peer_address == int(LNS)


def test_dns_requests_naked_to_ours_and_rejected_beyond_what_we_offer() -> None:
    services, handler = lns(dns=(DNS1,))
    reply = peer_request(handler, services, address(3, PEER) + address(129, 0))
    assert (reply.code, reply.data) == (Code.CONFNAK, address(129, DNS1))
    reply = peer_request(handler, services, address(3, PEER) + address(131, 0), ident=8)
    assert (reply.code, reply.data) == (Code.CONFREJ, address(131, 0))
    reply = peer_request(handler, services, address(3, PEER) + address(129, DNS1), ident=9)
    assert reply.code == Code.CONFACK
    assert handler.peer_dns == (int(DNS1),)


def test_dns_disagreement_past_max_failure_is_rejected() -> None:
    services, handler = lns(dns=(DNS1,))
    for ident in (1, 2):
        reply = peer_request(handler, services, address(3, 0), ident=ident)
        assert reply.code == Code.CONFNAK
    reply = peer_request(handler, services, address(3, PEER) + address(129, DNS2), ident=3)
    assert (reply.code, reply.data) == (Code.CONFREJ, address(129, DNS2))


def test_malformed_ipcp_request_is_rejected_whole() -> None:
    services, handler = lns()
    reply = peer_request(handler, services, b"\x03\x06\x0a\x00")
    assert (reply.code, reply.data) == (Code.CONFREJ, b"\x03\x06\x0a\x00")


def test_ipcp_layer_signals_name_the_protocol() -> None:
    services, handler = ipcp(local_address=LNS)
    peer_request(handler, services, address(3, PEER))
    request = last_request(services)
    handler.fsm.receive(Code.CONFACK, request.ident, request.data, b"", 1.0)
    handler.fsm.down(2.0)  # Opened -> Starting: This-Layer-Down
    handler.fsm.close(2.0)  # Starting -> Initial: This-Layer-Finished
    assert services.signals == [
        LayerUp(Proto.IPCP),
        LayerDown(Proto.IPCP),
        LayerFinished(Proto.IPCP),
    ]


@pytest.mark.parametrize(
    ("option_type", "value", "text"),
    [
        (3, bytes((10, 0, 0, 9)), "Address 10.0.0.9"),
        (129, bytes((192, 0, 2, 53)), "PrimaryDNS 192.0.2.53"),
        (130, bytes((192, 0, 2, 1)), "PrimaryWINS 192.0.2.1"),
        (2, b"\x00\x2d\x0f\x00", "CompressType VJ 15 slots"),
        (2, b"\x00\x61\x00", "CompressType 0x0061"),
        (2, b"\x00", "Option 2"),
        (1, b"\x00" * 8, "Option 1"),
    ],
)
def test_describe_ipcp_option(option_type: int, value: bytes, text: str) -> None:
    assert describe_ipcp_option(option_type, value) == text


def test_requested_address_of_a_malformed_request_is_none() -> None:
    assert requested_address(address(3, PEER)) == PEER
    assert requested_address(address(3, 0)) is None
    assert requested_address(b"\x03\x06\x0a") is None


# -- IPv6CP -------------------------------------------------------------------------------------

OURS = 0x0200_5EFF_FE00_0001
THEIRS = 0x0200_5EFF_FE00_0002


def ipv6cp(
    interface: int | None = OURS, rng: ScriptedRandom | None = None, max_failure: int = 5
) -> tuple[FakeServices, Ipv6cp]:
    services = FakeServices(rng=rng)
    config = Ipv6cpConfig(enabled=True, interface_id=interface)
    handler = Ipv6cp(services, config, FsmConfig(max_failure=max_failure))
    begin(handler)
    return services, handler


def test_ipv6cp_nak_suggestion_is_taken() -> None:
    services, handler = ipv6cp()
    assert last_request(services).data == interface_id(OURS)
    (again,) = answer(handler, services, Code.CONFNAK, interface_id(0x1111))
    assert again.data == interface_id(0x1111)
    assert handler.want_id == 0x1111


def test_ipv6cp_nak_of_zero_or_the_peers_own_id_draws_a_fresh_one() -> None:
    services, handler = ipv6cp(rng=ScriptedRandom(0, THEIRS, 0x3333))
    peer_request(handler, services, interface_id(THEIRS))
    assert handler.peer_id == THEIRS
    (again,) = answer(handler, services, Code.CONFNAK, interface_id(THEIRS))
    # the generator offered 0 and the peer's id first: neither may be used
    assert again.data == interface_id(0x3333)
    (again,) = answer(handler, services, Code.CONFNAK, interface_id(0))
    fresh = int.from_bytes(again.data[2:], "big")
    assert fresh not in (0, THEIRS, 0x3333)


def test_ipv6cp_reject_means_no_identifier_at_all() -> None:
    services, handler = ipv6cp()
    (again,) = answer(handler, services, Code.CONFREJ, interface_id(OURS))
    assert again.data == b""  # an empty Configure-Request
    assert handler.want_id is None
    # a Reject naming nothing of ours changes nothing
    (again,) = answer(handler, services, Code.CONFREJ, encode_option(2, b"\x00\x4f"))
    assert again.data == b""


def test_ipv6cp_nak_at_max_failure_drops_the_identifier() -> None:
    services, handler = ipv6cp(max_failure=1)
    (again,) = answer(handler, services, Code.CONFNAK, interface_id(0x1111))
    assert again.data == b""


def test_malformed_ipv6cp_nak_and_reject_are_discarded() -> None:
    services, handler = ipv6cp()
    assert answer(handler, services, Code.CONFNAK, b"\x01\x0a\x00") == []
    assert answer(handler, services, Code.CONFREJ, b"\x01") == []
    assert handler.want_id == OURS


def test_ipv6cp_peer_request_verdicts() -> None:
    services, handler = ipv6cp(rng=ScriptedRandom(OURS, 0, 0x4444), max_failure=1)
    # the peer wants our identifier: Nak with a fresh one (never 0, never ours)
    reply = peer_request(handler, services, interface_id(OURS))
    assert (reply.code, reply.data) == (Code.CONFNAK, interface_id(0x4444))
    # past Max-Failure the same disagreement is a Reject
    reply = peer_request(handler, services, interface_id(0), ident=8)
    assert (reply.code, reply.data) == (Code.CONFREJ, interface_id(0))
    # options IPv6CP does not know are rejected; a distinct identifier is acked
    compression = encode_option(2, b"\x00\x4f")
    reply = peer_request(handler, services, interface_id(THEIRS) + compression, ident=9)
    assert (reply.code, reply.data) == (Code.CONFREJ, compression)
    reply = peer_request(handler, services, b"\x01\x0a", ident=10)
    assert (reply.code, reply.data) == (Code.CONFREJ, b"\x01\x0a")  # malformed: whole


def test_ipv6cp_random_identifier_when_none_is_configured() -> None:
    services, handler = ipv6cp(interface=None, rng=ScriptedRandom(0, 0x5555))
    assert last_request(services).data == interface_id(0x5555)
    assert handler.want_id == 0x5555


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (bytes.fromhex("02005efffe000001"), "InterfaceId 0200:5EFF:FE00:0001"),
        (b"\x01\x02", "Option 1"),
    ],
)
def test_describe_ipv6cp_option(value: bytes, text: str) -> None:
    assert describe_ipv6cp_option(INTERFACE_ID, value) == text
    assert describe_ipv6cp_option(2, value) == "Option 2"


def test_ncp_codes_beyond_seven_are_code_rejected() -> None:
    services, handler = ipcp()
    raw = bytes((Code.ECHOREQ, 3, 0, 8)) + b"\x00" * 4  # LCP has Echo; IPCP does not
    services.take()
    handler.fsm.receive(Code.ECHOREQ, 3, b"\x00" * 4, raw, 1.0)
    (reject,) = services.take()
    assert (reject.protocol, reject.code, reject.data) == (Proto.IPCP, Code.CODEREJ, raw)
    assert handler.fsm.state is State.REQ_SENT


def test_ncp_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        Ncp(FakeServices(), Proto.IPCP, FsmConfig())  # type: ignore[abstract]
