"""A RADIUS server in the test's own trio run: decodes with pyrad, answers as told."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from pyrad import packet as rp

from kl2tp.aaa.radius.dictionary import load_dictionary

Handler = Callable[[rp.Packet, bytes], "bytes | None"]


class FakeServer:
    """Answers every request through ``handler(request, raw) -> reply bytes | None``.

    ``received`` keeps every raw datagram; ``handler`` defaults to `accept`.
    """

    def __init__(self, secret: bytes = b"s3cret", handler: Handler | None = None) -> None:
        self.secret = secret
        self.handler: Handler = handler or self.accept
        self.received: list[bytes] = []
        self.requests: list[rp.Packet] = []
        self.sources: list[tuple[str, int]] = []
        self._arrived = trio.Event()
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.port = 0
        self.dictionary = load_dictionary()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        task_status.started(self.port)
        with self.sock:
            while True:
                data, addr = await self.sock.recvfrom(4096)
                self.received.append(data)
                self.sources.append(addr)
                self._arrived.set()
                self._arrived = trio.Event()
                request = self.decode(data)
                self.requests.append(request)
                reply = self.handler(request, data)
                if reply is not None:
                    await self.sock.sendto(reply, addr)

    async def wait_received(self, count: int) -> None:
        """Until ``count`` datagrams have arrived."""
        while len(self.received) < count:
            await self._arrived.wait()

    def decode(self, data: bytes) -> rp.Packet:
        cls = rp.AcctPacket if data[0] == rp.AccountingRequest else rp.AuthPacket
        return cls(packet=data, secret=self.secret, dict=self.dictionary)

    def reply(self, request: rp.Packet, code: int, *, sign: bool = True, **attrs: Any) -> bytes:
        reply = request.CreateReply(**attrs)
        reply.code = code
        reply.message_authenticator = sign and request.code == rp.AccessRequest
        return bytes(reply.ReplyPacket())

    def accept(self, request: rp.Packet, raw: bytes) -> bytes | None:
        if request.code == rp.AccountingRequest:
            return self.reply(request, rp.AccountingResponse)
        return self.reply(request, rp.AccessAccept)
