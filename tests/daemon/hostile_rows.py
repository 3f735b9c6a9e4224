"""Table-driven hostile input against a live kl2tp-lns: the row type, a hand-made peer and the
runner, shared by the L2TP table (test_hostile_table.py) and the PPP one (test_hostile_ppp.py).

A row is a crafted datagram or sequence and the reaction it must get: a reply (ZLB, StopCCN or
CDN with a result code, or any predicate), counters in ``kl2tpctl show summary`` that rise by
exactly so much, or both. Each row runs on a fresh :class:`RawPeer`: a UDP socket that speaks
L2TP by hand (its own Ns/Nr, nothing retransmitted, anything it likes on the wire), set up to
the row's ``scope`` first (nothing, an established tunnel, or a tunnel with one established
session). Meanwhile a legitimate kl2tp-lac holds live subscriber sessions on the same LNS;
:meth:`HostileLns.check_healthy` asserts they survived, that a new call still comes up and
that the LNS log holds no Traceback.

Usage (a module of rows)::

    ROWS = [Row("truncated AVP", "tunnel", lambda p: p.send_raw(...), counters={...}), ...]

    @pytest.fixture(scope="module")
    def lns(tmp_path_factory): with HostileLns.start(tmp_path_factory.mktemp("h")) as h: yield h

    @pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
    def test_row(lns, row): lns.run(row)

Everything waits for what it checks, with a bound; nothing sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from kl2tp.daemon.control import request
from kl2tp.l2tp.avp import Avp, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import AvpType, MessageType, StopCcnResult
from kl2tp.l2tp.errors import DecodeError, ProtocolError
from kl2tp.l2tp.message import (
    ControlMessage,
    DataMessage,
    challenge_response,
    decode,
    encode_control,
    encode_data,
)
from tests.daemon.harness import BIN, BOUND, Daemon, free_udp_port, simulate, wait_for

A = AvpType
MT = MessageType
SECRET = "hostile-secret"
DEFAULT_IDLE = "30"
"""The LNS's ``[l2tp] idle_timeout`` unless a table sets its own."""
REPLY_BOUND = 20.0
"""Seconds a row waits for its reply (the LNS answers in milliseconds; a loaded host)."""

Scope = Literal["raw", "tunnel", "session"]
"""What a row's peer has before the row acts: nothing, an established tunnel, or a tunnel
with one established session (ICRQ, ICRP, ICCN)."""

Received = ControlMessage | DataMessage


# --- replies -------------------------------------------------------------------------------------


@attrs.frozen
class Reply:
    """What the LNS must send back for a row."""

    what: str
    """For the failure message: "StopCCN result 2 error 8"."""
    matches: Callable[[Received], bool]
    """True for the message that satisfies the row."""


def _result(msg: ControlMessage) -> ResultCode | None:
    rc = msg.get(A.RESULT_CODE)
    return rc if isinstance(rc, ResultCode) else None


def _with_result(msg_type: MessageType, result: int, error: int | None) -> Reply:
    """A ``msg_type`` message with this Result Code (and General Error Code, when given)."""

    def ok(msg: Received) -> bool:
        if not isinstance(msg, ControlMessage) or msg.msg_type is not msg_type:
            return False
        rc = _result(msg)
        return rc is not None and rc.result == result and (error is None or rc.error == error)

    suffix = f" error {error}" if error is not None else ""
    return Reply(f"{msg_type.abbrev} result {result}{suffix}", ok)


def stopccn(result: int, error: int | None = None) -> Reply:
    """A StopCCN with this Result Code (and General Error Code, when given)."""
    return _with_result(MT.STOPCCN, result, error)


def cdn(result: int, error: int | None = None) -> Reply:
    """A CDN with this Result Code (and General Error Code, when given)."""
    return _with_result(MT.CDN, result, error)


def zlb() -> Reply:
    """A ZLB acknowledgement."""
    return Reply("ZLB", lambda m: isinstance(m, ControlMessage) and m.msg_type is None)


def message(msg_type: MessageType) -> Reply:
    """Any control message of this type."""

    def ok(msg: Received) -> bool:
        return isinstance(msg, ControlMessage) and msg.msg_type is msg_type

    return Reply(msg_type.abbrev, ok)


# --- rows ----------------------------------------------------------------------------------------


@attrs.frozen
class Row:
    """One hostile input and its expected reaction."""

    name: str
    """Test id: what the input is."""
    scope: Scope
    """What the peer sets up before ``act`` (see ``Scope``)."""
    act: Callable[[RawPeer], object]
    """Sends the crafted datagram(s) (the return value is ignored)."""
    reply: Reply | None = None
    """What must come back (None: no reply is checked)."""
    counters: Mapping[str, int] = attrs.field(factory=dict)
    """Summary counters (``show summary`` ``counters``) and the exact rise each must show."""
    check: Callable[[RawPeer, HostileLns], object] | None = None
    """Anything else to assert afterwards (e.g. a PPP Nak, a session gone); may wait."""
    silent: bool = False
    """Nothing at all may come back (checked once the counters have risen)."""
    at_least: Mapping[str, int] = attrs.field(factory=dict)
    """Summary counters that must rise by at least this much (where the exact figure
    depends on timing, e.g. a rate limit's refill)."""
    source: str = "127.0.0.1"
    """The address the peer sends from (any of 127/8 works on Linux): a row that must not
    share per-source state (a rate limit) with the others uses its own."""


# --- the peer ------------------------------------------------------------------------------------


class RawPeer:
    """A hand-driven L2TP peer on a UDP socket (blocking, with timeouts).

    It keeps Ns/Nr like a real peer for the messages it sends with :meth:`send` (so crafted
    messages land in the LNS's window unless a row says otherwise) and never retransmits.
    :meth:`receive` decodes what comes back with the secret and advances Nr for every
    sequenced message; data messages are returned as they are.
    """

    def __init__(
        self,
        lns: tuple[str, int],
        secret: bytes,
        *,
        hostname: str = "hostile",
        source: str = "127.0.0.1",
    ) -> None:
        self.lns = lns
        self.secret = secret
        self.hostname = hostname
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.rng = random.Random(hash(self.addr))
        self.tunnel_id = self.rng.randrange(1, 0x10000)
        """Our tunnel id."""
        self.peer_tunnel_id = 0
        """The LNS's tunnel id (after the SCCRP)."""
        self.opened_at: float | None = None
        """When the SCCRQ went out (`open_tunnel`), monotonic."""
        self.ns = 0
        self.nr = 0
        self.received: list[Received] = []
        """Everything received so far, in order."""
        self.session_id = 0
        """Our session id of the session ``open_session`` made."""
        self.peer_session_id = 0
        """The LNS's session id of it."""

    def close(self) -> None:
        """Close the socket (the LNS's state for this peer times out on its own)."""
        self.sock.close()

    # -- sending ----------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendto(data, self.lns)

    def encode(
        self,
        msg_type: MessageType | None,
        avps: list[Avp] | tuple[Avp, ...] = (),
        *,
        session_id: int = 0,
        tunnel_id: int | None = None,
        ns: int | None = None,
        nr: int | None = None,
        hide: frozenset[int] = frozenset(),
    ) -> bytes:
        """Encode a control message with the peer's Ns/Nr (unless given); a message (not a
        ZLB) advances Ns."""
        msg = ControlMessage(
            msg_type,
            self.peer_tunnel_id if tunnel_id is None else tunnel_id,
            session_id,
            self.ns if ns is None else ns,
            self.nr if nr is None else nr,
            tuple(avps),
        )
        if msg_type is not None and ns is None:
            self.ns = (self.ns + 1) & 0xFFFF
        return encode_control(msg, self.secret, hide, self.rng)

    def send(
        self,
        msg_type: MessageType | None,
        avps: list[Avp] | tuple[Avp, ...] = (),
        **kwargs: Any,
    ) -> bytes:
        """Encode (see :meth:`encode`) and send; returns the bytes sent."""
        data = self.encode(msg_type, avps, **kwargs)
        self.send_raw(data)
        return data

    def ack(self) -> None:
        """Send a ZLB acknowledging everything received."""
        self.send(None)

    def send_data(self, payload: bytes, session_id: int | None = None) -> None:
        """A data message (a PPP frame) on the LNS's session (default: ours)."""
        sid = self.peer_session_id if session_id is None else session_id
        self.send_raw(encode_data(self.peer_tunnel_id, sid, payload))

    # -- receiving --------------------------------------------------------------------------

    def receive(self, timeout: float) -> Received | None:
        """The next datagram from the LNS, decoded, or None after ``timeout`` seconds.
        Undecodable datagrams are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return None
            except OSError:
                return None  # e.g. ICMP port unreachable from a previous row's peer
            try:
                msg = decode(data, self.secret)
            except (DecodeError, ProtocolError):
                continue
            sequenced = isinstance(msg, ControlMessage) and msg.msg_type is not None
            if sequenced and msg.ns == self.nr:
                self.nr = (self.nr + 1) & 0xFFFF
            self.received.append(msg)
            return msg

    def expect(self, predicate: Callable[[Received], bool], what: str) -> Received:
        """Receive until ``predicate`` holds (bounded); the matching message."""
        deadline = time.monotonic() + REPLY_BOUND
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None and predicate(msg):
                return msg
        got = [_describe(m) for m in self.received]
        raise AssertionError(f"no {what} from the LNS (received: {got})")

    def expect_control(self, msg_type: MessageType) -> ControlMessage:
        """Receive until a control message of ``msg_type`` comes."""
        msg = self.expect(
            lambda m: isinstance(m, ControlMessage) and m.msg_type is msg_type, msg_type.abbrev
        )
        assert isinstance(msg, ControlMessage)
        return msg

    def pending(self) -> list[Received]:
        """Whatever has arrived already (no waiting)."""
        out: list[Received] = []
        while (msg := self.receive(0.001)) is not None:
            out.append(msg)
        return out

    # -- set-up -----------------------------------------------------------------------------

    def sccrq_avps(self, *, challenge: bytes | None = None) -> list[Avp]:
        """A well-formed SCCRQ's AVPs (RFC 2661 6.1) for this peer."""
        avps = [
            Avp(A.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
            Avp(A.FRAMING_CAPABILITIES, 3),
            Avp(A.BEARER_CAPABILITIES, 3),
            Avp(A.HOST_NAME, self.hostname),
            Avp(A.ASSIGNED_TUNNEL_ID, self.tunnel_id),
            Avp(A.RECEIVE_WINDOW_SIZE, 16),
        ]
        if challenge is not None:
            avps.append(Avp(A.CHALLENGE, challenge))
        return avps

    def open_tunnel(self, *, hide: frozenset[int] = frozenset()) -> None:
        """SCCRQ, SCCRP (its challenge answered, ours checked), SCCCN: established."""
        challenge = self.rng.randbytes(16)
        self.opened_at = time.monotonic()
        self.send(MT.SCCRQ, self.sccrq_avps(challenge=challenge), tunnel_id=0, hide=hide)
        sccrp = self.expect_control(MT.SCCRP)
        response = sccrp.get(A.CHALLENGE_RESPONSE)
        assert response == challenge_response(MT.SCCRP, self.secret, challenge), "bad response"
        self.peer_tunnel_id = int(sccrp.get(A.ASSIGNED_TUNNEL_ID))
        theirs = sccrp.get(A.CHALLENGE)
        avps = []
        if isinstance(theirs, bytes):
            answer = challenge_response(MT.SCCCN, self.secret, theirs)
            avps.append(Avp(A.CHALLENGE_RESPONSE, answer))
        self.send(MT.SCCCN, avps)
        self.expect(zlb().matches, "ZLB for the SCCCN")

    def icrq_avps(self, session_id: int, serial: int = 1) -> list[Avp]:
        """A well-formed ICRQ's AVPs (RFC 2661 6.6)."""
        return [Avp(A.ASSIGNED_SESSION_ID, session_id), Avp(A.CALL_SERIAL_NUMBER, serial)]

    def open_session(self) -> None:
        """ICRQ, ICRP, ICCN: one established session (``session_id``/``peer_session_id``)."""
        self.session_id = self.rng.randrange(1, 0x10000)
        self.send(MT.ICRQ, self.icrq_avps(self.session_id))
        icrp = self.expect_control(MT.ICRP)
        self.peer_session_id = int(icrp.get(A.ASSIGNED_SESSION_ID))
        self.send(
            MT.ICCN,
            [Avp(A.TX_CONNECT_SPEED, 10_000_000), Avp(A.FRAMING_TYPE, 3)],
            session_id=self.peer_session_id,
        )
        self.expect(zlb().matches, "ZLB for the ICCN")


def _describe(msg: Received) -> str:
    if isinstance(msg, DataMessage):
        return f"data cl {msg.session_id} {msg.payload[:8].hex()}"
    name = msg.msg_type.abbrev if msg.msg_type is not None else "ZLB"
    rc = _result(msg)
    return name + (f" result {rc.result} error {rc.error}" if rc is not None else "")


# --- the LNS under attack ------------------------------------------------------------------------


def lns_config(
    tmp: Path, port: int, sock: Path, users: Path, l2tp: Mapping[str, str] | None = None
) -> Path:
    """An LNS on ``port`` with PPP and a pool; ``l2tp``: ``[l2tp]`` keys and their TOML
    values, over the defaults here."""
    keys = {
        "listen": f'"127.0.0.1:{port}"',
        "hostname": '"hostile-lns"',
        "secret": f'"{SECRET}"',
        "hello_interval": "0",
        "idle_timeout": DEFAULT_IDLE,
        "workers": "1",
        **(l2tp or {}),
    }
    section = "".join(f"{k} = {v}\n" for k, v in keys.items())
    path = tmp / "lns.toml"
    path.write_text(
        f"""
[l2tp]
{section}
[dataplane]
kind = "null"
[control]
socket = "{sock}"
[aaa]
users_file = "{users}"
[ppp]
pool = "10.30.0.0/24"
local_address = "10.30.0.1"
"""
    )
    return path


def lac_config(tmp: Path, port: int, sock: Path, name: str = "lac") -> Path:
    """A legitimate LAC of that LNS (``name``: the config file's stem)."""
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "legit-lac"
secret = "{SECRET}"
hello_interval = 2
[dataplane]
kind = "null"
[control]
socket = "{sock}"
[[lac.lns]]
address = "127.0.0.1:{port}"
"""
    )
    return path


class HostileLns:
    """A live kl2tp-lns, a legitimate kl2tp-lac holding ``legit`` subscribers on it, and the
    row runner."""

    def __init__(self, tmp: Path, lns: Daemon, lac: subprocess.Popen[str], port: int) -> None:
        self.tmp = tmp
        self.lns = lns
        self.lac = lac
        self.addr = ("127.0.0.1", port)
        self.sock = tmp / "lns.sock"
        self.lac_cfg = lac_config(tmp, port, tmp / "lac2.sock", "lac2")
        """A second legitimate LAC, for the call that must still come up."""
        self.secret = SECRET.encode()
        self.legit = 0
        self.idle_timeout = math.inf
        """The LNS's ``[l2tp] idle_timeout`` (set by `start`)."""

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, tmp: Path, *, legit: int = 3, l2tp: Mapping[str, str] | None = None
    ) -> Iterator[HostileLns]:
        """Start the LNS (``l2tp``: ``[l2tp]`` keys over ``lns_config``'s) and the legitimate
        LAC; wait until its ``legit`` calls are up."""
        port = free_udp_port()
        users = tmp / "users"
        users.write_text("".join(f"user{n} pass{n}\n" for n in range(1, 50)))
        cfg = lns_config(tmp, port, tmp / "lns.sock", users, l2tp)
        lac_cfg = lac_config(tmp, port, tmp / "lac.sock")
        lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(cfg)], tmp / "lns.log")
        lac: subprocess.Popen[str] | None = None
        try:
            wait_for(
                lambda: (tmp / "lns.sock").exists() or lns.proc.poll() is not None,
                "the LNS control socket",
            )
            assert lns.proc.poll() is None, lns.output()
            with (tmp / "lac.out").open("w") as out:
                lac = subprocess.Popen(
                    [
                        str(BIN / "kl2tp-lac"),
                        "--config",
                        str(lac_cfg),
                        "--simulate",
                        str(legit),
                        "--hold",
                        "600",
                        "--json",
                    ],
                    stdout=out,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            self = cls(tmp, lns, lac, port)
            self.legit = legit
            self.idle_timeout = float((l2tp or {}).get("idle_timeout", DEFAULT_IDLE))
            wait_for(lambda: self.established_sessions() == legit, "the legitimate subscribers")
            yield self
        finally:
            if lac is not None and lac.poll() is None:
                lac.kill()
                lac.wait()
            lns.kill()

    # -- views ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """``kl2tpctl show summary`` (straight over the control socket: rows poll it)."""
        return dict(request(str(self.sock), {"cmd": "show", "what": "summary"}))

    def counters(self) -> dict[str, int]:
        """The summary's counters."""
        return dict(self.summary()["counters"])

    def established_sessions(self) -> int:
        """Sessions of the legitimate LAC that are established with an address."""
        rows = request(str(self.sock), {"cmd": "show", "what": "sessions"})
        return sum(1 for s in rows if s["state"] == "established" and "address" in s)

    # -- rows -------------------------------------------------------------------------------

    def peer(
        self, scope: Scope, *, hostname: str = "hostile", source: str = "127.0.0.1"
    ) -> RawPeer:
        """A fresh peer set up to ``scope``, sending from ``source``."""
        peer = RawPeer(self.addr, self.secret, hostname=hostname, source=source)
        if scope in ("tunnel", "session"):
            peer.open_tunnel()
        if scope == "session":
            peer.open_session()
        return peer

    def run(self, row: Row) -> RawPeer:
        """Run one row; assert its reply and counters. Returns its peer (closed)."""
        peer = self.peer(row.scope, source=row.source)
        try:
            before = self.counters()
            row.act(peer)
            if row.reply is not None:
                peer.expect(row.reply.matches, row.reply.what)
            if row.counters:

                def risen() -> dict[str, int] | None:
                    now = self.counters()
                    delta = {k: now.get(k, 0) - before.get(k, 0) for k in row.counters}
                    return delta if all(delta[k] >= v for k, v in row.counters.items()) else None

                delta = wait_for(risen, f"counters {dict(row.counters)}", REPLY_BOUND)
                assert delta == dict(row.counters), f"{row.name}: counters rose by {delta}"
            if row.at_least:

                def reached() -> bool:
                    now = self.counters()
                    return all(
                        now.get(k, 0) - before.get(k, 0) >= v for k, v in row.at_least.items()
                    )

                wait_for(reached, f"counters at least {dict(row.at_least)}", REPLY_BOUND)
            if row.silent:
                got = [_describe(m) for m in peer.pending() if not self._idle_teardown(peer, m)]
                assert got == [], f"{row.name}: the LNS answered {got}"
            if row.check is not None:
                row.check(peer, self)
        finally:
            peer.close()
        return peer

    def _idle_teardown(self, peer: RawPeer, msg: Received) -> bool:
        """``msg`` is the StopCCN (result 1) that ``idle_timeout`` sends a tunnel without
        sessions, and the tunnel really has lived that long: on a loaded host a row can
        outlive it, and that StopCCN is not the row's reaction."""
        return (
            isinstance(msg, ControlMessage)
            and peer.opened_at is not None
            and time.monotonic() - peer.opened_at >= self.idle_timeout
            and stopccn(StopCcnResult.CLEAR_CONNECTION).matches(msg)
        )

    def check_healthy(self) -> None:
        """The legitimate subscribers are still up, a new call comes up, no Traceback."""
        assert self.established_sessions() == self.legit
        out = simulate(self.lac_cfg, 1)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["established"] == 1
        self.lac.send_signal(signal.SIGTERM)
        _, err = self.lac.communicate(timeout=BOUND)
        assert self.lac.returncode == 0, err
        result = json.loads((self.tmp / "lac.out").read_text())
        assert result["established"] == self.legit and result["failed"] == {}, result
        assert "Traceback" not in self.lns.output()
