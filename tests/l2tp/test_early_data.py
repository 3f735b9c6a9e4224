"""Data that overtakes its call's ICCN is kept and handed over right after CallEstablished
(the ICCN may wait for the control window, or be lost and resent; data is not windowed)."""

from __future__ import annotations

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.message import ControlMessage, decode, encode_data
from kl2tp.l2tp.tunnel import EARLY_FRAMES
from tests.l2tp.helpers import Pair


def _ordered_call(pair: Pair, frames: int) -> list[object]:
    pair.establish()
    sid = pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    # ICRQ to the LNS, ICRP back; hold the LAC's ICCN and send data first.
    for data in pair.lac.datagrams_to_send(pair.now):
        pair.lns.receive_datagram(data, pair.now)
    while (event := pair.lns.next_event()) is not None:
        pair.policy(pair.lns, event, pair.now)
    for data in pair.lns.datagrams_to_send(pair.now):
        pair.lac.receive_datagram(data, pair.now)
    held = pair.lac.datagrams_to_send(pair.now)
    kinds = [decode(d) for d in held]
    assert any(isinstance(m, ControlMessage) and m.msg_type is not None for m in kinds)
    lns_sid = next(s for s in pair.lns.sessions)
    for n in range(frames):
        pair.lns.receive_datagram(encode_data(55270, lns_sid, bytes([0xFF, 0x03, n])), pair.now)
    assert pair.lns.next_event() is None  # nothing yet: the call is not up
    for data in held:
        pair.lns.receive_datagram(data, pair.now)
    events = []
    while (event := pair.lns.next_event()) is not None:
        events.append(event)
    assert sid
    return events


def test_data_before_iccn_follows_call_established() -> None:
    events = _ordered_call(Pair(), 3)
    assert isinstance(events[0], ev.CallEstablished)
    assert [e.payload for e in events[1:] if isinstance(e, ev.DataReceived)] == [
        b"\xff\x03\x00",
        b"\xff\x03\x01",
        b"\xff\x03\x02",
    ]


def test_early_data_is_bounded() -> None:
    pair = Pair()
    events = _ordered_call(pair, EARLY_FRAMES + 5)
    received = [e for e in events if isinstance(e, ev.DataReceived)]
    assert len(received) == EARLY_FRAMES
    assert pair.lns.counters["data_dropped"] == 5
