"""Reliable delivery (RFC 2661 5.8) on its own: windows, acks, reordering, duplicates,
retransmission backoff and the delayed ZLB, driven with a hand clock."""

from __future__ import annotations

import pytest

from kl2tp.l2tp.avp import Avp
from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.message import ControlMessage, encode_control
from kl2tp.l2tp.transport import HELD_PER_MESSAGE, Transport, zlb


def hello_bytes() -> bytes:
    return encode_control(ControlMessage(MessageType.HELLO, 7, 0, 0, 0))


def ns_nr(data: bytes) -> tuple[int, int]:
    return (data[8] << 8) | data[9], (data[10] << 8) | data[11]


def make(**kwargs: float) -> Transport[str]:
    t: Transport[str] = Transport(counters={}, trace_id=1, **kwargs)  # type: ignore[arg-type]
    t.peer_tunnel_id = 7
    return t


def test_zlb_matches_the_trace() -> None:
    assert zlb(17688, 1, 2) == bytes.fromhex("C802000C4518000000010002")


def test_send_window_limits_messages_in_flight() -> None:
    t = make(send_window=4)
    for _ in range(10):
        t.send(hello_bytes(), 0.0)
    out = t.datagrams_to_send(0.0)
    assert [ns_nr(d)[0] for d in out] == [0, 1, 2, 3]
    assert t.unacked == 10
    t.receive(0, 2, None, 0.1)  # ZLB acking Ns 0 and 1: two more may go
    assert [ns_nr(d)[0] for d in t.datagrams_to_send(0.1)] == [4, 5]
    t.set_send_window(300, 0.2)  # the peer's Receive Window Size arrived
    assert [ns_nr(d)[0] for d in t.datagrams_to_send(0.2)] == [6, 7, 8, 9]


def test_bogus_nr_is_ignored() -> None:
    t = make()
    t.send(hello_bytes(), 0.0)
    t.receive(0, 5, None, 0.1)  # acks messages never sent
    assert t.unacked == 1
    t.receive(0, 1, None, 0.1)
    assert t.unacked == 0


def test_out_of_order_messages_are_queued_and_delivered_in_order() -> None:
    t = make(receive_window=8)
    assert t.receive(2, 0, "c", 0.0) == []
    assert t.receive(1, 0, "b", 0.0) == []
    assert t.receive(0, 0, "a", 0.0) == ["a", "b", "c"]
    assert t.expected_ns == 3
    assert t.counters["reordered"] == 2


def test_beyond_the_receive_window_is_dropped() -> None:
    t = make(receive_window=4)
    assert t.receive(4, 0, "far", 0.0) == []
    assert t.counters["out_of_window"] == 1
    assert t.receive(3, 0, "near", 0.0) == []
    assert t.receive(0, 0, "a", 0.0) == ["a"]  # 1 and 2 still missing: "near" waits


def test_duplicates_are_re_acked_at_once_and_dropped() -> None:
    t = make()
    assert t.receive(0, 0, "a", 0.0) == ["a"]
    t.handle_timer(1.0)
    assert [ns_nr(d) for d in t.datagrams_to_send(1.0)] == [(0, 1)]
    assert t.receive(0, 0, "a again", 2.0) == []
    assert t.counters["duplicates"] == 1
    assert t.get_timer() == 2.0
    assert t.datagrams_to_send(2.0) == [zlb(7, 0, 1)]


def test_delayed_ack_and_piggyback() -> None:
    t = make(ack_delay=0.25)
    t.receive(0, 0, "a", 0.0)
    assert t.datagrams_to_send(0.0) == []
    assert t.get_timer() == 0.25
    t.send(hello_bytes(), 0.1)  # the Nr rides on this message instead
    (out,) = t.datagrams_to_send(0.1)
    assert ns_nr(out) == (0, 1)
    assert t.get_timer() == pytest.approx(1.1)  # only its retransmission is left


def test_half_a_window_unacked_is_acked_at_once() -> None:
    t = make(receive_window=8, ack_delay=0.25)
    for ns in range(3):
        t.receive(ns, 0, "x", 0.0)
    assert t.get_timer() == 0.25
    t.receive(3, 0, "x", 0.0)
    assert t.datagrams_to_send(0.0) == [zlb(7, 0, 4)]


def test_retransmission_backoff_and_failure() -> None:
    t = make(retransmit_initial=1.0, retransmit_cap=8.0, max_retries=5)
    t.send(hello_bytes(), 0.0)
    t.datagrams_to_send(0.0)
    times = []
    now = 0.0
    while not t.failed:
        deadline = t.get_timer()
        assert deadline is not None
        now = deadline
        t.handle_timer(now)
        if t.datagrams_to_send(now):
            times.append(now)
    assert times == [1.0, 3.0, 7.0, 15.0, 23.0]
    assert now == 31.0 and t.counters["retransmits"] == 5


def test_retransmission_carries_the_current_nr() -> None:
    t = make()
    t.send(hello_bytes(), 0.0)
    assert ns_nr(t.datagrams_to_send(0.0)[0]) == (0, 0)
    t.receive(0, 0, "peer's message", 0.5)
    t.handle_timer(1.0)
    assert [ns_nr(d) for d in t.datagrams_to_send(1.0)] == [(0, 1)]


def test_sequence_numbers_wrap_at_65536() -> None:
    sender = make(send_window=8)
    receiver = make(receive_window=8)
    sender.next_ns = 65534
    receiver.expected_ns = 65534
    for _ in range(4):
        sender.send(hello_bytes(), 0.0)
    sent = sender.datagrams_to_send(0.0)
    assert [ns_nr(d)[0] for d in sent] == [65534, 65535, 0, 1]
    delivered: list[str] = []
    for d in reversed(sent):  # worst order
        ns = ns_nr(d)[0]
        delivered += receiver.receive(ns, 0, str(ns), 0.0)
    assert delivered == ["65534", "65535", "0", "1"]
    assert receiver.expected_ns == 2
    sender.receive(0, 2, None, 0.1)
    assert sender.unacked == 0


def test_abandon_stops_retransmissions_but_acks_still_go() -> None:
    t = make()
    t.send(hello_bytes(), 0.0)
    t.datagrams_to_send(0.0)
    t.receive(0, 0, "stop", 0.1)
    t.abandon()
    t.ack_now(0.1)
    assert t.datagrams_to_send(0.1) == [zlb(7, 1, 1)]
    assert t.get_timer() is None


def test_an_ack_costs_what_it_acknowledges() -> None:
    t = make(send_window=65535)
    for _ in range(5000):
        t.send(hello_bytes(), 0.0)
    t.datagrams_to_send(0.0)
    t.receive(0, 10, None, 0.1)
    assert t.unacked == 4990
    t.receive(0, 5000, None, 0.2)
    assert t.unacked == 0
    assert t.get_timer() is None  # stale retransmission deadlines are gone too


def test_avp_free_zlb_never_delivered() -> None:
    t = make()
    assert t.receive(0, 0, None, 0.0) == []
    assert t.expected_ns == 0 and t.counters["in_ZLB"] == 1
    assert Avp(AvpType.HOST_NAME, "x").mandatory  # sanity: the codec table is in use


def test_data_held_behind_a_waiting_message_leaves_right_after_it() -> None:
    t = make(send_window=1)
    t.send(hello_bytes(), 0.0)
    waiting = t.send(hello_bytes(), 0.0)  # Ns 1: waits for the window
    assert t.send_after(waiting, b"data-1")
    assert t.send_after(waiting, b"data-2")
    assert not t.send_after(0, b"late")  # Ns 0 is on the wire: send as usual
    assert not t.send_after(7, b"never")  # never sent: nothing to wait for
    out = t.datagrams_to_send(0.0)
    assert [ns_nr(d)[0] for d in out] == [0]
    t.receive(0, 1, None, 0.1)  # Ns 0 acked: Ns 1 goes, its data right behind
    out = t.datagrams_to_send(0.1)
    assert [ns_nr(out[0])[0], *out[1:]] == [1, b"data-1", b"data-2"]
    assert t.counters["data_held"] == 2
    assert not t.send_after(waiting, b"data-3")  # transmitted now
    t.handle_timer(10.0)  # its retransmission carries no data again
    assert [d for d in t.datagrams_to_send(10.0) if not d.startswith(b"\xc8")] == []


def test_held_data_is_bounded_and_dropped_with_the_tunnel() -> None:
    t = make(send_window=1)
    t.send(hello_bytes(), 0.0)
    waiting = t.send(hello_bytes(), 0.0)
    for n in range(HELD_PER_MESSAGE + 3):
        assert t.send_after(waiting, bytes([n]))
    assert t.counters["data_held"] == HELD_PER_MESSAGE
    assert t.counters["data_held_overflow"] == 3
    assert [ns_nr(d)[0] for d in t.datagrams_to_send(0.0)] == [0]
    t.abandon()  # the tunnel closed: the waiting message and its data are gone
    t.set_send_window(4, 0.1)
    assert t.datagrams_to_send(0.1) == []


def test_what_an_ack_lets_out_acknowledges_the_message_that_carried_the_ack() -> None:
    """Our window is full; the peer's next message acks our oldest. What that lets out
    carries the Nr of that message too, so no ZLB is owed: a peer that acks only when
    nothing of its own is outstanding (l2tpns) is not left waiting for our delayed ack
    while its own acks wait for ours (a 1 s stall per window on one tunnel)."""
    t = make(send_window=1)
    t.send(hello_bytes(), 0.0)
    t.send(hello_bytes(), 0.0)
    assert [ns_nr(d) for d in t.datagrams_to_send(0.0)] == [(0, 0)]
    assert t.receive(0, 1, "icrp", 0.1) == ["icrp"]
    assert [ns_nr(d) for d in t.datagrams_to_send(0.1)] == [(1, 1)]
    t.handle_timer(0.1 + t.ack_delay)
    assert t.counters.get("out_ZLB", 0) == 0  # the ack rode on Ns 1
