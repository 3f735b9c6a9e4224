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
