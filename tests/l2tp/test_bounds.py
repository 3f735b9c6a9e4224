"""Every bound on peer-created state (issue 8), on the sans-IO endpoint and tunnel cores with
the clock as a number: each state is released at its time, each count refuses at its limit
(counted by reason), and a legitimate peer still gets its tunnel and call afterwards.

``Net`` is a few lines of driver: LAC tunnel cores on their own addresses, wired to one LNS
endpoint core, doing what kl2tp/daemon/endpoint.py does with events (answer calls after
``admit_session``, hand closed tunnels back to linger)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Avp, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import AvpType, CdnResult, MessageType
from kl2tp.l2tp.endpoint import EndpointConfig, EndpointCore, Limits, TunnelEntry
from kl2tp.l2tp.message import ControlMessage, decode, encode_control
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig, TunnelState, retransmission_cycle

A = AvpType
MT = MessageType
Address = tuple[str, int]
LNS_SECRET = b"bounds"


class Net:
    """LAC cores and one LNS endpoint core in memory; ``run(now)`` moves everything."""

    def __init__(self, config: EndpointConfig | None = None, **tunnel: object) -> None:
        self.lns_config = TunnelConfig(
            hostname="lns",
            secret=LNS_SECRET,
            hello_interval=0,
            **tunnel,  # type: ignore[arg-type]
        )
        self.core = EndpointCore(config or EndpointConfig(), self.lns_config, rng=random.Random(1))
        self.lacs: dict[Address, Tunnel] = {}
        self.setting_up: dict[tuple[int, int], bool] = {}
        self.lac_events: list[ev.Event] = []
        self.lns_events: list[ev.Event] = []
        self.now = 0.0

    def dial(self, host: str, *, place_call: bool = True, **tunnel: object) -> Tunnel:
        """A legitimate LAC at ``host`` opens a tunnel (and places one call)."""
        addr = (host, 1701)
        lac = Tunnel(
            TunnelConfig(hostname=host, secret=LNS_SECRET, hello_interval=0, **tunnel),  # type: ignore[arg-type]
            len(self.lacs) + 100,
            initiator=True,
            rng=random.Random(host),
            now=self.now,
        )
        self.lacs[addr] = lac
        lac.connect(self.now)
        if place_call:
            lac.place_call(self.now, ev.CallParams(serial=1))
        self.run()
        return lac

    def entries(self) -> Iterator[TunnelEntry]:
        yield from list(self.core.tunnels.values())

    def run(self, until: float | None = None) -> None:
        """Advance to ``until`` (timers fire at their times), moving datagrams to quiet."""
        target = self.now if until is None else until
        while True:
            self._pump()
            due = [
                t
                for t in [
                    *(lac.get_timer() for lac in self.lacs.values()),
                    *(e.tunnel.get_timer() for e in self.entries()),
                    self.core.get_timer(),
                ]
                if t is not None and t <= target
            ]
            if not due:
                break
            self.now = max(self.now, min(due))
            for lac in self.lacs.values():
                t = lac.get_timer()
                if t is not None and t <= self.now:
                    lac.handle_timer(self.now)
            for entry in self.entries():
                t = entry.tunnel.get_timer()
                if t is not None and t <= self.now:
                    entry.tunnel.handle_timer(self.now)
            t = self.core.get_timer()
            if t is not None and t <= self.now:
                self.core.handle_timer(self.now)
        self.now = target

    def _pump(self) -> None:
        core, now = self.core, self.now
        for _ in range(1000):
            moved = False
            for addr, lac in self.lacs.items():
                for data in lac.datagrams_to_send(now):
                    moved = True
                    core.receive_datagram(data, addr, now)
                while (event := lac.next_event()) is not None:
                    self.lac_events.append(event)
            for tid in core.ready():
                entry = core.tunnels.get(tid)
                if entry is not None:
                    core.feed(entry, now)
            for entry in self.entries():
                moved |= self._lns_side(entry)
            for data, addr in core.datagrams_to_send(now):
                moved = True
                self._to_lac(data, addr)
            if not moved:
                return
        raise AssertionError("no quiet")

    def _lns_side(self, entry: TunnelEntry) -> bool:
        core, now, tunnel = self.core, self.now, entry.tunnel
        moved = False
        while (event := tunnel.next_event()) is not None:
            moved = True
            self.lns_events.append(event)
            key = (entry.tunnel_id, getattr(event, "sid", 0))
            if isinstance(event, ev.IncomingCall):
                if core.admit_session(entry):
                    self.setting_up[key] = True
                    tunnel.answer_call(event.sid, now)
                else:
                    tunnel.hangup(event.sid, now, CdnResult.NO_FACILITIES_TEMPORARY)
            elif isinstance(event, ev.CallEstablished) and self.setting_up.get(key):
                self.setting_up[key] = False
                core.session_established(entry)
            elif isinstance(event, ev.CallClosed) and key in self.setting_up:
                core.release_session(entry, established=not self.setting_up.pop(key))
            elif isinstance(event, ev.TunnelClosed):
                core.tunnel_closed(entry, now)
        for data in tunnel.datagrams_to_send(now):
            moved = True
            self._to_lac(data, entry.peer_addr)
        return moved

    def _to_lac(self, data: bytes, addr: Address) -> None:
        lac = self.lacs.get(addr)
        if lac is not None:
            lac.receive_datagram(data, self.now)

    def established_calls(self, lac: Tunnel) -> int:
        return sum(1 for s in lac.sessions.values() if s.state == "established")


def raw_sccrq(tid: int, *, ns: int = 0, nr: int = 0) -> bytes:
    avps = (
        Avp(A.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        Avp(A.FRAMING_CAPABILITIES, 3),
        Avp(A.HOST_NAME, "attacker"),
        Avp(A.ASSIGNED_TUNNEL_ID, tid),
    )
    return encode_control(ControlMessage(MT.SCCRQ, 0, 0, ns, nr, avps))


def legit_call_works(net: Net, host: str = "198.51.100.200") -> None:
    lac = net.dial(host)
    assert lac.state is TunnelState.ESTABLISHED
    assert net.established_calls(lac) == 1


# --- finding 1: half-open tunnels ------------------------------------------------------------


@pytest.mark.parametrize(("ns", "nr"), [(1, 0), (5, 0), (0, 3), (40000, 0)])
def test_an_sccrq_that_is_not_message_0_creates_nothing(ns: int, nr: int) -> None:
    net = Net()
    for n in range(50):
        net.core.receive_datagram(raw_sccrq(n + 1, ns=ns, nr=nr), ("203.0.113.9", n), 0.0)
    assert net.core.tunnels == {} and net.core.ids.free == 0xFFFF
    assert net.core.counters["drop_sccrq_bad_ns"] == 50
    legit_call_works(net)


def test_a_half_open_tunnel_is_forgotten_at_setup_timeout_without_a_stopccn() -> None:
    net = Net(setup_timeout=7.0)
    net.core.receive_datagram(raw_sccrq(9), ("203.0.113.9", 1701), 0.0)
    net.run()
    (entry,) = net.entries()
    assert entry.tunnel.state is TunnelState.WAIT_CTL_CONN
    assert net.core.half_open == 1
    sent_before = entry.tunnel.counters.get("out_StopCCN", 0)
    net.run(6.9)
    assert net.core.tunnels  # still there before its time
    net.run(7.0)
    assert net.core.tunnels == {} and net.core.half_open == 0
    assert entry.released and net.core.ids.free == 0xFFFF  # not even lingering
    assert entry.tunnel.counters.get("out_StopCCN", 0) == sent_before
    assert net.core.totals()["setup_timeouts"] == 1
    legit_call_works(net)


def test_the_default_setup_timeout_is_one_retransmission_cycle() -> None:
    config = TunnelConfig()
    tunnel = Tunnel(config, 1, initiator=False, rng=random.Random(1), now=100.0)
    assert tunnel.get_timer() == 100.0 + retransmission_cycle(config)


def test_half_open_tunnels_are_capped() -> None:
    net = Net(EndpointConfig(limits=Limits(max_setup_tunnels=3)))
    for n in range(5):
        net.core.receive_datagram(raw_sccrq(n + 1), ("203.0.113.9", 1000 + n), 0.0)
    net.run()
    assert len(net.core.tunnels) == 3 and net.core.half_open == 3
    assert net.core.counters["drop_setup_tunnel_limit"] == 2
    net.run(100.0)  # they time out; the next SCCRQ finds room again
    assert net.core.half_open == 0
    legit_call_works(net)
    assert net.core.half_open == 0  # established: no longer half-open


def test_tunnel_id_exhaustion_is_refused_like_a_limit() -> None:
    net = Net()
    while net.core.ids.free:
        net.core.ids.allocate()
    net.core.receive_datagram(raw_sccrq(5), ("203.0.113.9", 1701), 0.0)
    assert net.core.counters["drop_tunnel_ids_exhausted"] == 1 and net.core.tunnels == {}


def test_a_failure_in_the_receive_path_costs_one_datagram(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    net = Net(EndpointConfig(warn_burst=2))

    def broken(*args: object) -> None:
        raise RuntimeError("a bug a peer found")

    monkeypatch.setattr(net.core, "_tunnel_zero", broken)
    with caplog.at_level(logging.WARNING, logger="kl2tp.l2tp"):
        for n in range(100):
            net.core.receive_datagram(raw_sccrq(n + 1), ("203.0.113.9", n), float(n) / 100)
    assert net.core.counters["drop_internal_error"] == 100
    assert net.core.counters["internal_error_RuntimeError"] == 100
    assert len(caplog.records) == 2  # rate-limited, with the traceback
    assert caplog.records[0].exc_info is not None
    monkeypatch.undo()
    legit_call_works(net)


def test_a_half_open_tunnel_whose_core_raises_is_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = Net()
    net.core.receive_datagram(raw_sccrq(9), ("203.0.113.9", 1701), 0.0)
    (entry,) = net.entries()

    def broken(data: bytes, now: float) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(entry.tunnel, "receive_datagram", broken)
    zlb = bytes.fromhex("c802000c") + entry.tunnel_id.to_bytes(2, "big") + bytes(6)
    net.core.receive_datagram(zlb, ("203.0.113.9", 1701), 0.0)
    assert net.core.counters["core_errors"] == 1
    assert net.core.tunnels == {} and net.core.half_open == 0 and entry.released
    legit_call_works(net)


def test_half_open_timers_run_in_bounded_chunks() -> None:
    from kl2tp.l2tp.endpoint import HALF_OPEN_TIMERS_PER_CALL

    net = Net(EndpointConfig(limits=Limits(sccrq_rate=0)), setup_timeout=5.0)
    n = HALF_OPEN_TIMERS_PER_CALL * 3 + 5
    for i in range(n):
        net.core.receive_datagram(raw_sccrq(i + 1), (f"10.0.{i >> 8}.{i & 255}", 1701), 0.0)
    net.core.datagrams_to_send(0.0)
    assert net.core.half_open == n
    # All due at once: each call runs one chunk and says more are due.
    calls = 0
    while net.core.half_open:
        assert net.core.get_timer() is not None
        net.core.handle_timer(100.0)
        calls += 1
        assert net.core.half_open >= n - calls * HALF_OPEN_TIMERS_PER_CALL
    assert calls == 4
    assert net.core.get_timer() is None and net.core.tunnels == {}


# --- finding 3: sessions in setup, unused tunnels, lingering ----------------------------------


def test_an_answered_call_without_iccn_gets_a_cdn_10_at_its_time() -> None:
    net = Net(session_setup_timeout=12.0)
    lac = net.dial("198.51.100.1", place_call=False)
    # The LAC's ICRQ is answered; its ICCN never comes (the LAC core is told to wait).
    sid = lac.place_call(net.now, ev.CallParams(serial=7), defer_connect=True)
    net.run()
    (entry,) = net.entries()
    (lns_session,) = entry.tunnel.sessions.values()
    assert lns_session.state == "wait-connect" and net.core.setup_count == 1
    start = net.now
    net.run(start + 11.9)
    assert entry.tunnel.sessions
    net.run(start + 12.0)
    assert entry.tunnel.sessions == {} and net.core.setup_count == 0
    closed = [e for e in net.lac_events if isinstance(e, ev.CallClosed) and e.sid == sid]
    assert [c.result for c in closed] == [CdnResult.TIMEOUT]
    assert net.core.totals()["session_setup_timeouts"] == 1
    # The CDN reached the LAC: its call is gone there too.
    assert sid not in lac.sessions
    legit_call_works(net)


def test_an_icrq_flood_on_one_tunnel_gets_cdn_4_beyond_the_cap() -> None:
    net = Net(max_setup_sessions_per_tunnel=3)
    lac = net.dial("198.51.100.1", place_call=False)
    sids = [lac.place_call(net.now, ev.CallParams(serial=n), defer_connect=True) for n in range(5)]
    net.run()
    (entry,) = net.entries()
    assert len(entry.tunnel.sessions) == 3
    closed = {e.sid: e.result for e in net.lac_events if isinstance(e, ev.CallClosed)}
    assert closed == {sids[3]: CdnResult.NO_FACILITIES_TEMPORARY, sids[4]: 4}
    assert net.core.totals()["calls_refused_setup_limit"] == 2
    # One completes its setup: room for one more.
    lac.connect_call(sids[0], net.now)
    net.run()
    assert net.established_calls(lac) == 1
    extra = lac.place_call(net.now, ev.CallParams(serial=9))
    net.run()
    assert lac.sessions[extra].state == "established"


def test_a_call_the_driver_refuses_gets_cdn_4_and_creates_no_session() -> None:
    net = Net()
    lac = net.dial("198.51.100.1", place_call=False)
    (entry,) = net.entries()
    asked: list[int] = []
    refuse = True

    def admission() -> tuple[str, str] | None:
        asked.append(len(entry.tunnel.sessions))
        return ("max_negotiating_sessions", "session limit reached") if refuse else None

    entry.tunnel.admission = admission
    sids = [lac.place_call(net.now, ev.CallParams(serial=n), defer_connect=True) for n in range(3)]
    net.run()
    # Asked once per ICRQ, before any session existed; no session, no IncomingCall.
    assert asked == [0, 0, 0] and entry.tunnel.sessions == {}
    assert not any(isinstance(e, ev.IncomingCall) for e in net.lns_events)
    refused = [e for e in net.lns_events if isinstance(e, ev.CallRefused)]
    assert [(r.peer_sid, r.limit, r.message) for r in refused] == [
        (sid, "max_negotiating_sessions", "session limit reached") for sid in sids
    ]
    assert all(r.sid for r in refused)
    # The LAC heard CDN result 4 with the text, for each of its calls, and forgot them.
    closed = [e for e in net.lac_events if isinstance(e, ev.CallClosed)]
    assert [(c.sid, c.result, c.message) for c in closed] == [
        (sid, CdnResult.NO_FACILITIES_TEMPORARY, "session limit reached") for sid in sids
    ]
    assert lac.sessions == {}
    # Admitted again: the next call is set up as usual.
    refuse = False
    extra = lac.place_call(net.now, ev.CallParams(serial=9))
    net.run()
    assert lac.sessions[extra].state == "established"


def test_calls_in_setup_are_capped_over_all_tunnels() -> None:
    net = Net(EndpointConfig(limits=Limits(max_setup_sessions=2)))
    lac = net.dial("198.51.100.1", place_call=False)
    sids = [lac.place_call(net.now, ev.CallParams(serial=n), defer_connect=True) for n in range(3)]
    net.run()
    assert net.core.setup_count == 2
    assert net.core.counters["calls_refused_setup_limit"] == 1
    closed = [e for e in net.lac_events if isinstance(e, ev.CallClosed)]
    assert [(c.sid, c.result) for c in closed] == [(sids[2], CdnResult.NO_FACILITIES_TEMPORARY)]
    lac.connect_call(sids[0], net.now)
    net.run()
    assert net.core.setup_count == 1 and net.core.session_count == 2
    legit_call_works(net)
    assert net.core.setup_count == 1 and net.core.session_count == 3


@pytest.mark.parametrize("cap", [1, 3])
def test_max_sessions_admits_exactly_that_many(cap: int) -> None:
    """Issue 10: ``max_sessions = 3`` admitted 2 calls and ``max_sessions = 1`` none."""
    net = Net(EndpointConfig(max_sessions=cap))
    lac = net.dial("198.51.100.1", place_call=False)
    sids = [lac.place_call(net.now, ev.CallParams(serial=n)) for n in range(cap + 2)]
    net.run()
    assert net.established_calls(lac) == cap
    assert net.core.session_count == cap and net.core.setup_count == 0
    assert net.core.counters["calls_refused_overload"] == 2
    # A call that ends makes room for exactly one more.
    lac.hangup(sids[0], net.now, CdnResult.ADMINISTRATIVE)
    net.run()
    more = [lac.place_call(net.now, ev.CallParams(serial=n)) for n in range(2)]
    net.run()
    assert [lac.sessions.get(s) is not None for s in more] == [True, False]
    assert net.established_calls(lac) == cap


def test_a_tunnel_that_never_carries_a_session_meets_idle_timeout() -> None:
    net = Net(idle_timeout=20.0)
    lac = net.dial("198.51.100.1", place_call=False)
    up = net.now
    net.run(up + 19.9)
    assert lac.state is TunnelState.ESTABLISHED
    net.run(up + 20.0)
    closed = [e for e in net.lac_events if isinstance(e, ev.TunnelClosed)]
    assert [(c.result, c.by_peer) for c in closed] == [(1, True)]
    legit_call_works(net)


def test_a_session_resets_the_unused_tunnel_timer() -> None:
    net = Net(idle_timeout=20.0)
    lac = net.dial("198.51.100.1", place_call=False)
    net.run(net.now + 10.0)
    lac.place_call(net.now, ev.CallParams(serial=1))
    net.run(net.now + 100.0)
    assert lac.state is TunnelState.ESTABLISHED and net.established_calls(lac) == 1


def test_lingering_tunnels_are_capped_oldest_first() -> None:
    net = Net(EndpointConfig(limits=Limits(max_lingering=2)))
    lacs = [net.dial(f"198.51.100.{n}") for n in range(1, 5)]
    for lac in lacs:  # each LAC clears its tunnel: the LNS core lingers to re-ack
        lac.close(net.now)
        net.run()
    assert len(net.core.lingering) == 2
    assert net.core.counters["linger_evicted"] == 2
    net.run(net.now + retransmission_cycle(net.lns_config))
    assert net.core.lingering == {} and net.core.ids.free == 0xFFFF
    legit_call_works(net)


def test_sccrqs_per_source_are_rate_limited_and_sources_bounded() -> None:
    limits = Limits(sccrq_rate=2.0, sccrq_burst=3, max_sources=4)
    net = Net(EndpointConfig(limits=limits))
    for n in range(10):
        net.core.receive_datagram(raw_sccrq(n + 1), ("203.0.113.9", 1000 + n), 0.0)
    assert len(net.core.tunnels) == 3 and net.core.counters["drop_sccrq_rate"] == 7
    # Half a second later the bucket has one token again.
    net.core.receive_datagram(raw_sccrq(50), ("203.0.113.9", 2000), 0.5)
    net.core.receive_datagram(raw_sccrq(51), ("203.0.113.9", 2001), 0.5)
    assert len(net.core.tunnels) == 4 and net.core.counters["drop_sccrq_rate"] == 8
    # A retransmitted SCCRQ of a tunnel already made is not a new tunnel: not limited.
    net.core.receive_datagram(raw_sccrq(50), ("203.0.113.9", 2000), 0.5)
    assert net.core.counters["drop_sccrq_rate"] == 8
    # A spoofed flood from many sources keeps the table bounded.
    for n in range(100):
        net.core.receive_datagram(raw_sccrq(7), (f"10.0.{n}.1", 1701), 1.0)
    assert len(net.core._sources) == 4
    net.now = 1.0
    legit_call_works(net)


def test_show_summary_gauges() -> None:
    net = Net()
    net.core.receive_datagram(raw_sccrq(9), ("203.0.113.9", 1701), 0.0)
    totals = net.core.totals()
    assert totals["half_open_tunnels"] == 1
    assert totals["sessions_in_setup"] == 0 and totals["lingering_tunnels"] == 0


def test_an_unknown_mandatory_avp_in_an_icrq_gets_cdn_2_8() -> None:
    net = Net()
    lac = net.dial("198.51.100.1", place_call=False)
    (entry,) = net.entries()
    unknown = Avp(0x7F00, b"\x00", mandatory=True)
    icrq = ControlMessage(
        MT.ICRQ,
        entry.tunnel_id,
        0,
        lac.transport.next_ns,
        lac.transport.expected_ns,
        (Avp(A.ASSIGNED_SESSION_ID, 4321), Avp(A.CALL_SERIAL_NUMBER, 1), unknown),
    )
    entry.tunnel.receive_datagram(encode_control(icrq, LNS_SECRET, rng=random.Random(1)), 0.0)
    (data,) = entry.tunnel.datagrams_to_send(0.0)
    cdn = decode(data, LNS_SECRET)
    assert isinstance(cdn, ControlMessage) and cdn.msg_type is MT.CDN
    assert cdn.session_id == 4321
    rc = cdn.get(A.RESULT_CODE)
    assert isinstance(rc, ResultCode) and (rc.result, rc.error) == (2, 8)
    assert entry.tunnel.sessions == {}
