"""The protocol cores stay sans-IO: no sockets, no event loop, no clock, no netlink, no RADIUS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORES = [ROOT / "kl2tp" / "l2tp", ROOT / "ppp"]
FORBIDDEN_MODULES = {"trio", "socket", "pyroute2", "pyrad", "time", "asyncio", "select", "os"}
FORBIDDEN_CALLS = {"urandom", "monotonic", "perf_counter"}


def core_files() -> list[Path]:
    return sorted(p for core in CORES for p in core.rglob("*.py"))


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_CALLS:
            pytest.fail(f"{path}:{node.lineno} uses {node.attr}")
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top not in FORBIDDEN_MODULES, f"{path}:{node.lineno} imports {name}"


def test_cores_exist() -> None:
    assert core_files(), "no core modules found"
