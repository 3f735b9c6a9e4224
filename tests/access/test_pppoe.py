"""The PPPoE access concentrator core: Discovery, sessions, PADT, bounds (RFC 2516)."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kl2tp.access.pppoe import (
    BROADCAST,
    ETH_P_PPP_DISC,
    ETH_P_PPP_SES,
    AcConfig,
    Code,
    PppoeDecodeError,
    PppoeServer,
    SessionClosed,
    SessionFrame,
    SessionOpened,
    Tag,
    decode,
    encode_discovery,
    encode_session,
)

AC = bytes.fromhex("020000000001")
SUB = bytes.fromhex("020000000002")
OTHER = bytes.fromhex("020000000003")


def server(**kw: object) -> PppoeServer:
    return PppoeServer(AcConfig(**kw), AC, rng=random.Random(1))  # type: ignore[arg-type]


def padi(src: bytes = SUB, service: bytes | None = b"", host_uniq: bytes | None = b"hu1") -> bytes:
    tags = []
    if service is not None:
        tags.append((int(Tag.SERVICE_NAME), service))
    if host_uniq is not None:
        tags.append((int(Tag.HOST_UNIQ), host_uniq))
    return encode_discovery(BROADCAST, src, Code.PADI, 0, tags)


def padr(src: bytes, cookie: bytes, service: bytes = b"", host_uniq: bytes | None = None) -> bytes:
    tags = [(int(Tag.SERVICE_NAME), service), (int(Tag.AC_COOKIE), cookie)]
    if host_uniq is not None:
        tags.append((int(Tag.HOST_UNIQ), host_uniq))
    return encode_discovery(AC, src, Code.PADR, 0, tags)


def one_frame(ac: PppoeServer) -> tuple[Code, int, dict[int, bytes], bytes]:
    frames = ac.frames_to_send()
    assert len(frames) == 1, frames
    packet = decode(frames[0])
    assert packet.src == AC
    return Code(packet.code), packet.session_id, dict(packet.tags()), packet.dst


def discover(
    ac: PppoeServer,
    now: float = 0.0,
    src: bytes = SUB,
    service: bytes = b"",
    host_uniq: bytes | None = b"hu1",
) -> int:
    """PADI/PADO/PADR/PADS; the session id."""
    ac.receive_frame(padi(src, service, host_uniq), now)
    code, _, tags, dst = one_frame(ac)
    assert code is Code.PADO and dst == src
    ac.receive_frame(padr(src, tags[Tag.AC_COOKIE], service, host_uniq), now)
    code, sid, tags, _ = one_frame(ac)
    assert code is Code.PADS and sid != 0
    return sid


def test_discovery_offers_and_opens_a_session() -> None:
    ac = server(ac_name="lac1")
    ac.receive_frame(padi(service=b"", host_uniq=b"\x01\x02"), 0.0)
    code, sid, tags, dst = one_frame(ac)
    assert (code, sid, dst) == (Code.PADO, 0, SUB)
    assert tags[Tag.AC_NAME] == b"lac1"
    assert tags[Tag.SERVICE_NAME] == b""
    assert tags[Tag.HOST_UNIQ] == b"\x01\x02"
    assert len(tags[Tag.AC_COOKIE]) == 20
    assert not ac.sessions, "a PADI holds no state"
    ac.receive_frame(padr(SUB, tags[Tag.AC_COOKIE], host_uniq=b"\x01\x02"), 1.0)
    code, sid, tags, _ = one_frame(ac)
    assert code is Code.PADS and 1 <= sid <= 0xFFFE
    assert tags[Tag.HOST_UNIQ] == b"\x01\x02"
    assert ac.next_event() == SessionOpened(sid, SUB, "")
    assert ac.next_event() is None


def test_session_frames_both_ways() -> None:
    ac = server()
    sid = discover(ac)
    ac.next_event()
    ac.receive_frame(encode_session(AC, SUB, sid, b"\xc0\x21\x01\x01\x00\x04"), 2.0)
    assert ac.next_event() == SessionFrame(sid, b"\xc0\x21\x01\x01\x00\x04")
    frame = ac.encapsulate(sid, b"\xc2\x23\x03\x01\x00\x04")
    assert frame is not None
    packet = decode(frame)
    assert (packet.dst, packet.ethertype, packet.session_id) == (SUB, ETH_P_PPP_SES, sid)
    assert packet.payload == b"\xc2\x23\x03\x01\x00\x04"


def test_ethernet_padding_is_cut_off() -> None:
    ac = server()
    sid = discover(ac)
    ac.next_event()
    frame = encode_session(AC, SUB, sid, b"\xc0\x21\x09\x01\x00\x04") + bytes(40)
    ac.receive_frame(frame, 2.0)
    assert ac.next_event() == SessionFrame(sid, b"\xc0\x21\x09\x01\x00\x04")


def test_frames_from_another_mac_are_not_the_session() -> None:
    ac = server()
    sid = discover(ac)
    ac.next_event()
    ac.receive_frame(encode_session(AC, OTHER, sid, b"\xc0\x21"), 2.0)
    assert ac.next_event() is None
    code, got_sid, _, dst = one_frame(ac)
    assert (code, got_sid, dst) == (Code.PADT, sid, OTHER)
    ac.receive_frame(encode_discovery(AC, OTHER, Code.PADT, sid, []), 2.0)
    assert ac.next_event() is None and sid in ac.sessions
    assert ac.counters["drop_padt_unknown_session"] == 1


def test_peer_padt_closes_and_frees_the_id() -> None:
    ac = server(max_sessions=1)
    sid = discover(ac)
    ac.next_event()
    ac.receive_frame(padi(src=OTHER), 1.0)
    assert ac.frames_to_send() == [], "no PADO at the session limit"
    err = [(int(Tag.GENERIC_ERROR), b"bye")]
    ac.receive_frame(encode_discovery(AC, SUB, Code.PADT, sid, err), 3.0)
    assert ac.next_event() == SessionClosed(sid, by_peer=True, message="bye")
    assert not ac.sessions
    assert discover(ac, 4.0, src=OTHER) >= 1


def test_terminate_sends_padt() -> None:
    ac = server()
    sid = discover(ac)
    ac.next_event()
    ac.terminate(sid, "call cleared")
    code, got, tags, dst = one_frame(ac)
    assert (code, got, dst) == (Code.PADT, sid, SUB)
    assert tags[Tag.GENERIC_ERROR] == b"call cleared"
    assert ac.next_event() == SessionClosed(sid, by_peer=False)
    assert ac.encapsulate(sid, b"\x00\x21") is None
    ac.terminate(sid)
    assert ac.frames_to_send() == [] and ac.next_event() is None


def test_duplicate_padr_gets_the_same_session() -> None:
    ac = server()
    ac.receive_frame(padi(), 0.0)
    _, _, tags, _ = one_frame(ac)
    again = padr(SUB, tags[Tag.AC_COOKIE], host_uniq=b"hu1")
    ac.receive_frame(again, 1.0)
    first = ac.frames_to_send()
    ac.receive_frame(again, 2.0)
    assert ac.frames_to_send() == first
    assert len(ac.sessions) == 1
    assert ac.counters["duplicate_PADR"] == 1
    assert isinstance(ac.next_event(), SessionOpened) and ac.next_event() is None


@pytest.mark.parametrize(
    ("cookie", "now"),
    [
        (None, 1.0),
        (b"\x00" * 20, 1.0),
        (b"short", 1.0),
        ("valid", 100.0),  # two slots later: expired
    ],
)
def test_padr_needs_a_valid_fresh_cookie(cookie: bytes | str | None, now: float) -> None:
    ac = server(cookie_slot=30.0)
    ac.receive_frame(padi(), 0.0)
    _, _, tags, _ = one_frame(ac)
    padr_tags = [(int(Tag.SERVICE_NAME), b"")]
    if cookie is not None:
        padr_tags.append((int(Tag.AC_COOKIE), tags[Tag.AC_COOKIE] if cookie == "valid" else cookie))  # type: ignore[arg-type]
    ac.receive_frame(encode_discovery(AC, SUB, Code.PADR, 0, padr_tags), now)
    assert ac.frames_to_send() == []
    assert not ac.sessions
    assert ac.counters["drop_bad_cookie"] == 1


def test_cookie_is_bound_to_the_subscriber_mac() -> None:
    ac = server()
    ac.receive_frame(padi(), 0.0)
    _, _, tags, _ = one_frame(ac)
    ac.receive_frame(padr(OTHER, tags[Tag.AC_COOKIE]), 1.0)
    assert not ac.sessions and ac.counters["drop_bad_cookie"] == 1


def test_service_names() -> None:
    ac = server(service_names=("internet", "voip"))
    ac.receive_frame(padi(service=b"iptv"), 0.0)
    assert ac.frames_to_send() == [] and ac.counters["drop_unknown_service"] == 1
    ac.receive_frame(padi(service=b""), 0.0)
    frames = ac.frames_to_send()
    offered = [v for t, v in decode(frames[0]).tags() if t == Tag.SERVICE_NAME]
    assert offered == [b"internet", b"voip"]
    sid = discover(ac, service=b"voip")
    assert ac.next_event() == SessionOpened(sid, SUB, "voip")
    cookie = dict(decode(frames[0]).tags())[Tag.AC_COOKIE]
    ac.receive_frame(padr(SUB, cookie, b"iptv"), 1.0)
    code, got, tags, _ = one_frame(ac)
    assert (code, got) == (Code.PADS, 0)
    assert Tag.SERVICE_NAME_ERROR in tags


def test_padr_at_the_limit_gets_ac_system_error() -> None:
    ac = server(max_sessions=1)
    ac.receive_frame(padi(src=OTHER), 0.0)
    _, _, tags, _ = one_frame(ac)
    discover(ac)
    ac.receive_frame(padr(OTHER, tags[Tag.AC_COOKIE]), 1.0)
    code, got, tags, _ = one_frame(ac)
    assert (code, got) == (Code.PADS, 0) and Tag.AC_SYSTEM_ERROR in tags
    assert len(ac.sessions) == 1


def test_ids_are_unique_and_bounded() -> None:
    ac = server(max_sessions=300)
    ids = set()
    for n in range(300):
        mac = bytes([2, 0, 0, 0, n >> 8, n & 0xFF])
        ids.add(discover(ac, src=mac, host_uniq=None))
    assert len(ids) == 300 and all(1 <= i <= 0xFFFE for i in ids)
    for sid in list(ids)[:10]:
        ac.terminate(sid)
    assert len(ac.sessions) == 290


def test_relay_session_id_is_echoed() -> None:
    ac = server()
    tags = [(int(Tag.SERVICE_NAME), b""), (int(Tag.RELAY_SESSION_ID), b"relay-7")]
    ac.receive_frame(encode_discovery(BROADCAST, SUB, Code.PADI, 0, tags), 0.0)
    _, _, got, _ = one_frame(ac)
    assert got[Tag.RELAY_SESSION_ID] == b"relay-7"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00" * 13,
        AC + SUB + b"\x08\x00" + b"\x11\x09\x00\x00\x00\x00",  # IPv4 ethertype
        AC + SUB + b"\x88\x63" + b"\x21\x09\x00\x00\x00\x00",  # version 2
        AC + SUB + b"\x88\x63" + b"\x11\x09\x00\x00\x00\x10",  # LENGTH past the end
        AC + SUB + b"\x88\x63" + b"\x11\x09\x00\x00\x00\x06" + b"\x01\x01\x00\x09ab",  # tag past
        AC + SUB + b"\x88\x63" + b"\x11\x09\x00\x00\x00\x00",  # PADI without Service-Name
        AC + SUB + b"\x88\x63" + b"\x11\x65\x00\x00\x00\x00",  # a PADS sent to us
    ],
)
def test_bad_frames_are_dropped_and_counted(frame: bytes) -> None:
    ac = server()
    ac.receive_frame(frame, 0.0)
    assert ac.frames_to_send() == [] and ac.next_event() is None
    assert sum(v for k, v in ac.counters.items() if k.startswith("drop_")) == 1


def test_frames_for_another_station_are_ignored() -> None:
    ac = server()
    ac.receive_frame(encode_discovery(OTHER, SUB, Code.PADR, 0, []), 0.0)
    assert ac.counters["drop_not_ours"] == 1


@given(st.binary(max_size=80))
def test_random_bytes_never_raise(data: bytes) -> None:
    ac = server()
    ac.receive_frame(data, 0.0)
    ac.receive_frame(AC + SUB + b"\x88\x63" + data, 0.0)
    ac.receive_frame(AC + SUB + b"\x88\x64" + data, 0.0)
    with contextlib.suppress(PppoeDecodeError):
        decode(data)


def test_ethertypes() -> None:
    assert (ETH_P_PPP_DISC, ETH_P_PPP_SES) == (0x8863, 0x8864)
