"""Every (state x input) pair of every state machine ends in a valid state or a protocol
error (h2's test_state_machines.py), and random driver/network histories of a LAC-LNS pair
never leave a core in an invalid state and always wind down cleanly."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Accm, Avp, CallErrors, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import AvpType as A
from kl2tp.l2tp.constants import MessageType as MT
from kl2tp.l2tp.errors import ProtocolError
from kl2tp.l2tp.message import MESSAGE_SPECS, ControlMessage, encode_control
from kl2tp.l2tp.session import (
    LOCAL_INPUTS,
    MESSAGE_INPUTS,
    STATES,
    CallKind,
    Clear,
    CommandError,
    Session,
    dispatch,
)
from kl2tp.l2tp.tunnel import TUNNEL_STATES, Tunnel, TunnelConfig

from .helpers import LNS_TID, Pair
from .test_session import Host

SAMPLE: dict[int, Any] = {
    A.RESULT_CODE: ResultCode(1),
    A.PROTOCOL_VERSION: ProtocolVersion(1, 0),
    A.FRAMING_CAPABILITIES: 3,
    A.HOST_NAME: "peer",
    A.ASSIGNED_TUNNEL_ID: 4242,
    A.ASSIGNED_SESSION_ID: 77,
    A.CALL_SERIAL_NUMBER: 1,
    A.MINIMUM_BPS: 0,
    A.MAXIMUM_BPS: 1_000_000,
    A.BEARER_TYPE: 1,
    A.FRAMING_TYPE: 1,
    A.CALLED_NUMBER: "1",
    A.TX_CONNECT_SPEED: 64000,
    A.CALL_ERRORS: CallErrors(),
    A.ACCM: Accm(0, 0),
}


def valid_message(
    msg_type: MT, tunnel_id: int, session_id: int, ns: int, nr: int
) -> ControlMessage:
    """A message of `msg_type` carrying exactly its MUST AVPs."""
    avps = tuple(Avp(t, SAMPLE[t]) for t in MESSAGE_SPECS[msg_type].must)
    return ControlMessage(msg_type, tunnel_id, session_id, ns, nr, avps)


# --- sessions ----------------------------------------------------------------------------------

SESSION_INPUTS = sorted(LOCAL_INPUTS | MESSAGE_INPUTS)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(list(CallKind)),
    state=st.sampled_from(sorted(STATES)),
    event=st.sampled_from(SESSION_INPUTS),
)
def test_session_state_x_input(kind: CallKind, state: str, event: str) -> None:
    host = Host()
    session = Session(kind, 5, 0.0)
    session.state = state
    session.peer_sid = 9 if state not in ("idle", "wait-for-tunnel") else 0
    msg = valid_message(MT[event], 1, 5, 0, 0) if event in MESSAGE_INPUTS else None
    arg: Any = Clear(1) if event in ("hangup", "tunnel-down") else None
    if event == "connect":
        arg = ev.ConnectInfo()
    try:
        dispatch(host, session, event, 0.0, msg, arg)
    except ProtocolError as exc:
        assert event in MESSAGE_INPUTS and exc.result == 2
        assert session.state == state and host.sent == [] and host.events == []
        return
    except CommandError:
        assert event in LOCAL_INPUTS
        assert session.state == state and host.sent == [] and host.events == []
        return
    assert session.state in STATES
    if session.state == "idle" and state != "idle":
        # A call that ends always says so, exactly once.
        assert [type(e) for e in host.events] == [ev.CallClosed]


# --- tunnels -----------------------------------------------------------------------------------

TUNNEL_MESSAGES = [m for m in MT]
TUNNEL_COMMANDS = ["connect", "close", "place_call", "timers"]


def tunnel_in(state: str) -> tuple[Pair, Tunnel]:
    """A real LNS core brought into `state` by real traffic (the LAC core for wait-ctl-reply)."""
    pair = Pair()
    if state == "idle":
        return pair, pair.lns
    if state == "wait-ctl-reply":
        pair.lac.connect(0.0)
        pair.lac.datagrams_to_send(0.0)
        return pair, pair.lac
    if state == "wait-ctl-conn":
        pair.lac.connect(0.0)
        for d in pair.lac.datagrams_to_send(0.0):
            pair.lns.receive_datagram(d, 0.0)
        pair.lns.datagrams_to_send(0.0)
        return pair, pair.lns
    pair.establish()
    pair.lac.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1)
    if state == "no-sessions-left":
        pair.lac.hangup(next(iter(pair.lac.sessions)), pair.now, 1)
        pair.run(pair.now + 1)
    elif state == "shutting-down":
        pair.lns.close(pair.now)
        pair.lns.datagrams_to_send(pair.now)
    elif state == "closed":
        pair.lns.close(pair.now)
        pair.run(pair.now + 1)
    assert pair.lns.state == state
    return pair, pair.lns


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    state=st.sampled_from(sorted(TUNNEL_STATES)),
    event=st.sampled_from([m.abbrev for m in TUNNEL_MESSAGES] + TUNNEL_COMMANDS),
    to_session=st.booleans(),
    in_order=st.booleans(),
)
def test_tunnel_state_x_input(state: str, event: str, to_session: bool, in_order: bool) -> None:
    pair, tunnel = tunnel_in(state)
    now = pair.now + 0.5
    try:
        if event == "connect":
            tunnel.connect(now)
        elif event == "close":
            tunnel.close(now, 1)
        elif event == "place_call":
            tunnel.place_call(now, ev.CallParams())
        elif event == "timers":
            tunnel.handle_timer(now + 1000.0)
        else:
            msg_type = next(m for m in MT if m.abbrev == event)
            sid = next(iter(tunnel.sessions), 0) if to_session else 0
            t = tunnel.transport
            ns = t.expected_ns if in_order else (t.expected_ns + 1) & 0xFFFF
            msg = valid_message(msg_type, tunnel.local_tunnel_id, sid, ns, t.next_ns)
            tunnel.receive_datagram(encode_control(msg), now)
    except CommandError:
        assert event in ("connect", "place_call")
    assert tunnel.state in TUNNEL_STATES
    tunnel.datagrams_to_send(now)
    # Once closed, a tunnel holds no sessions and retransmits nothing.
    if tunnel.state == "closed":
        assert tunnel.sessions == {} and tunnel.transport.unacked == 0


@pytest.mark.parametrize("state", sorted(TUNNEL_STATES))
def test_every_tunnel_state_is_reachable_by_traffic(state: str) -> None:
    _, tunnel = tunnel_in(state)
    assert tunnel.state == state


# --- random histories of a pair ----------------------------------------------------------------

STEPS = st.sampled_from(
    [
        "lac_call",
        "lac_deferred_call",
        "lac_connect",
        "lns_call",
        "lac_hangup",
        "lns_hangup",
        "drop_next",
        "tick",
        "long_wait",
        "lac_close",
        "lns_close",
    ]
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(STEPS, max_size=25), seed=st.integers(0, 2**16))
def test_random_histories_stay_valid_and_wind_down(steps: list[str], seed: int) -> None:
    rng = random.Random(seed)
    cfg = TunnelConfig(hostname="x", idle_timeout=5.0, hello_interval=20.0)
    pair = Pair(cfg, cfg, seed=seed)
    pair.lac.connect(0.0)
    for step in steps:
        side = pair.lac if step.startswith("lac") else pair.lns
        try:
            if step == "lac_deferred_call":
                side.place_call(pair.now, ev.CallParams(serial=1), defer_connect=True)
            elif step.endswith("_call"):
                side.place_call(pair.now, ev.CallParams(serial=rng.randrange(100)))
            elif step == "lac_connect":
                # the driver connects some call the LNS has answered (if any is waiting)
                waiting = sorted(s for s, x in side.sessions.items() if x.state == "wait-connect")
                if waiting:
                    side.connect_call(rng.choice(waiting), pair.now)
            elif step.endswith("_hangup") and side.sessions:
                side.hangup(rng.choice(sorted(side.sessions)), pair.now, 1)
            elif step.endswith("_close"):
                side.close(pair.now)
            elif step == "drop_next":
                victim = rng.choice([pair.lac, pair.lns])
                victim.datagrams_to_send(pair.now)  # lost on the wire
            elif step == "long_wait":
                pair.run(pair.now + 30.0)
        except CommandError:
            assert side.state in ("shutting-down", "closed")
        pair.run(pair.now + rng.choice([0.1, 0.5, 2.0]))
        for tunnel in (pair.lac, pair.lns):
            assert tunnel.state in TUNNEL_STATES
            assert all(s.state in STATES and s.state != "idle" for s in tunnel.sessions.values())
    # Left alone, everything ends: sessions cleared, both tunnels closed, nothing in flight.
    for tunnel in (pair.lac, pair.lns):
        if tunnel.state not in ("shutting-down", "closed"):
            tunnel.close(pair.now)
    pair.run(pair.now + 200.0)
    for tunnel in (pair.lac, pair.lns):
        assert tunnel.state == "closed" and tunnel.sessions == {}
        assert tunnel.transport.unacked == 0
        closed = [e for e in pair.events["lac" if tunnel is pair.lac else "lns"]
                  if isinstance(e, ev.TunnelClosed)]  # fmt: skip
        assert len(closed) == 1
        # Every call that was announced was also closed.
        side_events = pair.events["lac" if tunnel is pair.lac else "lns"]
        opened = {
            e.sid
            for e in side_events
            if isinstance(e, ev.CallEstablished | ev.IncomingCall | ev.CallAnswered)
        }
        ended = {e.sid for e in side_events if isinstance(e, ev.CallClosed)}
        assert opened <= ended
    assert pair.lns.local_tunnel_id == LNS_TID
