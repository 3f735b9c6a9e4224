"""kl2tp-lac --simulate as a measuring instrument: the tunnel spread, the cap on calls in
setup, the L2TP-only mode (``[subscriber] ppp = false``) and the JSON report."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import BOUND, ctl, wait_for
from tests.daemon.test_subscribers import Lab, subscribers_up


def start(lab: Lab, n: int, *options: str) -> subprocess.Popen[str]:
    """Calls held until SIGTERM, with ``options``; the JSON summary on stdout."""
    return subprocess.Popen(
        [*lab.lac_argv(n), "--hold", "600", "--json", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    lab = Lab(tmp_path, **getattr(request, "param", {}))
    try:
        yield lab
    finally:
        lab.lns.kill()


def test_calls_spread_over_tunnels_and_reported(lab: Lab) -> None:
    proc = start(lab, 30, "--tunnels", "3", "--max-outstanding", "4")
    try:
        subscribers_up(lab, 30)
        tunnels = ctl(lab.lns_sock, "show", "tunnels")
        assert sorted(t["sessions"] for t in tunnels) == [10, 10, 10]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=BOUND * 3)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["tunnels"] == 3
    setup = result["setup_ms"]
    assert 0 < setup["p50"] <= setup["p95"] <= setup["p99"]
    assert result["cpu_ms_per_call"] > 0
    report = result["report"]
    assert report["sessions"] == report["sessions-established"] == 30
    assert report["sessions-failed"] == report["sessions-flapped"] == 0
    assert report["setup-time"] > 0
    # BNG Blaster's setup rate: established / (last established - first started).
    assert report["setup-rate"] == pytest.approx(30 / (report["setup-time"] / 1000), rel=0.05)
    assert report["setup-time-p99"] == setup["p99"]


@pytest.mark.parametrize("lab", [{"lac_extra": "[subscriber]\nppp = false"}], indirect=True)
def test_l2tp_only_calls_send_no_ppp(lab: Lab) -> None:
    proc = start(lab, 10)
    try:
        wait_for(lambda: len(ctl(lab.lns_sock, "show", "sessions")) == 10, "10 sessions on the LNS")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=BOUND * 3)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert (result["established"], result["failed"]) == (10, {})
    log = lab.lns.output()
    assert log.count("L2TP: I ICCN") >= 10
    # The LNS asked (its LCP requests went out); the LAC never answered nor spoke.
    assert "LCP: O CONFREQ" in log
    assert "LCP: I " not in log
