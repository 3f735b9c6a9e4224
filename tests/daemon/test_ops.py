"""Operating a live LNS with 100 sessions: kl2tpctl show/clear/drain/debug/reload, SIGHUP,
and the info-level log (issue 10). One LNS and one simulating LAC serve the whole module
(null data plane); the tests run in file order and the last ones clear everything."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.daemon.harness import (
    BIN,
    BOUND,
    Daemon,
    ctl,
    holding_lac,
    wait_for,
    write_configs,
)

N = 100
SECRET = "ops-tunnel-secret-0xC0FFEE"


@attrs.define
class Pair:
    tmp: Path
    lns_cfg: Path
    lac_cfg: Path
    lns_sock: Path
    lac_sock: Path
    users: Path
    lns: Daemon
    lac: Daemon
    lns_text: str

    def ctl(self, *args: str) -> Any:
        return ctl(self.lns_sock, *args)

    def ctl_run(self, *args: str, sock: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kl2tpctl"), "--socket", str(sock or self.lns_sock), *args],
            capture_output=True,
            text=True,
            timeout=BOUND,
            stdin=subprocess.DEVNULL,
        )

    def sessions(self, *filters: str) -> list[dict[str, Any]]:
        return list(self.ctl("show", "sessions", *filters))

    def extra_lac(self, name: str, *, calls: int, hold: float, user: str = "user{n}") -> Path:
        """A second LAC's config: its own control socket, quick to give up on a tunnel."""
        text = self.lac_cfg.read_text().replace(str(self.lac_sock), str(self.tmp / f"{name}.sock"))
        text = text.replace("[l2tp]\n", "[l2tp]\nretransmit_initial = 0.2\nmax_retries = 2\n", 1)
        text += f'\n[subscriber]\nusername = "{user}"\ncount = {calls}\nhold = {hold}\nrate = 0\n'
        cfg = self.tmp / f"{name}.toml"
        cfg.write_text(text)
        return cfg

    def simulate(self, cfg: Path) -> dict[str, Any]:
        out = subprocess.run(
            [str(BIN / "kl2tp-lac"), "-c", str(cfg), "--simulate", "--json"],
            capture_output=True,
            text=True,
            timeout=BOUND * 2,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def reconfigure(self, l2tp_extra: str = "", dataplane_extra: str = "") -> None:
        text = self.lns_text.replace("idle_timeout = 1\n", f"idle_timeout = 1\n{l2tp_extra}\n")
        text = text.replace('kind = "null"\n', f'kind = "null"\n{dataplane_extra}\n')
        self.lns_cfg.write_text(text)


def _ids(rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    return {(r["tunnel_id"], r["local_id"]) for r in rows}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("ops")
    lns_cfg, lac_cfg, lns_sock, lac_sock = write_configs(tmp, SECRET, users=200)
    lns = Daemon([str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp / "lns.log")
    lac: Daemon | None = None
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        lac = holding_lac(lac_cfg, N, tmp / "lac.log")
        p = Pair(
            tmp, lns_cfg, lac_cfg, lns_sock, lac_sock, tmp / "users", lns, lac, lns_cfg.read_text()
        )
        wait_for(
            lambda: sum(1 for r in p.sessions() if r.get("address")) == N,
            f"{N} sessions up on the LNS",
        )
        yield p
    finally:
        if lac is not None:
            lac.kill()
        lns.kill()


def test_show_sessions_filters_in_json(pair: Pair) -> None:
    rows = pair.sessions()
    assert len(rows) == N
    assert all(r["username"] and r["address"] and r["state"] == "established" for r in rows)
    one = rows[17]
    tid, sid = one["tunnel_id"], one["local_id"]
    assert _ids(pair.sessions("user", one["username"])) == {(tid, sid)}
    assert _ids(pair.sessions("address", one["address"])) == {(tid, sid)}
    assert _ids(pair.sessions("user", one["username"], "tunnel", str(tid))) == {(tid, sid)}
    assert len(pair.sessions("tunnel", str(tid))) == N
    assert pair.sessions("tunnel", str((tid % 65535) + 1)) == []
    assert len(pair.sessions("peer", "127.0.0.1")) == N
    assert len(pair.sessions("peer", one["peer_address"])) == N
    assert pair.sessions("peer", "192.0.2.1") == []
    assert len(pair.sessions("state", "established")) == N
    assert pair.sessions("state", "wait-connect") == []
    # The null data plane names no interface: a filter on one finds nothing.
    assert pair.sessions("interface", "l2tp0") == []
    assert isinstance(one["uptime"], float)
    bad = pair.ctl_run("show", "sessions", "colour", "red")
    assert bad.returncode == 2 and "colour" in bad.stderr


def test_show_sessions_tables_and_column_choice(pair: Pair) -> None:
    out = pair.ctl_run("show", "sessions", "-o", "user,address,uptime,rx_bytes")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["user", "address", "uptime", "rx_bytes"]
    assert len(lines) == N + 1
    for line in lines[1:]:
        user, address, uptime, rx = line.split()
        assert re.fullmatch(r"user\d+", user) and address.startswith("10.20.0.")
        assert re.fullmatch(r"\d+(s|m\d\ds|h\d\dm|d\d\dh)", uptime), uptime
        assert rx == "-"  # no kernel counters on the null data plane
    one = pair.sessions()[3]
    out = pair.ctl_run("show", "sessions", "user", one["username"])
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:5] == ["tunnel_id", "local_id", "peer_id", "state", "username"]
    assert len(lines) == 2 and one["username"] in lines[1] and one["address"] in lines[1]
    out = pair.ctl_run("show", "tunnels", "-o", "local_id,peer_hostname,sessions,uptime")
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["local_id", "peer_hostname", "sessions", "uptime"]
    assert lines[1].split()[1:3] == ["test-lac", str(N)]


def test_show_session_and_tunnel_in_detail(pair: Pair) -> None:
    one = pair.sessions()[5]
    tid, sid = one["tunnel_id"], one["local_id"]
    detail = pair.ctl("show", "session", str(tid), str(sid))
    assert detail["username"] == one["username"] and detail["address"] == one["address"]
    assert detail["lac"] == "test-lac" and detail["peer_address"] == one["peer_address"]
    assert detail["ppp"]["phase"] == one["phase"] and detail["ppp"]["auth"] == "chap"
    assert (
        detail["ppp"]["lcp"]["peer_mru"] > 0 and detail["ppp"]["address_source"] == "pool (default)"
    )
    assert detail["established_uptime"] >= 0
    text = pair.ctl_run("show", "session", str(tid), str(sid)).stdout
    assert re.search(rf"^username\s+{one['username']}$", text, re.M)
    assert re.search(r"^ +peer_mru +\d+$", text, re.M)
    tunnel = pair.ctl("show", "tunnel", str(tid))
    assert tunnel["sessions"] == N and len(tunnel["session_list"]) == N
    assert tunnel["peer_hostname"] == "test-lac" and tunnel["state"] == "established"
    assert tunnel["messages"]["in_ICRQ"] >= N
    text = pair.ctl_run("show", "tunnel", str(tid)).stdout
    assert "peer_hostname" in text and text.count("\n") > N
    missing = pair.ctl_run("show", "session", str(tid), "0")
    assert missing.returncode == 1 and "no session 0" in missing.stderr


def test_sigusr1_logs_a_summary_and_the_daemon_lives_on(pair: Pair) -> None:
    pair.lns.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "summary: {" in pair.lns.output(), "the summary in the log")
    assert pair.lns.proc.poll() is None
    assert len(pair.sessions()) == N


def test_reload_good_and_bad_files_under_load(pair: Pair) -> None:
    before = _ids(pair.sessions())
    # Good: a new user, and a key that needs a restart (kept at its running value).
    with pair.users.open("a") as f:
        f.write("fresh1 pass1\n")
    pair.reconfigure("hello_interval = 30", 'interface_template = "ppp%d"')
    pair.lns.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: applied" in pair.lns.output(), "the reload")
    line = next(ln for ln in pair.lns.output().splitlines() if "reload: applied" in ln)
    assert "l2tp.hello_interval" in line and "needs a restart: dataplane.interface_template" in line
    fresh = pair.simulate(pair.extra_lac("fresh", calls=1, hold=0, user="fresh{n}"))
    assert fresh["established"] == 1, fresh  # the re-read users file is in force
    # Bad: every error logged, the old configuration kept, no one dropped.
    pair.reconfigure("max_sessions = -5\nreceive_window = 0")
    out = pair.ctl_run("reload")
    assert out.returncode == 1
    assert "max_sessions" in out.stdout and "receive_window" in out.stdout
    pair.lns.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: pair.lns.output().count("reload refused: keeping the running") == 2,
        "the second refusal",
    )
    assert "max_sessions: must be" in pair.lns.output()
    # A limit takes effect at once: no room for one more call.
    pair.reconfigure(f"max_sessions = {N}")
    answer = pair.ctl("reload")
    assert answer["ok"] and "l2tp.max_sessions" in answer["applied"]
    full = pair.simulate(pair.extra_lac("full", calls=1, hold=0))
    assert full["established"] == 0
    assert "session refused" in pair.lns.output()
    assert _ids(pair.sessions()) == before
    assert pair.lac.proc.poll() is None
    pair.reconfigure()
    assert pair.ctl("reload")["ok"]
    assert pair.ctl("show", "summary")["reloads"] == 3


def test_drain_refuses_new_tunnels_and_keeps_the_existing(pair: Pair) -> None:
    before = _ids(pair.sessions())
    assert pair.ctl("drain") == {"draining": True}
    assert pair.ctl("show", "summary")["draining"] is True
    refused = pair.simulate(pair.extra_lac("drained", calls=1, hold=0))
    assert refused["established"] == 0
    assert _ids(pair.sessions()) == before
    assert "not draining" in pair.ctl_run("undrain").stdout
    fine = pair.simulate(pair.extra_lac("undrained", calls=1, hold=0))
    assert fine["established"] == 1
    assert _ids(pair.sessions()) == before


def test_debug_condition_traces_one_user_only(pair: Pair) -> None:
    rows = pair.sessions()
    watched, other = rows[10], rows[11]
    state = pair.ctl("debug", "l2tp,ppp", "on")
    assert state["l2tp"] == "on" and state["ppp"] == "on"
    state = pair.ctl("debug", "condition", "user", watched["username"])
    assert state["condition"] == {"kind": "user", "value": watched["username"]}
    start = len(pair.lns.output())
    pair.ctl("clear", "user", other["username"])
    pair.ctl("clear", "user", watched["username"])
    wait_for(lambda: len(pair.sessions()) == N - 2, "both sessions cleared")
    wait_for(lambda: pair.lns.output().count("session down") >= 2, "the down lines")
    assert pair.ctl("debug", "condition", "clear")["condition"] is None
    assert pair.ctl("debug", "all", "off")["l2tp"] == "off"
    log = pair.lns.output()[start:].splitlines()

    def trace(row: dict[str, Any]) -> list[str]:
        tag = f"Tnl/Cl {row['tunnel_id']}/{row['local_id']}"
        return [ln for ln in log if tag in ln and " session down " not in ln]

    assert trace(watched), "no trace for the watched user"
    assert trace(other) == []


def test_clear_each_form_and_the_history(pair: Pair) -> None:
    rows = pair.sessions()
    held = len(rows)  # what earlier tests on the shared pair left up
    a, b, c = rows[0], rows[1], rows[2]
    got = pair.ctl("clear", "session", str(a["tunnel_id"]), str(a["local_id"]))
    assert got == {"cleared": [a["tunnel_id"], a["local_id"]]}
    out = pair.ctl_run("clear", "user", b["username"])
    assert out.returncode == 0 and out.stdout.strip() == "cleared 1 sessions"
    got = pair.ctl("clear", "address", c["address"])
    assert got["cleared"]["sessions"] == [[c["tunnel_id"], c["local_id"]]]
    wait_for(lambda: not _ids(pair.sessions()) & _ids([a, b, c]), "three sessions cleared")
    assert len(pair.sessions()) == held - 3
    assert pair.ctl_run("clear", "user", "nobody").returncode == 1
    assert pair.ctl_run("clear", "tunnel", "1").returncode == 1
    history = pair.ctl("show", "history", "3")
    assert [(h["tunnel_id"], h["session_id"]) for h in history] == [
        (r["tunnel_id"], r["local_id"]) for r in (c, b, a)
    ]
    for h in history:
        assert h["outcome"] == "ended" and "cleared by operator" in h["cause"]
        assert h["user"] and h["duration"] >= 0 and h["time"] > 0
    table = pair.ctl_run("show", "history", "3").stdout.splitlines()
    assert table[0].split()[:3] == ["time", "tunnel_id", "session_id"] and len(table) == 4
    # clear all asks first; without a terminal and without --yes nothing is cleared
    out = pair.ctl_run("clear", "all")
    assert out.returncode == 1 and "--yes" in out.stderr
    assert len(pair.sessions()) == held - 3


def _background_lac(pair: Pair, name: str, calls: int) -> tuple[Daemon, dict[str, Any]]:
    cfg = pair.extra_lac(name, calls=calls, hold=600)
    before = {t["local_id"] for t in pair.ctl("show", "tunnels")}
    lac = Daemon(
        [str(BIN / "kl2tp-lac"), "-c", str(cfg), "--simulate", "--json"], pair.tmp / f"{name}.log"
    )
    tunnel = wait_for(
        lambda: next(
            (
                t
                for t in pair.ctl("show", "tunnels")
                if t["local_id"] not in before and t["sessions"] == calls
            ),
            None,
        ),
        f"{name}'s tunnel",
    )
    wait_for(
        lambda: (
            len(pair.sessions("tunnel", str(tunnel["local_id"]), "state", "established")) == calls
        ),
        f"{name}'s calls",
    )
    return lac, tunnel


def _summary(lac: Daemon) -> dict[str, Any]:
    lac.proc.wait(timeout=BOUND)
    lac.logf.close()
    return dict(json.loads(lac.log.read_text().strip().splitlines()[-1]))


def test_clear_tunnel_and_peer_are_noticed_by_the_simulating_lac(pair: Pair) -> None:
    main = len(pair.sessions())
    lac, tunnel = _background_lac(pair, "bytunnel", 2)
    lac.proc.send_signal(signal.SIGHUP)  # a simulating LAC shrugs these off
    lac.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1: ignored" in lac.output(), "the LAC's note")
    lac_sock = pair.tmp / "bytunnel.sock"
    # The simulating LAC answers kl2tpctl too.
    assert len(ctl(lac_sock, "show", "sessions")) == 2
    assert pair.ctl("clear", "tunnel", str(tunnel["local_id"])) == {"cleared": tunnel["local_id"]}
    summary = _summary(lac)
    assert summary["established"] == 0 and sum(summary["failed"].values()) == 2
    assert all(reason.startswith("cleared by peer") for reason in summary["failed"])
    lac, tunnel = _background_lac(pair, "bypeer", 3)
    got = pair.ctl("clear", "peer", tunnel["peer_address"])
    assert got == {"cleared": {"tunnels": 1}}
    summary = _summary(lac)
    assert summary["established"] == 0 and sum(summary["failed"].values()) == 3
    assert len(pair.sessions()) == main


def test_clear_all_then_the_log_holds_an_up_and_a_down_for_every_session(pair: Pair) -> None:
    out = pair.ctl_run("clear", "all", "--yes")
    assert out.returncode == 0 and out.stdout.strip() == "cleared 1 tunnels"
    summary = _summary(pair.lac)
    assert summary["requested"] == N and summary["established"] == 0
    assert sum(summary["failed"].values()) == N  # each one noticed its CDN or StopCCN
    wait_for(lambda: pair.ctl("show", "tunnels") == [], "no tunnel left")
    assert pair.lns.stop() == 0
    assert not pair.lns_sock.exists()
    log = pair.lns.log.read_text()
    ups = set(re.findall(r"Tnl/Cl (\d+/\d+): session up ", log))
    downs = set(re.findall(r"Tnl/Cl (\d+/\d+): session down ", log))
    assert len(ups) >= N + 2 and ups == downs
    assert len(re.findall(r": Tnl \d+: tunnel up ", log)) == len(
        re.findall(r": Tnl \d+: tunnel down ", log)
    )
    for line in log.splitlines():
        if " session down " in line:
            assert re.search(r" user=\S+ address=10\.20\.0\.\d+ lac=test-lac ", line), line
            assert " duration=" in line and " cause=" in line
    assert SECRET not in log
    assert not re.search(r"\bpass\d+\b", log)
    assert "Traceback" not in log


def test_signals_hup_usr1_then_term_clears_cleanly(tmp_path: Path) -> None:
    lns_cfg, lac_cfg, lns_sock, lac_sock = write_configs(tmp_path, "sig-secret")
    lac_cfg.write_text(lac_cfg.read_text() + "\n[subscriber]\ncount = 2\nhold = 600\n")
    lns = Daemon([str(BIN / "kl2tp-lns"), "-c", str(lns_cfg)], tmp_path / "lns.log")
    lac: Daemon | None = None
    try:
        wait_for(lns_sock.exists, "the LNS control socket")
        lac = Daemon(
            [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg), "--simulate", "--json"],
            tmp_path / "lac.log",
        )
        wait_for(lambda: len(ctl(lns_sock, "show", "sessions", "state", "established")) == 2, "up")
        wait_for(lac_sock.exists, "the simulating LAC's control socket")
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGHUP):
            lns.proc.send_signal(sig)
            time.sleep(0.2)
        wait_for(lambda: "summary: {" in lns.output(), "SIGUSR1's summary")
        assert lns.proc.poll() is None and lac.proc.poll() is None
        assert len(ctl(lns_sock, "show", "sessions")) == 2
        assert lns.stop() == 0
        assert not lns_sock.exists()
        summary = _summary(lac)
        # [subscriber] count placed the calls; the LNS's shutdown CDNs reached the LAC.
        assert summary["requested"] == 2 and summary["established"] == 0
        assert summary["failed"] == {"cleared by peer (cdn result 3)": 2}
        assert not lac_sock.exists()
    finally:
        if lac is not None:
            lac.kill()
        lns.kill()
