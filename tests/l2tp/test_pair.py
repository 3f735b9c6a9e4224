"""A LAC core and an LNS core back to back in memory: the whole life of a tunnel."""

from __future__ import annotations

import logging

import pytest

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import CallErrors
from kl2tp.l2tp.session import CommandError
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig

from .helpers import LAC_TID, LNS_TID, Pair, msg_types

SECRET = b"hello"


def test_tunnel_up_with_authentication_then_idle_teardown() -> None:
    pair = Pair(
        TunnelConfig(hostname="hgw", secret=SECRET, idle_timeout=15.0),
        TunnelConfig(hostname="l2tp-gw", secret=SECRET, idle_timeout=10.0),
    )
    pair.establish()
    assert msg_types(d for _, d in pair.wire) == ["SCCRQ", "SCCRP", "SCCCN", "ZLB"]
    assert pair.lac.peer_tunnel_id == LNS_TID and pair.lns.peer_tunnel_id == LAC_TID
    assert pair.lac.peer_hostname == "l2tp-gw" and pair.lns.peer_hostname == "hgw"
    assert pair.of_type("lac", ev.TunnelEstablished) == [ev.TunnelEstablished(LNS_TID, "l2tp-gw")]
    assert pair.of_type("lns", ev.TunnelEstablished) == [ev.TunnelEstablished(LAC_TID, "hgw")]

    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1, called_number="614629"))
    pair.run(pair.now + 1.0)
    pair.lac.hangup(sid, pair.now, result=1)
    pair.run(pair.now + 1.0)
    assert pair.lac.state == "no-sessions-left"
    assert pair.lns.state == "no-sessions-left"
    start = pair.now
    # The LNS's 10 s idle timer fires first: it sends StopCCN result 1, the LAC acks.
    pair.run(start + 20.0)
    assert pair.lac.state == "closed" and pair.lns.state == "closed"
    assert pair.of_type("lac", ev.TunnelClosed) == [ev.TunnelClosed(1, 0, "", True)]
    assert pair.of_type("lns", ev.TunnelClosed) == [ev.TunnelClosed(1, 0, "", False)]
    stop = [d for who, d in pair.wire if who == "lns" and msg_types([d]) == ["StopCCN"]]
    assert len(stop) == 1


def test_thousand_sessions_up_and_down() -> None:
    pair = Pair(
        TunnelConfig(hostname="hgw", receive_window=64),
        TunnelConfig(hostname="l2tp-gw", receive_window=64),
    )
    pair.establish()
    n = 1000
    sids = [
        pair.lac.place_call(pair.now, ev.CallParams(serial=i, calling_number=str(i)))
        for i in range(n)
    ]
    assert len(set(sids)) == n and 0 not in sids
    pair.run(pair.now + 5.0)

    lac_up = pair.of_type("lac", ev.CallEstablished)
    lns_up = pair.of_type("lns", ev.CallEstablished)
    assert sorted(e.sid for e in lac_up) == sorted(sids)
    assert len(lns_up) == n and len({e.sid for e in lns_up}) == n
    # Each side's peer id is the other side's local id.
    lns_sids = {e.sid for e in lns_up}
    assert {e.peer_sid for e in lac_up} == lns_sids
    assert {e.peer_sid for e in lns_up} == set(sids)
    assert all(s.state == "established" for s in pair.lac.sessions.values())
    assert all(s.state == "established" for s in pair.lns.sessions.values())
    incoming = pair.of_type("lns", ev.IncomingCall)
    assert sorted(e.call.serial for e in incoming) == list(range(n))

    # Half cleared by the LAC, half by the LNS.
    for sid in sids[: n // 2]:
        pair.lac.hangup(sid, pair.now, result=1)
    for e in lns_up[n // 2 :]:
        pair.lns.hangup(e.sid, pair.now, result=3, message="admin")
    pair.run(pair.now + 5.0)

    assert pair.lac.sessions == {} and pair.lns.sessions == {}
    assert pair.lac._peer_sids == {} and pair.lns._peer_sids == {}
    lac_closed = pair.of_type("lac", ev.CallClosed)
    lns_closed = pair.of_type("lns", ev.CallClosed)
    assert len(lac_closed) == n and len(lns_closed) == n
    assert sum(e.by_peer for e in lac_closed) == n - n // 2
    assert sum(e.by_peer for e in lns_closed) == n // 2
    assert {e.result for e in lns_closed if e.by_peer} == {1}
    assert {(e.result, e.message) for e in lac_closed if e.by_peer} == {(3, "admin")}
    assert pair.lac.state == pair.lns.state == "no-sessions-left"
    # Nothing left to retransmit on either side.
    assert pair.lac.transport.unacked == 0 and pair.lns.transport.unacked == 0

    pair.lac.close(pair.now)
    pair.run(pair.now + 1.0)
    assert pair.lac.state == "closed" and pair.lns.state == "closed"
    assert pair.lac.counters["retransmits"] == 0 and pair.lns.counters["retransmits"] == 0
    assert pair.lac.counters["out_ICRQ"] == n and pair.lns.counters["in_ICCN"] == n


def test_outgoing_call_placed_by_the_lns() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lns.place_call(
        pair.now, ev.CallParams(serial=7, called_number="5551234", bearer_type=1, framing_type=1)
    )
    pair.run(pair.now + 1.0)
    (incoming,) = pair.of_type("lac", ev.IncomingCall)
    assert incoming.outgoing and incoming.call.called_number == "5551234"
    (up,) = pair.of_type("lns", ev.CallEstablished)
    assert up.sid == sid and up.info.tx_connect_speed == 128000
    assert pair.lns.sessions[sid].state == "established"
    assert pair.lac.sessions[incoming.sid].state == "established"
    assert msg_types(d for _, d in pair.wire[4:]) == ["OCRQ", "OCRP", "OCCN", "ZLB"]


def test_call_placed_before_the_tunnel_is_up_waits_for_it() -> None:
    pair = Pair()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    assert pair.lac.sessions[sid].state == "wait-for-tunnel"
    pair.lac.connect(pair.now)
    pair.run(1.0)
    assert pair.lac.sessions[sid].state == "established"
    assert msg_types(d for _, d in pair.wire) == [
        "SCCRQ",
        "SCCRP",
        "SCCCN",
        "ICRQ",
        "ICRP",
        "ICCN",
        "ZLB",
    ]


def test_proxy_lcp_and_auth_reach_the_lns() -> None:
    info = ev.ConnectInfo(
        tx_connect_speed=64000,
        rx_connect_speed=64000,
        framing_type=2,
        last_sent_lcp_confreq=bytes.fromhex("0305c223050506109d08f2"),
        last_rx_lcp_confreq=bytes.fromhex("05066ee4e865"),
        proxy_authen_type=2,
        proxy_authen_name="2500-1",
        proxy_authen_challenge=bytes.fromhex("5d0d008cb1677cf8bc354556321a7a74"),
        proxy_authen_id=6,
        proxy_authen_response=bytes.fromhex("ca1cc2e4fa6899e8df1b695c0a80883e"),
        sequencing_required=True,
    )
    pair = Pair()
    pair.establish()
    pair.lac.place_call(pair.now, ev.CallParams(serial=1, calling_number="2085730592"), info)
    pair.run(pair.now + 1.0)
    (up,) = pair.of_type("lns", ev.CallEstablished)
    assert up.info == info


def test_data_messages_flow_both_ways() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1.0)
    (up,) = pair.of_type("lns", ev.CallEstablished)
    pair.lac.send_data(sid, b"\xc0\x21\x01\x01\x00\x04")
    pair.lns.send_data(up.sid, b"\x80\x21")
    pair.pump()
    assert pair.of_type("lns", ev.DataReceived) == [
        ev.DataReceived(up.sid, b"\xc0\x21\x01\x01\x00\x04")
    ]
    assert pair.of_type("lac", ev.DataReceived) == [ev.DataReceived(sid, b"\x80\x21")]


def test_wrong_secret_gives_stopccn_result_4() -> None:
    pair = Pair(
        TunnelConfig(hostname="hgw", secret=b"hello"),
        TunnelConfig(hostname="l2tp-gw", secret=b"wrong"),
    )
    pair.lac.connect(pair.now)
    pair.run(5.0)
    # The LAC checks the LNS's response in the SCCRP first and refuses it.
    (closed,) = pair.of_type("lns", ev.TunnelClosed)
    assert closed.result == 4 and closed.by_peer
    assert pair.lac.state == "closed" and pair.lns.state == "closed"
    assert pair.lac.counters["auth_failures"] == 1


def test_responder_with_secret_refuses_initiator_without_one() -> None:
    pair = Pair(TunnelConfig(hostname="hgw"), TunnelConfig(hostname="l2tp-gw", secret=SECRET))
    pair.lac.connect(pair.now)
    pair.run(5.0)
    # The LNS challenges; the LAC has no secret to answer with and sends StopCCN 4.
    (closed,) = pair.of_type("lns", ev.TunnelClosed)
    assert (closed.result, closed.by_peer) == (4, True)
    assert pair.lns.counters.get("in_SCCCN", 0) == 0


def test_initiator_with_secret_refuses_responder_without_one() -> None:
    pair = Pair(TunnelConfig(hostname="hgw", secret=SECRET), TunnelConfig(hostname="l2tp-gw"))
    pair.lac.connect(pair.now)
    pair.run(5.0)
    # The LNS cannot answer the LAC's challenge: it refuses the SCCRQ with StopCCN 4.
    (closed,) = pair.of_type("lac", ev.TunnelClosed)
    assert (closed.result, closed.by_peer) == (4, True)
    assert msg_types(d for _, d in pair.wire) == ["SCCRQ", "StopCCN", "ZLB"]


def test_tunnel_close_clears_every_session_on_both_sides() -> None:
    pair = Pair()
    pair.establish()
    for i in range(10):
        pair.lac.place_call(pair.now, ev.CallParams(serial=i))
    pair.run(pair.now + 1.0)
    pair.lns.close(pair.now, result=6, message="shutting down")
    pair.run(pair.now + 1.0)
    assert pair.lac.sessions == {} and pair.lns.sessions == {}
    assert len(pair.of_type("lac", ev.CallClosed)) == 10
    assert len(pair.of_type("lns", ev.CallClosed)) == 10
    assert pair.of_type("lac", ev.TunnelClosed) == [ev.TunnelClosed(6, 0, "shutting down", True)]
    assert pair.of_type("lns", ev.TunnelClosed) == [ev.TunnelClosed(6, 0, "shutting down", False)]


def test_hello_after_silence_keeps_the_tunnel_up() -> None:
    cfg = TunnelConfig(hostname="x", hello_interval=30.0, idle_timeout=0)
    pair = Pair(cfg, cfg)
    pair.establish()
    pair.run(100.0)
    assert pair.lac.state == pair.lns.state == "established"
    # Whoever's timer runs out first says hello; hearing anything resets the other side's.
    sent = pair.lac.counters.get("out_HELLO", 0) + pair.lns.counters.get("out_HELLO", 0)
    heard = pair.lac.counters.get("in_HELLO", 0) + pair.lns.counters.get("in_HELLO", 0)
    assert sent == heard == 3  # at about 30, 60 and 90 s


def test_trace_reads_like_ios(caplog: pytest.LogCaptureFixture) -> None:
    pair = Pair(
        TunnelConfig(hostname="hgw", secret=SECRET, idle_timeout=15.0),
        TunnelConfig(hostname="l2tp-gw", secret=SECRET),
    )
    with caplog.at_level(logging.DEBUG, logger="kl2tp.l2tp"):
        pair.establish()
        sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
        pair.run(pair.now + 1.0)
        pair.lac.hangup(sid, pair.now, 1)
        pair.run(pair.now + 1.0)
    text = caplog.text
    for expected in (
        "Tnl 17688 L2TP: O SCCRQ\n",
        "Tnl 17688 L2TP: O SCCRQ, flg TLS, ver 2, len ",
        "Tnl 17688 L2TP: Tunnel state change from idle to wait-ctl-reply",
        "Tnl 17688 L2TP: I SCCRP from l2tp-gw",
        "Tnl 17688 L2TP: Got a challenge from remote peer, l2tp-gw",
        "Tnl 17688 L2TP: Tunnel Authentication success",
        "Tnl 55270 L2TP: Tunnel Authentication success",
        "Tnl 17688 L2TP: O SCCCN  to l2tp-gw tnlid 55270",
        "Tnl 55270 L2TP: O ZLB ctrl ack, flg TLS, ver 2, len 12, tnl 17688, cl 0, ns 1, nr 2",
        f"Tnl/Cl 17688/{sid} L2TP: Session state change from wait-reply to wait-connect",
        f"Tnl/Cl 17688/{sid} L2TP: O ICCN to l2tp-gw 55270/",
        f"Tnl/Cl 17688/{sid} L2TP: Session state change from wait-connect to established",
        "Tnl 17688 L2TP: Tunnel state change from established to no-sessions-left",
        "No more sessions in tunnel, shutdown (likely) in 15 seconds",
    ):
        assert expected in text
    # The LAC's call passes through wait-connect: the ICCN goes between the two changes.
    (lns_call,) = pair.of_type("lns", ev.CallEstablished)
    lns_sid = lns_call.sid
    call_lines = [line for line in text.splitlines() if f"Tnl/Cl 17688/{sid} " in line]
    assert [line.split("L2TP: ", 1)[1].split(" to l2tp-gw")[0] for line in call_lines[:6]] == [
        "Session state change from idle to wait-for-tunnel",
        "O ICRQ",
        "Session state change from wait-for-tunnel to wait-reply",
        f"I ICRP from l2tp-gw tnl 55270, cl {lns_sid}",
        "Session state change from wait-reply to wait-connect",
        "O ICCN",
    ]
    assert "Session state change from wait-connect to established" in call_lines[6]
    assert "hello" not in text.replace("hgw", "")  # the secret never shows


def test_avp_parse_lines_only_at_the_most_verbose_level(caplog: pytest.LogCaptureFixture) -> None:
    pair = Pair()
    with caplog.at_level(logging.DEBUG, logger="kl2tp.l2tp"):
        pair.establish()
    assert "Parse  AVP" not in caplog.text
    caplog.clear()
    pair = Pair()
    with caplog.at_level(5, logger="kl2tp.l2tp.avp"):
        pair.establish()
    assert "Tnl 55270 L2TP: Parse SCCRQ" in caplog.text
    assert "Tnl 55270 L2TP: Parse  AVP 7, len 9, flag 0x8000 (M)" in caplog.text
    assert "Tnl 55270 L2TP: Hostname hgw" in caplog.text
    assert "Tnl 17688 L2TP: Rx Window Size 16" in caplog.text


def test_unknown_session_cdn_is_acked_and_dropped() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1.0)
    # Both sides hang up at once: each CDN reaches a peer that already forgot the call.
    (up,) = pair.of_type("lns", ev.CallEstablished)
    pair.lac.hangup(sid, pair.now, 1)
    pair.lns.hangup(up.sid, pair.now, 3)
    pair.run(pair.now + 2.0)
    assert pair.lac.counters["unknown_session"] == 1 and pair.lns.counters["unknown_session"] == 1
    assert pair.lac.transport.unacked == 0 and pair.lns.transport.unacked == 0


def test_tunnel_objects_expose_show_fields() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1.0)
    lac: Tunnel = pair.lac
    session = lac.sessions[sid]
    assert (lac.state, lac.local_tunnel_id, lac.peer_tunnel_id, lac.peer_hostname) == (
        "established",
        LAC_TID,
        LNS_TID,
        "l2tp-gw",
    )
    assert session.peer_sid in pair.lns.sessions and session.created == pair.now - 1.0
    assert all(isinstance(v, int) for v in lac.counters.values())


def test_wen_and_sli_between_the_pair() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1.0)
    (up,) = pair.of_type("lns", ev.CallEstablished)
    pair.lns.set_link_info(up.sid, pair.now, 0xFFFFFFFF, 0)
    pair.lac.send_wan_error(sid, pair.now, CallErrors(crc_errors=2))
    pair.run(pair.now + 1.0)
    assert pair.of_type("lac", ev.LinkInfo) == [ev.LinkInfo(sid, 0xFFFFFFFF, 0)]
    assert pair.of_type("lns", ev.WanError) == [ev.WanError(up.sid, (2, 0, 0, 0, 0, 0))]
    with pytest.raises(CommandError):
        pair.lac.set_link_info(sid, pair.now, 0, 0)  # SLI goes LNS -> LAC only


def test_close_before_the_peer_answered_stops_quietly() -> None:
    pair = Pair()
    pair.lac.connect(pair.now)
    pair.lac.datagrams_to_send(pair.now)  # the SCCRQ is lost
    pair.lac.close(pair.now, 6)
    assert pair.lac.state == "closed" and pair.lac.datagrams_to_send(pair.now) == []
    assert pair.of_type("lac", ev.TunnelClosed) == [] and pair.lac.next_event() == (
        ev.TunnelClosed(6, 0, "", False)
    )


def test_deferred_call_connects_when_the_lac_is_ready() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1), defer_connect=True)
    pair.run(pair.now + 5.0)
    # The LNS answered and waits for the ICCN; both sides keep the call, nothing times out.
    (answered,) = pair.of_type("lac", ev.CallAnswered)
    (incoming,) = pair.of_type("lns", ev.IncomingCall)
    assert answered == ev.CallAnswered(sid, incoming.sid)
    assert pair.lac.sessions[sid].state == pair.lns.sessions[incoming.sid].state == "wait-connect"
    assert pair.of_type("lac", ev.CallEstablished) == pair.of_type("lns", ev.CallEstablished) == []
    assert pair.lac.counters["retransmits"] == pair.lns.counters["retransmits"] == 0

    pair.lac.connect_call(sid, pair.now, ev.ConnectInfo(tx_connect_speed=2_000_000))
    pair.run(pair.now + 1.0)
    (up,) = pair.of_type("lns", ev.CallEstablished)
    assert (up.sid, up.peer_sid, up.info.tx_connect_speed) == (incoming.sid, sid, 2_000_000)
    assert pair.of_type("lac", ev.CallEstablished) == [
        ev.CallEstablished(
            sid, incoming.sid, ev.ConnectInfo(tx_connect_speed=2_000_000), ev.CallParams(serial=1)
        )
    ]
    assert up.call == ev.CallParams(serial=1)  # the LNS's side: what its ICRQ carried
    types = msg_types(d for _, d in pair.wire[4:])
    assert types == ["ICRQ", "ICRP", "ZLB", "ICCN", "ZLB"]


@pytest.mark.parametrize("who", ["lac-hangup", "lns-hangup", "lns-close"])
def test_deferred_call_cleared_before_it_connects(who: str) -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1), defer_connect=True)
    pair.run(pair.now + 1.0)
    (incoming,) = pair.of_type("lns", ev.IncomingCall)
    if who == "lac-hangup":
        pair.lac.hangup(sid, pair.now, 3)
    elif who == "lns-hangup":
        pair.lns.hangup(incoming.sid, pair.now, 4)
    else:
        pair.lns.close(pair.now, 6)
    pair.run(pair.now + 1.0)
    assert pair.lac.sessions == {} and pair.lns.sessions == {}
    (lac_closed,) = pair.of_type("lac", ev.CallClosed)
    (lns_closed,) = pair.of_type("lns", ev.CallClosed)
    assert lac_closed.sid == sid and lns_closed.sid == incoming.sid
    assert lac_closed.by_peer is (who != "lac-hangup")
    # A connect_call racing the clearing is ignored: the call is gone.
    pair.lac.connect_call(sid, pair.now)
    assert pair.lac.datagrams_to_send(pair.now) == []


def test_defer_connect_does_not_change_an_lns_outgoing_call() -> None:
    pair = Pair()
    pair.establish()
    sid = pair.lns.place_call(
        pair.now, ev.CallParams(serial=7, called_number="1"), defer_connect=True
    )
    pair.run(pair.now + 1.0)
    assert pair.lns.sessions[sid].state == "established"
    assert pair.of_type("lns", ev.CallAnswered) == []
