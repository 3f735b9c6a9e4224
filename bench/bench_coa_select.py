"""CoA server and LAC tunnel selection costs (prints figures; not a timed test).

- CoaCore.receive per Disconnect-Request with 1,000 and 100,000 indexed sessions (the
  lookup is O(1): the two figures should match), ACK (by Acct-Session-Id) and NAK 503;
- SessionIndex add + remove per session;
- candidates_from_reply on FreeRADIUS's two-tunnel reply (salt decryption included) and
  order_candidates for four LNSs.

Run: .venv/bin/python bench/bench_coa_select.py
"""

from __future__ import annotations

import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import attrs
from pyrad import packet as rp

from kl2tp.aaa.radius.coa import CoaClient, CoaCore, SessionIndex
from kl2tp.aaa.radius.dictionary import load_dictionary
from kl2tp.lac.selection import (
    LnsCandidate,
    LnsHealth,
    candidates_from_reply,
    order_candidates,
    parse_attributes,
)
from kl2tp.values import Secret

SECRET = b"bench"


@attrs.define(eq=False)
class Session:
    acct_session_id: str
    username: str
    framed_address: IPv4Address | None
    calling_station_id: str = ""

    def disconnect(self) -> None:
        pass

    def set_timeouts(self, session_timeout: float | None, idle_timeout: float | None) -> None:
        pass


def per_op(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def coa(sessions: int, requests: int = 5000) -> tuple[float, float]:
    index = SessionIndex()
    for i in range(sessions):
        index.add(Session(f"{i:08X}", f"user{i}", IPv4Address(0x0A000000 + i)))
    core = CoaCore([CoaClient("127.0.0.1", Secret(SECRET))], index, load_dictionary())
    d = load_dictionary()
    acks = [
        rp.CoAPacket(
            rp.DisconnectRequest,
            id=i % 256,
            secret=SECRET,
            dict=d,
            Acct_Session_Id=f"{(i * 7919) % sessions:08X}",
        ).RequestPacket()
        for i in range(requests)
    ]
    naks = [
        rp.CoAPacket(
            rp.DisconnectRequest, id=i % 256, secret=SECRET, dict=d, User_Name=f"nobody{i}"
        ).RequestPacket()
        for i in range(requests)
    ]
    # distinct "now" per request so the reply cache never answers
    ack = per_op(lambda i: core.receive(acks[i], ("127.0.0.1", 1000 + i), i * 60.0), requests)
    nak = per_op(lambda i: core.receive(naks[i], ("127.0.0.1", 1000 + i), 1e9 + i * 60.0), requests)
    assert core.counters["disconnect_ack"] == requests and core.counters["nak_503"] == requests
    return ack, nak


def main() -> None:
    for n in (1_000, 100_000):
        ack, nak = coa(n)
        print(f"CoA Disconnect, {n:>7,} sessions indexed: ACK {ack:6.1f} us, NAK 503 {nak:6.1f} us")
    index = SessionIndex()
    items = [Session(f"{i:08X}", f"u{i}", IPv4Address(0x0A000000 + i)) for i in range(100_000)]
    add = per_op(lambda i: index.add(items[i]), len(items))
    remove = per_op(lambda i: index.remove(items[i]), len(items))
    print(f"SessionIndex add {add:.2f} us, remove {remove:.2f} us (100,000 sessions)")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the golden reply
    from tests.radius.test_lac_select import (
        FREERADIUS_ACCEPT,
        RADIUS_SECRET,
        REQUEST_AUTHENTICATOR,
    )

    body = FREERADIUS_ACCEPT[20:]
    parse = per_op(
        lambda _i: candidates_from_reply(
            parse_attributes(body),
            secret=RADIUS_SECRET,
            request_authenticator=REQUEST_AUTHENTICATOR,
        ),
        20_000,
    )
    print(f"candidates_from_reply (FreeRADIUS, 2 tunnels, salted passwords): {parse:.1f} us")
    lns = [LnsCandidate(f"192.0.2.{i}", preference=1 + i // 2) for i in range(4)]
    health = LnsHealth(60.0)
    order = per_op(lambda i: order_candidates(lns, now=float(i), health=health), 50_000)
    print(f"order_candidates (4 LNSs, 2 preferences): {order:.1f} us")


if __name__ == "__main__":
    main()
