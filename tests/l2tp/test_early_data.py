"""Early data: the tunnel core is the only buffer for data that reaches a session before it
can be taken (CONTRACT 3). Frames are kept until the call is established *and* the upper
layer said ``data_ready`` (the ICCN may wait for the control window, or be lost and resent,
while data is not windowed; the data-plane channel may still be opening), at most
``EARLY_FRAMES`` per session; then they come out as DataReceived, in order."""

from __future__ import annotations

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.constants import MessageType
from kl2tp.l2tp.message import ControlMessage, decode, encode_data
from kl2tp.l2tp.tunnel import EARLY_FRAMES, Tunnel, TunnelConfig
from tests.l2tp.helpers import LNS_TID, Pair, answer_calls


def _answer_only(tunnel: Tunnel, event: ev.Event, now: float) -> None:
    """A driver whose data-plane channel is not open yet: it answers, but is not ready."""
    if isinstance(event, ev.IncomingCall):
        tunnel.answer_call(event.sid, now)


def _frame(n: int) -> bytes:
    return bytes([0xFF, 0x03, n])


def _hold_iccn(pair: Pair) -> tuple[int, list[bytes]]:
    """Establish, place a call, let ICRQ/ICRP through and hold the LAC's ICCN.

    Returns:
        The LNS's session id and the held datagrams (the ICCN among them).
    """
    pair.establish()
    pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    for data in pair.lac.datagrams_to_send(pair.now):
        pair.lns.receive_datagram(data, pair.now)
    while (event := pair.lns.next_event()) is not None:
        pair.policy(pair.lns, event, pair.now)
    for data in pair.lns.datagrams_to_send(pair.now):
        pair.lac.receive_datagram(data, pair.now)
    held = pair.lac.datagrams_to_send(pair.now)
    kinds = [decode(d) for d in held]
    assert any(isinstance(m, ControlMessage) and m.msg_type is not None for m in kinds)
    (lns_sid,) = pair.lns.sessions
    return lns_sid, held


def _send_frames(tunnel: Tunnel, sid: int, frames: range, now: float) -> None:
    for n in frames:
        tunnel.receive_datagram(encode_data(LNS_TID, sid, _frame(n)), now)


def _events(tunnel: Tunnel) -> list[ev.Event]:
    out = []
    while (event := tunnel.next_event()) is not None:
        out.append(event)
    return out


def test_data_before_iccn_follows_call_established_when_ready_at_once() -> None:
    pair = Pair()
    sid, held = _hold_iccn(pair)
    _send_frames(pair.lns, sid, range(3), pair.now)
    assert pair.lns.next_event() is None  # nothing yet: the call is not up
    assert pair.lns.counters["data_early"] == 3
    for data in held:
        pair.lns.receive_datagram(data, pair.now)
    (established,) = _events(pair.lns)
    assert isinstance(established, ev.CallEstablished)
    pair.lns.data_ready(sid, pair.now)  # what the driver does on CallEstablished
    assert _events(pair.lns) == [ev.DataReceived(sid, _frame(n)) for n in range(3)]
    _send_frames(pair.lns, sid, range(3, 4), pair.now)
    assert _events(pair.lns) == [ev.DataReceived(sid, _frame(3))]
    assert pair.lns.counters["data_early"] == 3  # counted once, when kept


def test_established_call_keeps_data_until_data_ready() -> None:
    pair = Pair(policy=_answer_only)
    sid, held = _hold_iccn(pair)
    for data in held:
        pair.lns.receive_datagram(data, pair.now)
    assert [type(e) for e in _events(pair.lns)] == [ev.CallEstablished]
    _send_frames(pair.lns, sid, range(4), pair.now)
    assert _events(pair.lns) == []  # the channel is still opening
    pair.lns.data_ready(sid, pair.now)
    pair.lns.data_ready(sid, pair.now)  # twice is harmless
    _send_frames(pair.lns, sid, range(4, 6), pair.now)
    assert _events(pair.lns) == [ev.DataReceived(sid, _frame(n)) for n in range(6)]
    assert pair.lns.counters["data_early"] == 4


def test_ready_before_established_still_waits_for_the_call() -> None:
    pair = Pair(policy=_answer_only)
    sid, held = _hold_iccn(pair)
    pair.lns.data_ready(sid, pair.now)
    _send_frames(pair.lns, sid, range(2), pair.now)
    assert _events(pair.lns) == []
    for data in held:
        pair.lns.receive_datagram(data, pair.now)
    events = _events(pair.lns)
    assert isinstance(events[0], ev.CallEstablished)
    assert events[1:] == [ev.DataReceived(sid, _frame(0)), ev.DataReceived(sid, _frame(1))]


def test_early_data_is_bounded_and_overflow_counted_apart() -> None:
    pair = Pair()
    sid, held = _hold_iccn(pair)
    _send_frames(pair.lns, sid, range(EARLY_FRAMES + 5), pair.now)
    for data in held:
        pair.lns.receive_datagram(data, pair.now)
    pair.lns.data_ready(sid, pair.now)
    received = [e for e in _events(pair.lns) if isinstance(e, ev.DataReceived)]
    assert received == [ev.DataReceived(sid, _frame(n)) for n in range(EARLY_FRAMES)]
    assert pair.lns.counters["data_early"] == EARLY_FRAMES
    assert pair.lns.counters["data_early_overflow"] == 5
    assert "data_dropped" not in pair.lns.counters


def test_cleared_call_forgets_its_early_data() -> None:
    pair = Pair(policy=_answer_only)
    sid, _ = _hold_iccn(pair)
    _send_frames(pair.lns, sid, range(2), pair.now)
    pair.lns.hangup(sid, pair.now, 3)
    assert sid not in pair.lns.sessions
    pair.lns.data_ready(sid, pair.now)  # gone: ignored
    _send_frames(pair.lns, sid, range(2, 3), pair.now)
    assert [type(e) for e in _events(pair.lns)] == [ev.CallClosed]
    assert pair.lns.counters["data_dropped"] == 1


# --- the other direction: our data never overtakes our own ICCN -------------------------------


def _lac_speaks_at_once(tunnel: Tunnel, event: ev.Event, now: float) -> None:
    """A LAC driver whose subscriber sends LCP the moment the call counts as established
    (the ICCN may still wait for the window), and an LNS that answers every call."""
    answer_calls(tunnel, event, now)
    if isinstance(event, ev.CallEstablished) and tunnel.lac:
        PENDING_AT_CONNECT.append(tunnel.connect_pending(event.sid))
        tunnel.send_data(event.sid, _frame(event.sid & 0xFF))


PENDING_AT_CONNECT: list[bool] = []
"""``connect_pending`` of each LAC call when it counted as established."""


def test_lac_data_never_overtakes_its_iccn_waiting_for_the_window() -> None:
    # An LNS that lets one message in flight (l2tpns sends no Receive Window Size: 4):
    # a burst of calls queues the ICCNs behind each other while their data is ready.
    pair = Pair(
        lns_config=TunnelConfig(hostname="l2tp-gw", receive_window=1), policy=_lac_speaks_at_once
    )
    PENDING_AT_CONNECT.clear()
    pair.establish()
    calls = 12
    for n in range(calls):
        pair.lac.place_call(pair.now, ev.CallParams(serial=n))
    pair.run(pair.now + 5.0)
    connected: set[int] = set()
    data_after_iccn = 0
    for sender, data in pair.wire:
        if sender != "lac":
            continue
        msg = decode(data)
        if isinstance(msg, ControlMessage):
            if msg.msg_type is MessageType.ICCN:
                connected.add(msg.session_id)
        else:
            assert msg.session_id in connected, "data before its session's ICCN"
            data_after_iccn += 1
    assert data_after_iccn == calls
    assert pair.lac.counters.get("data_held", 0) > 0  # the window did hold some
    assert any(PENDING_AT_CONNECT)  # ICCNs queued behind the window
    assert not any(pair.lac.connect_pending(sid) for sid in pair.lac.sessions)  # all left
    received = pair.of_type("lns", ev.DataReceived)
    assert len(received) == calls


def test_data_after_the_iccn_left_goes_straight_out() -> None:
    pair = Pair()
    pair.establish()
    pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1.0)
    (sid,) = pair.lac.sessions
    pair.lac.send_data(sid, _frame(9))
    (data,) = pair.lac.datagrams_to_send(pair.now)
    assert decode(data).payload == _frame(9)  # type: ignore[union-attr]
    assert "data_held" not in pair.lac.counters
