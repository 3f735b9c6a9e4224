"""``kl2tp-lac --simulate N --processes P``: the load generator spread over P processes,
each with its own port, tunnels and slice of subscribers, one merged summary."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kl2tp.daemon.service import SimulationResult
from kl2tp.lac.processes import merge, parse_part, part_of, split
from tests.daemon.harness import BIN, BOUND, Daemon, ctl, wait_for, write_configs
from tests.daemon.test_subscribers import Lab, subscribers_up


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.lns.kill()


def test_two_processes_share_the_calls_and_merge_one_summary(lab: Lab) -> None:
    with subprocess.Popen(
        [*lab.lac_argv(21), "--processes", "2", "--tunnels", "3", "--hold", "600", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            sessions = subscribers_up(lab, 21)
            # Every subscriber once: the parts' slices of the numbers do not overlap.
            users = sorted(s["username"] for s in sessions)
            assert users == sorted(f"user{n}" for n in range(1, 22))
            tunnels = ctl(lab.lns_sock, "show", "tunnels")
            # Three tunnels from two processes, i.e. two source ports (2 + 1 tunnels).
            ports = {t["peer_address"].rsplit(":", 1)[1] for t in tunnels}
            assert len(tunnels) == 3 and len(ports) == 2
            # SIGTERM to the parent ends both parts' holds; each clears its calls.
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=BOUND * 3)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert (result["requested"], result["established"], result["failed"]) == (21, 21, {})
    assert result["processes"] == 2 and result["tunnels"] == 3
    assert [(p["requested"], p["established"], p["tunnels"]) for p in result["parts"]] == [
        (11, 11, 2),
        (10, 10, 1),
    ]
    assert result["cpu_s"] == pytest.approx(sum(p["cpu_s"] for p in result["parts"]), abs=0.01)
    report = result["report"]
    assert report["sessions"] == report["sessions-established"] == 21
    assert 0 < report["setup-time-p50"] <= report["setup-time-p99"]
    assert report["setup-time"] > 0
    assert "raw" not in result
    assert ctl(lab.lns_sock, "show", "sessions") == []


def test_sigterm_during_setup_stops_placing_calls(lab: Lab) -> None:
    """A generator stopped while it is still placing calls places no more: the rest count
    as ``not placed (stopped)``, the calls up are cleared, the summary comes at once."""
    with subprocess.Popen(
        [*lab.lac_argv(400), "--processes", "2", "--rate", "4", "--hold", "600", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            wait_for(lambda: len(ctl(lab.lns_sock, "show", "sessions")) >= 2, "2 calls placed")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=BOUND * 3)
        finally:
            if proc.poll() is None:
                proc.kill()
    result = json.loads(out)
    assert proc.returncode == 1, err
    unplaced = result["failed"].pop("not placed (stopped)")
    assert result["failed"] == {}
    assert result["established"] >= 2 and result["established"] + unplaced == 400
    assert unplaced > 300
    assert ctl(lab.lns_sock, "show", "sessions") == []


@pytest.mark.parametrize("backoff", [[], ["--redial-max", "0.8"]], ids=["fixed", "backoff"])
def test_refused_calls_redial_until_up(tmp_path: Path, backoff: list[str]) -> None:
    """``--redial``: calls the LNS refuses (here: at most 2 negotiating at once, CDN result
    4) are placed again until every one is up; the refusals are counted as redials, not as
    failures, and the report's setup time counts from each call's first placing. With
    ``--redial-max`` the pauses grow and the calls still all come up."""
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(tmp_path, "s3cret", users=20)
    text = lns_cfg.read_text()
    lns_cfg.write_text(text.replace("[l2tp]\n", "[l2tp]\nmax_negotiating_sessions = 2\n", 1))
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        options = ["--processes", "2", "--rate", "0", "--redial", "0.2", *backoff]
        options += ["--hold", "0", "--json"]
        out = subprocess.run(
            [str(BIN / "kl2tp-lac"), "--config", str(lac_cfg), "--simulate", "12", *options],
            capture_output=True,
            text=True,
            timeout=BOUND * 3,
        )
        summary = ctl(lns_sock, "show", "summary")
    finally:
        lns.kill()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["established"], result["failed"]) == (12, {})
    refused = summary["counters"]["calls_refused_negotiating_limit"]
    assert refused > 0
    assert result["redials"] == {"cdn result 4: session limit reached": refused}
    assert result["report"]["setup-retries"] == refused


def test_split_covers_everything_once() -> None:
    for total in (0, 1, 7, 100, 101):
        for parts in (1, 2, 3, 8):
            shares = [split(total, parts, i) for i in range(parts)]
            assert sum(size for _, size in shares) == total
            assert max(s for _, s in shares) - min(s for _, s in shares) <= 1
            offsets = [offset for offset, _ in shares]
            assert offsets == [sum(s for _, s in shares[:i]) for i in range(parts)]


def test_parts_divide_calls_tunnels_rate_and_cap() -> None:
    parts = [part_of(i, 3, calls=10, tunnels=2, rate=90.0, max_outstanding=4) for i in range(3)]
    assert [(p.first, p.count) for p in parts] == [(1, 4), (5, 3), (8, 3)]
    # Fewer tunnels than parts: every part still gets one.
    assert [(p.first_tunnel, p.tunnels) for p in parts] == [(0, 1), (1, 1), (2, 1)]
    assert [p.rate for p in parts] == [30.0, 30.0, 30.0]
    assert [p.max_outstanding for p in parts] == [2, 1, 1]
    # 0 means "no limit" and stays so in every part.
    assert part_of(1, 2, calls=4, tunnels=4, rate=0.0, max_outstanding=0).max_outstanding == 0


def test_parse_part() -> None:
    assert parse_part("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "x", "1/0"):
        with pytest.raises((ValueError, ZeroDivisionError)):
            parse_part(bad)


def test_merge_percentiles_over_all_calls_and_a_dead_part() -> None:
    a = SimulationResult(requested=3, established=3, setup_ms=[10.0, 20.0, 30.0], tunnels=1)
    a.first_started, a.last_established, a.cpu_s = 5.0, 6.0, 1.0
    b = SimulationResult(requested=2, established=2, setup_ms=[40.0, 50.0], tunnels=2)
    b.first_started, b.last_established, b.cpu_s = 4.0, 5.5, 2.0
    b.failed["no address"] = 0
    merged = merge(
        [
            {**a.summary(), "raw": a.raw(100.0), "counters": {"rx": 1}},
            {**b.summary(), "raw": b.raw(101.0), "counters": {"rx": 2}},
            None,
        ],
        [3, 2, 4],
    )
    assert merged["requested"] == 9 and merged["established"] == 5
    assert merged["failed"] == {"no address": 0, "generator process exited": 4}
    assert merged["setup_ms"]["p50"] == 30.0 and merged["setup_ms"]["p99"] == 50.0
    # From the earliest start (105.0) to the latest establishment (106.5), on one clock.
    assert merged["report"]["setup-time"] == 1500
    assert merged["cpu_s"] == 3.0 and merged["tunnels"] == 3
    assert merged["counters"] == {"rx": 3}
    assert merged["parts"][2] is None and merged["processes"] == 3


@pytest.mark.parametrize(
    "options", [["--redial-max", "2"], ["--redial", "1", "--redial-max", "0.5"]]
)
def test_redial_max_needs_redial_and_no_less(options: list[str], tmp_path: Path) -> None:
    _, lac_cfg, _, _ = write_configs(tmp_path, "s3cret", users=1)
    out = subprocess.run(
        [str(BIN / "kl2tp-lac"), "--config", str(lac_cfg), "--simulate", "1", *options],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert out.returncode == 2 and "--redial-max" in out.stderr
