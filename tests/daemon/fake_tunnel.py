"""A recording stand-in for the endpoint's tunnel: what session handlers see (TunnelHandle)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import attrs
import trio

from kl2tp.daemon import oplog
from kl2tp.daemon.handle import Address, SessionInfo, TunnelHandle
from kl2tp.l2tp.constants import CdnResult, ErrorCode, StopCcnResult
from kl2tp.l2tp.events import CallParams, ConnectInfo


@attrs.define
class FakeTunnel:
    """Records every command; runs tasks in the test's nursery."""

    nursery: trio.Nursery
    local_tunnel_id: int = 10
    peer_tunnel_id: int = 20
    peer_addr: Address = ("192.0.2.1", 1701)
    peer_hostname: str = "peer"
    policy: str = "default"
    sessions: dict[int, SessionInfo] = attrs.field(factory=dict)
    closed: trio.Event = attrs.field(factory=trio.Event)
    commands: list[tuple[object, ...]] = attrs.field(factory=list)
    """Every command in order: ("hangup", sid, result, error, message), ("data_ready", sid)..."""
    counters: Counter[str] = attrs.field(factory=Counter)
    sent: list[tuple[int, bytes]] = attrs.field(factory=list)

    def place_call(
        self, call: CallParams, connect: ConnectInfo | None = None, *, defer_connect: bool = False
    ) -> SessionInfo:
        sid = len(self.sessions) + 1
        self.sessions[sid] = info = SessionInfo(sid, trio.current_time())
        self.commands.append(("place_call", sid))
        return info

    def connect_call(self, sid: int, connect: ConnectInfo | None = None) -> None:
        self.commands.append(("connect_call", sid))

    def connect_pending(self, sid: int) -> bool:
        return False

    def data_ready(self, sid: int) -> None:
        self.commands.append(("data_ready", sid))

    def hangup(
        self,
        sid: int,
        result: CdnResult = CdnResult.ADMINISTRATIVE,
        error: ErrorCode = ErrorCode.NO_ERROR,
        message: str = "",
    ) -> None:
        self.commands.append(("hangup", sid, result, error, message))

    def close(
        self,
        result: StopCcnResult = StopCcnResult.CLEAR_CONNECTION,
        error: ErrorCode = ErrorCode.NO_ERROR,
        message: str = "",
    ) -> None:
        self.commands.append(("close", result, error, message))

    def send_data(self, sid: int, payload: bytes) -> None:
        self.sent.append((sid, payload))

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self.nursery.start_soon(fn, *args)

    def count(self, key: str) -> None:
        self.counters[key] += 1

    def session_up(self, sid: int, info: SessionInfo | None) -> None:
        oplog.session_up(self, sid, info)

    def hangups(self) -> list[tuple[object, ...]]:
        """The hangup commands, without their name."""
        return [c[1:] for c in self.commands if c[0] == "hangup"]


def _conforms(tunnel: FakeTunnel) -> TunnelHandle:
    return tunnel  # mypy checks FakeTunnel against the protocol here
