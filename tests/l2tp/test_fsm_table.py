"""RFC 2661 section 7, cell by cell: every (state, input) of the tunnel machine (7.2) and of
the four session machines (7.4.1 incoming calls, 7.4.2 outgoing calls, LAC and LNS side).

The tables below are transcribed from the RFC text, independently of ``TUNNEL_TABLE`` and
``session.TABLES``; each cell is checked by *running* the machine from that state and
observing what it does (messages on the wire with their result codes, events, next state),
not by comparing tables.

Where kl2tp's states refine the RFC's (the IOS names):

- tunnel: the RFC's "Send StopCCN, Clean up -> idle" is ``shutting-down`` until the StopCCN
  is acknowledged, then ``closed``; "Clean up -> idle" is ``closed`` (a tunnel core is not
  reused); ``no-sessions-left`` is ``established`` with no session left (IOS: a StopCCN
  follows after the idle timeout).
- session: ``wait-answer`` is the RFC's "acceptable / not acceptable" decision made by the
  driver (``answer_call`` or ``hangup``); the LAC's ``wait-connect`` splits "Receive ICRP,
  acceptable: Send ICCN" so the LAC can program its data plane before the ICCN; "Clean up"
  is ``idle`` (the session is then destroyed).
- A received message the RFC answers with "Send CDN, Clean up" is a ProtocolError with CDN
  result 2 at the session machine; the tunnel turns it into that CDN (checked on the wire at
  the end of this file). A received message the RFC answers with "Send StopCCN, Clean up"
  is a StopCCN with result 7 (FSM error).

Deviations, each because no StopCCN can be addressed: before the SCCRP the initiator does
not know the peer's tunnel id, so ``close``, an SCCCN or any other unexpected message in
``wait-ctl-reply`` ends the tunnel quietly (RFC: Send StopCCN); an idle core ends quietly on
anything but an SCCRQ or a command (RFC: an SCCRP in idle gets a StopCCN; the endpoint only
creates responder cores for SCCRQs, so a stray SCCRP never reaches one).

Notation: ``-`` is a protocol error (a command raises CommandError, any other local input
ProtocolError; nothing changes). Otherwise ``actions/next`` (or just ``next``): upper case
is a message sent (``StopCCN7``: with result code 7), lower case an event (tunnel: ``up``
TunnelEstablished, ``down`` TunnelClosed, ``call`` IncomingCall; session: ``incoming``,
``answered``, ``up`` CallEstablished, ``closed`` CallClosed, ``wan`` WanError, ``link``
LinkInfo). States are abbreviated: wcr wait-ctl-reply, wcc wait-ctl-conn, est established,
nsl no-sessions-left, sd shutting-down, cl closed; wft wait-for-tunnel, wr wait-reply, wa
wait-answer, wc wait-connect, wcs wait-cs-answer.
"""

from __future__ import annotations

import random

import pytest

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Accm, Avp, CallErrors, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import AvpType as A
from kl2tp.l2tp.constants import MessageType as MT
from kl2tp.l2tp.errors import ProtocolError
from kl2tp.l2tp.message import ControlMessage, decode, encode_control
from kl2tp.l2tp.session import (
    TABLES,
    CallKind,
    Clear,
    CommandError,
    Session,
    SessionArg,
    SessionInput,
    SessionState,
    dispatch,
)
from kl2tp.l2tp.tunnel import TUNNEL_TABLE, Tunnel, TunnelConfig, TunnelInput, TunnelState
from tests.l2tp.helpers import Pair

TS, TI = TunnelState, TunnelInput
SS, SI = SessionState, SessionInput

_STATE_ABBREV = {
    "idle": "idle",
    "wcr": "wait-ctl-reply",
    "wcc": "wait-ctl-conn",
    "est": "established",
    "nsl": "no-sessions-left",
    "sd": "shutting-down",
    "cl": "closed",
    "wft": "wait-for-tunnel",
    "wr": "wait-reply",
    "wa": "wait-answer",
    "wc": "wait-connect",
    "wcs": "wait-cs-answer",
}

Cell = tuple[str, str, tuple[str, ...] | None, str | None]
"""(state, input, actions or None for a protocol error, next state)."""


def _parse(table: str) -> list[Cell]:
    cells: list[Cell] = []
    columns: list[str] = []
    for line in table.strip("\n").splitlines():
        if not line.strip():
            continue
        head, _, rest = line.partition("|")
        fields = rest.split()
        if not head.strip():
            columns = [_STATE_ABBREV[f] for f in fields]
            continue
        for state, cell in zip(columns, fields, strict=True):
            if cell == "-":
                cells.append((state, head.strip(), None, None))
                continue
            actions, _, target = cell.rpartition("/")
            cells.append(
                (
                    state,
                    head.strip(),
                    tuple(a for a in actions.split(",") if a),
                    _STATE_ABBREV[target],
                )
            )
    return cells


# --- RFC 2661 7.2: the control connection -----------------------------------------------------

RFC_2661_TUNNEL = """
                  | idle         wcr          wcc          est          nsl          sd           cl
 SCCRQ            | SCCRP/wcc    down/cl      StopCCN7/sd  StopCCN7/sd  StopCCN7/sd  sd           cl
 SCCRP            | down/cl      SCCCN,up/est StopCCN7/sd  StopCCN7/sd  StopCCN7/sd  sd           cl
 SCCCN            | down/cl      down/cl      up/est       StopCCN7/sd  StopCCN7/sd  sd           cl
 StopCCN          | down/cl      down/cl      down/cl      down/cl      down/cl      down/cl      cl
 HELLO            | down/cl      down/cl      StopCCN7/sd  est          nsl          sd           cl
 session          | down/cl      down/cl      StopCCN7/sd  call/est     call/est     sd           cl
 connect          | SCCRQ/wcr    -            -            -            -            -            -
 close            | down/cl      down/cl      StopCCN1/sd  StopCCN1/sd  StopCCN1/sd  sd           cl
 idle-timeout     | -            -            -            StopCCN1/sd  StopCCN1/sd  -            -
 retries-exhausted| down/cl      down/cl      down/cl      down/cl      down/cl      down/cl      -
 setup-timeout    | down/cl      down/cl      StopCCN2/sd  -            -            -            -
 stop-acked       | -            -            -            -            -            down/cl      -
 last-session-gone| -            -            -            nsl          -            -            -
 session-created  | -            -            -            -            est          -            -
"""
"""7.2.1 and 7.2.2 (``session`` is an ICRQ: any call-management message goes to the session
machines, and only in an established tunnel; in no-sessions-left it creates a session, so
the tunnel is established again). Beyond the RFC, for hostile peers (issue 8): a tunnel not
established within ``setup_timeout`` is cleared (``setup-timeout``), and a tunnel the peer
opened that never carries a session meets ``idle-timeout`` in ``established``."""

TUNNEL_CELLS = _parse(RFC_2661_TUNNEL)
PEER_TID = 4242


class Peer:
    """The far end of one tunnel core, by hand: numbers what it sends and reads what the
    core sends (acknowledging it only when told to)."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.ns = 0
        self.nr = 0
        self.now = 0.0

    def send(self, msg_type: MT | None, *avps: Avp, sid: int = 0) -> None:
        tid = 0 if msg_type is MT.SCCRQ else self.tunnel.local_tunnel_id
        msg = ControlMessage(msg_type, tid, sid, self.ns, self.nr, avps)
        if msg_type is not None:
            self.ns += 1
        self.tunnel.receive_datagram(encode_control(msg), self.now)

    def read(self, *, ack: bool = True) -> list[str]:
        """What the core sent (ZLBs aside); ``ack``: count it as received for our Nr."""
        out = []
        for data in self.tunnel.datagrams_to_send(self.now):
            msg = decode(data)
            assert isinstance(msg, ControlMessage)
            if msg.msg_type is None:
                continue
            if ack:
                self.nr += 1
            name = msg.msg_type.abbrev
            if msg.msg_type is MT.STOPCCN:
                rc = msg.get(A.RESULT_CODE)
                assert isinstance(rc, ResultCode)
                name += str(rc.result)
            out.append(name)
        return out

    def events(self) -> list[str]:
        names = {ev.TunnelEstablished: "up", ev.TunnelClosed: "down", ev.IncomingCall: "call"}
        out = []
        while (event := self.tunnel.next_event()) is not None:
            out.append(names.get(type(event), type(event).__name__))
        return out


def _start_avps(host: str = "peer") -> tuple[Avp, ...]:
    return (
        Avp(A.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        Avp(A.FRAMING_CAPABILITIES, 3),
        Avp(A.HOST_NAME, host),
        Avp(A.ASSIGNED_TUNNEL_ID, PEER_TID),
    )


def _tunnel_in(state: str) -> Peer:
    """A core brought into `state` by a real exchange with a hand-driven peer."""
    initiator = state == "wait-ctl-reply"
    tunnel = Tunnel(
        TunnelConfig(hostname="kl2tp"), 555, initiator=initiator, rng=random.Random(3), now=0.0
    )
    peer = Peer(tunnel)
    if state == "wait-ctl-reply":
        tunnel.connect(0.0)
        assert peer.read() == ["SCCRQ"]
    elif state != "idle":
        peer.send(MT.SCCRQ, *_start_avps())
        assert peer.read() == ["SCCRP"]
        if state != "wait-ctl-conn":
            peer.send(MT.SCCCN)
        if state == "no-sessions-left":
            peer.send(MT.ICRQ, Avp(A.ASSIGNED_SESSION_ID, 9), Avp(A.CALL_SERIAL_NUMBER, 1))
            (sid,) = tunnel.sessions
            result = Avp(A.RESULT_CODE, ResultCode(1))
            peer.send(MT.CDN, Avp(A.ASSIGNED_SESSION_ID, 9), result, sid=sid)
        elif state == "shutting-down":
            tunnel.close(0.0)
            assert peer.read(ack=False) == ["StopCCN1"]  # not acknowledged: stays shutting down
        elif state == "closed":
            peer.send(
                MT.STOPCCN, Avp(A.ASSIGNED_TUNNEL_ID, PEER_TID), Avp(A.RESULT_CODE, ResultCode(1))
            )
        peer.send(None)  # ZLB: everything the core sent is acknowledged
    peer.read()
    peer.events()
    assert tunnel.state == state
    return peer


_RECEIVED: dict[str, tuple[MT, tuple[Avp, ...]]] = {
    "SCCRQ": (MT.SCCRQ, _start_avps()),
    "SCCRP": (MT.SCCRP, _start_avps()),
    "SCCCN": (MT.SCCCN, ()),
    "StopCCN": (
        MT.STOPCCN,
        (Avp(A.ASSIGNED_TUNNEL_ID, PEER_TID), Avp(A.RESULT_CODE, ResultCode(1))),
    ),
    "HELLO": (MT.HELLO, ()),
    "session": (MT.ICRQ, (Avp(A.ASSIGNED_SESSION_ID, 77), Avp(A.CALL_SERIAL_NUMBER, 2))),
}


def _fire_tunnel(peer: Peer, name: str) -> None:
    tunnel = peer.tunnel
    if name in _RECEIVED:
        msg_type, avps = _RECEIVED[name]
        peer.send(msg_type, *avps)  # never raises: errors become StopCCNs or a quiet end
    elif name == "connect":
        tunnel.connect(peer.now)
    elif name == "close":
        tunnel.close(peer.now)
    else:
        tunnel.fire(TunnelInput(name), peer.now)


@pytest.mark.parametrize(
    ("state", "name", "actions", "target"),
    TUNNEL_CELLS,
    ids=[f"{s}-{i}" for s, i, _, _ in TUNNEL_CELLS],
)
def test_rfc2661_tunnel_cell(
    state: str, name: str, actions: tuple[str, ...] | None, target: str | None
) -> None:
    peer = _tunnel_in(state)
    if actions is None:
        error = CommandError if name == "connect" else ProtocolError
        with pytest.raises(error):
            _fire_tunnel(peer, name)
        assert peer.tunnel.state == state and peer.read() == [] and peer.events() == []
        return
    _fire_tunnel(peer, name)
    assert peer.tunnel.state == target
    sent = peer.read()
    events = peer.events()
    assert [a for a in actions if a[0].isupper()] == sent
    assert [a for a in actions if a[0].islower()] == events


def test_every_tunnel_state_and_input_is_transcribed() -> None:
    assert len(TUNNEL_CELLS) == len(TunnelState) * len(TunnelInput)
    assert {(s, i) for s, i, _, _ in TUNNEL_CELLS} == {
        (s.value, i.value) for s in TunnelState for i in TunnelInput
    }


def test_tunnel_table_has_no_entry_the_rfc_table_lacks() -> None:
    """Every table entry is a cell the RFC table allows (received messages aside: there the
    RFC's "Send StopCCN" is the protocol-error path, which has no entry)."""
    allowed = {(s, i) for s, i, actions, _ in TUNNEL_CELLS if actions is not None}
    assert {(s.value, i.value) for s, i in TUNNEL_TABLE} <= allowed


def test_states_and_inputs_keep_their_ios_names() -> None:
    assert [s.value for s in TunnelState] == [
        "idle", "wait-ctl-reply", "wait-ctl-conn", "established", "no-sessions-left",
        "shutting-down", "closed",
    ]  # fmt: skip
    assert [s.value for s in SessionState] == [
        "idle", "wait-for-tunnel", "wait-reply", "wait-answer", "wait-connect",
        "wait-cs-answer", "established",
    ]  # fmt: skip
    assert f"{TS.WAIT_CTL_REPLY}" == "wait-ctl-reply" and str(SS.WAIT_CS_ANSWER) == "wait-cs-answer"
    assert MT.STOPCCN.abbrev == TI.STOPCCN and SI.of(MT.ICRQ) is SI.ICRQ
    with pytest.raises(KeyError):
        SI.of(MT.HELLO)


# --- RFC 2661 7.4: the calls ------------------------------------------------------------------

LAC_INCOMING = """
             | idle     wft          wr               wa   wc               wcs  est
 ICRQ        | -        -            -                -    -                -    -
 ICRP        | -        -            answered/wc      -    -                -    -
 ICCN        | -        -            -                -    -                -    -
 OCRQ        | -        -            -                -    -                -    -
 OCRP        | -        -            -                -    -                -    -
 OCCN        | -        -            -                -    -                -    -
 CDN         | -        -            closed/idle      -    closed/idle      -    closed/idle
 WEN         | -        -            -                -    -                -    -
 SLI         | -        -            -                -    -                -    link/est
 place       | wft      -            -                -    -                -    -
 tunnel-up   | -        ICRQ/wr      -                -    -                -    -
 answer      | -        -            -                -    -                -    -
 connect     | -        -            -                -    ICCN,up/est      -    -
 hangup      | -        closed/idle  CDN,closed/idle  -    CDN,closed/idle  -    CDN,closed/idle
 tunnel-down | -        closed/idle  closed/idle      -    closed/idle      -    closed/idle
 wan-error   | -        -            -                -    -                -    WEN/est
 link-info   | -        -            -                -    -                -    -
"""
"""7.4.1, LAC side (a call placed with ``defer_connect``: the ICRP is reported and the ICCN
waits for ``connect``; otherwise the tunnel connects at once, same wire)."""

LNS_INCOMING = """
             | idle        wft  wr   wa               wc               wcs  est
 ICRQ        | incoming/wa -    -    -                -                -    -
 ICRP        | -           -    -    -                -                -    -
 ICCN        | -           -    -    -                up/est           -    -
 OCRQ        | -           -    -    -                -                -    -
 OCRP        | -           -    -    -                -                -    -
 OCCN        | -           -    -    -                -                -    -
 CDN         | -           -    -    closed/idle      closed/idle      -    closed/idle
 WEN         | -           -    -    -                -                -    wan/est
 SLI         | -           -    -    -                -                -    -
 place       | -           -    -    -                -                -    -
 tunnel-up   | -           -    -    -                -                -    -
 answer      | -           -    -    ICRP/wc          -                -    -
 connect     | -           -    -    -                -                -    -
 hangup      | -           -    -    CDN,closed/idle  CDN,closed/idle  -    CDN,closed/idle
 tunnel-down | -           -    -    closed/idle      closed/idle      -    closed/idle
 wan-error   | -           -    -    -                -                -    -
 link-info   | -           -    -    -                -                -    SLI/est
"""
"""7.4.1, LNS side."""

LAC_OUTGOING = """
             | idle        wft  wr   wa               wc   wcs              est
 ICRQ        | -           -    -    -                -    -                -
 ICRP        | -           -    -    -                -    -                -
 ICCN        | -           -    -    -                -    -                -
 OCRQ        | incoming/wa -    -    -                -    -                -
 OCRP        | -           -    -    -                -    -                -
 OCCN        | -           -    -    -                -    -                -
 CDN         | -           -    -    closed/idle      -    closed/idle      closed/idle
 WEN         | -           -    -    -                -    -                -
 SLI         | -           -    -    -                -    -                link/est
 place       | -           -    -    -                -    -                -
 tunnel-up   | -           -    -    -                -    -                -
 answer      | -           -    -    OCRP/wcs         -    -                -
 connect     | -           -    -    -                -    OCCN,up/est      -
 hangup      | -           -    -    CDN,closed/idle  -    CDN,closed/idle  CDN,closed/idle
 tunnel-down | -           -    -    closed/idle      -    closed/idle      closed/idle
 wan-error   | -           -    -    -                -    -                WEN/est
 link-info   | -           -    -    -                -    -                -
"""
"""7.4.2, LAC side (``Tunnel.answer_call`` runs answer and connect back to back)."""

LNS_OUTGOING = """
             | idle  wft          wr               wa   wc               wcs  est
 ICRQ        | -     -            -                -    -                -    -
 ICRP        | -     -            -                -    -                -    -
 ICCN        | -     -            -                -    -                -    -
 OCRQ        | -     -            -                -    -                -    -
 OCRP        | -     -            wc               -    -                -    -
 OCCN        | -     -            -                -    up/est           -    -
 CDN         | -     -            closed/idle      -    closed/idle      -    closed/idle
 WEN         | -     -            -                -    -                -    wan/est
 SLI         | -     -            -                -    -                -    -
 place       | wft   -            -                -    -                -    -
 tunnel-up   | -     OCRQ/wr      -                -    -                -    -
 answer      | -     -            -                -    -                -    -
 connect     | -     -            -                -    -                -    -
 hangup      | -     closed/idle  CDN,closed/idle  -    CDN,closed/idle  -    CDN,closed/idle
 tunnel-down | -     closed/idle  closed/idle      -    closed/idle      -    closed/idle
 wan-error   | -     -            -                -    -                -    -
 link-info   | -     -            -                -    -                -    SLI/est
"""
"""7.4.2, LNS side."""

SESSION_TABLES = {
    CallKind.LAC_INCOMING: _parse(LAC_INCOMING),
    CallKind.LNS_INCOMING: _parse(LNS_INCOMING),
    CallKind.LAC_OUTGOING: _parse(LAC_OUTGOING),
    CallKind.LNS_OUTGOING: _parse(LNS_OUTGOING),
}
SESSION_CELLS = [(kind, *cell) for kind, cells in SESSION_TABLES.items() for cell in cells]

_EVENT_NAMES = {
    ev.IncomingCall: "incoming",
    ev.CallAnswered: "answered",
    ev.CallEstablished: "up",
    ev.CallClosed: "closed",
    ev.WanError: "wan",
    ev.LinkInfo: "link",
}


class Host:
    """Records what a session asks of its tunnel."""

    def __init__(self) -> None:
        self.sent: list[tuple[MT, list[Avp], int]] = []
        self.events: list[ev.Event] = []

    def send_session(
        self, session: Session, msg_type: MT, avps: list[Avp], now: float, header_sid: int
    ) -> None:
        self.sent.append((msg_type, avps, header_sid))

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)

    def session_changed(self, session: Session, old: SS, new: SS, now: float) -> None:
        pass


PEER_SID = 45
_SESSION_MESSAGES: dict[str, tuple[Avp, ...]] = {
    "ICRQ": (Avp(A.ASSIGNED_SESSION_ID, PEER_SID), Avp(A.CALL_SERIAL_NUMBER, 5)),
    "ICRP": (Avp(A.ASSIGNED_SESSION_ID, PEER_SID),),
    "ICCN": (Avp(A.TX_CONNECT_SPEED, 64000), Avp(A.FRAMING_TYPE, 1)),
    "OCRQ": (
        Avp(A.ASSIGNED_SESSION_ID, PEER_SID),
        Avp(A.CALL_SERIAL_NUMBER, 5),
        Avp(A.MINIMUM_BPS, 0),
        Avp(A.MAXIMUM_BPS, 64000),
        Avp(A.BEARER_TYPE, 3),
        Avp(A.FRAMING_TYPE, 3),
        Avp(A.CALLED_NUMBER, "123"),
    ),
    "OCRP": (Avp(A.ASSIGNED_SESSION_ID, PEER_SID),),
    "OCCN": (Avp(A.TX_CONNECT_SPEED, 64000), Avp(A.FRAMING_TYPE, 1)),
    "CDN": (Avp(A.ASSIGNED_SESSION_ID, PEER_SID), Avp(A.RESULT_CODE, ResultCode(3))),
    "WEN": (Avp(A.CALL_ERRORS, CallErrors(crc_errors=1)),),
    "SLI": (Avp(A.ACCM, Accm(0xFFFFFFFF, 0)),),
}
_ARGS: dict[str, SessionArg] = {
    "connect": ev.ConnectInfo(tx_connect_speed=9600),
    "hangup": Clear(3, 0, "admin"),
    "tunnel-down": Clear(2, 0, "tunnel closed"),
    "wan-error": CallErrors(crc_errors=2),
    "link-info": Accm(0, 0xFFFFFFFF),
}


def _session_in(kind: CallKind, state: str) -> Session:
    session = Session(kind, 7, 0.0, ev.CallParams(serial=5))
    session.state = SessionState(state)
    session.defer_connect = kind is CallKind.LAC_INCOMING
    if state not in ("idle", "wait-for-tunnel", "wait-reply"):
        session.peer_sid = PEER_SID
    return session


@pytest.mark.parametrize(
    ("kind", "state", "name", "actions", "target"),
    SESSION_CELLS,
    ids=[f"{k.value}-{s}-{i}" for k, s, i, _, _ in SESSION_CELLS],
)
def test_rfc2661_session_cell(
    kind: CallKind, state: str, name: str, actions: tuple[str, ...] | None, target: str | None
) -> None:
    host, session = Host(), _session_in(kind, state)
    event = SessionInput(name)
    msg = None
    if name in _SESSION_MESSAGES:
        msg = ControlMessage(MT[name.upper()], 1, 7, 0, 0, _SESSION_MESSAGES[name])
    arg = _ARGS.get(name)
    if actions is None:
        error = ProtocolError if msg is not None else CommandError
        with pytest.raises(error) as info:
            dispatch(host, session, event, 1.0, msg, arg)
        if isinstance(info.value, ProtocolError):
            assert info.value.result == 2 and info.value.session_id == 7  # a CDN, result 2
        assert session.state == state and host.sent == [] and host.events == []
        return
    dispatch(host, session, event, 1.0, msg, arg)
    assert session.state == target
    assert [m.abbrev for m, _, _ in host.sent] == [a for a in actions if a.isupper()]
    assert [_EVENT_NAMES[type(e)] for e in host.events] == [a for a in actions if a.islower()]
    for msg_type, avps, header_sid in host.sent:
        # addressed to the peer's session (0 while the peer has not told its id)
        assert header_sid == session.peer_sid
        if msg_type is MT.CDN:
            (rc,) = [a.value for a in avps if a.type == A.RESULT_CODE]
            assert rc == ResultCode(3, 0, "admin")  # the hangup's Clear
    for closed in host.events:
        if isinstance(closed, ev.CallClosed):
            assert closed.by_peer is (name == "CDN")


def test_every_session_state_and_input_is_transcribed() -> None:
    every = {(s.value, i.value) for s in SessionState for i in SessionInput}
    for cells in SESSION_TABLES.values():
        assert len(cells) == len(every)
        assert {(s, i) for s, i, _, _ in cells} == every


def test_session_tables_have_no_entry_the_rfc_tables_lack() -> None:
    for kind, cells in SESSION_TABLES.items():
        allowed = {(s, i) for s, i, actions, _ in cells if actions is not None}
        assert {(s.value, i.value) for s, i in TABLES[kind]} == allowed


# --- the tunnel puts the session machines' protocol errors on the wire -------------------------

_AFTER_UP: dict[MT, tuple[Avp, ...]] = {
    MT.ICRP: (Avp(A.ASSIGNED_SESSION_ID, 1),),
    MT.ICCN: (Avp(A.TX_CONNECT_SPEED, 64000), Avp(A.FRAMING_TYPE, 1)),
    MT.OCRP: (Avp(A.ASSIGNED_SESSION_ID, 1),),
    MT.OCCN: (Avp(A.TX_CONNECT_SPEED, 64000), Avp(A.FRAMING_TYPE, 1)),
    MT.WEN: (Avp(A.CALL_ERRORS, CallErrors()),),
    MT.SLI: (Avp(A.ACCM, Accm(0, 0)),),
}


@pytest.mark.parametrize("outgoing", [False, True], ids=["incoming", "outgoing"])
@pytest.mark.parametrize("sender", ["lac", "lns"])
@pytest.mark.parametrize("msg_type", list(_AFTER_UP), ids=[m.abbrev for m in _AFTER_UP])
def test_unexpected_message_in_an_established_call_is_answered_with_cdn_2(
    outgoing: bool, sender: str, msg_type: MT
) -> None:
    """RFC 2661 7.4: "established, Receive ICRQ, ICRP, ICCN (OCRQ, OCRP, OCCN): Send CDN,
    Clean up". WEN goes LAC to LNS and SLI LNS to LAC only: the other way is an error too."""
    pair = Pair()
    pair.establish()
    caller = pair.lns if outgoing else pair.lac
    sid = caller.place_call(pair.now, ev.CallParams(serial=1))
    pair.run(pair.now + 1.0)
    assert caller.sessions[sid].state == "established"
    src, dst = (pair.lac, pair.lns) if sender == "lac" else (pair.lns, pair.lac)
    (src_session,) = src.sessions.values()
    (dst_sid,) = dst.sessions
    allowed = (sender, msg_type) in (("lac", MT.WEN), ("lns", MT.SLI))
    src.send_session(src_session, msg_type, list(_AFTER_UP[msg_type]), pair.now, dst_sid)
    pair.run(pair.now + 1.0)
    cdns = [decode(d) for name, d in pair.wire if name != sender]
    cdns = [m for m in cdns if isinstance(m, ControlMessage) and m.msg_type is MT.CDN]
    if allowed:
        assert cdns == [] and dst.sessions[dst_sid].state == "established"
        return
    (cdn,) = cdns
    result = cdn.get(A.RESULT_CODE)
    assert isinstance(result, ResultCode) and result.result == 2
    assert cdn.session_id == src_session.local_sid
    assert dst.sessions == {} and src.sessions == {}
    (closed,) = pair.of_type("lac" if sender == "lac" else "lns", ev.CallClosed)
    assert closed.by_peer and closed.result == 2
