"""RadiusClient against a fake server in the same trio run, and against a real FreeRADIUS."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from pyrad import packet as rp

from kl2tp.aaa.radius.client import RadiusClient, RadiusServer, hide_password
from kl2tp.aaa.radius.dictionary import load_dictionary
from kl2tp.values import Secret
from tests.radius.fakeserver import FakeServer
from tests.radius.freeradius import FreeRadius

SECRET = b"s3cret"


def client_for(*ports: int, secret: bytes = SECRET, **kwargs: object) -> RadiusClient:
    servers = [RadiusServer("127.0.0.1", Secret(secret), p, p) for p in ports]
    kwargs.setdefault("timeout", 0.2)
    kwargs.setdefault("retries", 1)
    return RadiusClient(servers, nas_identifier="lns-test", **kwargs)  # type: ignore[arg-type]


def test_dictionary_has_every_rfc_and_the_vendors() -> None:
    d = load_dictionary()
    for name in (
        "User-Name",  # 2865
        "Acct-Session-Id",  # 2866
        "Acct-Tunnel-Connection",  # 2867
        "Tunnel-Password",  # 2868
        "Message-Authenticator",  # 2869
        "Framed-IPv6-Prefix",  # 3162
        "Error-Cause",  # 3576 / 5176
        "MS-CHAP2-Response",
        "MS-MPPE-Send-Key",
        "Cisco-AVPair",
    ):
        assert name in d.attributes, name
    assert d.attributes["Tunnel-Password"].encrypt == 2
    assert d.attributes["Tunnel-Password"].has_tag


def test_password_hiding_matches_rfc2865() -> None:
    # RFC 2865 5.2, one block: c1 = p1 xor MD5(S + RA)
    secret, ra = b"xyzzy5461", bytes(range(16))
    hidden = hide_password(b"arctangent", secret, ra)
    digest = hashlib.md5(secret + ra).digest()
    assert len(hidden) == 16
    assert bytes(a ^ b for a, b in zip(hidden, digest, strict=True)) == b"arctangent" + bytes(6)
    assert len(hide_password(b"", secret, ra)) == 16
    assert len(hide_password(b"x" * 17, secret, ra)) == 32
    with pytest.raises(ValueError):
        hide_password(b"x" * 129, secret, ra)


async def test_access_request_carries_a_message_authenticator_and_a_hidden_password() -> None:
    server = FakeServer()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            client = client_for(port)
            async with client.running():
                packet = client.create_auth_packet(User_Name="alice", User_Password="pw")
                reply = await client.auth(packet)
            nursery.cancel_scope.cancel()
    assert reply is not None and reply.code == rp.AccessAccept
    request = server.requests[0]
    assert request.message_authenticator
    assert request.verify_message_authenticator()
    assert request.PwDecrypt(request["User-Password"][0]) == "pw"
    assert request["NAS-Identifier"] == ["lns-test"]


@pytest.mark.parametrize("required", [True, False])
async def test_unsigned_reply_is_dropped_only_when_required(required: bool) -> None:
    server = FakeServer()
    server.handler = lambda req, raw: server.reply(req, rp.AccessAccept, sign=False)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            client = client_for(port, message_authenticator=required)
            async with client.running():
                reply = await client.auth(client.create_auth_packet(User_Name="a"))
            nursery.cancel_scope.cancel()
    if required:
        assert reply is None
        assert client.counters.bad_replies == 2  # the first try and the retransmission
    else:
        assert reply is not None and reply.code == rp.AccessAccept


async def test_reply_with_a_wrong_secret_is_dropped() -> None:
    server = FakeServer(secret=b"other")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            client = client_for(port, retries=0)
            async with client.running():
                auth = await client.auth(client.create_auth_packet(User_Name="a"))
                acct = await client.acct(client.create_acct_packet(Acct_Status_Type="Start"))
            nursery.cancel_scope.cancel()
    assert auth is None and acct is None
    assert client.counters.bad_replies == 2
    assert client.counters.timeouts == 2


async def test_retransmission_resends_the_same_bytes() -> None:
    server = FakeServer()
    answer = server.accept
    server.handler = lambda req, raw: answer(req, raw) if len(server.received) == 3 else None
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            client = client_for(port, retries=2)
            async with client.running():
                reply = await client.acct(
                    client.create_acct_packet(Acct_Status_Type="Start", Acct_Session_Id="x")
                )
            nursery.cancel_scope.cancel()
    assert reply is not None
    assert len(server.received) == 3
    assert server.received[0] == server.received[1] == server.received[2]
    assert client.counters.retransmissions == 2


async def test_failover_to_the_second_server_and_back_when_the_first_recovers() -> None:
    first, second = FakeServer(), FakeServer()
    first_up = False
    answer = first.accept
    first.handler = lambda req, raw: answer(req, raw) if first_up else None
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            p1 = await nursery.start(first.serve)
            p2 = await nursery.start(second.serve)
            client = client_for(p1, p2, retries=1, dead_time=0.5)
            async with client.running():
                r1 = await client.acct(client.create_acct_packet(Acct_Session_Id="1"))
                assert r1 is not None
                assert len(first.received) == 2 and len(second.received) == 1
                assert client.counters.failovers == 1
                # dead: the next request goes straight to the second server
                r2 = await client.acct(client.create_acct_packet(Acct_Session_Id="2"))
                assert r2 is not None
                assert len(first.received) == 2 and len(second.received) == 2
                first_up = True
                await trio.sleep(0.6)  # dead_time is over: the next request probes the first
                r3 = await client.acct(client.create_acct_packet(Acct_Session_Id="3"))
                assert r3 is not None
                assert len(first.received) == 3 and len(second.received) == 2
            nursery.cancel_scope.cancel()
    # the same record got a fresh encoding for each server
    assert first.requests[0]["Acct-Session-Id"] == second.requests[0]["Acct-Session-Id"] == ["1"]


async def test_password_is_hidden_with_each_servers_own_secret() -> None:
    first, second = FakeServer(secret=b"one"), FakeServer(secret=b"two")
    first.handler = lambda req, raw: None
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            p1 = await nursery.start(first.serve)
            p2 = await nursery.start(second.serve)
            client = RadiusClient(
                [
                    RadiusServer("127.0.0.1", Secret(b"one"), p1, p1),
                    RadiusServer("127.0.0.1", Secret(b"two"), p2, p2),
                ],
                timeout=0.2,
                retries=0,
            )
            async with client.running():
                packet = client.create_auth_packet(User_Name="a", User_Password=b"\xffpw")
                reply = await client.auth(packet)
            nursery.cancel_scope.cancel()
    assert reply is not None
    req = second.requests[0]
    hidden = req["User-Password"][0]
    assert hidden == hide_password(b"\xffpw", b"two", req.authenticator)


Replies = dict[int, rp.Packet | None]


@asynccontextmanager
async def holding_server(
    **client_kwargs: object,
) -> AsyncIterator[tuple[FakeServer, Callable[[int], None], Replies]]:
    """A fake server that answers nothing until the test does, and a client for it:
    (server, ``send(n)`` that starts Accounting-Request ``n``, the replies by ``n``). The
    block ends when every request started has its reply."""
    server = FakeServer()
    server.handler = lambda req, raw: None  # hold every request
    replies: Replies = {}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            client = client_for(port, timeout=10.0, retries=0, **client_kwargs)
            async with client.running():

                async def one(n: int) -> None:
                    packet = client.create_acct_packet(Acct_Session_Id=str(n))
                    replies[n] = await client.acct(packet)

                async with trio.open_nursery() as senders:
                    yield server, lambda n: senders.start_soon(one, n), replies
            nursery.cancel_scope.cancel()


async def test_more_than_256_outstanding_requests_open_another_socket() -> None:
    async with holding_server(max_outstanding=0) as (server, send, replies):
        for n in range(300):
            send(n)
            if n % 50 == 49:  # let the fake server drain its socket buffer
                await trio.sleep(0.05)
        with trio.move_on_after(5):
            await server.wait_received(300)
        assert len(server.received) == 300
        sockets: dict[tuple[str, int], set[int]] = {}
        for raw, source in zip(server.received, server.sources, strict=True):
            sockets.setdefault(source, set()).add(raw[1])
        assert len(sockets) == 2
        assert sorted(len(ids) for ids in sockets.values()) == [44, 256]
        for request, source in zip(server.requests, server.sources, strict=True):
            await server.sock.sendto(server.accept(request, b""), source)
    assert len(replies) == 300
    assert all(r is not None and r.code == rp.AccountingResponse for r in replies.values())


def test_against_freeradius(tmp_path: Path) -> None:
    users = 'alice Cleartext-Password := "pw"\n\tSession-Timeout = 30\n'
    with FreeRadius(tmp_path, users=users) as fr:

        async def main() -> tuple[rp.Packet | None, ...]:
            server = RadiusServer(
                "127.0.0.1", Secret(fr.secret.encode()), fr.auth_port, fr.acct_port
            )
            client = RadiusClient([server], timeout=2.0, retries=2, nas_identifier="lns-test")
            with trio.fail_after(30):
                async with client.running():
                    good = client.create_auth_packet(User_Name="alice", User_Password="pw")
                    wrong = client.create_auth_packet(User_Name="alice", User_Password="no")
                    start = client.create_acct_packet(
                        User_Name="alice", Acct_Status_Type="Start", Acct_Session_Id="s-1"
                    )
                    return (
                        await client.auth(good),
                        await client.auth(wrong),
                        await client.acct(start),
                    )

        ok, bad, acct = trio.run(main)
        records = fr.wait_records(lambda r: r.get("Acct-Session-Id") == "s-1")
    assert ok is not None and ok.code == rp.AccessAccept
    assert ok["Session-Timeout"] == [30]
    assert bad is not None and bad.code == rp.AccessReject
    assert acct is not None and acct.code == rp.AccountingResponse
    assert records and records[0]["NAS-Identifier"] == "lns-test"


async def test_a_reply_the_reader_has_not_read_yet_is_found_at_the_deadline() -> None:
    # A busy event loop can reach a request's deadline before the reader task runs; the
    # reply waiting in the socket must still count (here the reader never runs at all).
    server = FakeServer()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            client = client_for(port, retries=0)

            async def stalled_reader(*args: object) -> None:
                await trio.sleep_forever()

            client._reader = stalled_reader  # type: ignore[method-assign]
            async with client.running():
                reply = await client.auth(client.create_auth_packet(User_Name="a"))
            nursery.cancel_scope.cancel()
    assert reply is not None and reply.code == rp.AccessAccept
    assert client.counters.timeouts == 0 and client.counters.transmissions == 1


async def test_senders_waiting_for_an_identifier_all_get_one() -> None:
    # One socket, 256 Identifiers, 400 concurrent requests: 144 wait for a free Identifier,
    # and every one of them must be woken as Identifiers come back.
    server = FakeServer()
    replies: list[rp.Packet | None] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            client = client_for(port, max_sockets=1, timeout=2.0, retries=3, max_outstanding=0)
            async with client.running():

                async def one(n: int) -> None:
                    replies.append(
                        await client.acct(client.create_acct_packet(Acct_Session_Id=str(n)))
                    )

                async with trio.open_nursery() as senders:
                    for n in range(400):
                        senders.start_soon(one, n)
                assert len(client._acct[0].sockets) == 1
            nursery.cancel_scope.cancel()
    assert len(replies) == 400 and all(r is not None for r in replies)


async def test_a_burst_is_paced_by_max_outstanding_in_arrival_order() -> None:
    # 30 requests at once, at most 10 awaiting a reply: the server sees 10, and each reply
    # lets the next waiter in, first come first served; none waits for a timeout.
    async with holding_server(max_outstanding=10) as (server, send, replies):
        for n in range(30):
            send(n)
            await trio.testing.wait_all_tasks_blocked()
        for answered in range(0, 30, 5):
            await server.wait_received(min(answered + 10, 30))
            await trio.testing.wait_all_tasks_blocked()
            # Never more than 10 sent and unanswered.
            assert len(server.received) - answered == min(10, 30 - answered)
            pairs = list(zip(server.requests, server.sources, strict=True))
            for request, source in pairs[answered : answered + 5]:
                await server.sock.sendto(server.accept(request, b""), source)
    # In arrival order, and every one answered without a retransmission.
    sent = [r.get(44)[0] for r in server.requests]  # Acct-Session-Id
    assert sent == [str(n).encode() for n in range(30)]
    assert len(replies) == 30 and all(r is not None for r in replies.values())
