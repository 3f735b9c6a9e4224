"""kl2tp-lns with ``[l2tp] workers = 2``: one AAA view of the static addresses. The same
static user logging in on tunnels of both workers holds its address once: every other login
is refused, whichever worker it reached (a dead worker's claims being dropped is
tests/aaa/test_addresses.py's)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from tests.daemon.harness import BIN, Daemon, ctl, holding_lac, wait_for, write_configs

CALLS = 12
TUNNELS = 12
STATIC = "10.30.0.5"


def summary(sock: Path) -> dict[str, Any]:
    result: dict[str, Any] = ctl(sock, "show", "summary")
    return result


def refused(whole: dict[str, Any]) -> int:
    return sum(whole["ppp"]["logins_refused"].values())


def test_a_static_address_is_held_once_across_workers(tmp_path: Path) -> None:
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(
        tmp_path,
        "s3cret",
        workers=2,
        lac_extra=(f'[subscriber]\ntunnels = {TUNNELS}\nusername = "static"\npassword = "pw"\n'),
        idle_timeout=30,
    )
    with (tmp_path / "users").open("a") as users:
        users.write(f"static pw {STATIC}\n")
    lns = Daemon([str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp_path / "lns.log")
    lac: Daemon | None = None
    pids: list[int] = []
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        wait_for(lambda: all(w["up"] for w in summary(lns_sock)["workers"]), "two workers up")
        pids = [w["pid"] for w in summary(lns_sock)["workers"]]
        lac = holding_lac(lac_cfg, CALLS, tmp_path / "lac.log")
        # Every call logged in (or was refused) at least once on each worker's tunnels.
        wait_for(
            lambda: len({t["worker"] for t in ctl(lns_sock, "show", "tunnels")}) == 2,
            "tunnels in both workers",
        )
        wait_for(
            lambda: (
                summary(lns_sock)["ppp"]["active"] >= 1 and refused(summary(lns_sock)) >= CALLS - 1
            ),
            "one login in, the others refused",
        )
        whole = summary(lns_sock)
        by_reason = whole["ppp"]["logins_refused"]
        # Refused across workers (another worker holds it) and within one (duplicate_session).
        assert by_reason.get("address-in-use-by-worker", 0) >= 1, by_reason
        sessions = [s for s in ctl(lns_sock, "show", "sessions") if s.get("address")]
        assert [s["address"] for s in sessions] == [STATIC], sessions
        assert whole["ppp"]["addresses"]["static"] == 1

    finally:
        if lac is not None:
            lac.kill()
        lns.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


LEASED_CALLS = 150


def test_one_tunnels_worker_uses_more_than_its_part_of_the_pool(tmp_path: Path) -> None:
    """One LAC, one tunnel, so one worker: it leases the pool's blocks as it needs them and
    holds more than half of a /24 (253 addresses) with two workers."""
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(
        tmp_path,
        "s3cret",
        workers=2,
        lac_extra="[subscriber]\ntunnels = 1\n",
        idle_timeout=30,
    )
    lns = Daemon([str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp_path / "lns.log")
    lac: Daemon | None = None
    pids: list[int] = []
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        wait_for(lambda: all(w["up"] for w in summary(lns_sock)["workers"]), "two workers up")
        pids = [w["pid"] for w in summary(lns_sock)["workers"]]
        lac = holding_lac(lac_cfg, LEASED_CALLS, tmp_path / "lac.log")
        wait_for(
            lambda: summary(lns_sock)["ppp"]["active"] == LEASED_CALLS,
            f"{LEASED_CALLS} sessions up",
        )
        sessions = ctl(lns_sock, "show", "sessions")
        assert len({s["worker"] for s in sessions}) == 1
        addresses = {s["address"] for s in sessions}
        assert len(addresses) == LEASED_CALLS > 253 // 2
        pool = summary(lns_sock)["ppp"]["pool"]
        assert pool == {"size": 253, "in_use": LEASED_CALLS, "free": 253 - LEASED_CALLS}
    finally:
        if lac is not None:
            lac.kill()
        lns.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
