"""The tunnel core's less travelled paths: malformed input, commands on calls that are gone
or not yet answered, refused requests, a full session table, and the trace lines of each."""

from __future__ import annotations

import logging
import random

import pytest

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Avp, CallErrors, ResultCode
from kl2tp.l2tp.constants import AvpType as A
from kl2tp.l2tp.constants import MessageType as MT
from kl2tp.l2tp.message import ControlMessage, DataMessage, decode
from kl2tp.l2tp.session import CommandError
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig, TunnelInput, TunnelState
from tests.l2tp.helpers import Pair
from tests.l2tp.test_fsm_table import PEER_TID, Peer, _start_avps, _tunnel_in


def _established(config: TunnelConfig | None = None) -> Peer:
    tunnel = Tunnel(config or TunnelConfig(), 555, initiator=False, rng=random.Random(5), now=0.0)
    peer = Peer(tunnel)
    peer.send(MT.SCCRQ, *_start_avps())
    peer.send(MT.SCCCN)
    peer.read()
    peer.events()
    return peer


def test_repr_names_ids_and_state() -> None:
    peer = _tunnel_in("established")
    assert repr(peer.tunnel) == f"<Tunnel 555/{PEER_TID} established>"


def test_firmware_revision_is_advertised_when_configured() -> None:
    tunnel = Tunnel(
        TunnelConfig(firmware_revision=0x0102), 1, initiator=True, rng=random.Random(), now=0.0
    )
    tunnel.connect(0.0)
    (sccrq,) = (decode(d) for d in tunnel.datagrams_to_send(0.0))
    assert isinstance(sccrq, ControlMessage) and sccrq.get(A.FIRMWARE_REVISION) == 0x0102


def test_garbage_is_counted_and_dropped_with_a_trace(caplog: pytest.LogCaptureFixture) -> None:
    peer = _tunnel_in("established")
    tunnel = peer.tunnel
    with caplog.at_level(logging.DEBUG, logger="kl2tp.l2tp"):
        tunnel.receive_datagram(b"\xc8\x02\x00", 0.0)  # control header cut short
        # Control flags, length 8: too short for Ns/Nr, and an error the decoder reports as
        # a protocol error (no room for the Message Type AVP).
        tunnel.receive_datagram(b"\xc8\x02\x00\x08\x00\x00\x00\x00", 0.0)
    assert tunnel.counters["malformed"] == 2
    assert "Dropped malformed packet" in caplog.text
    assert tunnel.state == "established" and peer.read() == []


def test_decoded_messages_can_be_fed_directly() -> None:
    """The endpoint decodes an SCCRQ to demux it and hands the message over; data too."""
    tunnel = Tunnel(TunnelConfig(), 9, initiator=False, rng=random.Random(1), now=0.0)
    sccrq = ControlMessage(MT.SCCRQ, 0, 0, 0, 0, _start_avps())
    tunnel.receive_message(sccrq, 0.0)
    assert tunnel.state == "wait-ctl-conn"
    tunnel.receive_message(DataMessage(9, 1, None, None, b"\xff\x03"), 0.0)
    assert tunnel.counters["data_dropped"] == 1  # no such session


def test_place_call_needs_a_free_session_id() -> None:
    peer = _tunnel_in("established")
    tunnel = peer.tunnel
    tunnel.sessions = dict.fromkeys(range(1, 0xFFFF))  # type: ignore[arg-type]
    with pytest.raises(CommandError, match="no free session id"):
        tunnel.place_call(0.0, ev.CallParams())


def test_request_without_a_free_session_id_is_refused_with_cdn_2_error_4() -> None:
    peer = _established()
    tunnel = peer.tunnel
    tunnel.sessions = dict.fromkeys(range(1, 0xFFFF))  # type: ignore[arg-type]
    peer.send(MT.ICRQ, Avp(A.ASSIGNED_SESSION_ID, 33), Avp(A.CALL_SERIAL_NUMBER, 1))
    datagrams = [decode(d) for d in tunnel.datagrams_to_send(0.0)]
    (cdn,) = [m for m in datagrams if isinstance(m, ControlMessage) and m.msg_type is MT.CDN]
    result = cdn.get(A.RESULT_CODE)
    assert result == ResultCode(2, 4, "no free session id")  # insufficient resources
    assert cdn.session_id == 33 and cdn.get(A.ASSIGNED_SESSION_ID) == 1


def test_malformed_request_is_refused_with_cdn_2_and_creates_no_session() -> None:
    peer = _established()
    peer.send(MT.ICRQ, Avp(A.ASSIGNED_SESSION_ID, 33))  # no Call Serial Number: a MUST
    assert peer.read() == ["CDN"]
    assert peer.tunnel.sessions == {} and peer.tunnel.state == "established"


def test_request_that_names_no_peer_session_cannot_be_answered() -> None:
    peer = _established()
    peer.send(MT.OCRQ, Avp(A.CALL_SERIAL_NUMBER, 1))
    assert peer.read() == [] and peer.tunnel.counters["rejected_requests"] == 1


def test_broken_message_for_a_session_clears_that_session() -> None:
    """A malformed ICCN addressed by header session id: CDN 2 for that call only."""
    peer = _established()
    tunnel = peer.tunnel
    peer.send(MT.ICRQ, Avp(A.ASSIGNED_SESSION_ID, 33), Avp(A.CALL_SERIAL_NUMBER, 1))
    (incoming,) = peer.events()
    assert incoming == "call"
    (sid,) = tunnel.sessions
    tunnel.answer_call(sid, 0.0)
    assert peer.read() == ["ICRP"]
    peer.send(MT.ICCN, sid=sid)  # Tx Connect Speed and Framing Type missing
    assert peer.read() == ["CDN"] and tunnel.sessions == {}
    assert tunnel.state == "no-sessions-left"


def test_protocol_errors_while_closing_are_only_counted() -> None:
    peer = _tunnel_in("shutting-down")
    peer.send(MT.SCCRQ)  # invalid (no AVPs) as well as out of place
    assert peer.read() == [] and peer.tunnel.counters["protocol_errors"] == 1
    assert peer.tunnel.state == "shutting-down"


def test_commands_on_a_call_that_is_gone_are_ignored() -> None:
    peer = _tunnel_in("established")
    tunnel = peer.tunnel
    tunnel.answer_call(99, 0.0)
    tunnel.connect_call(99, 0.0)
    tunnel.hangup(99, 0.0, 3)
    tunnel.send_wan_error(99, 0.0, CallErrors())
    tunnel.set_link_info(99, 0.0, 0, 0)
    tunnel.data_ready(99, 0.0)
    tunnel.send_data(99, b"\xff\x03")
    assert peer.read() == [] and peer.events() == [] and tunnel.counters["data_dropped"] == 1


def test_connect_info_given_before_the_icrp_goes_into_the_iccn() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.lac.connect_call(sid, pair.now, ev.ConnectInfo(tx_connect_speed=33600))
    pair.lac.connect_call(sid, pair.now)  # None keeps what was given
    pair.run(pair.now + 1.0)
    (up,) = pair.of_type("lns", ev.CallEstablished)
    assert up.info.tx_connect_speed == 33600


def test_calls_placed_while_connecting_go_out_once_established() -> None:
    """Only calls still waiting for the tunnel are started; one cleared meanwhile is not."""
    pair = Pair()
    pair.lac.connect(pair.now)
    kept = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    gone = pair.lac.place_call(pair.now, ev.CallParams(serial=2))
    pair.lac.hangup(gone, pair.now, 3)
    pair.run(pair.now + 1.0)
    assert list(pair.lac.sessions) == [kept]
    assert pair.lac.sessions[kept].state == "established"
    assert [e.call.serial for e in pair.of_type("lns", ev.IncomingCall)] == [1]


def test_answered_outgoing_call_connects_with_the_given_info() -> None:
    """CONTRACT 2: the LAC answering an OCRQ sends OCRP and OCCN itself."""
    seen: list[ev.Event] = []

    def policy(tunnel: Tunnel, event: ev.Event, now: float) -> None:
        seen.append(event)
        if isinstance(event, ev.IncomingCall):
            tunnel.answer_call(event.sid, now, ev.ConnectInfo(tx_connect_speed=2_048_000))

    pair = Pair(policy=policy)
    pair.establish()
    call = ev.CallParams(serial=7, called_number="5551234")
    sid = pair.lns.place_call(pair.now, call)
    pair.run(pair.now + 1.0)
    (incoming,) = pair.of_type("lac", ev.IncomingCall)
    assert incoming.outgoing and incoming.peer_sid == sid
    (lac_up,) = pair.of_type("lac", ev.CallEstablished)
    (lns_up,) = pair.of_type("lns", ev.CallEstablished)
    assert lac_up.info.tx_connect_speed == lns_up.info.tx_connect_speed == 2_048_000
    assert lac_up.call.called_number == lns_up.call.called_number == "5551234"
    assert lns_up.call == call
    lac_types = [decode(d) for name, d in pair.wire if name == "lac"]
    sent = [m.msg_type for m in lac_types if isinstance(m, ControlMessage) and m.msg_type]
    assert sent[-2:] == [MT.OCRP, MT.OCCN]


def test_stopccn_trace_and_retries_trace(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kl2tp.l2tp"):
        peer = _tunnel_in("established")
        rc = Avp(A.RESULT_CODE, ResultCode(6))
        peer.send(MT.STOPCCN, Avp(A.ASSIGNED_TUNNEL_ID, PEER_TID), rc)
        gone = _tunnel_in("wait-ctl-conn")
        gone.tunnel.fire(TunnelInput.RETRIES_EXHAUSTED, 0.0)
    assert f"I StopCCN from peer tnl {PEER_TID}" in caplog.text
    assert "No response after 5 retransmissions, shutdown tunnel" in caplog.text
    assert peer.tunnel.state == gone.tunnel.state == TunnelState.CLOSED
