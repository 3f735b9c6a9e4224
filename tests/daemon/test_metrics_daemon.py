"""The metrics endpoint of a real kl2tp-lns process (``[metrics] listen`` in its config),
scraped over HTTP while kl2tp-lac holds calls through it: every figure equals what
``kl2tpctl show summary --json`` prints at the same moment."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kl2tp.config import ConfigError, parse_config
from tests.daemon.harness import BIN, BOUND, Daemon, ctl, holding_lac, wait_for, write_configs
from tests.daemon.metrics_scrape import parse, value
from tests.daemon.test_metrics import check_against_summary

CALLS = 5


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=BOUND) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_scrape_of_the_daemon_equals_kl2tpctl_show_summary(tmp_path: Path) -> None:
    port = free_tcp_port()
    lns_cfg, lac_cfg, lns_sock, _lac_sock = write_configs(
        tmp_path, "s3cret", lns_extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    url = f"http://127.0.0.1:{port}/metrics"
    lns = Daemon([str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp_path / "lns.log")
    lac: Daemon | None = None
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        lac = holding_lac(lac_cfg, CALLS, tmp_path / "lac.log")
        wait_for(
            lambda: ctl(lns_sock, "show", "summary")["setup"]["successes"] == CALLS,
            f"{CALLS} sessions up",
        )
        # A quiet moment: the same summary before and after the scrape.
        for _ in range(20):
            before = ctl(lns_sock, "show", "summary")
            status, text = get(url)
            after = ctl(lns_sock, "show", "summary")
            if before == after:
                break
        else:
            pytest.fail("the daemon's counters never held still around a scrape")
        assert status == 200
        samples = parse(text)
        check_against_summary(samples, before)
        assert value(samples, "kl2tp_sessions", policy="default", state="established") == CALLS
        assert value(samples, "kl2tp_pool_addresses_in_use", pool="default") == CALLS
        assert get(f"http://127.0.0.1:{port}/")[0] == 404
    finally:
        if lac is not None:
            lac.kill()
        lns.kill()
    assert "metrics on http://127.0.0.1:" in lns.output()


def test_a_bad_metrics_listen_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\[metrics\] listen"):
        parse_config({"metrics": {"listen": "not an address"}}, "lns.toml", "lns")
