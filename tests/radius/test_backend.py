"""RadiusAuthenticator and AccountingQueue against the fake server: what goes on the wire,
how replies are read, and that accounting survives dead servers and restarts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trio
from pyrad import packet as rp

from kl2tp.aaa.base import AccountingKind, AccountingRecord, AuthRequest, SessionContext
from kl2tp.aaa.radius import (
    ATTR_CLASS,
    ATTR_FRAMED_POOL,
    ATTR_IDLE_TIMEOUT,
    ATTR_INTERIM_INTERVAL,
    ATTR_SESSION_TIMEOUT,
)
from kl2tp.aaa.radius.accounting import AccountingQueue, AcctEntry
from kl2tp.aaa.radius.backend import RadiusAuthenticator
from kl2tp.aaa.radius.client import RadiusClient, RadiusServer
from kl2tp.values import Secret
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials
from tests.radius.fakeserver import FakeServer

CONTEXT = SessionContext(
    tunnel_id=7,
    session_id=9,
    peer_address="192.0.2.5:1701",
    peer_hostname="lac-1",
    calling_number="5551234",
    called_number="614629",
    nas_port=42,
    acct_session_id="00000001-0000002A",
)


@asynccontextmanager
async def backend(
    handler: Callable[[FakeServer, rp.Packet], bytes | None] | None = None,
    *,
    spool: Path | None = None,
    accounting: bool = True,
    servers: int = 1,
) -> AsyncIterator[tuple[RadiusAuthenticator, FakeServer]]:
    server = FakeServer()
    if handler is not None:
        server.handler = lambda req, raw: handler(server, req)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        client = RadiusClient(
            [RadiusServer("127.0.0.1", Secret(server.secret), port, port)] * servers,
            timeout=0.2,
            retries=0,
            nas_identifier="lns-a",
        )
        queue = AccountingQueue(client, spool=spool, retry_pause=0.1) if accounting else None
        auth = RadiusAuthenticator(
            client, accounting=queue, nas_ip_address=IPv4Address("192.0.2.1"), clock=lambda: 1e9
        )
        async with auth.running(stop_grace=0.5):
            yield auth, server
        nursery.cancel_scope.cancel()


def accept(**attrs: Any) -> Callable[[FakeServer, rp.Packet], bytes | None]:
    def handler(server: FakeServer, req: rp.Packet) -> bytes | None:
        if req.code == rp.AccountingRequest:
            return server.reply(req, rp.AccountingResponse)
        return server.reply(req, rp.AccessAccept, **attrs)

    return handler


def reject(server: FakeServer, req: rp.Packet) -> bytes | None:
    if req.code == rp.AccountingRequest:
        return server.reply(req, rp.AccountingResponse)
    return server.reply(req, rp.AccessReject, Reply_Message="Your account is suspended")


def access_requests(server: FakeServer) -> list[rp.Packet]:
    return [r for r in server.requests if r.code == rp.AccessRequest]


async def test_pap_request_carries_what_an_lns_sends() -> None:
    with trio.fail_after(10):
        async with backend(accept()) as (auth, server):
            result = await auth.authenticate(
                AuthRequest("alice", PapCredentials(b"s3cret"), CONTEXT)
            )
    assert result.accepted
    req = access_requests(server)[0]
    assert req.PwDecrypt(req["User-Password"][0]) == "s3cret"
    assert req["User-Name"] == ["alice"]
    assert req["NAS-Identifier"] == ["lns-a"]
    assert req["NAS-IP-Address"] == ["192.0.2.1"]
    assert req["NAS-Port"] == [42]
    assert req["NAS-Port-Type"] == ["Virtual"]
    assert req["Service-Type"] == ["Framed-User"]
    assert req["Framed-Protocol"] == ["PPP"]
    assert req["Calling-Station-Id"] == ["5551234"]
    assert req["Called-Station-Id"] == ["614629"]
    assert req["Acct-Session-Id"] == ["00000001-0000002A"]
    assert req["Tunnel-Type"] == ["L2TP"]
    assert req["Tunnel-Medium-Type"] == ["IPv4"]
    assert req["Tunnel-Client-Endpoint"] == ["192.0.2.5"]
    assert req["Tunnel-Client-Auth-Id"] == ["lac-1"]
    assert req.message_authenticator


async def test_proxied_chap_is_sent_as_in_the_reference_trace() -> None:
    # ../shared/reference/VECTORS.md: proxy CHAP id 6; the LNS's Access-Request carries
    # CHAP-Password = 06 + the subscriber's response ("Attribute 3 19 06CA1CC2...").
    challenge = bytes.fromhex("5d0d008cb1677cf8bc354556321a7a74")
    response = bytes.fromhex("ca1cc2e4fa6899e8df1b695c0a80883e")
    with trio.fail_after(10):
        async with backend(accept()) as (auth, server):
            await auth.authenticate(
                AuthRequest("2500-1", ChapCredentials(6, challenge, response), CONTEXT)
            )
    req = access_requests(server)[0]
    assert req["CHAP-Password"] == [bytes.fromhex("06ca1cc2e4fa6899e8df1b695c0a80883e")]
    assert req["CHAP-Challenge"] == [challenge]
    assert "User-Password" not in req


async def test_mschapv2_success_goes_to_the_ppp_core_and_mppe_keys_are_kept() -> None:
    creds = MsChapV2Credentials(bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 56)))
    s_string = "S=" + "AB" * 20
    with trio.fail_after(10):
        async with backend(
            accept(
                MS_CHAP2_Success=b"\x00" + s_string.encode(),
                MS_MPPE_Send_Key=b"k" * 16,
                MS_MPPE_Recv_Key=b"r" * 16,
            )
        ) as (auth, server):
            result = await auth.authenticate(AuthRequest("bob", creds, CONTEXT))
    req = access_requests(server)[0]
    assert req["MS-CHAP-Challenge"] == [bytes(range(16))]
    response = req["MS-CHAP2-Response"][0]
    assert len(response) == 50
    assert response[2:18] == bytes(range(16, 32))  # Peer-Challenge
    assert response[18:26] == bytes(8)
    assert response[26:] == bytes(range(32, 56))  # NT-Response
    assert result.accepted
    assert result.authenticator_response == s_string
    assert result.attributes["mppe_send_key"] == b"k" * 16
    assert result.attributes["mppe_recv_key"] == b"r" * 16


async def test_mschapv2_accept_without_success_is_refused() -> None:
    creds = MsChapV2Credentials(bytes(16), bytes(16), bytes(24))
    with trio.fail_after(10):
        async with backend(accept()) as (auth, _server):
            result = await auth.authenticate(AuthRequest("bob", creds, CONTEXT))
    assert not result.accepted and result.reason == "no-mschap2-success"


async def test_accept_attributes() -> None:
    with trio.fail_after(10):
        async with backend(
            accept(
                Framed_IP_Address="10.1.2.3",
                Framed_IP_Netmask="255.255.255.255",
                Framed_Route=["10.9.0.0/24 10.1.2.3 1"],
                Framed_Pool="gold",
                Session_Timeout=3600,
                Idle_Timeout=600,
                Acct_Interim_Interval=300,
                Class=[b"c1", b"c2"],
                Reply_Message="hello",
            )
        ) as (auth, _server):
            result = await auth.authenticate(AuthRequest("a", PapCredentials(b"p"), CONTEXT))
    assert result.accepted and result.message == "hello"
    assert result.framed_address == IPv4Address("10.1.2.3")
    attrs = result.attributes
    assert attrs[ATTR_SESSION_TIMEOUT] == 3600
    assert attrs[ATTR_IDLE_TIMEOUT] == 600
    assert attrs[ATTR_INTERIM_INTERVAL] == 300
    assert attrs[ATTR_FRAMED_POOL] == "gold"
    assert attrs[ATTR_CLASS] == (b"c1", b"c2")
    assert attrs["framed_routes"] == ("10.9.0.0/24 10.1.2.3 1",)
    assert attrs["framed_netmask"] == IPv4Address("255.255.255.255")


@pytest.mark.parametrize(
    ("framed", "expected"),
    [("255.255.255.254", None), ("255.255.255.255", IPv4Address("255.255.255.255"))],
)
async def test_special_framed_addresses(framed: str, expected: IPv4Address | None) -> None:
    with trio.fail_after(10):
        async with backend(accept(Framed_IP_Address=framed)) as (auth, _server):
            result = await auth.authenticate(AuthRequest("a", PapCredentials(b"p"), CONTEXT))
    assert result.accepted and result.framed_address == expected


async def test_reject_carries_the_reply_message() -> None:
    with trio.fail_after(10):
        async with backend(reject) as (auth, _server):
            result = await auth.authenticate(AuthRequest("a", PapCredentials(b"p"), CONTEXT))
    assert not result.accepted
    assert result.message == "Your account is suspended"
    assert auth.counters.rejects == 1


async def test_no_answer_refuses_and_counts_an_error() -> None:
    with trio.fail_after(10):
        async with backend(lambda s, r: None, accounting=False) as (auth, _server):
            result = await auth.authenticate(AuthRequest("a", PapCredentials(b"p"), CONTEXT))
    assert not result.accepted and result.reason == "backend-timeout"
    assert auth.counters.errors == 1


async def test_method_not_allowed_is_not_sent() -> None:
    with trio.fail_after(10):
        async with backend(accept(), accounting=False) as (auth, server):
            auth.methods = frozenset({"chap"})
            result = await auth.authenticate(AuthRequest("a", PapCredentials(b"p"), CONTEXT))
    assert not result.accepted and result.reason == "method-not-allowed"
    assert access_requests(server) == []


async def test_accounting_records() -> None:
    big = 5 * 2**32 + 7
    with trio.fail_after(10):
        async with backend(accept()) as (auth, server):
            await auth.account(
                AccountingRecord(
                    AccountingKind.START,
                    "alice",
                    CONTEXT,
                    address=IPv4Address("10.0.0.5"),
                    classes=(b"plan",),
                )
            )
            await auth.account(
                AccountingRecord(
                    AccountingKind.STOP,
                    "alice",
                    CONTEXT,
                    address=IPv4Address("10.0.0.5"),
                    session_time=61.7,
                    input_octets=big,
                    output_octets=9,
                    input_packets=3,
                    output_packets=4,
                    terminate_cause="idle-timeout",
                    classes=(b"plan",),
                )
            )
            assert auth.accounting is not None
            assert await auth.accounting.drain(5)
    acct = [r for r in server.requests if r.code == rp.AccountingRequest]
    statuses = [r["Acct-Status-Type"][0] for r in acct]
    # On is acknowledged before any record is sent, Off after every one
    assert statuses[0] == "Accounting-On" and statuses[-1] == "Accounting-Off"
    assert sorted(statuses[1:3]) == ["Start", "Stop"]
    start, stop = sorted(acct[1:3], key=lambda r: r["Acct-Status-Type"][0])
    for record in (start, stop):
        assert record["Acct-Session-Id"] == ["00000001-0000002A"]
        assert record["Class"] == [b"plan"]
        assert record["Framed-IP-Address"] == ["10.0.0.5"]
        assert record["Acct-Tunnel-Connection"] == ["7/9"]
        assert record["Acct-Delay-Time"] == [0]
        assert record.VerifyAcctRequest()
    assert "Acct-Session-Time" not in start
    assert stop["Acct-Session-Time"] == [61]
    assert stop["Acct-Input-Octets"] == [7]
    assert stop["Acct-Input-Gigawords"] == [5]
    assert stop["Acct-Output-Octets"] == [9]
    assert stop["Acct-Output-Gigawords"] == [0]
    assert stop["Acct-Input-Packets"] == [3]
    assert stop["Acct-Output-Packets"] == [4]
    assert stop["Acct-Terminate-Cause"] == ["Idle-Timeout"]
    # Accounting-On/Off name the NAS, and no session
    assert acct[0]["Acct-Session-Id"] == [auth.boot_id]
    assert acct[0]["NAS-Identifier"] == ["lns-a"]


async def test_unsent_records_are_spooled_and_sent_at_the_next_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    record = AccountingRecord(AccountingKind.STOP, "alice", CONTEXT, terminate_cause="user-request")
    with trio.fail_after(20):
        async with backend(lambda s, r: None, spool=spool) as (auth, _server):
            await auth.account(record)
        lines = spool.read_text().splitlines()
        # Accounting-On, the Stop and Accounting-Off: nothing answered
        assert len(lines) == 3
        assert (spool.stat().st_mode & 0o777) == 0o600
        async with backend(accept(), spool=spool) as (auth, server):
            assert auth.accounting is not None
            assert await auth.accounting.drain(5)
            assert auth.accounting.counters.unspooled == 3
    statuses = [r["Acct-Status-Type"][0] for r in server.requests]
    assert statuses[:3] == ["Accounting-On", "Stop", "Accounting-Off"]  # the old run's first
    assert server.requests[1]["User-Name"] == ["alice"]
    assert not spool.exists()


async def test_a_full_queue_drops_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer()
    server.handler = lambda req, raw: None
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        client = RadiusClient([RadiusServer("127.0.0.1", Secret(b"x"), port, port)])
        queue = AccountingQueue(client, maxlen=2)
        caplog.set_level(logging.ERROR, "kl2tp.aaa")
        assert queue.put([("Acct-Status-Type", "Start"), ("Acct-Session-Id", "a")])
        assert queue.put([("Acct-Status-Type", "Start"), ("Acct-Session-Id", "b")])
        assert not queue.put([("Acct-Status-Type", "Stop"), ("Acct-Session-Id", "c")])
        nursery.cancel_scope.cancel()
    assert queue.counters.dropped == 1
    assert "Stop c dropped: the queue is full" in caplog.text


def test_damaged_spool_lines_are_dropped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    good = AcctEntry([("Acct-Status-Type", "Stop"), ("Class", b"\x00\xff"), ("NAS-Port", 3)], 5.0)
    spool.write_text(good.to_json() + "\n{not json\n")
    client = RadiusClient([RadiusServer("127.0.0.1", Secret(b"x"), 1, 1)])
    queue = AccountingQueue(client, spool=spool)
    caplog.set_level(logging.ERROR, "kl2tp.aaa")
    assert queue.load_spool() == 1
    assert queue.counters.dropped == 1
    assert "line 2 dropped: damaged" in caplog.text
    assert AcctEntry.from_json(good.to_json()) == good
