"""The tunnel core against the reference IOS trace, byte for byte, and its error paths.

Secret "hello"; the LNS is l2tp-gw (tunnel 55270, session 45), the LAC is hgw (tunnel 17688,
session 7). The cores get the trace's challenges and ids through a FixedRandom, so what they
send must equal what the Cisco boxes sent.
"""

from __future__ import annotations

import random

import pytest

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Avp, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import AvpType as A
from kl2tp.l2tp.constants import MessageType as MT
from kl2tp.l2tp.message import ControlMessage, decode, encode_control
from kl2tp.l2tp.session import CommandError
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig, retransmission_cycle, tie_breaker_loses

from .helpers import LAC_TID, LNS_TID, FixedRandom, Pair, msg_types

SECRET = b"hello"
LAC_CHALLENGE = bytes.fromhex("545a2343fbe20ea08bca7b56e4a7d29e")
LNS_CHALLENGE = bytes.fromhex("98b296c28429e7adc767237a45f31040")
SCCRP_RESPONSE = bytes.fromhex("7c358f7a7ba21957c07801195dcadfa6")


def h(dump: str) -> bytes:
    return bytes.fromhex(dump)


# Complete dumps from the trace.
SCCCN = h(
    "C8 02 00 2A D7 E6 00 00 00 01 00 01 80 08 00 00 00 00 00 03 80 16 00 00 00 0D"
    " 96 39 53 18 41 AC 22 E3 10 3E 20 8E F7 D9 09 89"
)
ICRP = h("C8 02 00 1C 45 18 00 07 00 01 00 03 80 08 00 00 00 00 00 0B 80 08 00 00 00 0E 00 2D")
CDN = h(
    "C8 02 00 26 D7 E6 00 2D 00 04 00 02 80 08 00 00 00 00 00 0E 80 08 00 00 00 0E 00 07"
    " 80 0A 00 00 00 01 00 01 00 00"
)
STOPCCN = h(
    "C8 02 00 24 45 18 00 00 00 02 00 05 80 08 00 00 00 00 00 04 80 08 00 00 00 09 D7 E6"
    " 80 08 00 00 00 01 00 01"
)
ZLB_LNS_AFTER_SCCCN = h("C8 02 00 0C 45 18 00 00 00 01 00 02")
ZLB_LNS_AFTER_ICCN = h("C8 02 00 0C 45 18 00 00 00 02 00 04")
ZLB_LNS_AFTER_CDN = h("C8 02 00 0C 45 18 00 00 00 02 00 05")
ZLB_LAC_AFTER_STOPCCN = h("C8 02 00 0C D7 E6 00 00 00 05 00 03")


def sccrq_from_hgw(**overrides: object) -> ControlMessage:
    """The trace's SCCRQ (IOS only dumped its first 47 bytes; its AVPs are in the parse lines)."""
    avps = {
        A.PROTOCOL_VERSION: ProtocolVersion(1, 0),
        A.FRAMING_CAPABILITIES: 3,
        A.BEARER_CAPABILITIES: 3,
        A.FIRMWARE_REVISION: 0x1130,
        A.HOST_NAME: "hgw",
        A.VENDOR_NAME: "Cisco Systems, Inc.",
        A.ASSIGNED_TUNNEL_ID: LAC_TID,
        A.RECEIVE_WINDOW_SIZE: 800,
        A.CHALLENGE: LAC_CHALLENGE,
    }
    for key, value in overrides.items():
        avps[A[key.upper()]] = value
    return ControlMessage(
        MT.SCCRQ, 0, 0, 0, 0, tuple(Avp(t, v) for t, v in avps.items() if v is not None)
    )


def sccrp_from_l2tp_gw() -> ControlMessage:
    avps = (
        Avp(A.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        Avp(A.FRAMING_CAPABILITIES, 3),
        Avp(A.BEARER_CAPABILITIES, 3),
        Avp(A.FIRMWARE_REVISION, 0x1120),
        Avp(A.HOST_NAME, "l2tp-gw"),
        Avp(A.VENDOR_NAME, "Cisco Systems, Inc."),
        Avp(A.ASSIGNED_TUNNEL_ID, LNS_TID),
        Avp(A.RECEIVE_WINDOW_SIZE, 300),
        Avp(A.CHALLENGE, LNS_CHALLENGE),
        Avp(A.CHALLENGE_RESPONSE, SCCRP_RESPONSE),
    )
    return ControlMessage(MT.SCCRP, LAC_TID, 0, 0, 1, avps)


def icrq_from_hgw() -> ControlMessage:
    avps = (
        Avp(A.ASSIGNED_SESSION_ID, 7),
        Avp(A.CALL_SERIAL_NUMBER, 0xD114C7C5),
        Avp(A.BEARER_TYPE, 1),
        Avp(A.CALLING_NUMBER, "2085730592"),
        Avp(A.CALLED_NUMBER, "614629"),
        Avp(100, b"Serial0:0", vendor=9),  # Cisco "Client NAS Port", M clear
    )
    return ControlMessage(MT.ICRQ, LNS_TID, 0, 2, 1, avps)


def iccn_from_hgw() -> ControlMessage:
    avps = (
        Avp(A.TX_CONNECT_SPEED, 64000),
        Avp(A.RX_CONNECT_SPEED, 64000),
        Avp(A.FRAMING_TYPE, 2),
        Avp(A.LAST_SENT_LCP_CONFREQ, bytes.fromhex("0305c223050506109d08f2")),
        Avp(A.LAST_RECEIVED_LCP_CONFREQ, bytes.fromhex("05066ee4e865")),
        Avp(A.PROXY_AUTHEN_CHALLENGE, bytes.fromhex("5d0d008cb1677cf8bc354556321a7a74")),
        Avp(A.PROXY_AUTHEN_ID, 6),
        Avp(A.PROXY_AUTHEN_NAME, "2500-1"),
        Avp(A.PROXY_AUTHEN_RESPONSE, bytes.fromhex("ca1cc2e4fa6899e8df1b695c0a80883e")),
        Avp(A.PROXY_AUTHEN_TYPE, 2),
    )
    return ControlMessage(MT.ICCN, LNS_TID, 45, 3, 2, avps)


def events(tunnel: Tunnel) -> list[ev.Event]:
    out = []
    while (event := tunnel.next_event()) is not None:
        out.append(event)
    return out


def test_lns_core_replays_the_trace_byte_for_byte() -> None:
    rng = FixedRandom()
    rng.bytes_queue.append(LNS_CHALLENGE)
    rng.bits_queue.append(45)
    lns = Tunnel(
        TunnelConfig(hostname="l2tp-gw", secret=SECRET, receive_window=300),
        LNS_TID,
        initiator=False,
        rng=rng,
        now=0.0,
    )
    lns.receive_datagram(encode_control(sccrq_from_hgw()), 0.0)
    (sccrp_bytes,) = lns.datagrams_to_send(0.0)
    sccrp = decode(sccrp_bytes)
    assert isinstance(sccrp, ControlMessage) and sccrp.msg_type is MT.SCCRP
    assert (sccrp.tunnel_id, sccrp.ns, sccrp.nr) == (LAC_TID, 0, 1)
    assert sccrp.get(A.CHALLENGE_RESPONSE) == SCCRP_RESPONSE
    assert sccrp.get(A.CHALLENGE) == LNS_CHALLENGE
    assert sccrp.get(A.RECEIVE_WINDOW_SIZE) == 300
    assert lns.state == "wait-ctl-conn" and lns.peer_window == 800

    # The LAC's real SCCCN authenticates us; the ack goes after the delay, as a ZLB.
    lns.receive_datagram(SCCCN, 0.1)
    assert events(lns) == [ev.TunnelEstablished(LAC_TID, "hgw")]
    assert lns.state == "established"
    assert lns.datagrams_to_send(0.1) == []
    timer = lns.get_timer()
    assert timer is not None and timer == pytest.approx(0.35)
    lns.handle_timer(timer)
    assert lns.datagrams_to_send(timer) == [ZLB_LNS_AFTER_SCCCN]

    lns.receive_datagram(encode_control(icrq_from_hgw()), 0.5)
    (incoming,) = events(lns)
    assert isinstance(incoming, ev.IncomingCall) and incoming.sid == 45
    assert incoming.call == ev.CallParams(
        serial=0xD114C7C5, bearer_type=1, calling_number="2085730592", called_number="614629"
    )
    lns.answer_call(45, 0.5)
    assert lns.datagrams_to_send(0.5) == [ICRP]  # the ack rides on the ICRP

    lns.receive_datagram(encode_control(iccn_from_hgw()), 0.6)
    (up,) = events(lns)
    assert isinstance(up, ev.CallEstablished) and (up.sid, up.peer_sid) == (45, 7)
    assert up.info.proxy_authen_name == "2500-1" and up.info.proxy_authen_id == 6
    assert up.info.last_rx_lcp_confreq == bytes.fromhex("05066ee4e865")
    lns.handle_timer(1.0)
    assert lns.datagrams_to_send(1.0) == [ZLB_LNS_AFTER_ICCN]

    lns.receive_datagram(CDN, 17.0)
    assert events(lns) == [ev.CallClosed(45, 1, 0, "", None, True)]
    assert lns.state == "no-sessions-left" and lns.sessions == {}
    lns.handle_timer(17.25)
    assert lns.datagrams_to_send(17.25) == [ZLB_LNS_AFTER_CDN]

    # No sessions left: the StopCCN goes 10 s later, exactly the trace's bytes.
    assert lns.get_timer() == pytest.approx(27.0)
    lns.handle_timer(27.0)
    assert lns.datagrams_to_send(27.0) == [STOPCCN]
    assert lns.state == "shutting-down"
    lns.receive_datagram(ZLB_LAC_AFTER_STOPCCN, 27.1)
    assert lns.state == "closed" and lns.done
    assert events(lns) == [ev.TunnelClosed(1, 0, "", False)]


def test_lac_core_replays_the_trace_byte_for_byte() -> None:
    rng = FixedRandom()
    rng.bytes_queue.append(LAC_CHALLENGE)
    rng.bits_queue.append(7)
    lac = Tunnel(
        TunnelConfig(hostname="hgw", secret=SECRET, receive_window=800, idle_timeout=15.0),
        LAC_TID,
        initiator=True,
        rng=rng,
        now=0.0,
    )
    lac.connect(0.0)
    (sccrq_bytes,) = lac.datagrams_to_send(0.0)
    sccrq = decode(sccrq_bytes)
    assert isinstance(sccrq, ControlMessage)
    assert (sccrq.msg_type, sccrq.tunnel_id, sccrq.ns, sccrq.nr) == (MT.SCCRQ, 0, 0, 0)
    assert sccrq.get(A.CHALLENGE) == LAC_CHALLENGE and sccrq.get(A.HOST_NAME) == "hgw"
    assert lac.state == "wait-ctl-reply"

    lac.receive_datagram(encode_control(sccrp_from_l2tp_gw()), 0.1)
    assert lac.datagrams_to_send(0.1) == [SCCCN]
    assert events(lac) == [ev.TunnelEstablished(LNS_TID, "l2tp-gw")]
    assert lac.peer_window == 300

    call = ev.CallParams(serial=0xD114C7C5, bearer_type=1)
    sid = lac.place_call(0.1, call)
    assert sid == 7
    (icrq_bytes,) = lac.datagrams_to_send(0.1)
    icrq = decode(icrq_bytes)
    assert isinstance(icrq, ControlMessage)
    assert (icrq.msg_type, icrq.tunnel_id, icrq.session_id, icrq.ns, icrq.nr) == (
        MT.ICRQ,
        LNS_TID,
        0,
        2,
        1,
    )
    lac.receive_datagram(ZLB_LNS_AFTER_SCCCN, 0.15)
    lac.receive_datagram(ICRP, 0.2)
    (iccn_bytes,) = lac.datagrams_to_send(0.2)
    iccn = decode(iccn_bytes)
    assert isinstance(iccn, ControlMessage)
    assert (iccn.msg_type, iccn.session_id, iccn.ns, iccn.nr) == (MT.ICCN, 45, 3, 2)
    assert events(lac) == [ev.CallEstablished(7, 45, ev.ConnectInfo(), call)]
    lac.receive_datagram(ZLB_LNS_AFTER_ICCN, 0.3)

    lac.hangup(7, 17.0, result=1)
    assert lac.datagrams_to_send(17.0) == [CDN]
    assert events(lac) == [ev.CallClosed(7, 1, 0, "", None, False)]
    assert lac.state == "no-sessions-left"
    lac.receive_datagram(ZLB_LNS_AFTER_CDN, 17.1)

    lac.receive_datagram(STOPCCN, 27.0)
    assert lac.datagrams_to_send(27.0) == [ZLB_LAC_AFTER_STOPCCN]  # acked at once
    assert events(lac) == [ev.TunnelClosed(1, 0, "", True)]
    assert lac.state == "closed"
    # It keeps re-acking a retransmitted StopCCN for a full retransmission cycle (31 s).
    assert not lac.done and lac.get_timer() == pytest.approx(27.0 + 31.0)
    lac.receive_datagram(STOPCCN, 28.0)
    assert lac.datagrams_to_send(28.0) == [ZLB_LAC_AFTER_STOPCCN]
    lac.handle_timer(58.0)
    assert lac.done and lac.get_timer() is None


def lac_after_icrq(*, defer_connect: bool = False) -> Tunnel:
    """The trace's LAC core, tunnel up, call 7 placed and its ICRQ sent and acked."""
    rng = FixedRandom()
    rng.bytes_queue.append(LAC_CHALLENGE)
    rng.bits_queue.append(7)
    lac = Tunnel(
        TunnelConfig(hostname="hgw", secret=SECRET, receive_window=800), LAC_TID,
        initiator=True, rng=rng, now=0.0,
    )  # fmt: skip
    lac.connect(0.0)
    lac.datagrams_to_send(0.0)
    lac.receive_datagram(encode_control(sccrp_from_l2tp_gw()), 0.1)
    assert lac.datagrams_to_send(0.1) == [SCCCN]
    call = ev.CallParams(serial=0xD114C7C5, bearer_type=1)
    assert lac.place_call(0.1, call, defer_connect=defer_connect) == 7
    lac.datagrams_to_send(0.1)
    lac.receive_datagram(ZLB_LNS_AFTER_SCCCN, 0.15)
    events(lac)
    return lac


def test_deferred_connect_sends_the_same_iccn_when_the_driver_says_so() -> None:
    auto = lac_after_icrq()
    auto.receive_datagram(ICRP, 0.2)
    (auto_iccn,) = auto.datagrams_to_send(0.2)
    call = ev.CallParams(serial=0xD114C7C5, bearer_type=1)
    assert events(auto) == [ev.CallEstablished(7, 45, ev.ConnectInfo(), call)]

    lac = lac_after_icrq(defer_connect=True)
    lac.receive_datagram(ICRP, 0.2)
    assert events(lac) == [ev.CallAnswered(7, 45, ev.ConnectInfo())]
    assert lac.sessions[7].state == "wait-connect" and lac.sessions[7].peer_sid == 45
    assert lac.datagrams_to_send(0.2) == []  # no ICCN yet (the ack may wait for it)
    lac.connect_call(7, 0.2)
    assert lac.datagrams_to_send(0.2) == [auto_iccn]  # byte for byte what the auto path sent
    assert events(lac) == [ev.CallEstablished(7, 45, ev.ConnectInfo(), call)]
    assert lac.sessions[7].state == "established"
    lac.receive_datagram(ZLB_LNS_AFTER_ICCN, 0.3)
    assert lac.transport.unacked == 0


def test_deferred_connect_acks_the_icrp_while_the_driver_prepares() -> None:
    lac = lac_after_icrq(defer_connect=True)
    lac.receive_datagram(ICRP, 0.2)
    assert events(lac) == [ev.CallAnswered(7, 45, ev.ConnectInfo())]
    # Slow preparation: the ICRP is acked by a ZLB after the ack delay, not retransmitted.
    lac.handle_timer(0.2 + 0.25)
    (zlb,) = lac.datagrams_to_send(0.45)
    ack = decode(zlb)
    assert isinstance(ack, ControlMessage) and ack.msg_type is None and (ack.ns, ack.nr) == (3, 2)
    lac.connect_call(7, 2.0, ev.ConnectInfo(tx_connect_speed=115200))
    (iccn_bytes,) = lac.datagrams_to_send(2.0)
    iccn = decode(iccn_bytes)
    assert isinstance(iccn, ControlMessage)
    assert (iccn.msg_type, iccn.session_id, iccn.ns, iccn.nr) == (MT.ICCN, 45, 3, 2)
    assert iccn.get(A.TX_CONNECT_SPEED) == 115200
    with pytest.raises(CommandError):
        lac.connect_call(7, 2.1)  # connected already


def test_lns_refuses_a_wrong_challenge_response() -> None:
    lns = Tunnel(
        TunnelConfig(secret=b"other"), LNS_TID, initiator=False, rng=random.Random(1), now=0
    )
    lns.receive_datagram(encode_control(sccrq_from_hgw()), 0.0)
    lns.datagrams_to_send(0.0)
    lns.receive_datagram(SCCCN, 0.1)
    (stop_bytes,) = lns.datagrams_to_send(0.1)
    stop = decode(stop_bytes)
    assert isinstance(stop, ControlMessage) and stop.msg_type is MT.STOPCCN
    rc = stop.get(A.RESULT_CODE)
    assert isinstance(rc, ResultCode) and rc.result == 4
    assert stop.nr == 2  # the StopCCN acks the SCCCN it refuses
    assert lns.state == "shutting-down" and events(lns) == []


def test_missing_response_is_refused_too() -> None:
    lns = Tunnel(TunnelConfig(secret=SECRET), LNS_TID, initiator=False, rng=random.Random(1), now=0)
    lns.receive_datagram(encode_control(sccrq_from_hgw()), 0.0)
    lns.datagrams_to_send(0.0)
    lns.receive_datagram(encode_control(ControlMessage(MT.SCCCN, LNS_TID, 0, 1, 1)), 0.1)
    (stop_bytes,) = lns.datagrams_to_send(0.1)
    stop = decode(stop_bytes)
    assert isinstance(stop, ControlMessage)
    assert stop.get(A.RESULT_CODE) == ResultCode(4, 0, "no challenge response in SCCCN")


def test_unsupported_protocol_version_gives_stopccn_5() -> None:
    lns = Tunnel(TunnelConfig(), LNS_TID, initiator=False, rng=random.Random(1), now=0)
    msg = sccrq_from_hgw(protocol_version=ProtocolVersion(3, 0), challenge=None)
    lns.receive_datagram(encode_control(msg), 0.0)
    (stop_bytes,) = lns.datagrams_to_send(0.0)
    stop = decode(stop_bytes)
    assert isinstance(stop, ControlMessage) and stop.tunnel_id == LAC_TID
    rc = stop.get(A.RESULT_CODE)
    assert isinstance(rc, ResultCode) and rc.result == 5


def test_unknown_mandatory_avp_in_a_tunnel_message_ends_the_tunnel() -> None:
    pair = Pair()
    pair.establish()
    bad = ControlMessage(MT.HELLO, LNS_TID, 0, 2, 1, (Avp(99, b"x", mandatory=True),))
    pair.lns.receive_datagram(encode_control(bad), pair.now)
    (stop_bytes,) = pair.lns.datagrams_to_send(pair.now)
    stop = decode(stop_bytes)
    assert isinstance(stop, ControlMessage)
    rc = stop.get(A.RESULT_CODE)
    assert isinstance(rc, ResultCode) and (rc.result, rc.error) == (2, 8)


def test_unknown_mandatory_avp_in_a_session_message_clears_only_the_call() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1)
    session = pair.lac.sessions[sid]
    transport = pair.lac.transport
    unknown = Avp(99, b"x", mandatory=True)
    bad = ControlMessage(MT.SLI, LAC_TID, sid, transport.expected_ns, transport.next_ns, (unknown,))
    pair.lac.receive_datagram(encode_control(bad), pair.now)
    pair.run(pair.now + 1)
    assert pair.lac.state == "no-sessions-left" and pair.lac.sessions == {}
    (closed,) = pair.of_type("lns", ev.CallClosed)
    assert (closed.sid, closed.result, closed.error) == (session.peer_sid, 2, 8)


def test_unknown_message_type_without_m_bit_is_acked_and_ignored() -> None:
    pair = Pair()
    pair.establish()
    t = pair.lns.transport
    data = bytearray(encode_control(ControlMessage(MT.HELLO, LNS_TID, 0, t.expected_ns, 0)))
    data[12:14] = b"\x00\x08"  # Message Type AVP with M clear ...
    data[18:20] = b"\x00\x63"  # ... type 99
    before = t.expected_ns
    pair.lns.receive_datagram(bytes(data), pair.now)
    assert t.expected_ns == before + 1 and pair.lns.state == "established"
    assert pair.lns.counters["ignored_unknown_type"] == 1


def test_duplicate_icrq_makes_one_session() -> None:
    pair = Pair()
    pair.establish()
    t = pair.lns.transport
    icrq = (Avp(A.ASSIGNED_SESSION_ID, 9), Avp(A.CALL_SERIAL_NUMBER, 1))
    first = ControlMessage(MT.ICRQ, LNS_TID, 0, t.expected_ns, t.next_ns, icrq)
    second = ControlMessage(MT.ICRQ, LNS_TID, 0, t.expected_ns + 1, t.next_ns, icrq)
    pair.lns.receive_datagram(encode_control(first), pair.now)
    pair.lns.receive_datagram(encode_control(second), pair.now)
    assert len(pair.lns.sessions) == 1 and pair.lns.counters["duplicate_requests"] == 1


def test_fsm_error_in_handshake_gives_stopccn_7() -> None:
    lns = Tunnel(TunnelConfig(), LNS_TID, initiator=False, rng=random.Random(1), now=0)
    lns.receive_datagram(encode_control(sccrq_from_hgw(challenge=None)), 0.0)
    lns.datagrams_to_send(0.0)
    avps = (Avp(A.ASSIGNED_SESSION_ID, 3), Avp(A.CALL_SERIAL_NUMBER, 1))
    icrq_too_early = ControlMessage(MT.ICRQ, LNS_TID, 0, 1, 1, avps)
    lns.receive_datagram(encode_control(icrq_too_early), 0.1)
    (stop_bytes,) = lns.datagrams_to_send(0.1)
    stop = decode(stop_bytes)
    assert isinstance(stop, ControlMessage)
    rc = stop.get(A.RESULT_CODE)
    assert isinstance(rc, ResultCode) and rc.result == 7


def test_commands_in_the_wrong_state() -> None:
    pair = Pair()
    pair.establish()
    with pytest.raises(CommandError):
        pair.lac.connect(pair.now)
    sid = pair.lac.place_call(pair.now, ev.CallParams())
    with pytest.raises(CommandError):
        pair.lac.answer_call(sid, pair.now)  # the LAC's own call needs no answer
    pair.lac.answer_call(12345, pair.now)  # a gone session is ignored
    pair.lac.hangup(12345, pair.now, 1)
    pair.lac.close(pair.now)
    with pytest.raises(CommandError):
        pair.lac.place_call(pair.now, ev.CallParams())


def test_tie_breaker() -> None:
    assert tie_breaker_loses(b"\x00" * 7 + b"\x02", b"\x00" * 7 + b"\x01")
    assert not tie_breaker_loses(b"\x00" * 8, b"\xff" * 8)
    assert tie_breaker_loses(b"\x05" * 8, b"\x05" * 8)  # equal: both give way
    pair = Pair(TunnelConfig(hostname="hgw", tie_breaker=True))
    pair.establish()
    assert pair.lac.tie_breaker is not None and len(pair.lac.tie_breaker) == 8
    assert pair.lns.peer_tie_breaker == pair.lac.tie_breaker


def test_retransmission_cycle_is_31_seconds_by_default() -> None:
    assert retransmission_cycle(TunnelConfig()) == 31.0


def test_hidden_avps_with_the_secret() -> None:
    cfg = TunnelConfig(hostname="x", secret=SECRET, hide_avps=True)
    pair = Pair(cfg, cfg)
    pair.establish()
    pair.lac.place_call(pair.now, ev.CallParams(serial=5, calling_number="2085730592"))
    pair.run(pair.now + 1)
    (incoming,) = pair.of_type("lns", ev.IncomingCall)
    assert incoming.call.calling_number == "2085730592"
    icrq = next(d for who, d in pair.wire if who == "lac" and msg_types([d], SECRET) == ["ICRQ"])
    assert b"2085730592" not in icrq  # it really was hidden
