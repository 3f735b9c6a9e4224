"""The session state machines (RFC 2661 7.4) on their own, with a recording host."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Accm, Avp, CallErrors, Q931Cause, ResultCode
from kl2tp.l2tp.constants import AvpType as A
from kl2tp.l2tp.constants import MessageType as MT
from kl2tp.l2tp.errors import ProtocolError
from kl2tp.l2tp.message import ControlMessage, validate
from kl2tp.l2tp.session import (
    STATES,
    TABLES,
    CallKind,
    Clear,
    CommandError,
    Session,
    call_params_avps,
    call_params_from,
    connect_info_avps,
    connect_info_from,
    dispatch,
)
from kl2tp.l2tp.session import SessionInput as In
from kl2tp.l2tp.session import SessionState as St


class Host:
    """Records what the session asks of its tunnel."""

    def __init__(self) -> None:
        self.sent: list[tuple[MT, list[Avp], int]] = []
        self.events: list[ev.Event] = []
        self.changes: list[tuple[str, str]] = []

    def send_session(
        self, session: Session, msg_type: MT, avps: list[Avp], now: float, header_sid: int
    ) -> None:
        self.sent.append((msg_type, avps, header_sid))

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)

    def session_changed(self, session: Session, old: str, new: str, now: float) -> None:
        self.changes.append((old, new))

    def types(self) -> list[str]:
        return [m.abbrev for m, _, _ in self.sent]


def msg(msg_type: MT, *avps: Avp, sid: int = 0) -> ControlMessage:
    return ControlMessage(msg_type, 1, sid, 0, 0, avps)


def test_lac_incoming_call() -> None:
    host, s = Host(), Session(CallKind.LAC_INCOMING, 7, 0.0, ev.CallParams(serial=3))
    dispatch(host, s, In.PLACE, 0.0)
    assert s.state == "wait-for-tunnel" and host.sent == []
    dispatch(host, s, In.TUNNEL_UP, 0.0)
    assert host.types() == ["ICRQ"] and host.sent[0][2] == 0  # addressed to session 0
    assert s.state == "wait-reply"
    dispatch(host, s, In.ICRP, 0.1, msg(MT.ICRP, Avp(A.ASSIGNED_SESSION_ID, 45), sid=7))
    # The LNS answered; the ICCN waits for "connect" (the tunnel sends it at once unless the
    # call was placed with defer_connect). Not deferred: no event for the driver.
    assert s.state == "wait-connect" and s.peer_sid == 45
    assert host.types() == ["ICRQ"] and host.events == []
    dispatch(host, s, In.CONNECT, 0.1)
    assert host.types() == ["ICRQ", "ICCN"] and host.sent[1][2] == 45
    assert s.state == "established"
    assert host.events == [ev.CallEstablished(7, 45, ev.ConnectInfo(), ev.CallParams(serial=3))]
    assert host.changes == [
        ("idle", "wait-for-tunnel"),
        ("wait-for-tunnel", "wait-reply"),
        ("wait-reply", "wait-connect"),
        ("wait-connect", "established"),
    ]


def test_lac_incoming_call_deferred_reports_the_answer_and_connects_when_told() -> None:
    host, s = Host(), Session(CallKind.LAC_INCOMING, 7, 0.0, ev.CallParams(serial=3))
    s.defer_connect = True
    s.info = ev.ConnectInfo(tx_connect_speed=9600)
    dispatch(host, s, In.PLACE, 0.0)
    dispatch(host, s, In.TUNNEL_UP, 0.0)
    dispatch(host, s, In.ICRP, 0.1, msg(MT.ICRP, Avp(A.ASSIGNED_SESSION_ID, 45), sid=7))
    # the event carries the ConnectInfo the call was placed with
    assert host.events == [ev.CallAnswered(7, 45, ev.ConnectInfo(tx_connect_speed=9600))]
    assert s.state == "wait-connect" and host.types() == ["ICRQ"]
    # connect's own ConnectInfo wins over the one given at place time
    dispatch(host, s, In.CONNECT, 0.5, arg=ev.ConnectInfo(tx_connect_speed=33600))
    assert host.types() == ["ICRQ", "ICCN"] and host.sent[1][2] == 45
    assert connect_info_from(msg(MT.ICCN, *host.sent[1][1])).tx_connect_speed == 33600
    assert host.events[-1] == ev.CallEstablished(
        7, 45, ev.ConnectInfo(tx_connect_speed=33600), ev.CallParams(serial=3)
    )


@pytest.mark.parametrize(
    ("event", "arg", "sent", "by_peer"),
    [
        (In.CDN, None, [], True),
        (In.HANGUP, Clear(3), ["CDN"], False),
        (In.TUNNEL_DOWN, Clear(2), [], False),
    ],
)
def test_lac_call_waiting_to_connect_can_be_cleared(
    event: In, arg: Clear | None, sent: list[str], by_peer: bool
) -> None:
    host, s = Host(), Session(CallKind.LAC_INCOMING, 7, 0.0)
    s.state, s.peer_sid, s.defer_connect = St.WAIT_CONNECT, 45, True
    cdn = msg(MT.CDN, Avp(A.ASSIGNED_SESSION_ID, 45), Avp(A.RESULT_CODE, ResultCode(3)), sid=7)
    dispatch(host, s, event, 1.0, cdn if event is In.CDN else None, arg)
    assert s.state == "idle" and host.types() == sent
    (closed,) = host.events
    assert isinstance(closed, ev.CallClosed) and closed.by_peer is by_peer
    if sent:
        assert host.sent[0][2] == 45  # the CDN reaches the LNS's session
    with pytest.raises(CommandError):
        dispatch(host, s, In.CONNECT, 1.0)  # too late: the call is gone


def test_lns_incoming_call() -> None:
    host, s = Host(), Session(CallKind.LNS_INCOMING, 45, 0.0)
    icrq = msg(MT.ICRQ, Avp(A.ASSIGNED_SESSION_ID, 7), Avp(A.CALL_SERIAL_NUMBER, 9))
    dispatch(host, s, In.ICRQ, 0.0, icrq)
    assert s.state == "wait-answer" and s.peer_sid == 7
    assert host.events == [ev.IncomingCall(45, ev.CallParams(serial=9), peer_sid=7)]
    dispatch(host, s, In.ANSWER, 0.0)
    assert host.types() == ["ICRP"] and s.state == "wait-connect"
    iccn = msg(MT.ICCN, Avp(A.TX_CONNECT_SPEED, 64000), Avp(A.FRAMING_TYPE, 2), sid=45)
    dispatch(host, s, In.ICCN, 0.1, iccn)
    assert s.state == "established"
    assert host.events[-1] == ev.CallEstablished(
        45, 7, ev.ConnectInfo(64000, 2), ev.CallParams(serial=9)
    )


def test_lac_outgoing_call() -> None:
    host, s = Host(), Session(CallKind.LAC_OUTGOING, 5, 0.0)
    ocrq = msg(
        MT.OCRQ, Avp(A.ASSIGNED_SESSION_ID, 8), *call_params_avps(ev.CallParams(), outgoing=True)
    )
    validate(ocrq)
    dispatch(host, s, In.OCRQ, 0.0, ocrq)
    assert host.events == [ev.IncomingCall(5, call_params_from(ocrq), outgoing=True, peer_sid=8)]
    dispatch(host, s, In.ANSWER, 0.0)
    assert s.state == "wait-cs-answer"
    dispatch(host, s, In.CONNECT, 0.0, arg=ev.ConnectInfo(tx_connect_speed=9600))
    assert host.types() == ["OCRP", "OCCN"] and s.state == "established"
    assert host.events[-1] == ev.CallEstablished(
        5, 8, ev.ConnectInfo(tx_connect_speed=9600), call_params_from(ocrq)
    )


def test_lns_outgoing_call() -> None:
    host, s = Host(), Session(CallKind.LNS_OUTGOING, 5, 0.0, ev.CallParams(called_number="123"))
    dispatch(host, s, In.PLACE, 0.0)
    dispatch(host, s, In.TUNNEL_UP, 0.0)
    assert host.types() == ["OCRQ"] and s.state == "wait-reply"
    validate(msg(MT.OCRQ, *host.sent[0][1]))  # defaults fill the OCRQ's MUST AVPs
    dispatch(host, s, In.OCRP, 0.1, msg(MT.OCRP, Avp(A.ASSIGNED_SESSION_ID, 8)))
    assert s.state == "wait-connect" and s.peer_sid == 8
    occn = msg(MT.OCCN, Avp(A.TX_CONNECT_SPEED, 1), Avp(A.FRAMING_TYPE, 1))
    dispatch(host, s, In.OCCN, 0.2, occn)
    assert s.state == "established"


def test_cdn_both_ways_with_q931() -> None:
    host, s = Host(), Session(CallKind.LNS_INCOMING, 45, 0.0)
    s.state, s.peer_sid = St.ESTABLISHED, 7
    dispatch(host, s, In.HANGUP, 1.0, arg=Clear(3, 0, "admin", (16, 0x5A)))
    (sent,) = host.sent
    cdn = msg(MT.CDN, *sent[1])
    validate(cdn)
    assert cdn.get(A.RESULT_CODE) == ResultCode(3, 0, "admin")
    assert cdn.get(A.Q931_CAUSE_CODE) == Q931Cause(16, 0x5A)
    assert host.events == [ev.CallClosed(45, 3, 0, "admin", (16, 0x5A), False)]
    assert s.state == "idle"

    host, s = Host(), Session(CallKind.LAC_INCOMING, 7, 0.0)
    s.state = St.ESTABLISHED
    dispatch(host, s, In.CDN, 1.0, cdn)
    assert host.events == [ev.CallClosed(7, 3, 0, "admin", (16, 0x5A), True)]


def test_hangup_before_the_peer_knows_the_call_sends_nothing() -> None:
    host, s = Host(), Session(CallKind.LAC_INCOMING, 7, 0.0)
    dispatch(host, s, In.PLACE, 0.0)
    dispatch(host, s, In.HANGUP, 0.0, arg=Clear(1))
    assert host.sent == [] and s.state == "idle"
    assert host.events == [ev.CallClosed(7, 1, 0, "", None, False)]


def test_wen_and_sli_are_stored_and_reported() -> None:
    host, lns = Host(), Session(CallKind.LNS_INCOMING, 1, 0.0)
    lns.state = St.ESTABLISHED
    errors = CallErrors(crc_errors=3, alignment_errors=1)
    dispatch(host, lns, In.WEN, 0.0, msg(MT.WEN, Avp(A.CALL_ERRORS, errors)))
    assert lns.call_errors == errors
    assert host.events == [ev.WanError(1, (3, 0, 0, 0, 0, 1))]
    lac = Session(CallKind.LAC_INCOMING, 2, 0.0)
    lac.state = St.ESTABLISHED
    dispatch(host, lac, In.SLI, 0.0, msg(MT.SLI, Avp(A.ACCM, Accm(0xFFFFFFFF, 0))))
    assert lac.accm == Accm(0xFFFFFFFF, 0)
    assert host.events[-1] == ev.LinkInfo(2, 0xFFFFFFFF, 0)


def test_unexpected_message_is_a_protocol_error_and_command_is_a_command_error() -> None:
    host, s = Host(), Session(CallKind.LNS_INCOMING, 1, 0.0)
    s.state = St.WAIT_ANSWER
    with pytest.raises(ProtocolError) as info:
        dispatch(host, s, In.ICCN, 0.0, msg(MT.ICCN))
    assert info.value.result == 2 and s.state == "wait-answer"
    with pytest.raises(CommandError):
        dispatch(host, s, In.CONNECT, 0.0)


@pytest.mark.parametrize("kind", list(CallKind))
def test_every_table_reaches_established_and_never_traps_a_call(kind: CallKind) -> None:
    table = TABLES[kind]
    assert {new for _, new in table.values()} <= STATES
    seen, todo = {"idle"}, deque(["idle"])
    while todo:
        state = todo.popleft()
        for (src, _), (_, new) in table.items():
            if src == state and new not in seen:
                seen.add(new)
                todo.append(new)
    assert "established" in seen
    for state in seen - {"idle"}:
        # From every live state the call can be cleared, locally and by the tunnel.
        assert (state, "hangup") in table and (state, "tunnel-down") in table


def test_call_params_and_connect_info_round_trip() -> None:
    call = ev.CallParams(
        serial=5, bearer_type=1, calling_number="2085730592", called_number="614629",
        sub_address="9", physical_channel=3,
    )  # fmt: skip
    assert call_params_from(msg(MT.ICRQ, *call_params_avps(call, outgoing=False))) == call
    info = ev.ConnectInfo(
        tx_connect_speed=64000, framing_type=2, rx_connect_speed=33600, private_group_id="grp",
        sequencing_required=True, initial_rx_lcp_confreq=b"\x01\x04\x05\xdc",
        last_sent_lcp_confreq=b"\x03", last_rx_lcp_confreq=b"\x05", proxy_authen_type=3,
        proxy_authen_name="user", proxy_authen_challenge=b"c", proxy_authen_id=1,
        proxy_authen_response=b"pw",
    )  # fmt: skip
    assert connect_info_from(msg(MT.ICCN, *connect_info_avps(info, outgoing=False))) == info
    occn: dict[str, Any] = {"tx_connect_speed": 64000, "framing_type": 2, "rx_connect_speed": 33600}
    occn_avps = connect_info_avps(info, outgoing=True)
    assert connect_info_from(msg(MT.OCCN, *occn_avps)) == ev.ConnectInfo(
        **occn, sequencing_required=True
    )
