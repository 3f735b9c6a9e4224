"""Failure paths on real daemons: the LNS shuts down with calls up; a subscriber goes silent."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.daemon.harness import BOUND, ctl, wait_for
from tests.daemon.test_subscribers import Lab, subscribers_up


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Lab:
    params = getattr(request, "param", {})
    return Lab(tmp_path, lns_extra=params.get("lns_extra", ""), users=50)


def test_lns_sigterm_with_calls_up_clears_them_and_exits_0(lab: Lab) -> None:
    lac = lab.start_simulation(10, hold=60)
    try:
        subscribers_up(lab, 10)
        assert lab.lns.stop() == 0
        log = lab.lns.output()
        # Every session got its CDN (result 3, administrative), then the tunnel its StopCCN,
        # on the wire in that order, before the LNS exited.
        assert log.count("call cleared locally: result 3") == 10
        assert log.count("L2TP: O CDN, flg") == 10
        assert log.index("L2TP: O StopCCN, flg") > log.rindex("L2TP: O CDN, flg")
        assert not lab.lns_sock.exists()
    finally:
        lac.send_signal(signal.SIGTERM)
        out, _ = lac.communicate(timeout=BOUND)
    # The simulating LAC noticed the CDNs: none of its calls counts as up any more.
    summary = json.loads(out)
    assert summary["established"] == 0
    assert summary["failed"] == {"cleared by peer (cdn result 3)": 10}


@pytest.mark.parametrize(
    "lab",
    [{"lns_extra": "lcp_echo_interval = 1\nlcp_echo_failure = 2"}],
    indirect=True,
)
def test_silent_subscriber_is_cleared_by_lcp_echo_and_costs_nothing(lab: Lab) -> None:
    lac = lab.start_simulation(3, hold=60)
    try:
        subscribers_up(lab, 3)
        assert lab.pool()["in_use"] == 3
        lac.send_signal(signal.SIGSTOP)  # the whole LAC goes quiet: no echo replies
        wait_for(lambda: ctl(lab.lns_sock, "show", "sessions") == [], "sessions cleared")
        assert lab.pool()["in_use"] == 0
        assert lab.lns.output().count("PPP down (echo-timeout") == 3
    finally:
        lac.kill()
        lac.communicate()
    assert lab.lns.stop() == 0
