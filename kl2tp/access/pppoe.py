"""PPPoE (RFC 2516) on the access concentrator's side, sans-IO.

The LAC's access side: subscribers find it with PADI, are offered service with PADO, ask for a
session with PADR and get its id in PADS; PPP then travels in session frames (ethertype
0x8864) until a PADT from either end. :class:`PppoeServer` makes every decision and does no
I/O: the driver feeds it whole Ethernet frames with ``receive_frame(frame, now)``, sends what
``frames_to_send()`` returns and reads ``next_event()``.

- No state for a PADI: the PADO carries an AC-Cookie (a MAC of the subscriber's address and
  a time slot under a secret drawn at start), and only a PADR that returns a valid cookie
  gets a session, so a flood of PADIs costs nothing to hold.
- Session ids are random, 1..65534 (0 is "none" and 0xffff reserved), allocated and
  released in O(1) (:class:`kl2tp.l2tp.endpoint.TunnelIds`), at most ``max_sessions``.
- A PADR retransmitted because its PADS was lost (same subscriber MAC and Host-Uniq) gets the
  same session's PADS again, not a second session.
- A session frame or PADT is accepted only from the MAC the session was made with.
- Session data for no session gets a PADT (a subscriber that outlived our restart redials).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import random
import struct
from collections import Counter, deque
from collections.abc import Callable, Sequence

import attrs

from kl2tp.l2tp.endpoint import TunnelIds, TunnelIdsExhausted

__all__ = [
    "BROADCAST",
    "ETH_P_PPP_DISC",
    "ETH_P_PPP_SES",
    "AcConfig",
    "Code",
    "Packet",
    "PppoeDecodeError",
    "PppoeEvent",
    "PppoeServer",
    "SessionClosed",
    "SessionFrame",
    "SessionOpened",
    "Tag",
    "decode",
    "encode_discovery",
    "encode_session",
]

ETH_P_PPP_DISC = 0x8863
"""Ethertype of the Discovery stage."""
ETH_P_PPP_SES = 0x8864
"""Ethertype of the PPP Session stage."""
BROADCAST = b"\xff" * 6
MAX_SESSION_ID = 0xFFFE
"""Largest session id (0xffff is reserved, RFC 2516 section 4)."""
VER_TYPE = 0x11
"""Version 1, type 1 (RFC 2516 section 4)."""

_ETH = struct.Struct("!6s6sH")
_PPPOE = struct.Struct("!BBHH")
_TAG = struct.Struct("!HH")
_HEADER = _ETH.size + _PPPOE.size
COOKIE_MAC_SIZE = 16
"""Bytes of HMAC-SHA256 an AC-Cookie keeps."""


class Code(enum.IntEnum):
    """PPPoE CODE field (RFC 2516 section 5)."""

    SESSION = 0x00
    PADO = 0x07
    PADI = 0x09
    PADR = 0x19
    PADS = 0x65
    PADT = 0xA7


class Tag(enum.IntEnum):
    """TAG_TYPE values (RFC 2516 Appendix A, RFC 4638)."""

    END_OF_LIST = 0x0000
    SERVICE_NAME = 0x0101
    AC_NAME = 0x0102
    HOST_UNIQ = 0x0103
    AC_COOKIE = 0x0104
    VENDOR_SPECIFIC = 0x0105
    RELAY_SESSION_ID = 0x0110
    PPP_MAX_PAYLOAD = 0x0120
    SERVICE_NAME_ERROR = 0x0201
    AC_SYSTEM_ERROR = 0x0202
    GENERIC_ERROR = 0x0203


class PppoeDecodeError(Exception):
    """The only exception the decoder raises: the frame is not valid PPPoE."""


@attrs.frozen(slots=True)
class Packet:
    """One decoded PPPoE frame."""

    dst: bytes
    """Destination MAC."""
    src: bytes
    """Source MAC."""
    ethertype: int
    """``ETH_P_PPP_DISC`` or ``ETH_P_PPP_SES``."""
    code: int
    """CODE (:class:`Code`; unknown values kept as ints)."""
    session_id: int
    """SESSION_ID."""
    payload: bytes
    """The LENGTH bytes after the header (Ethernet padding cut off)."""

    def tags(self) -> list[tuple[int, bytes]]:
        """The payload as TAGs, in order, up to End-Of-List (Discovery packets).

        Raises:
            PppoeDecodeError: a TAG runs past the payload.
        """
        out: list[tuple[int, bytes]] = []
        data, pos, end = self.payload, 0, len(self.payload)
        while pos < end:
            if pos + _TAG.size > end:
                raise PppoeDecodeError(f"truncated TAG header at payload offset {pos}")
            tag_type, length = _TAG.unpack_from(data, pos)
            pos += _TAG.size
            if pos + length > end:
                raise PppoeDecodeError(f"TAG 0x{tag_type:04x} longer than the payload")
            if tag_type == Tag.END_OF_LIST:
                break
            out.append((tag_type, data[pos : pos + length]))
            pos += length
        return out


def decode(frame: bytes) -> Packet:
    """An Ethernet frame (14-byte header, no FCS) carrying PPPoE.

    Raises:
        PppoeDecodeError: too short, another ethertype, wrong version/type, or a LENGTH
            beyond the frame.
    """
    if len(frame) < _HEADER:
        raise PppoeDecodeError(f"frame of {len(frame)} bytes is shorter than PPPoE's header")
    dst, src, ethertype = _ETH.unpack_from(frame)
    if ethertype not in (ETH_P_PPP_DISC, ETH_P_PPP_SES):
        raise PppoeDecodeError(f"ethertype 0x{ethertype:04x} is not PPPoE")
    ver_type, code, session_id, length = _PPPOE.unpack_from(frame, _ETH.size)
    if ver_type != VER_TYPE:
        raise PppoeDecodeError(f"version/type 0x{ver_type:02x}, expected 0x11")
    if _HEADER + length > len(frame):
        raise PppoeDecodeError(f"LENGTH {length} runs past the frame")
    return Packet(dst, src, ethertype, code, session_id, frame[_HEADER : _HEADER + length])


def encode_tags(tags: Sequence[tuple[int, bytes]]) -> bytes:
    """TAGs in order, as a Discovery payload."""
    return b"".join(_TAG.pack(t, len(v)) + v for t, v in tags)


def encode_discovery(
    dst: bytes, src: bytes, code: int, session_id: int, tags: Sequence[tuple[int, bytes]]
) -> bytes:
    """A Discovery frame (ethertype 0x8863)."""
    payload = encode_tags(tags)
    return (
        _ETH.pack(dst, src, ETH_P_PPP_DISC)
        + _PPPOE.pack(VER_TYPE, code, session_id, len(payload))
        + payload
    )


def encode_session(dst: bytes, src: bytes, session_id: int, ppp: bytes) -> bytes:
    """A session frame carrying one PPP frame (protocol field first, no ff 03)."""
    return (
        _ETH.pack(dst, src, ETH_P_PPP_SES)
        + _PPPOE.pack(VER_TYPE, Code.SESSION, session_id, len(ppp))
        + ppp
    )


def mac_text(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


# -- events -------------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class SessionOpened:
    """A subscriber has a session (its PADS is in the outbox)."""

    session_id: int
    """The session's id."""
    peer: bytes
    """The subscriber's MAC."""
    service_name: str
    """The Service-Name it asked for ("" for any)."""


@attrs.frozen(slots=True)
class SessionFrame:
    """A PPP frame from a session's subscriber."""

    session_id: int
    """The session's id."""
    ppp: bytes
    """The PPP frame, protocol field first."""


@attrs.frozen(slots=True)
class SessionClosed:
    """A session is gone (its id is free again)."""

    session_id: int
    """The session's id."""
    by_peer: bool
    """True for the subscriber's PADT, False for our :meth:`PppoeServer.terminate`."""
    message: str = ""
    """The Generic-Error text of the subscriber's PADT, if any (escape before logging)."""


PppoeEvent = SessionOpened | SessionFrame | SessionClosed


# -- the access concentrator --------------------------------------------------------------------


@attrs.frozen
class AcConfig:
    """What the access concentrator offers."""

    ac_name: str = "kl2tp"
    """AC-Name TAG."""
    service_names: tuple[str, ...] = ()
    """Services offered; empty: any Service-Name a subscriber asks for."""
    max_sessions: int = 4096
    """Sessions at once (1..65534); at the limit no PADO is sent and a PADR gets an
    AC-System-Error."""
    cookie_slot: float = 30.0
    """Seconds per AC-Cookie time slot; a cookie is honoured in its slot and the next."""

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.max_sessions <= MAX_SESSION_ID:
            raise ValueError(f"max_sessions must be 1..{MAX_SESSION_ID}")


@attrs.define(slots=True)
class PppoeSession:
    """One PPPoE session."""

    session_id: int
    peer: bytes
    """The subscriber's MAC."""
    host_uniq: bytes | None
    """Its Host-Uniq, if it sent one."""
    service_name: str
    pads: bytes
    """The PADS frame sent, resent for a duplicate PADR."""


class PppoeServer:
    """The access concentrator's Discovery and Session stages for one interface."""

    def __init__(
        self, config: AcConfig, mac: bytes, *, rng: random.Random, secret: bytes | None = None
    ) -> None:
        """``mac``: the interface's address; ``secret``: the AC-Cookie key (random if None)."""
        if len(mac) != 6:
            raise ValueError("a MAC address has 6 bytes")
        self.config = config
        self.mac = mac
        self._secret = secret if secret is not None else rng.randbytes(32)
        self._ids = TunnelIds(rng, MAX_SESSION_ID)
        self.sessions: dict[int, PppoeSession] = {}
        """Live sessions by id."""
        self._by_peer: dict[tuple[bytes, bytes | None], int] = {}
        self._out: list[bytes] = []
        self._events: deque[PppoeEvent] = deque()
        self.counters: Counter[str] = Counter()
        """``in_PADI``... by code, and ``drop_<reason>`` for what was ignored."""
        self._dispatch: dict[tuple[int, int], Callable[[Packet, float], None]] = {
            (ETH_P_PPP_DISC, Code.PADI): self._padi,
            (ETH_P_PPP_DISC, Code.PADR): self._padr,
            (ETH_P_PPP_DISC, Code.PADT): self._padt,
            (ETH_P_PPP_SES, Code.SESSION): self._session_data,
        }

    # -- I/O surface ---------------------------------------------------------------------------

    def receive_frame(self, frame: bytes, now: float) -> None:
        """One Ethernet frame from the interface (either PPPoE ethertype)."""
        try:
            packet = decode(frame)
        except PppoeDecodeError:
            self.counters["drop_malformed"] += 1
            return
        if packet.dst != self.mac and packet.dst != BROADCAST:
            self.counters["drop_not_ours"] += 1
            return
        handler = self._dispatch.get((packet.ethertype, packet.code))
        if handler is None:
            self.counters["drop_unexpected_code"] += 1
            return
        try:
            handler(packet, now)
        except PppoeDecodeError:
            self.counters["drop_malformed"] += 1

    def frames_to_send(self) -> list[bytes]:
        """Frames for the interface, in order."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> PppoeEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """Discovery keeps no state that expires: never."""
        return None

    # -- commands --------------------------------------------------------------------------

    def encapsulate(self, session_id: int, ppp: bytes) -> bytes | None:
        """The session frame carrying ``ppp`` to the session's subscriber (the data fast
        path: returned, not queued); None when the session is gone."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        return encode_session(session.peer, self.mac, session_id, ppp)

    def terminate(self, session_id: int, message: str = "") -> None:
        """End a session with a PADT (``message`` as its Generic-Error). Gone already:
        nothing happens."""
        session = self._forget(session_id)
        if session is None:
            return
        tags = [(Tag.GENERIC_ERROR, message.encode())] if message else []
        self._send(encode_discovery(session.peer, self.mac, Code.PADT, session_id, tags))
        self._events.append(SessionClosed(session_id, by_peer=False))

    # -- Discovery -------------------------------------------------------------------------

    def _padi(self, packet: Packet, now: float) -> None:
        self.counters["in_PADI"] += 1
        tags = packet.tags()
        if packet.session_id != 0:
            self.counters["drop_bad_session_id"] += 1
            return
        wanted = _one(tags, Tag.SERVICE_NAME)
        if wanted is None:
            self.counters["drop_no_service_name"] += 1
            return
        name = wanted.decode("utf-8", "surrogateescape")
        if not self._offers(name):
            self.counters["drop_unknown_service"] += 1
            return
        if len(self.sessions) >= self.config.max_sessions:
            self.counters["drop_full"] += 1
            return
        reply = [(int(Tag.AC_NAME), self.config.ac_name.encode())]
        offered = (name,) if name or not self.config.service_names else self.config.service_names
        reply += [(int(Tag.SERVICE_NAME), s.encode("utf-8", "surrogateescape")) for s in offered]
        reply.append((int(Tag.AC_COOKIE), self._cookie(packet.src, _slot(now, self.config))))
        reply += _echoed(tags)
        self._send(encode_discovery(packet.src, self.mac, Code.PADO, 0, reply))
        self.counters["out_PADO"] += 1

    def _padr(self, packet: Packet, now: float) -> None:
        self.counters["in_PADR"] += 1
        if packet.dst != self.mac:
            self.counters["drop_padr_broadcast"] += 1
            return
        tags = packet.tags()
        cookie = _one(tags, Tag.AC_COOKIE)
        if cookie is None or not self._cookie_ok(packet.src, cookie, now):
            self.counters["drop_bad_cookie"] += 1
            return
        host_uniq = _one(tags, Tag.HOST_UNIQ)
        existing = self._by_peer.get((packet.src, host_uniq))
        if existing is not None:
            self.counters["duplicate_PADR"] += 1
            self._send(self.sessions[existing].pads)
            return
        wanted = _one(tags, Tag.SERVICE_NAME)
        name = (wanted or b"").decode("utf-8", "surrogateescape")
        echoed = [(int(Tag.SERVICE_NAME), wanted or b""), *_echoed(tags)]
        if wanted is None or not self._offers(name):
            self._refuse(packet.src, Tag.SERVICE_NAME_ERROR, "service not offered", echoed)
            return
        if len(self.sessions) >= self.config.max_sessions:
            self._refuse(packet.src, Tag.AC_SYSTEM_ERROR, "session limit reached", echoed)
            return
        try:
            sid = self._ids.allocate()
        except TunnelIdsExhausted:  # pragma: no cover - max_sessions is below the id space
            self._refuse(packet.src, Tag.AC_SYSTEM_ERROR, "no free session id", echoed)
            return
        pads = encode_discovery(packet.src, self.mac, Code.PADS, sid, echoed)
        self.sessions[sid] = PppoeSession(sid, packet.src, host_uniq, name, pads)
        self._by_peer[(packet.src, host_uniq)] = sid
        self._send(pads)
        self.counters["out_PADS"] += 1
        self._events.append(SessionOpened(sid, packet.src, name))

    def _refuse(self, peer: bytes, error: Tag, text: str, echoed: list[tuple[int, bytes]]) -> None:
        """A PADS with session id 0 and an error TAG (RFC 2516 5.4)."""
        self.counters[f"refused_{error.name.lower()}"] += 1
        tags = [*echoed, (int(error), text.encode())]
        self._send(encode_discovery(peer, self.mac, Code.PADS, 0, tags))

    def _padt(self, packet: Packet, now: float) -> None:
        self.counters["in_PADT"] += 1
        session = self.sessions.get(packet.session_id)
        if session is None or session.peer != packet.src:
            self.counters["drop_padt_unknown_session"] += 1
            return
        self._forget(packet.session_id)
        error = _one(packet.tags(), Tag.GENERIC_ERROR) if packet.payload else None
        message = error.decode("utf-8", "replace") if error else ""
        self._events.append(SessionClosed(packet.session_id, by_peer=True, message=message))

    def _session_data(self, packet: Packet, now: float) -> None:
        session = self.sessions.get(packet.session_id)
        if session is None or session.peer != packet.src:
            self.counters["drop_unknown_session"] += 1
            if packet.dst == self.mac and packet.session_id:
                # A subscriber still talking on a session we no longer have: tell it.
                self._send(encode_discovery(packet.src, self.mac, Code.PADT, packet.session_id, []))
                self.counters["out_PADT_unknown_session"] += 1
            return
        self._events.append(SessionFrame(packet.session_id, packet.payload))

    # -- helpers ----------------------------------------------------------------------------

    def _offers(self, name: str) -> bool:
        names = self.config.service_names
        return not names or name == "" or name in names

    def _cookie(self, peer: bytes, slot: int) -> bytes:
        stamp = struct.pack("!I", slot & 0xFFFFFFFF)
        mac = hmac.new(self._secret, stamp + peer, hashlib.sha256).digest()
        return stamp + mac[:COOKIE_MAC_SIZE]

    def _cookie_ok(self, peer: bytes, cookie: bytes, now: float) -> bool:
        if len(cookie) != 4 + COOKIE_MAC_SIZE:
            return False
        (slot,) = struct.unpack_from("!I", cookie)
        current = _slot(now, self.config) & 0xFFFFFFFF
        if slot not in (current, (current - 1) & 0xFFFFFFFF):
            return False
        return hmac.compare_digest(cookie, self._cookie(peer, slot))

    def _forget(self, session_id: int) -> PppoeSession | None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            self._by_peer.pop((session.peer, session.host_uniq), None)
            self._ids.release(session_id)
        return session

    def _send(self, frame: bytes) -> None:
        self._out.append(frame)


def _slot(now: float, config: AcConfig) -> int:
    return int(now // config.cookie_slot)


def _one(tags: list[tuple[int, bytes]], tag: Tag) -> bytes | None:
    """The value of the first ``tag``, or None."""
    for tag_type, value in tags:
        if tag_type == tag:
            return value
    return None


def _echoed(tags: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Host-Uniq and Relay-Session-Id go back unchanged (RFC 2516 Appendix A)."""
    return [(t, v) for t, v in tags if t in (Tag.HOST_UNIQ, Tag.RELAY_SESSION_ID)]
