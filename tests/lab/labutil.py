"""Helpers for the lab tests (imported as ``labutil``: pytest puts tests/lab on sys.path)."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import pytest

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, fail the test with that output if it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the block in network namespace ``name`` (this thread only), then come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@attrs.frozen
class Link:
    """Two namespaces joined by a veth pair."""

    a: str
    """Name of the first namespace ("" for the initial one)."""
    b: str
    """Name of the second namespace."""
    a_addr: str
    """Address of the veth end in ``a``."""
    b_addr: str
    """Address of the veth end in ``b``."""
