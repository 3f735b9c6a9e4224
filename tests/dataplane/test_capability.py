"""The capability check on a kernel without L2TP and PPP (the build machines' own kernel)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from kl2tp.dataplane import capability
from kl2tp.dataplane.capability import check_kernel


def test_host_without_l2tp_gets_one_message_naming_the_modules() -> None:
    # These machines' kernels lack L2TP and PPP (see ../shared/KERNEL-LAB.md); the lab guest
    # is where check_kernel() returns None (tests/lab/test_guest.py).
    message = check_kernel()
    assert message is not None
    assert "\n" not in message
    for module in ("l2tp_netlink", "l2tp_ppp", "ppp_generic"):
        assert module in message
    assert "modprobe" in message
    assert "linux-modules-extra-$(uname -r)" in message
    assert os.uname().release in message


def test_message_names_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capability, "_has_l2tp_genl", lambda: True)
    monkeypatch.setattr(capability, "_has_pppol2tp", lambda: True)
    message = check_kernel(ppp_device="/nonexistent/ppp")
    assert message is not None
    assert "/nonexistent/ppp" in message
    assert "generic-netlink" not in message
    assert "PPPoL2TP" not in message


def test_all_present_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    device = tmp_path / "ppp"
    device.write_bytes(b"")
    monkeypatch.setattr(capability, "_has_l2tp_genl", lambda: True)
    monkeypatch.setattr(capability, "_has_pppol2tp", lambda: True)
    assert check_kernel(ppp_device=str(device)) is None


def test_kl2tp_lns_with_kind_kernel_refuses_to_start_here(tmp_path: pathlib.Path) -> None:
    """The daemon, not just the function: exit 1, one line on stderr, no traceback."""
    config = tmp_path / "lns.toml"
    config.write_text(
        f'[l2tp]\nlisten = "127.0.0.1:0"\nworkers = 1\n[dataplane]\nkind = "kernel"\n'
        f'[control]\nsocket = "{tmp_path / "lns.sock"}"\n'
        f'[aaa]\nusers_file = "{tmp_path / "users"}"\n'
    )
    (tmp_path / "users").write_text("alice wonderland\n")
    proc = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "kl2tp-lns"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('kl2tp: [dataplane] kind = "kernel", but the kernel data plane')
    for module in ("l2tp_netlink", "l2tp_ppp", "ppp_generic"):
        assert module in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "lns.sock").exists()
