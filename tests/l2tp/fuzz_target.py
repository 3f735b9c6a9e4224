"""The endpoint fuzz target, shared by the bounded hypothesis test (test_endpoint_fuzz.py) and
the long campaigns of bench/fuzz.py (atheris, or hypothesis for hours).

One ``EndpointTarget`` is a sans-IO LNS endpoint core with a legitimate LAC tunnel carrying
two established calls (tests/l2tp/test_bounds.py's ``Net``: the daemon's event handling in a
few lines). ``run(ops)`` feeds it datagrams made from seeds (the reference trace's packets,
every datagram of the legitimate exchange, the project's own encodings of each message type)
by mutation, from the LAC's address or strangers', with time moving on, then checks the
invariants: nothing raised anywhere (no ``drop_internal_error``, no ``core_errors``), every
count agrees with the tables and stays under its bound, and once time has moved far enough
every half-open tunnel and every call in setup is gone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Avp, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.endpoint import EndpointConfig, Limits
from kl2tp.l2tp.message import ControlMessage, encode_control, encode_data
from kl2tp.l2tp.tunnel import Tunnel
from tests.l2tp.test_bounds import LNS_SECRET, Net
from tests.l2tp.test_decode_fuzz import GOLDEN

A = AvpType
MT = MessageType
LAC_HOST = "198.51.100.1"
ADDRS = [(LAC_HOST, 1701), (LAC_HOST, 40000), ("203.0.113.7", 1701), ("203.0.113.8", 9)]
LIMITS = Limits(
    max_setup_tunnels=16, max_setup_sessions=64, max_lingering=16, sccrq_burst=64, max_sources=8
)
DTS = (0.0, 0.0, 0.3, 1.0, 4.0, 30.0)
"""The pauses an ``Op`` draws from (the hypothesis strategy and bench/fuzz.py's atheris
splitter alike)."""
PER_TUNNEL = 8
MAX_SESSIONS = 32


@attrs.frozen
class Op:
    """One fuzz step: a datagram built from a seed, sent from an address, after a pause."""

    seed: int
    """Index into the seeds (modulo their number)."""
    edits: tuple[tuple[int, int], ...] = ()
    """(offset, byte) overwrites (offsets modulo the length)."""
    cut: int | None = None
    """Truncate to this length (modulo the length + 1)."""
    extra: bytes = b""
    """Bytes appended."""
    retarget: int = 0
    """0: keep the ids; 1: the legitimate tunnel's id; 2: and one of its sessions; 3: tunnel 0."""
    addr: int = 0
    """Index into ADDRS."""
    dt: float = 0.0
    """Seconds the clock moves before it is sent."""


def own_encodings() -> list[bytes]:
    """One of each message type the project encodes, hidden AVPs included."""
    rng = random.Random(7)
    base = (
        Avp(A.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        Avp(A.FRAMING_CAPABILITIES, 3),
        Avp(A.HOST_NAME, "fuzz"),
        Avp(A.ASSIGNED_TUNNEL_ID, 4242),
        Avp(A.CHALLENGE, b"0123456789abcdef"),
    )
    out = [
        encode_control(ControlMessage(MT.SCCRQ, 0, 0, 0, 0, base)),
        encode_control(
            ControlMessage(MT.SCCRQ, 0, 0, 0, 0, base), LNS_SECRET, frozenset({A.HOST_NAME}), rng
        ),
        encode_control(
            ControlMessage(
                MT.STOPCCN,
                1,
                0,
                1,
                1,
                (Avp(A.ASSIGNED_TUNNEL_ID, 4242), Avp(A.RESULT_CODE, ResultCode(1))),
            )
        ),
        encode_control(ControlMessage(MT.HELLO, 1, 0, 2, 1)),
        encode_control(
            ControlMessage(
                MT.ICRQ, 1, 0, 3, 1, (Avp(A.ASSIGNED_SESSION_ID, 9), Avp(A.CALL_SERIAL_NUMBER, 1))
            )
        ),
        encode_control(
            ControlMessage(
                MT.ICCN, 1, 5, 4, 1, (Avp(A.TX_CONNECT_SPEED, 1), Avp(A.FRAMING_TYPE, 1))
            )
        ),
        encode_control(
            ControlMessage(
                MT.CDN,
                1,
                5,
                5,
                1,
                (Avp(A.ASSIGNED_SESSION_ID, 9), Avp(A.RESULT_CODE, ResultCode(1))),
            )
        ),
        encode_data(1, 5, b"\xff\x03\xc0\x21\x01\x01\x00\x04"),
        encode_data(1, 5, b"\xff\x03\xc0\x21", ns=3, nr=0),
    ]
    return out


class EndpointTarget:
    """A fresh LNS endpoint core with one legitimate tunnel and two calls, and the seeds."""

    def __init__(self) -> None:
        self.net = Net(
            EndpointConfig(limits=LIMITS, max_sessions=MAX_SESSIONS),
            max_setup_sessions_per_tunnel=PER_TUNNEL,
            setup_timeout=5.0,
            session_setup_timeout=5.0,
            idle_timeout=0,
        )
        seen: list[bytes] = []
        core = self.net.core
        receive = core.receive_datagram

        def record(data: bytes, addr: tuple[str, int], now: float) -> None:
            seen.append(data)
            receive(data, addr, now)

        core.receive_datagram = record  # type: ignore[method-assign]
        self.lac: Tunnel = self.net.dial(LAC_HOST, place_call=False)
        for n in range(2):
            self.lac.place_call(self.net.now, ev.CallParams(serial=n))
        self.net.run()
        core.receive_datagram = receive  # type: ignore[method-assign]
        (entry,) = core.tunnels.values()
        self.tid = entry.tunnel_id
        self.sids = list(entry.tunnel.sessions)
        assert len(self.sids) == 2
        self.seeds = [*GOLDEN, *own_encodings(), *seen]

    def build(self, op: Op) -> bytes:
        buf = bytearray(self.seeds[op.seed % len(self.seeds)])
        if op.retarget and len(buf) >= 6:
            off = 4 if buf[0] & 0x40 else 2
            tid = 0 if op.retarget == 3 else self.tid
            buf[off : off + 2] = tid.to_bytes(2, "big")
            if op.retarget == 2:
                sid = self.sids[op.seed % len(self.sids)]
                buf[off + 2 : off + 4] = sid.to_bytes(2, "big")
        for offset, value in op.edits:
            if buf:
                buf[offset % len(buf)] = value
        if op.cut is not None:
            del buf[op.cut % (len(buf) + 1) :]
        return bytes(buf) + op.extra

    def run(self, ops: Sequence[Op]) -> None:
        """Feed the ops, then check the invariants (AssertionError names the broken one)."""
        net = self.net
        for op in ops:
            net.run(net.now + max(0.0, min(op.dt, 100.0)))
            net.core.receive_datagram(self.build(op), ADDRS[op.addr % len(ADDRS)], net.now)
            net.run()
            self.check()
        # Time moves on far enough for every deadline: nothing half-made may remain.
        net.run(net.now + 200.0)
        self.check()
        core = net.core
        assert core.half_open == 0, f"{core.half_open} half-open tunnels outlived their time"
        assert core.setup_count == 0, f"{core.setup_count} calls in setup outlived their time"
        for entry in core.tunnels.values():
            for session in entry.tunnel.sessions.values():
                assert session.state == "established", f"{session} outlived its setup time"

    def check(self) -> None:
        core = self.net.core
        counters = core.counters
        assert counters["drop_internal_error"] == 0, "the receive path raised"
        assert counters["core_errors"] == 0, "a tunnel core raised"
        assert core.half_open == sum(1 for e in core.tunnels.values() if e.half_open)
        assert core.half_open <= LIMITS.max_setup_tunnels
        assert 0 <= core.setup_count <= core.session_count <= MAX_SESSIONS
        assert core.session_count == sum(e.sessions for e in core.tunnels.values())
        assert len(core.lingering) <= LIMITS.max_lingering
        assert len(core._sources) <= LIMITS.max_sources
        for entry in core.tunnels.values():
            tunnel = entry.tunnel
            assert tunnel.setting_up <= PER_TUNNEL, "calls in setup beyond the cap"
            assert len(tunnel.sessions) <= MAX_SESSIONS + PER_TUNNEL
            assert len(tunnel.transport._reorder) <= tunnel.config.receive_window
