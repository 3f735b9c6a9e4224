"""RFC 5176 server core: Disconnect and CoA decisions, client and authenticator checks,
NAKs with Error-Cause, the retransmission cache, the session index."""

from __future__ import annotations

import hashlib
import logging
from ipaddress import IPv4Address

import attrs
import pytest
from pyrad import packet as rp

from kl2tp.aaa.radius.coa import CoaClient, CoaCore, SessionIndex
from kl2tp.aaa.radius.dictionary import load_dictionary
from kl2tp.values import Secret

SECRET = b"coa-secret"
CLIENT = ("127.0.0.1", 40000)
NOW = 1_700_000_000.0


@attrs.define(eq=False)
class FakeSession:
    acct_session_id: str
    username: str
    framed_address: IPv4Address | None = None
    calling_station_id: str = ""
    disconnected: int = 0
    timeouts: list[tuple[float | None, float | None]] = attrs.field(factory=list)

    def disconnect(self) -> None:
        self.disconnected += 1

    def set_timeouts(self, session_timeout: float | None, idle_timeout: float | None) -> None:
        self.timeouts.append((session_timeout, idle_timeout))


class Limiter:
    """At most ``burst`` lines per reason, the rest suppressed and counted."""

    def __init__(self, burst: int) -> None:
        self.burst = burst
        self.seen: dict[str, int] = {}

    def should_log(self, reason: str, now: float) -> tuple[bool, int]:
        self.seen[reason] = self.seen.get(reason, 0) + 1
        return self.seen[reason] <= self.burst, 0


@pytest.fixture
def sessions() -> list[FakeSession]:
    return [
        FakeSession("00000001", "alice", IPv4Address("10.0.0.2"), "555-1"),
        FakeSession("00000002", "alice", IPv4Address("10.0.0.3"), "555-2"),
        FakeSession("00000003", "bob", IPv4Address("10.0.0.4")),
    ]


@pytest.fixture
def core(sessions: list[FakeSession]) -> CoaCore:
    index = SessionIndex()
    for s in sessions:
        index.add(s)
    return CoaCore(
        [CoaClient("127.0.0.1", Secret(SECRET))],
        index,
        load_dictionary(),
        nas_identifier="lns-1",
        limiter=Limiter(3),
    )


def request(
    code: int, *, secret: bytes = SECRET, ma: bool = False, **attributes: object
) -> rp.CoAPacket:
    packet = rp.CoAPacket(code, id=7, secret=secret, dict=load_dictionary(), **attributes)
    if ma:
        packet.add_message_authenticator()
    return packet


def exchange(
    core: CoaCore, packet: rp.CoAPacket, *, now: float = 0.0, src=CLIENT
) -> rp.Packet | None:  # type: ignore[no-untyped-def]
    raw = packet.RequestPacket()
    wire = core.receive(raw, src, now, NOW)
    if wire is None:
        return None
    reply = packet.CreateReply(packet=wire)
    # The reply is signed with our secret over the request's authenticator (RFC 5176 3.3).
    assert packet.VerifyReply(reply, wire, enforce_ma=packet.message_authenticator)
    return reply


def test_disconnect_by_session_id_acks_and_clears(core, sessions):  # type: ignore[no-untyped-def]
    reply = exchange(core, request(rp.DisconnectRequest, Acct_Session_Id="00000002"))
    assert reply is not None and reply.code == rp.DisconnectACK
    assert [s.disconnected for s in sessions] == [0, 1, 0]
    assert core.counters["disconnect_ack"] == 1 and core.counters["sessions_disconnected"] == 1


def test_disconnect_by_user_clears_all_their_sessions_or_one_by_address(core, sessions):  # type: ignore[no-untyped-def]
    reply = exchange(
        core, request(rp.DisconnectRequest, User_Name="alice", Framed_IP_Address="10.0.0.3")
    )
    assert reply is not None and reply.code == rp.DisconnectACK
    assert [s.disconnected for s in sessions] == [0, 1, 0]
    reply = exchange(core, request(rp.DisconnectRequest, User_Name="alice"))
    assert reply is not None and reply.code == rp.DisconnectACK
    assert [s.disconnected for s in sessions] == [1, 2, 0]


def test_disconnect_by_address_alone(core, sessions):  # type: ignore[no-untyped-def]
    reply = exchange(core, request(rp.DisconnectRequest, Framed_IP_Address="10.0.0.3"))
    assert reply is not None and reply.code == rp.DisconnectACK
    assert [s.disconnected for s in sessions] == [0, 1, 0]
    reply = exchange(
        core,
        request(rp.DisconnectRequest, Framed_IP_Address="10.0.0.2", Calling_Station_Id="555-9"),
    )
    assert reply is not None and reply["Error-Cause"] == ["Session-Context-Not-Found"]


def test_unknown_session_is_naked_503(core, sessions):  # type: ignore[no-untyped-def]
    for attrs_ in (
        {"Acct-Session-Id": "nope"},
        {"User-Name": "carol"},
        {"User-Name": "bob", "Framed-IP-Address": "10.0.0.2"},  # both must match
        {"Acct-Session-Id": "00000001", "User-Name": "bob"},
    ):
        reply = exchange(
            core,
            request(rp.DisconnectRequest, **{k.replace("-", "_"): v for k, v in attrs_.items()}),
        )
        assert reply is not None and reply.code == rp.DisconnectNAK, attrs_
        assert reply["Error-Cause"] == ["Session-Context-Not-Found"]
    assert all(s.disconnected == 0 for s in sessions)
    assert core.counters["nak_503"] == 4


def test_naks_for_missing_identification_and_other_nas(core):  # type: ignore[no-untyped-def]
    reply = exchange(core, request(rp.DisconnectRequest, Calling_Station_Id="555-1"))
    assert reply is not None and reply["Error-Cause"] == ["Missing-Attribute"]
    reply = exchange(core, request(rp.DisconnectRequest, User_Name="bob", NAS_Identifier="other"))
    assert reply is not None and reply["Error-Cause"] == ["NAS-Identification-Mismatch"]
    reply = exchange(core, request(rp.DisconnectRequest, User_Name="bob", NAS_Identifier="lns-1"))
    assert reply is not None and reply.code == rp.DisconnectACK


def test_coa_updates_timeouts(core, sessions):  # type: ignore[no-untyped-def]
    reply = exchange(core, request(rp.CoARequest, User_Name="bob", Session_Timeout=600))
    assert reply is not None and reply.code == rp.CoAACK
    reply = exchange(
        core, request(rp.CoARequest, Acct_Session_Id="00000001", Idle_Timeout=30, Session_Timeout=0)
    )
    assert reply is not None and reply.code == rp.CoAACK
    assert sessions[2].timeouts == [(600.0, None)]
    assert sessions[0].timeouts == [(0.0, 30.0)]
    assert sessions[2].disconnected == 0


def test_coa_that_cannot_be_applied_whole_is_naked(core, sessions):  # type: ignore[no-untyped-def]
    reply = exchange(
        core, request(rp.CoARequest, User_Name="bob", Session_Timeout=60, Filter_Id="gold")
    )
    assert reply is not None and reply.code == rp.CoANAK
    assert reply["Error-Cause"] == ["Unsupported-Attribute"]
    reply = exchange(core, request(rp.CoARequest, User_Name="bob"))
    assert reply is not None and reply["Error-Cause"] == ["Missing-Attribute"]
    reply = exchange(
        core,
        request(rp.CoARequest, User_Name="bob", Session_Timeout=60, Service_Type="Authorize-Only"),
    )
    assert reply is not None and reply["Error-Cause"] == ["Unsupported-Service"]
    reply = exchange(core, request(rp.CoARequest, User_Name="nobody", Idle_Timeout=5))
    assert reply is not None and reply["Error-Cause"] == ["Session-Context-Not-Found"]
    assert sessions[2].timeouts == []


def test_message_authenticator_checked_and_answered(core, sessions):  # type: ignore[no-untyped-def]
    reply = exchange(core, request(rp.DisconnectRequest, ma=True, User_Name="bob"))
    assert reply is not None and reply.code == rp.DisconnectACK and reply.message_authenticator
    # A wrong Message-Authenticator with a Request Authenticator made to match it: dropped.
    packet = request(rp.DisconnectRequest, ma=True, User_Name="alice")
    raw = bytearray(packet.RequestPacket())
    at = raw.index(bytes([80, 18]), 20)
    raw[at + 2] ^= 0xFF
    raw[4:20] = hashlib.md5(bytes(raw[:4]) + bytes(16) + bytes(raw[20:]) + SECRET).digest()
    assert core.receive(bytes(raw), CLIENT, 0.0, NOW) is None
    assert core.counters["drop_bad_message_authenticator"] == 1
    assert sessions[0].disconnected == 0


def test_strangers_and_wrong_secrets_are_dropped_counted_and_logged_rate_limited(
    core,
    sessions,
    caplog,  # type: ignore[no-untyped-def]
):
    caplog.set_level(logging.WARNING, "kl2tp.aaa")
    for n in range(20):
        assert (
            exchange(core, request(rp.DisconnectRequest, User_Name="bob"), src=("192.0.2.9", n))
            is None
        )
    assert exchange(core, request(rp.DisconnectRequest, secret=b"wrong", User_Name="bob")) is None
    assert core.receive(b"\x28\x01\x00", CLIENT, 0.0) is None  # short: not a request
    assert core.receive(bytes([1]) + bytes(19), CLIENT, 0.0) is None  # Access-Request
    assert core.counters["drop_unknown_client"] == 20
    assert core.counters["drop_bad_authenticator"] == 1
    assert core.counters["drop_not_a_request"] == 2
    assert sessions[2].disconnected == 0
    lines = [r.getMessage() for r in caplog.records]
    assert sum("192.0.2.9" in line for line in lines) == 3  # the limiter's burst
    assert all(SECRET.decode() not in line for line in lines)


def test_ipv4_client_on_a_dual_stack_socket(core, sessions):  # type: ignore[no-untyped-def]
    reply = exchange(
        core, request(rp.DisconnectRequest, User_Name="bob"), src=("::ffff:127.0.0.1", 9)
    )
    assert reply is not None and reply.code == rp.DisconnectACK


def test_retransmission_gets_the_same_reply_not_a_503(core, sessions):  # type: ignore[no-untyped-def]
    packet = request(rp.DisconnectRequest, Acct_Session_Id="00000003")
    raw = packet.RequestPacket()
    first = core.receive(raw, CLIENT, 0.0, NOW)
    # The session is gone from the index once the daemon cleared it.
    core.index.remove(sessions[2])
    again = core.receive(raw, CLIENT, 5.0, NOW)
    assert first is not None and again == first
    assert sessions[2].disconnected == 1 and core.counters["retransmits"] == 1
    later = core.receive(raw, CLIENT, 100.0, NOW)  # the cache expired: decided afresh
    assert later is not None and later[0] == rp.DisconnectNAK


def test_stale_event_timestamp_is_dropped(core, sessions):  # type: ignore[no-untyped-def]
    packet = request(rp.DisconnectRequest, User_Name="bob", Event_Timestamp=int(NOW) - 3600)
    assert core.receive(packet.RequestPacket(), CLIENT, 0.0, NOW) is None
    assert core.counters["drop_stale"] == 1
    fresh = request(rp.DisconnectRequest, User_Name="bob", Event_Timestamp=int(NOW) - 10)
    assert exchange(core, fresh) is not None and sessions[2].disconnected == 1


def test_index_add_remove_readdress():
    index = SessionIndex()
    a = FakeSession("1", "u", IPv4Address("10.1.1.1"))
    b = FakeSession("2", "u")
    index.add(a)
    index.add(b)
    assert index.find(username="u") == [a, b]
    assert index.find(framed_address=IPv4Address("10.1.1.1")) == [a]
    a.framed_address = IPv4Address("10.1.1.9")
    index.add(a)  # re-added with its new address
    assert index.find(framed_address=IPv4Address("10.1.1.1")) == []
    assert index.find(framed_address=IPv4Address("10.1.1.9")) == [a]
    a.username = "renamed"  # removal uses the keys it was indexed under
    index.remove(a)
    index.remove(a)
    assert index.find(username="u") == [b] and len(index) == 1
    index.remove(b)
    assert index.find(username="u") == [] and index.find() == []


def test_coa_config_keys() -> None:
    from kl2tp.aaa.radius.coa import coa_clients
    from kl2tp.config import ConfigError, parse_config

    cfg = parse_config(
        '[radius]\ncoa_listen = "127.0.0.1"\n'
        '[[radius.coa_client]]\naddress = "127.0.0.1"\nsecret = "s1"\n'
        '[[radius.coa_client]]\naddress = "2001:db8::5"\nsecret = "s2"\n',
        "lns.toml",
        "lns",
    )
    assert cfg.radius.coa_listen is not None and cfg.radius.coa_listen.sockaddr == (
        "127.0.0.1",
        3799,
    )
    clients = coa_clients(cfg.radius.coa_client)
    assert [c.address for c in clients] == ["127.0.0.1", "2001:db8::5"]
    assert clients[1].secret.reveal() == b"s2" and "s2" not in repr(cfg)
    assert parse_config("", "lns.toml", "lns").radius.coa_listen is None
    for text, where in (
        ('[[radius.coa_client]]\naddress = "127.0.0.1"\nsecret = "s"\n', "coa_listen"),
        ('[radius]\ncoa_listen = "x"\n', "[radius] coa_listen"),
        (
            '[radius]\ncoa_listen = "127.0.0.1"\n[[radius.coa_client]]\nsecret = "s"\n',
            "[[radius.coa_client]] #1 address: missing",
        ),
        (
            '[radius]\ncoa_listen = "127.0.0.1"\n'
            '[[radius.coa_client]]\naddress = "h"\nsecret = "s"\n',
            "[[radius.coa_client]] #1 address",
        ),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(text, "lns.toml", "lns")
        assert where in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match="only valid for kl2tp-lns"):
        parse_config('[radius]\ncoa_listen = "127.0.0.1"\n', "lac.toml", "lac")


async def test_serve_coa_answers_on_udp_and_names_the_key_when_it_cannot_bind(
    core: CoaCore, sessions: list[FakeSession]
) -> None:
    import socket

    import trio

    from kl2tp.aaa.radius.coa import serve_coa

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_coa, ("127.0.0.1", 0), core)
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sock:
                await sock.bind(("127.0.0.1", 0))
                packet = request(rp.DisconnectRequest, User_Name="bob")
                await sock.sendto(packet.RequestPacket(), bound)
                wire = await sock.recv(4096)
            assert packet.CreateReply(packet=wire).code == rp.DisconnectACK
            assert sessions[2].disconnected == 1
            with pytest.raises(OSError, match=r"\[radius\] coa_listen 127.0.0.1:\d+"):
                await serve_coa(bound, core)
            nursery.cancel_scope.cancel()
