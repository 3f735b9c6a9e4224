"""Command-line behaviour an operator relies on: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[l2tp]\nhello_intervall = 5\n", "hello_intervall"),
        ("[l2tp]\nreceive_window = 0\n", "receive_window"),
        ('[l2tp]\nlisten = "nowhere"\n', "listen"),
        ('[ppp]\npool = "10.0.0.0/33"\n', "pool"),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path, toml: str, key: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    out = run(str(BIN / "kl2tp-lns"), "--config", str(cfg))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "bad.toml" in lines[0] and key in lines[0]
    assert "Traceback" not in out.stderr


def test_missing_users_file_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "lns.toml"
    cfg.write_text(f'[aaa]\nusers_file = "{tmp_path / "nope"}"\n[dataplane]\nkind = "null"\n')
    out = run(str(BIN / "kl2tp-lns"), "--config", str(cfg))
    assert out.returncode == 2
    assert "nope" in out.stderr and "Traceback" not in out.stderr


def test_secret_never_printed(tmp_path: Path) -> None:
    cfg = tmp_path / "lns.toml"
    cfg.write_text('[l2tp]\nsecret = "hunter2-very-secret"\nhello_interval = -1\n')
    out = run(str(BIN / "kl2tp-lns"), "--config", str(cfg))
    assert out.returncode == 2
    assert "hunter2" not in out.stderr + out.stdout


def test_kl2tpctl_without_a_daemon_fails_cleanly(tmp_path: Path) -> None:
    out = run(str(BIN / "kl2tpctl"), "--socket", str(tmp_path / "none.sock"), "show", "summary")
    assert out.returncode == 1
    assert "none.sock" in out.stderr and "Traceback" not in out.stderr


# -- issue 10: defects an operator hit --------------------------------------------------------


def _lns_config(tmp_path: Path, port: int, sock: Path, name: str = "lns.toml") -> Path:
    users = tmp_path / "users"
    users.write_text("user1 pass1\n")
    cfg = tmp_path / name
    cfg.write_text(
        f'[l2tp]\nlisten = "127.0.0.1:{port}"\nworkers = 1\n[dataplane]\nkind = "null"\n'
        f'[control]\nsocket = "{sock}"\n[aaa]\nusers_file = "{users}"\n'
    )
    return cfg


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_path(path: Path, proc: subprocess.Popen[str]) -> None:
    import time

    deadline = time.monotonic() + 30
    while not path.exists():
        assert proc.poll() is None, "the daemon exited"
        assert time.monotonic() < deadline, "daemon did not create its control socket"
        time.sleep(0.05)


@pytest.mark.parametrize("clash", ["udp", "control"])
def test_a_second_daemon_on_a_used_address_or_socket_refuses_with_one_line(
    tmp_path: Path, clash: str
) -> None:
    port = _free_port()
    first_sock = tmp_path / "first.sock"
    first = subprocess.Popen(
        [str(BIN / "kl2tp-lns"), "-c", str(_lns_config(tmp_path, port, first_sock))],
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_for_path(first_sock, first)
        if clash == "udp":
            cfg = _lns_config(tmp_path, port, tmp_path / "second.sock", "second.toml")
        else:
            cfg = _lns_config(tmp_path, _free_port(), first_sock, "second.toml")
        out = run(str(BIN / "kl2tp-lns"), "-c", str(cfg))
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert "Traceback" not in out.stderr
        if clash == "udp":
            assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
            assert not (tmp_path / "second.sock").exists()
        else:
            assert "first.sock" in lines[0] and "another daemon" in lines[0]
        assert first.poll() is None  # the first one is untouched
        assert first_sock.exists()
    finally:
        first.terminate()
        assert first.wait(timeout=30) == 0


def test_unknown_debug_category_is_a_usage_error(tmp_path: Path) -> None:
    out = run(str(BIN / "kl2tp-lns"), "--debug", "foo")
    assert out.returncode == 2
    assert "foo" in out.stderr and "Traceback" not in out.stderr


def test_lac_help_states_the_real_rate_default() -> None:
    out = run(str(BIN / "kl2tp-lac"), "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "as fast as possible)" not in text.replace("0: as fast as possible)", "")
    assert "[subscriber] rate, 100" in text


@pytest.mark.parametrize("prog", ["kl2tp-lns", "kl2tp-lac", "kl2tpctl"])
def test_version_on_every_command(prog: str) -> None:
    out = run(str(BIN / prog), "--version")
    assert out.returncode == 0
    assert prog in out.stdout and any(ch.isdigit() for ch in out.stdout)
    if prog == "kl2tpctl":
        for sub in (
            ["show", "--version"],
            ["clear", "--version"],
            ["drain", "--version"],
            ["undrain", "--version"],
            ["reload", "--version"],
            ["debug", "--version"],
            ["decode", "--version"],
        ):
            assert run(str(BIN / prog), *sub).returncode == 0


# -- --check-config -------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"


@pytest.mark.parametrize("role", ["lns", "lac"])
def test_check_config_on_every_example(role: str) -> None:
    examples = sorted(EXAMPLES.glob(f"{role}*.toml"))
    assert examples
    for example in examples:
        out = run(str(BIN / f"kl2tp-{role}"), "--check-config", "-c", str(example))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith("OK")
    out = run(str(BIN / f"kl2tp-{role}"), "--check-config")
    assert out.returncode == 0 and "OK" in out.stdout


def test_check_config_prints_every_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[l2tp]\nhello_interval = -1\nreceive_window = 0\n[ppp]\nmru = 1\n[log]\nformat = "xml"\n'
    )
    out = run(str(BIN / "kl2tp-lns"), "--check-config", "-c", str(cfg))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 4, out.stderr
    for key in ("hello_interval", "receive_window", "mru", "format"):
        assert sum(key in line for line in lines) == 1
    assert out.stdout == ""


def test_check_config_reads_the_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text('alice "unterminated\n')
    cfg = tmp_path / "lns.toml"
    cfg.write_text(f'[aaa]\nusers_file = "{users}"\n')
    out = run(str(BIN / "kl2tp-lns"), "--check-config", "-c", str(cfg))
    assert out.returncode == 2
    assert "users" in out.stderr and "Traceback" not in out.stderr


BAD_CONFIGS = [
    ("[l2tp]\nmax_sessions = -1\n", "max_sessions"),
    ('[l2tp]\nmax_tunnels = "many"\n', "max_tunnels"),
    ('[l2tp]\nallowed_peers = ["10.0.0.1/8"]\n', "allowed_peers"),
    ("[l2tp]\nretransmit_initial = 4\nretransmit_cap = 2\n", "retransmit_cap"),
    ("[l2tp]\nhide_avps = true\n", "hide_avps"),
    ('[l2tp]\nsecret = ""\n', "secret"),
    ("[control]\nsocket = 5\n", "socket"),
    ('[dataplane]\nkind = "fast"\n', "kind"),
    ('[dataplane]\ninterface_template = "ppp"\n', "interface_template"),
    ('[log]\nlevel = "loud"\n', "level"),
    ('[log]\ncategories = ["l2tp", "radius"]\n', "categories"),
    ('[log]\nformat = "xml"\n', "format"),
    ('[log]\nsyslog = "nowhere:514"\n', "syslog"),
    ('[log]\nsyslog = "127.0.0.1:99999"\n', "syslog"),
    ("[log]\nhistory = 0\n", "history"),
    ('[ppp]\nauth = ["chap", "eap"]\n', "auth"),
    ('[ppp]\ndns = ["1.1.1.1", "8.8.8.8", "9.9.9.9"]\n', "dns"),
    ("[ppp]\nmru = 70000\n", "mru"),
    ('[aaa]\nbackend = "ldap"\n', "backend"),
    ("[subscriber]\ncount = 5\n", "subscriber"),
    ('[lac]\nmode = "client"\n', "lac"),
    ("hello_interval = 5\n", "hello_interval"),
    ("[l2tp\n", "invalid TOML"),
]


@pytest.mark.parametrize(("toml", "key"), BAD_CONFIGS)
def test_bad_config_table_exits_2_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    for argv in (["-c", str(cfg)], ["--check-config", "-c", str(cfg)]):
        out = run(str(BIN / "kl2tp-lns"), *argv)
        assert out.returncode == 2, (argv, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "bad.toml" in lines[0] and key in lines[0], out.stderr
        assert "Traceback" not in out.stderr


def test_sighup_when_the_config_file_is_gone_keeps_the_daemon(tmp_path: Path) -> None:
    import signal
    import time

    # A file that cannot be read is refused like a bad one: logged, and the daemon carries on.
    sock = tmp_path / "lns.sock"
    cfg = _lns_config(tmp_path, _free_port(), sock)
    proc = subprocess.Popen(
        [str(BIN / "kl2tp-lns"), "-c", str(cfg)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_path(sock, proc)
        cfg.unlink()  # now there is nothing to read either
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "reload refused" in err and "cannot read" in err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0s"),
        (59.9, "59s"),
        (61, "1m01s"),
        (3600 + 120, "1h02m"),
        (3 * 86400 + 4 * 3600, "3d04h"),
    ],
)
def test_human_durations(seconds: float, text: str) -> None:
    from kl2tp.cli import human_duration

    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB"), (None, "-")],
)
def test_human_bytes(n: int | None, text: str) -> None:
    from kl2tp.cli import human_bytes

    assert human_bytes(n) == text


def test_tables_escape_what_a_peer_sent() -> None:
    from kl2tp.cli import table

    out = table(
        [{"username": "eve\nfake-row", "uptime": 65.0, "rx_bytes": 2048}],
        ["user", "uptime", "rx_bytes"],
    )
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[1].split() == ["eve\\x0afake-row", "1m05s", "2.0", "KiB"]


def test_summary_table_shows_the_ppp_and_aaa_counters() -> None:
    """`kl2tpctl show summary` as a table prints the session side's nested counters too
    (setup timeouts, refusals, AAA), as dotted names, not only in --json."""
    from kl2tp.cli import _format_summary_show

    result = {
        "role": "lns",
        "dataplane": "null",
        "tunnels": {"total": 1, "by_state": {"established": 1}},
        "sessions": {"total": 2, "by_state": {"established": 2}},
        "ppp": {
            "setup_timeouts": {"auth": 3},
            "logins_refused": {"duplicate-session": 1},
            "aaa": {"accepts": 2, "by_method": {"chap": 2}},
            "note": "bad\nline",
        },
    }
    text = _format_summary_show(result)
    ppp = [line for line in text.splitlines() if line.startswith("ppp ")]
    assert len(ppp) == 1
    assert "setup_timeouts.auth=3" in ppp[0]
    assert "logins_refused.duplicate-session=1" in ppp[0]
    assert "aaa.by_method.chap=2" in ppp[0]
    assert "note=bad\\x0aline" in ppp[0]
    assert len(text.splitlines()) == 4


def test_an_unknown_output_column_is_a_usage_error_naming_the_columns() -> None:
    from kl2tp.cli import table

    rows = [{"username": "user1", "address": "10.0.0.2", "uptime": 61}]
    assert table(rows, ["user", "address"]).splitlines()[1].split() == ["user1", "10.0.0.2"]
    with pytest.raises(ValueError, match=r"unknown column adress .*address, .*username"):
        table(rows, ["user", "adress"], chosen=True)
    assert "rx_bytes" in table(rows, ["user", "rx_bytes"], chosen=True)  # documented, absent
    assert table(rows, ["adress"]).startswith("adress")  # the built-in defaults: not checked
    assert table([], ["anything"], chosen=True) == "anything"  # no rows: nothing to check
