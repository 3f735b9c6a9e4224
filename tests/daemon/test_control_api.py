"""The control API's dispatch table and the LAC's tunnel keeper, without sockets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from kl2tp.daemon.client import Backoff
from kl2tp.daemon.control import ControlError
from kl2tp.daemon.endpoint import Endpoint, TunnelSetupError
from kl2tp.daemon.service import ControlApi, _keep_tunnel
from kl2tp.dataplane.base import Counters
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig


def api() -> ControlApi:
    plane = NullDataPlane()
    endpoint = Endpoint(
        role="lns", tunnel_config=TunnelConfig(), dataplane=plane, listen=("127.0.0.1", 0)
    )
    return ControlApi(endpoint, plane)


def test_every_request_has_one_entry() -> None:
    assert set(api().handlers) == {
        ("show", "tunnels"),
        ("show", "tunnel"),
        ("show", "sessions"),
        ("show", "session"),
        ("show", "summary"),
        ("show", "history"),
        ("clear", "tunnel"),
        ("clear", "session"),
        ("clear", "user"),
        ("clear", "address"),
        ("clear", "peer"),
        ("clear", "all"),
        ("drain", "on"),
        ("drain", "off"),
        ("reload", "config"),
        ("debug", "categories"),
        ("debug", "condition"),
        ("debug", "show"),
    }


@pytest.mark.parametrize(
    "request_",
    [
        {"cmd": "show", "what": "routes"},
        {"cmd": "reboot", "what": "tunnels"},
        {"cmd": "show"},
        {"cmd": ["show"], "what": {"tunnels": 1}},
    ],
)
async def test_unknown_requests_are_refused(request_: dict[str, Any]) -> None:
    with pytest.raises(ControlError, match="unknown request"):
        await api()(request_)


async def test_clear_of_a_missing_tunnel_names_it() -> None:
    with pytest.raises(ControlError, match="no tunnel 7"):
        await api()({"cmd": "clear", "what": "tunnel", "tunnel": 7})
    with pytest.raises(ControlError, match="tunnel must be an integer"):
        await api()({"cmd": "clear", "what": "session", "tunnel": True, "session": 1})


async def test_summary_always_shows_the_data_counters() -> None:
    summary = await api()({"cmd": "show", "what": "summary"})
    assert summary["counters"] == {
        "data_rx": 0,
        "data_early": 0,
        # How full the bounds on peer-created state are (issue 8).
        "half_open_tunnels": 0,
        "sessions_in_setup": 0,
        "lingering_tunnels": 0,
        # Calls admitted and not up yet (max_negotiating_sessions, issue 12).
        "sessions_negotiating": 0,
    }
    assert "kernel" not in summary  # the null data plane has no kernel counters


@attrs.define
class RefusingEndpoint:
    """Every dial fails; records when it was tried."""

    tries: list[float] = attrs.field(factory=list)

    async def dial(self, *args: object, **kwargs: object) -> object:
        self.tries.append(trio.current_time())
        raise TunnelSetupError("no answer")


async def test_keep_tunnel_redials_with_the_client_backoff(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 0
    endpoint = RefusingEndpoint()
    with trio.move_on_after(100):
        await _keep_tunnel(
            endpoint,  # type: ignore[arg-type]
            ("127.0.0.1", 1701),
            TunnelConfig(),
            backoff=Backoff(initial=2.0, cap=16.0),
        )
    gaps = [round(b - a, 6) for a, b in zip(endpoint.tries, endpoint.tries[1:], strict=False)]
    assert gaps[:6] == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0]


def test_show_session_hides_keys_and_passwords_among_aaa_attributes() -> None:
    from kl2tp.daemon.service import _aaa_value

    assert _aaa_value("MS-MPPE-Send-Key", b"\x01\x02") == "(hidden)"
    assert _aaa_value("Tunnel-Password", "pw") == "(hidden)"
    assert _aaa_value("Class", b"\xab\xcd") == "abcd"
    assert _aaa_value("Session-Timeout", 3600) == 3600
    assert _aaa_value("Framed-Route", ["10.0.0.0/8 10.1.1.1"]) == ["10.0.0.0/8 10.1.1.1"]


@attrs.frozen
class SnapshotRunner:
    """A tunnel runner reduced to what ``show sessions`` reads."""

    local_tunnel_id: int
    sids: tuple[int, ...]
    peer_addr: tuple[str, int] = ("192.0.2.7", 1701)
    peer_hostname: str = "lac"

    def session_snapshots(self) -> list[dict[str, Any]]:
        return [{"tunnel_id": self.local_tunnel_id, "local_id": sid} for sid in self.sids]


@attrs.define
class DumpingPlane(NullDataPlane):
    """Kernel counters for every session, recording each query."""

    kernel_counters: bool = True
    queries: list[list[tuple[int, int]]] = attrs.field(factory=list)

    async def sessions_counters(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Counters]:
        self.queries.append(list(keys))
        return {key: Counters(rx_bytes=key[1], tx_packets=1) for key in keys}


async def test_show_sessions_asks_the_data_plane_once_for_every_session() -> None:
    plane = DumpingPlane()
    endpoint = Endpoint(
        role="lns", tunnel_config=TunnelConfig(), dataplane=plane, listen=("127.0.0.1", 0)
    )
    endpoint.tunnels.update({1: SnapshotRunner(1, (10, 11)), 2: SnapshotRunner(2, (20,))})  # type: ignore[dict-item]
    rows = await ControlApi(endpoint, plane)({"cmd": "show", "what": "sessions"})
    assert plane.queries == [[(1, 10), (1, 11), (2, 20)]]  # one kernel dump, not one per session
    assert [(r["local_id"], r["rx_bytes"], r["tx_packets"]) for r in rows] == [
        (10, 10, 1),
        (11, 11, 1),
        (20, 20, 1),
    ]
    assert rows[0]["peer_address"] == "192.0.2.7:1701" and rows[0]["lac"] == "lac"
    assert rows[0]["kernel"]["rx_bytes"] == 10
