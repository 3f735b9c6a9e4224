"""PPP subscribers end to end on loopback: kl2tp-lac --simulate into kl2tp-lns with local users.

Every call is a subscriber that runs LCP, authentication and IPCP against the LNS; the LNS
authenticates against its users file and assigns addresses from its pool.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import BIN, BOUND, Daemon, ctl, wait_for, write_configs


class Lab:
    """An LNS process and the LAC config that dials it."""

    def __init__(
        self,
        tmp: Path,
        *,
        lns_extra: str = "",
        lac_extra: str = "",
        users: int = 600,
        pool: str = "10.20.0.0/22",
    ) -> None:
        self.tmp = tmp
        lns_cfg, self.lac_cfg, self.lns_sock, _ = write_configs(
            tmp, "s3cret", lns_extra=lns_extra, lac_extra=lac_extra, pool=pool, users=users
        )
        self.lns = Daemon(
            [str(BIN / "kl2tp-lns"), "--config", str(lns_cfg), "--debug", "l2tp,ppp,daemon"],
            tmp / "lns.log",
        )
        wait_for(lambda: self.lns_sock.exists(), "the LNS control socket")

    def lac_argv(self, n: int) -> list[str]:
        return [str(BIN / "kl2tp-lac"), "--config", str(self.lac_cfg), "--simulate", str(n)]

    def simulate(self, n: int, hold: float = 0.0) -> tuple[int, dict[str, Any]]:
        out = subprocess.run(
            [*self.lac_argv(n), "--hold", str(hold), "--json"],
            capture_output=True,
            text=True,
            timeout=BOUND * 3,
        )
        return out.returncode, json.loads(out.stdout)

    def start_simulation(self, n: int, hold: float) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.lac_argv(n), "--hold", str(hold), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pool(self) -> dict[str, int]:
        summary = ctl(self.lns_sock, "show", "summary")
        pool: dict[str, int] = summary["ppp"]["pool"]
        return pool


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    params = getattr(request, "param", {})
    lab = Lab(tmp_path, **params)
    try:
        yield lab
    finally:
        lab.lns.kill()


def subscribers_up(lab: Lab, n: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        sessions: list[dict[str, Any]] = ctl(lab.lns_sock, "show", "sessions")
        if len(sessions) == n and all("address" in s for s in sessions):
            return sessions
        return None

    result: list[dict[str, Any]] = wait_for(ready, f"{n} subscribers up", bound=BOUND * 3)
    return result


def test_500_chap_subscribers(lab: Lab) -> None:
    size = lab.pool()["size"]
    lac = lab.start_simulation(500, hold=600)
    try:
        sessions = subscribers_up(lab, 500)
        assert {s["username"] for s in sessions} == {f"user{n}" for n in range(1, 501)}
        assert {s["auth"] for s in sessions} == {"chap"}
        addresses = [s["address"] for s in sessions]
        assert len(set(addresses)) == 500, "an address was handed out twice"
        assert all(a.startswith("10.20.") for a in addresses)
        assert lab.pool()["in_use"] == 500
        lac.send_signal(signal.SIGTERM)  # ends the hold: the calls are cleared and reported
        out, err = lac.communicate(timeout=BOUND * 3)
    finally:
        lac.kill()
    assert lac.returncode == 0, err
    result = json.loads(out)
    assert (result["requested"], result["established"], result["failed"]) == (500, 500, {})
    # Hangup: every session cleared and every address back in the pool.
    wait_for(lambda: ctl(lab.lns_sock, "show", "sessions") == [], "all sessions cleared")
    assert lab.pool() == {"size": size, "in_use": 0, "free": size}
    assert lab.lns.stop() == 0


@pytest.mark.parametrize(
    "lab",
    [
        {"lac_extra": '[subscriber]\nauth = "pap"', "lns_extra": 'auth = ["pap"]'},
        {"lac_extra": '[subscriber]\nauth = "mschapv2"', "lns_extra": 'auth = ["mschapv2"]'},
    ],
    indirect=True,
    ids=["pap", "mschapv2"],
)
def test_other_auth_methods(lab: Lab) -> None:
    method = "pap" if "pap" in lab.lac_cfg.read_text() else "mschapv2"
    lac = lab.start_simulation(50, hold=600)
    try:
        sessions = subscribers_up(lab, 50)
        assert {s["auth"] for s in sessions} == {method}
        assert len({s["address"] for s in sessions}) == 50
        lac.send_signal(signal.SIGTERM)
        out, err = lac.communicate(timeout=BOUND * 3)
    finally:
        lac.kill()
    assert lac.returncode == 0, err
    assert json.loads(out)["established"] == 50
    wait_for(lambda: lab.pool()["in_use"] == 0, "the pool to be whole again")


@pytest.mark.parametrize(
    "lab", [{"lac_extra": '[subscriber]\npassword = "wrong{n}"'}], indirect=True
)
def test_wrong_password(lab: Lab) -> None:
    rc, result = lab.simulate(5)
    assert rc == 1
    assert result["established"] == 0
    assert result["failed"] == {"auth failed": 5}
    assert lab.pool()["in_use"] == 0
    wait_for(lambda: ctl(lab.lns_sock, "show", "sessions") == [], "failed sessions cleared")
    summary = ctl(lab.lns_sock, "show", "summary")
    assert summary["ppp"]["aaa"]["rejects"] == 5
    # Each call was cleared with a CDN saying why (whichever end noticed first sent it).
    assert lab.lns.output().count("result 2 error 0 (PPP authentication failed)") == 5
    assert lab.lns.stop() == 0


@pytest.mark.parametrize("lab", [{"pool": "10.30.0.1-10.30.0.3"}], indirect=True)
def test_pool_exhaustion_fails_calls_cleanly(lab: Lab) -> None:
    rc, result = lab.simulate(5)
    assert rc == 1
    assert result["established"] == 3
    assert result["failed"] == {"no address": 2}
    wait_for(lambda: lab.pool()["in_use"] == 0, "the pool to be whole again")


@pytest.mark.parametrize("lab", [{"lac_extra": "[subscriber]\nproxy = true"}], indirect=True)
def test_proxy_lcp_and_auth(lab: Lab) -> None:
    """The LAC negotiates LCP and CHAP with each subscriber and proxies them in the ICCN; the
    LNS forces LCP open, verifies the replayed response and sends no challenge of its own."""
    rc, result = lab.simulate(20)
    assert rc == 0, result
    assert result["established"] == 20
    log = lab.lns.output()
    assert log.count("LCP: I FORCED CONFREQ") == 20
    assert "CHAP: O CHALLENGE" not in log
    assert log.count("CHAP: O SUCCESS") >= 20  # a resent Response is answered again
    summary = ctl(lab.lns_sock, "show", "summary")
    assert summary["ppp"]["aaa"]["accepts"] == 20
    assert lab.lns.stop() == 0


@pytest.mark.parametrize(
    "lab",
    [{"lac_extra": "[subscriber]\nproxy = true", "lns_extra": 'proxy_lcp = "renegotiate"'}],
    indirect=True,
)
def test_proxy_renegotiated_when_configured(lab: Lab) -> None:
    rc, result = lab.simulate(5)
    assert rc == 0, result
    log = lab.lns.output()
    assert "LCP: I FORCED CONFREQ" not in log
    assert log.count("CHAP: O CHALLENGE") >= 5
    assert lab.lns.stop() == 0


@pytest.mark.parametrize(
    "lab",
    [{"lac_extra": '[subscriber]\ncalling_number = "0170555{n}"\ncalled_number = "614629"'}],
    indirect=True,
)
def test_simulated_calls_carry_the_configured_numbers(lab: Lab) -> None:
    lac = lab.start_simulation(3, hold=600)
    try:
        sessions = subscribers_up(lab, 3)
        numbers = {s["username"]: (s["calling_number"], s["called_number"]) for s in sessions}
        assert numbers == {f"user{n}": (f"0170555{n}", "614629") for n in (1, 2, 3)}
        lac.send_signal(signal.SIGTERM)
        out, err = lac.communicate(timeout=BOUND)
    finally:
        lac.kill()
    assert lac.returncode == 0, err
    assert json.loads(out)["established"] == 3


def test_without_numbers_configured_none_are_sent(lab: Lab) -> None:
    lac = lab.start_simulation(2, hold=600)
    try:
        sessions = subscribers_up(lab, 2)
        # The LNS shows the numbers only of calls whose ICRQ carried them.
        assert not [s for s in sessions if "calling_number" in s or "called_number" in s]
        lac.send_signal(signal.SIGTERM)
        lac.communicate(timeout=BOUND)
    finally:
        lac.kill()
    assert lac.returncode == 0
