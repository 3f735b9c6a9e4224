"""kl2tp-lns with ``[l2tp] workers = 2``: one address pool and one AAA view. The same static
user logging in on tunnels of both workers holds its address once: every other login is
refused, whichever worker it reached (a dead worker's claims being dropped is
tests/aaa/test_addresses.py's). One tunnel, so one worker, holds more than half the pool:
the blocks it leases are not a fixed share (the leasing logic is
tests/daemon/test_workers_steering.py's)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.daemon.harness import BIN, Daemon, ctl, holding_lac, wait_for, write_configs

STATIC = "10.30.0.5"


def summary(sock: Path) -> dict[str, Any]:
    result: dict[str, Any] = ctl(sock, "show", "summary")
    return result


def refused(whole: dict[str, Any]) -> int:
    return sum(whole["ppp"]["logins_refused"].values())


@contextlib.contextmanager
def two_workers(tmp_path: Path, calls: int, lac_extra: str, users: str = "") -> Iterator[Path]:
    """A 2-worker LNS (pool 10.20.0.0/24) and a LAC holding ``calls``: the control socket."""
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(
        tmp_path, "s3cret", workers=2, lac_extra=lac_extra, idle_timeout=30
    )
    with (tmp_path / "users").open("a") as users_file:
        users_file.write(users)
    lns = Daemon([str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp_path / "lns.log")
    lac: Daemon | None = None
    pids: list[int] = []
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        wait_for(lambda: all(w["up"] for w in summary(lns_sock)["workers"]), "two workers up")
        pids = [w["pid"] for w in summary(lns_sock)["workers"]]
        lac = holding_lac(lac_cfg, calls, tmp_path / "lac.log")
        yield lns_sock
    except BaseException:
        # What a rare failure under load needs to be understood (pytest shows it).
        for daemon in (lns, lac):
            if daemon is not None:
                print(f"--- {daemon.log.name} (last 60 lines)")
                print("\n".join(daemon.output().splitlines()[-60:]))
        raise
    finally:
        if lac is not None:
            lac.kill()
        lns.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_static_address_is_held_once_across_workers(tmp_path: Path) -> None:
    calls = 12
    lac_extra = f'[subscriber]\ntunnels = {calls}\nusername = "static"\npassword = "pw"\n'
    with two_workers(tmp_path, calls, lac_extra, f"static pw {STATIC}\n") as lns_sock:
        wait_for(
            lambda: len({t["worker"] for t in ctl(lns_sock, "show", "tunnels")}) == 2,
            "tunnels in both workers",
        )
        wait_for(
            lambda: (
                summary(lns_sock)["ppp"]["active"] >= 1 and refused(summary(lns_sock)) >= calls - 1
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


def test_one_tunnels_worker_uses_more_than_its_part_of_the_pool(tmp_path: Path) -> None:
    calls = 150
    with two_workers(tmp_path, calls, "[subscriber]\ntunnels = 1\n") as lns_sock:
        wait_for(lambda: summary(lns_sock)["ppp"]["active"] == calls, f"{calls} sessions up")
        sessions = ctl(lns_sock, "show", "sessions")
        assert len({s["worker"] for s in sessions}) == 1
        assert len({s["address"] for s in sessions}) == calls > 253 // 2
        pool = summary(lns_sock)["ppp"]["pool"]
        assert pool == {"size": 253, "in_use": calls, "free": 253 - calls}
