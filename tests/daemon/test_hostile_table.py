"""Hostile L2TP input against a live kl2tp-lns, one row per attack (issue 8), while a
legitimate LAC's subscribers stay up: each row's datagrams and the reaction they must get
(dropped and counted, ZLB, StopCCN or CDN with the RFC 2661 result code). The runner and the
row type are in hostile_rows.py (the PPP rows use them too)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from kl2tp.l2tp.avp import AVP_TABLE, Avp, hide_value
from kl2tp.l2tp.constants import AvpType, CdnResult, ErrorCode, MessageType, StopCcnResult
from tests.daemon.harness import wait_for
from tests.daemon.hostile_rows import (
    HostileLns,
    RawPeer,
    Row,
    cdn,
    stopccn,
    zlb,
)

A = AvpType
MT = MessageType
HIDE_ALL = frozenset(t for t, spec in AVP_TABLE.items() if spec.may_hide)
UNKNOWN_M = Avp(0x7F00, b"\x00\x01", mandatory=True)
"""An AVP type no one knows, with the M bit: RFC 2661 4.1 says tear down what carries it."""

L2TP = {"idle_timeout": "3"}


def sccrq(peer: RawPeer, **kwargs: object) -> bytes:
    """A well-formed SCCRQ of ``peer`` (not sent)."""
    return peer.encode(MT.SCCRQ, peer.sccrq_avps(), tunnel_id=0, **kwargs)  # type: ignore[arg-type]


def set_length(data: bytes | bytearray, length: int) -> bytes:
    buf = bytearray(data)
    buf[2:4] = struct.pack(">H", length)
    return bytes(buf)


def with_raw_avp(peer: RawPeer, raw: bytes) -> bytes:
    """An SCCRQ with ``raw`` (an AVP as bytes, however broken) appended, Length fixed."""
    data = sccrq(peer) + raw
    return set_length(data, len(data))


def lying_hidden_host_name(peer: RawPeer) -> bytes:
    """An SCCRQ whose hidden Host Name says its value is longer than the hidden bytes."""
    rv = bytes(range(16))
    hidden = bytearray(hide_value(A.HOST_NAME, b"liar", peer.secret, rv))
    # The first two plaintext bytes are the original length: flip them to 0xFFxx by XOR.
    hidden[0] ^= 0xFF
    rv_avp = struct.pack(">HHH", 0x8000 | (6 + 16), 0, A.RANDOM_VECTOR) + rv
    host = struct.pack(">HHH", 0xC000 | (6 + len(hidden)), 0, A.HOST_NAME) + bytes(hidden)
    avps = [a for a in peer.sccrq_avps() if a.type != A.HOST_NAME]
    data = peer.encode(MT.SCCRQ, avps, tunnel_id=0) + rv_avp + host
    return set_length(data, len(data))


def version(n: int) -> bytes:
    return bytes([0xC8, n]) + b"\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00"


def tunnels_total(lns: HostileLns) -> int:
    return int(lns.summary()["tunnels"]["total"])


ROWS = [
    Row(
        "version 1 (L2F)",
        "raw",
        lambda p: p.send_raw(version(1)),
        counters={"drop_version_1": 1},
        silent=True,
    ),
    Row(
        "version 3 (L2TPv3)",
        "raw",
        lambda p: p.send_raw(version(3)),
        counters={"drop_version_3": 1},
        silent=True,
    ),
    Row(
        "shorter than a header",
        "raw",
        lambda p: p.send_raw(b"\xc8\x02\x00"),
        counters={"drop_malformed": 1},
        silent=True,
    ),
    Row(
        "Length beyond the datagram",
        "raw",
        lambda p: p.send_raw(set_length(sccrq(p), len(sccrq(p)) + 40)),
        counters={"drop_malformed": 1},
        silent=True,
    ),
    Row(
        "Length below the header",
        "raw",
        lambda p: p.send_raw(set_length(sccrq(p), 6)),
        counters={"drop_malformed": 1},
        silent=True,
    ),
    Row(
        "truncated AVP",
        "raw",
        lambda p: p.send_raw(with_raw_avp(p, struct.pack(">HHH", 0x8000 | 20, 0, A.HOST_NAME))),
        counters={"drop_malformed": 1},
        silent=True,
    ),
    Row(
        "AVP length below 6",
        "raw",
        lambda p: p.send_raw(with_raw_avp(p, struct.pack(">HHH", 0x8000 | 4, 0, A.HOST_NAME))),
        counters={"drop_malformed": 1},
        silent=True,
    ),
    Row(
        "hidden AVP whose inner length lies",
        "raw",
        lambda p: p.send_raw(lying_hidden_host_name(p)),
        counters={"drop_malformed": 1},
        silent=True,
    ),
    Row(
        # No tunnel exists to tear down, and answering an unauthenticated datagram would help
        # a spoofer: dropped and counted.
        "unknown M-bit AVP in an SCCRQ",
        "raw",
        lambda p: p.send(MT.SCCRQ, [*p.sccrq_avps(), UNKNOWN_M], tunnel_id=0),
        counters={"drop_bad_sccrq": 1},
        silent=True,
    ),
    Row(
        "unknown M-bit AVP in a HELLO: StopCCN 2/8 (RFC 2661 4.1)",
        "tunnel",
        lambda p: p.send(MT.HELLO, [UNKNOWN_M]),
        reply=stopccn(StopCcnResult.GENERAL_ERROR, ErrorCode.UNKNOWN_MANDATORY_AVP),
        counters={"protocol_errors": 1},
    ),
    Row(
        "unknown M-bit AVP in an ICRQ: CDN 2/8, the tunnel stays",
        "tunnel",
        lambda p: p.send(MT.ICRQ, [*p.icrq_avps(4321), UNKNOWN_M]),
        reply=cdn(CdnResult.GENERAL_ERROR, ErrorCode.UNKNOWN_MANDATORY_AVP),
        counters={"protocol_errors": 1},
    ),
    Row(
        "Ns far ahead of the window: dropped",
        "tunnel",
        lambda p: p.send(MT.HELLO, ns=(p.ns + 20000) & 0xFFFF),
        counters={"out_of_window": 1},
        silent=True,
    ),
    Row(
        "Ns far behind: a duplicate, re-acked (RFC 2661 5.8)",
        "tunnel",
        lambda p: p.send(MT.HELLO, ns=(p.ns - 20000) & 0xFFFF),
        reply=zlb(),
        counters={"duplicates": 1},
    ),
    Row(
        "data for an unknown session",
        "tunnel",
        lambda p: p.send_data(b"\xff\x03\xc0\x21\x01\x01\x00\x04", session_id=0xBEEF),
        counters={"drop_data_unknown_session": 1},
        silent=True,
    ),
    Row(
        "data for an unknown tunnel",
        "raw",
        lambda p: p.send_raw(b"\x00\x02\xbe\xef\xbe\xef\xff\x03\xc0\x21"),
        counters={"drop_unknown_tunnel": 1},
        silent=True,
    ),
    Row(
        "oversized control datagram",
        "raw",
        lambda p: p.send_raw(set_length(sccrq(p) + b"\xff" * 65000, len(sccrq(p)) + 65000)),
        counters={"drop_malformed": 1},
        silent=True,
    ),
    Row(
        "oversized data datagram",
        "tunnel",
        lambda p: p.send_data(b"\xff\x03" + b"\x00" * 65000, session_id=0xBEEF),
        counters={"drop_data_unknown_session": 1},
        silent=True,
    ),
    Row(
        "SCCRQ with hidden AVPs (RFC 2661 4.3) is accepted",
        "raw",
        lambda p: p.open_tunnel(hide=HIDE_ALL),
        check=lambda p, lns: p.peer_tunnel_id != 0,
    ),
]


@pytest.fixture(scope="module")
def lns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileLns]:
    tmp: Path = tmp_path_factory.mktemp("hostile")
    with HostileLns.start(tmp, l2tp=L2TP) as lns:
        yield lns


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_row(lns: HostileLns, row: Row) -> None:
    lns.run(row)


def test_zz_the_legitimate_subscribers_survived(lns: HostileLns) -> None:
    """Last (module order): every row ran against this LNS."""
    wait_for(lambda: tunnels_total(lns) >= 1, "the legitimate tunnel")
    lns.check_healthy()
