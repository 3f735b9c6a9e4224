"""The sans-IO endpoint core: routing, the tunnel table and its ids, SCCRQ policy (hidden
AVPs, duplicates, tie breaker, allowed peers, limits), RFC 2661 8.1 pinning, drop counters and
lingering closed tunnels. No trio: the clock is a number and datagrams are bytes."""

from __future__ import annotations

import ipaddress
import logging
import random

import pytest

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.constants import AvpType
from kl2tp.l2tp.endpoint import (
    MAX_TUNNEL_ID,
    EndpointConfig,
    EndpointCore,
    TunnelEntry,
    TunnelIds,
    TunnelIdsExhausted,
    TunnelOpened,
)
from kl2tp.l2tp.errors import DecodeError
from kl2tp.l2tp.message import ControlMessage, decode, encode_control, encode_data
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig

PEER = ("192.0.2.9", 1701)
OTHER_PORT = ("192.0.2.9", 40000)
STRANGER = ("203.0.113.5", 1701)
SECRET = b"shared"


def lns(config: EndpointConfig | None = None, **tunnel: object) -> EndpointCore:
    return EndpointCore(
        config or EndpointConfig(lns=True),
        TunnelConfig(hostname="lns", secret=SECRET, **tunnel),  # type: ignore[arg-type]
        rng=random.Random(1),
    )


def peer_core(tid: int = 77, **config: object) -> Tunnel:
    return Tunnel(
        TunnelConfig(hostname="lac", secret=SECRET, **config),  # type: ignore[arg-type]
        tid,
        initiator=True,
        rng=random.Random(tid),
        now=0.0,
    )


def sccrq(tid: int = 77, tie_breaker: bytes | None = None, **config: object) -> bytes:
    core = peer_core(tid, tie_breaker=tie_breaker is not None, **config)
    core.tie_breaker = tie_breaker
    core.connect(0.0)
    (data,) = core.datagrams_to_send(0.0)
    return data


def pump(core: EndpointCore, now: float = 0.0) -> list[bytes]:
    """What a driver does: take the endpoint's own datagrams (half-open and lingering
    tunnels'), feed every ready tunnel and take its datagrams."""
    out: list[bytes] = [data for data, _ in core.datagrams_to_send(now)]
    for tid in core.ready():
        entry = core.tunnels[tid]
        core.feed(entry, now)
        out += entry.tunnel.datagrams_to_send(now)
    return out


def open_tunnel(core: EndpointCore, addr: tuple[str, int] = PEER, tid: int = 77) -> TunnelEntry:
    """A peer's whole handshake (SCCRQ, SCCRP, SCCCN): the tunnel is up and has left the
    endpoint's half-open care (TunnelOpened: the driver starts its task)."""
    peer = peer_core(tid)
    peer.connect(0.0)
    for data in peer.datagrams_to_send(0.0):
        core.receive_datagram(data, addr, 0.0)
    for data in pump(core):
        peer.receive_datagram(data, 0.0)
    for data in peer.datagrams_to_send(0.0):
        core.receive_datagram(data, addr, 0.0)
    event = core.next_event()
    assert isinstance(event, TunnelOpened)
    entry = core.tunnels[event.tunnel_id]
    assert not entry.half_open and entry.tunnel.state == "established"
    return entry


# --- tunnel ids ------------------------------------------------------------------------------


def test_every_tunnel_id_once_then_exhausted_then_reused() -> None:
    ids = TunnelIds(random.Random(4))
    got = [ids.allocate() for _ in range(MAX_TUNNEL_ID)]
    assert sorted(got) == list(range(1, MAX_TUNNEL_ID + 1))
    assert got[:5] != [1, 2, 3, 4, 5]  # random, not sequential
    with pytest.raises(TunnelIdsExhausted):
        ids.allocate()
    ids.release(got[100])
    assert ids.allocate() == got[100]
    for tid in got[:1000]:
        ids.release(tid)
    again = {ids.allocate() for _ in range(1000)}
    assert again == set(got[:1000])
    assert ids.free == 0


def test_ids_stay_unique_through_many_allocations_and_releases() -> None:
    ids = TunnelIds(random.Random(5))
    rng = random.Random(6)
    held: set[int] = set()
    for _ in range(20_000):
        if held and rng.random() < 0.5:
            tid = rng.choice(sorted(held)) if len(held) < 50 else held.pop()
            held.discard(tid)
            ids.release(tid)
        else:
            tid = ids.allocate()
            assert tid not in held
            held.add(tid)
    assert ids.free == MAX_TUNNEL_ID - len(held)
    rest = {ids.allocate() for _ in range(ids.free)}
    assert rest | held == set(range(1, MAX_TUNNEL_ID + 1)) and not rest & held


# --- routing and drops -------------------------------------------------------------------------


def test_sccrq_opens_a_tunnel_pinned_to_its_source() -> None:
    core = lns()
    core.receive_datagram(sccrq(), PEER, 0.0)
    # Half-open: the endpoint serves it (no task yet, so no event).
    assert core.next_event() is None and core.half_open == 1
    (entry,) = core.tunnels.values()
    assert (entry.peer_addr, entry.pinned) == (PEER, True)
    assert entry.tunnel.peer_tunnel_id == 77
    # Its SCCRP is in the endpoint's own output.
    (sccrp,) = pump(core)
    msg = decode(sccrp, SECRET)
    assert isinstance(msg, ControlMessage) and msg.msg_type is not None
    assert msg.msg_type.abbrev == "SCCRP"
    # Anything for that tunnel from another port or host is dropped and counted.
    zlb = bytes.fromhex("c802000c") + entry.tunnel_id.to_bytes(2, "big") + bytes(6)
    core.receive_datagram(zlb, OTHER_PORT, 0.0)
    core.receive_datagram(zlb, STRANGER, 0.0)
    assert core.counters["drop_wrong_peer"] == 2
    assert not entry.inbox and entry.tunnel.counters["in_ZLB"] == 0


def test_a_tunnel_gets_its_task_once_established() -> None:
    core = lns()
    entry = open_tunnel(core)
    assert core.half_open == 0 and core.ready() == []
    # Its TunnelEstablished waits in the core for the task.
    assert isinstance(entry.tunnel.next_event(), ev.TunnelEstablished)
    zlb = bytes.fromhex("c802000c") + entry.tunnel_id.to_bytes(2, "big") + bytes(6)
    core.receive_datagram(zlb, PEER, 0.0)
    assert list(entry.inbox) == [zlb] and core.ready() == [entry.tunnel_id]


def test_drops_by_reason() -> None:
    core = lns()
    core.receive_datagram(b"\x01", PEER, 0.0)
    core.receive_datagram(bytes.fromhex("c801000c0000000000000000"), PEER, 0.0)
    core.receive_datagram(bytes.fromhex("c803000c0000000000000000"), PEER, 0.0)
    core.receive_datagram(bytes.fromhex("c802000c1234000000000000"), PEER, 0.0)
    core.receive_datagram(bytes.fromhex("c802000c0000000000000000"), PEER, 0.0)
    core.receive_datagram(encode_data(0, 0, b"\xff\x03"), PEER, 0.0)
    c = core.counters
    assert c["rx_datagrams"] == 6
    assert (c["drop_malformed"], c["drop_version_1"], c["drop_version_3"]) == (1, 1, 1)
    assert c["drop_unknown_tunnel"] == 1
    assert c["drop_not_sccrq_for_tunnel_0"] == 2
    assert c["data_rx"] == 1
    assert core.tunnels == {}


def test_data_for_an_unknown_session_is_dropped_at_the_door() -> None:
    core = lns()
    core.receive_datagram(sccrq(), PEER, 0.0)
    (tid,) = core.tunnels
    core.receive_datagram(encode_data(tid, 999, b"\xff\x03\xc0\x21"), PEER, 0.0)
    assert core.counters["drop_data_unknown_session"] == 1
    assert core.tunnels[tid].counters["data_rx"] == 1
    assert not core.tunnels[tid].inbox


def test_full_inbox_drops_and_counts() -> None:
    core = lns(EndpointConfig(queue_depth=3))
    tid = open_tunnel(core).tunnel_id
    zlb = bytes.fromhex("c802000c") + tid.to_bytes(2, "big") + bytes(6)
    for _ in range(5):
        core.receive_datagram(zlb, PEER, 0.0)
    assert core.counters["drop_queue_full"] == 2
    assert len(core.tunnels[tid].inbox) == 3
    assert core.ready() == [tid]  # listed once however many arrived
    assert core.ready() == []


# --- SCCRQ acceptance -----------------------------------------------------------------------------


def test_sccrq_with_hidden_avps_is_accepted_with_the_secret() -> None:
    # kl2tp sends its own SCCRQ in clear (see tunnel._SENT_PLAIN); other peers may hide.
    plain = decode(sccrq(), SECRET)
    assert isinstance(plain, ControlMessage)
    hide = frozenset({AvpType.ASSIGNED_TUNNEL_ID, AvpType.CHALLENGE, AvpType.HOST_NAME})
    data = encode_control(plain, SECRET, hide, random.Random(3))
    with pytest.raises(DecodeError):
        decode(data)  # really hidden: nothing can read it without the secret
    core = lns()
    core.receive_datagram(data, PEER, 0.0)
    (entry,) = core.tunnels.values()
    assert entry.tunnel.peer_tunnel_id == 77
    assert entry.tunnel.peer_hostname == "lac"
    assert core.counters["drop_malformed"] == 0


def test_retransmitted_sccrq_goes_to_the_tunnel_it_opened() -> None:
    core = lns()
    first = sccrq()
    core.receive_datagram(first, PEER, 0.0)
    (tid,) = core.tunnels
    pump(core)
    core.receive_datagram(first, PEER, 1.0)
    assert list(core.tunnels) == [tid]  # no second tunnel
    assert core.tunnels[tid].tunnel.counters["duplicates"] == 1  # the tunnel re-acks it
    # The same peer tunnel id from another port is another tunnel (another peer).
    core.receive_datagram(first, OTHER_PORT, 1.0)
    assert len(core.tunnels) == 2


def test_duplicate_key_goes_when_the_tunnel_goes() -> None:
    core = lns()
    data = sccrq()
    core.receive_datagram(data, PEER, 0.0)
    (entry,) = core.tunnels.values()
    core.discard(entry)
    assert core._by_peer == {} and core.tunnels == {}
    core.receive_datagram(data, PEER, 2.0)
    (again,) = core.tunnels.values()
    assert again is not entry


def test_allowed_peers() -> None:
    config = EndpointConfig(allowed_peers=(ipaddress.ip_network("192.0.2.0/24"),))
    core = lns(config)
    core.receive_datagram(sccrq(1), STRANGER, 0.0)
    assert core.counters["drop_peer_not_allowed"] == 1 and core.tunnels == {}
    core.receive_datagram(sccrq(2), PEER, 0.0)
    assert len(core.tunnels) == 1


def test_refused_peers_are_logged_rate_limited_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = EndpointConfig(
        allowed_peers=(ipaddress.ip_network("192.0.2.0/24"),), warn_burst=3, warn_interval=10.0
    )
    core = lns(config)
    data = sccrq(1)
    with caplog.at_level(logging.WARNING, logger="kl2tp.l2tp"):
        for n in range(2000):
            core.receive_datagram(data, ("203.0.113.5", 1000 + n), n / 1000)
        assert core.counters["drop_peer_not_allowed"] == 2000
        assert len(caplog.records) == 3
        core.receive_datagram(data, STRANGER, 12.0)
    assert len(caplog.records) == 4
    assert caplog.records[-1].getMessage() == (
        "SCCRQ from 203.0.113.5 refused: not in allowed_peers (1997 similar suppressed)"
    )


def test_a_lac_refuses_sccrqs_unless_it_accepts_incoming() -> None:
    core = lns(EndpointConfig(lns=False))
    core.receive_datagram(sccrq(), PEER, 0.0)
    assert core.counters["drop_sccrq_refused"] == 1 and core.tunnels == {}
    core = lns(EndpointConfig(lns=False, accept_incoming=True))
    core.receive_datagram(sccrq(), PEER, 0.0)
    assert len(core.tunnels) == 1


def test_tunnel_limit() -> None:
    core = lns(EndpointConfig(max_tunnels=2))
    for tid in (1, 2, 3):
        core.receive_datagram(sccrq(tid), PEER, 0.0)
    assert len(core.tunnels) == 2
    assert core.counters["drop_tunnel_limit"] == 1
    # A tunnel that goes makes room.
    core.discard(next(iter(core.tunnels.values())))
    core.receive_datagram(sccrq(3), PEER, 0.0)
    assert len(core.tunnels) == 2


def test_session_limit() -> None:
    core = lns(EndpointConfig(max_sessions=2))
    core.receive_datagram(sccrq(1), PEER, 0.0)
    core.receive_datagram(sccrq(2), PEER, 0.0)
    a, b = core.tunnels.values()
    assert core.admit_session(a) and core.admit_session(b)
    assert not core.admit_session(a)
    assert core.counters["calls_refused_overload"] == 1
    assert core.admit_session(a, limit=False)  # our own calls are never refused
    core.release_session(b)
    assert core.session_count == 2
    core.discard(a)  # a tunnel takes its sessions with it
    assert core.session_count == 0
    assert core.admit_session(b)


# --- tie breaker (RFC 2661 4.4.3) ---------------------------------------------------------------


def dialled(core: EndpointCore) -> TunnelEntry:
    entry = core.connect(PEER, 0.0)
    entry.tunnel.datagrams_to_send(0.0)
    core.ready()
    return entry


@pytest.mark.parametrize(
    ("ours", "theirs", "we_keep", "we_accept"),
    [
        (b"\x00" * 7 + b"\x01", b"\x00" * 7 + b"\x02", True, False),  # ours lower: we win
        (b"\x00" * 7 + b"\x02", b"\x00" * 7 + b"\x01", False, True),  # theirs lower: they win
        (b"\x00" * 7 + b"\x05", b"\x00" * 7 + b"\x05", False, False),  # equal: both give way
        (None, b"\x00" * 8, False, True),  # only theirs has one: theirs wins
        (b"\x00" * 8, None, True, False),  # only ours has one: ours wins
        (None, None, True, True),  # none: two tunnels
    ],
)
def test_tie_breaker(
    ours: bytes | None, theirs: bytes | None, we_keep: bool, we_accept: bool
) -> None:
    core = lns(EndpointConfig(lns=False, accept_incoming=True), tie_breaker=ours is not None)
    entry = dialled(core)
    entry.tunnel.tie_breaker = ours
    core.receive_datagram(sccrq(tie_breaker=theirs), PEER, 0.0)
    assert core.half_open == (1 if we_accept else 0)
    if we_keep:
        assert entry.tunnel.state == "wait-ctl-reply"
    else:
        # Silently discarded: closed at once, no StopCCN (the peer has no id for us yet).
        assert entry.tunnel.state == "closed"
        assert entry.tunnel.datagrams_to_send(0.0) == []
        assert isinstance(entry.tunnel.next_event(), ev.TunnelClosed)
        assert entry.tunnel_id in core.ready()
    assert core.counters["drop_tie_breaker"] == (0 if we_accept else 1)


def test_no_tie_break_once_our_sccrq_was_answered() -> None:
    core = lns(EndpointConfig(lns=False, accept_incoming=True), tie_breaker=True)
    entry = dialled(core)
    # A control message from the peer for our tunnel pins it: our SCCRQ is no longer
    # outstanding.
    zlb = bytes.fromhex("c802000c") + entry.tunnel_id.to_bytes(2, "big") + bytes(6)
    core.receive_datagram(zlb, OTHER_PORT, 0.0)
    assert (entry.pinned, entry.peer_addr) == (True, OTHER_PORT)
    core.receive_datagram(sccrq(tie_breaker=b"\x00" * 8), PEER, 0.0)
    assert core.half_open == 1
    assert entry.tunnel.state == "wait-ctl-reply"


# --- pinning a dialled tunnel (RFC 2661 8.1) ------------------------------------------------------


def test_dialled_tunnel_pins_to_the_port_its_reply_came_from() -> None:
    core = lns(EndpointConfig(lns=False))
    entry = dialled(core)
    assert not entry.pinned
    zlb = bytes.fromhex("c802000c") + entry.tunnel_id.to_bytes(2, "big") + bytes(6)
    core.receive_datagram(zlb, STRANGER, 0.0)  # another host: never
    assert core.counters["drop_wrong_peer"] == 1 and not entry.pinned
    core.receive_datagram(zlb, OTHER_PORT, 0.0)
    assert (entry.pinned, entry.peer_addr) == (True, OTHER_PORT)
    core.receive_datagram(zlb, PEER, 0.0)  # the port we dialled is now the wrong one
    assert core.counters["drop_wrong_peer"] == 2


# --- lingering (RFC 2661 5.7) ---------------------------------------------------------------------


def test_closed_tunnel_lingers_re_acks_a_late_stopccn_then_goes() -> None:
    core = lns()
    lac = peer_core()
    lac.connect(0.0)
    (data,) = lac.datagrams_to_send(0.0)
    core.receive_datagram(data, PEER, 0.0)
    (tid,) = core.tunnels
    entry = core.tunnels[tid]

    def lns_to_lac(now: float) -> None:
        for d in pump(core, now):
            lac.receive_datagram(d, now)

    lns_to_lac(0.0)
    for d in lac.datagrams_to_send(0.0):  # SCCCN
        core.receive_datagram(d, PEER, 0.0)
    lns_to_lac(0.0)
    assert entry.tunnel.state == "established"
    lac.close(1.0)
    (stopccn,) = lac.datagrams_to_send(1.0)
    core.receive_datagram(stopccn, PEER, 1.0)
    pump(core, 1.0)  # the ack is lost
    while entry.tunnel.next_event() is not None:
        pass
    assert entry.tunnel.state == "closed"
    core.tunnel_closed(entry, 1.0)
    assert tid not in core.tunnels and core.lingering[tid] is entry
    hold = entry.tunnel.hold_until
    assert hold is not None and core.get_timer() == hold
    # The StopCCN comes again: the lingering core re-acks it, from the endpoint's outbox.
    core.receive_datagram(stopccn, PEER, 2.0)
    (ack,) = core.datagrams_to_send(2.0)
    assert ack[1] == PEER
    lac.receive_datagram(ack[0], 2.0)
    assert lac.transport.unacked == 0
    core.receive_datagram(stopccn, STRANGER, 2.0)
    assert core.counters["drop_wrong_peer"] == 1
    # When the hold is over, it is forgotten and its id is free again.
    core.handle_timer(hold - 0.5)
    assert tid in core.lingering
    core.handle_timer(hold)
    assert core.lingering == {} and core.get_timer() is None
    assert core.ids.free == MAX_TUNNEL_ID
    core.receive_datagram(stopccn, PEER, hold + 1)
    assert core.counters["drop_unknown_tunnel"] == 1


def test_a_tunnel_closed_without_a_hold_is_forgotten_at_once() -> None:
    core = lns(EndpointConfig(lns=False))
    entry = dialled(core)
    entry.tunnel.close(0.0)  # before any SCCRP: closed at once, nothing to re-ack
    core.tunnel_closed(entry, 0.0)
    assert core.tunnels == {} and core.lingering == {}
    assert core.ids.free == MAX_TUNNEL_ID and core._dialing == {}


def test_a_core_that_raises_costs_one_datagram() -> None:
    core = lns()
    entry = open_tunnel(core)

    def broken(data: bytes, now: float) -> None:
        raise RuntimeError("bug")

    entry.tunnel.receive_datagram = broken  # type: ignore[method-assign]
    zlb = bytes.fromhex("c802000c") + entry.tunnel_id.to_bytes(2, "big") + bytes(6)
    core.receive_datagram(zlb, PEER, 0.0)
    core.receive_datagram(zlb, PEER, 0.0)
    core.feed(entry, 0.0)
    assert core.counters["core_errors"] == 2
    assert entry.counters["core_errors"] == 2
    assert not entry.inbox


def test_early_data_counted_endpoint_wide_live_and_after_close() -> None:
    core = lns()
    core.receive_datagram(sccrq(1), PEER, 0.0)
    core.receive_datagram(sccrq(2), PEER, 0.0)
    a, b = core.tunnels.values()
    a.tunnel.counters["data_early"] = 3
    b.tunnel.counters["data_early"] = 2
    assert core.totals()["data_early"] == 5
    core.discard(a)
    assert core.counters["data_early"] == 3
    assert core.totals()["data_early"] == 5
    assert "data_early_overflow" not in core.totals()
