"""Architecture rules, checked on the source with ast.

- The protocol cores stay sans-IO: no sockets, no event loop, no clock, no netlink, no RADIUS.
- ``kl2tp/daemon/`` takes its wire numbers (message types, AVP types, result and error codes)
  from the cores' enums: it declares none of its own and passes no bare int where one goes.
- No import cycle anywhere in ``kl2tp/`` or ``ppp/``.
"""

from __future__ import annotations

import ast
import enum
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kl2tp.l2tp.constants import AvpType, CdnResult, ErrorCode, MessageType, StopCcnResult
from ppp.frame import Code, Proto

ROOT = Path(__file__).resolve().parent.parent
CORES = [ROOT / "kl2tp" / "l2tp", ROOT / "ppp", ROOT / "kl2tp" / "access" / "pppoe.py"]
FORBIDDEN_MODULES = {"trio", "socket", "pyroute2", "pyrad", "time", "asyncio", "select", "os"}
FORBIDDEN_CALLS = {"urandom", "monotonic", "perf_counter"}


def core_files() -> list[Path]:
    return sorted(p for core in CORES for p in (core.rglob("*.py") if core.is_dir() else [core]))


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


# -- wire numbers in the daemon ------------------------------------------------------------
#
# What counts as a re-declared wire number (kept narrow, so that a finding is a real one):
#
# 1. A module- or class-level ``NAME = <int>`` (or ``NAME: int = <int>``) where NAME
#    - is a message type's name (``SCCRQ``, ``ICRQ``, ...), whatever the value;
#    - starts with CDN_, STOPCCN_, RESULT_, GENERAL_ or AVP_, or ends with _RESULT, whatever the
#      value (``CDN_ADMIN = 3``, ``GENERAL_NO_RESOURCES = 4``);
#    - is the name of a member of a wire enum (MessageType, AvpType, CdnResult, StopCcnResult,
#      ErrorCode, ppp's Proto and Code) *and* has that member's value (``ADMINISTRATIVE = 3``;
#      ``TIMEOUT = 30``, seconds, is not CdnResult.TIMEOUT and passes).
#    Floats, bools and computed values pass: the wire numbers are bare ints.
# 2. ``from <not a core> import NAME`` with NAME as in 1 (a daemon module taking another's copy).
# 3. ``<anything>.get(<int>)``: an AVP looked up by number (``msg.get(9)``).
# 4. ``hangup(...)`` / ``close(...)`` with an int literal argument: result and error codes
#    (``runner.close(1, 0, "bye")``; ``sock.close()`` and ``link.close(now, reason)`` pass).
# 5. Any call with ``result=<int>`` / ``error=<int>`` (``CallClosed(result=2, error=0)``).
# 6. ``<x>.msg_type`` / ``.result`` / ``.error`` compared with an int literal.
# 7. A parameter ``result`` / ``error`` with an int default (``def close(self, result=1)``).

WIRE_ENUMS: tuple[type[enum.IntEnum], ...] = (
    MessageType,
    AvpType,
    CdnResult,
    StopCcnResult,
    ErrorCode,
    Proto,
    Code,
)
WIRE_MEMBERS: dict[str, set[int]] = {}
for _enum in WIRE_ENUMS:
    for _member in _enum:
        WIRE_MEMBERS.setdefault(_member.name, set()).add(int(_member))
MESSAGE_NAMES = frozenset(m.name for m in MessageType)
WIRE_NAME = re.compile(r"^(CDN|STOPCCN|RESULT|GENERAL|AVP)_\w+$|^\w+_RESULT$")
CORE_PACKAGES = ("kl2tp.l2tp", "ppp")
CODE_CALLS = frozenset({"hangup", "close"})
CODE_KEYWORDS = frozenset({"result", "error", "result_code", "error_code"})
CODE_ATTRIBUTES = frozenset({"msg_type", "result", "error"})


def _int_literal(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _wire_name(name: str) -> bool:
    return name in MESSAGE_NAMES or WIRE_NAME.match(name) is not None


def _assignments(body: list[ast.stmt]) -> Iterator[tuple[str, ast.expr | None, int]]:
    """(name, value, line) of the plain assignments in a module or class body (recursively
    into classes)."""
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    yield target.id, stmt.value, stmt.lineno
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            yield stmt.target.id, stmt.value, stmt.lineno
        elif isinstance(stmt, ast.ClassDef):
            yield from _assignments(stmt.body)


def wire_number_findings(source: str, filename: str = "<snippet>") -> list[str]:
    """Every place in `source` where a wire number is written as a bare int (rules above)."""
    tree = ast.parse(source, filename)
    found: set[tuple[int, str]] = set()

    def report(node: ast.AST | int, what: str) -> None:
        line = node if isinstance(node, int) else getattr(node, "lineno", 0)
        found.add((line, what))

    for name, value, line in _assignments(tree.body):
        if not _int_literal(value):
            continue
        assert isinstance(value, ast.Constant)
        if _wire_name(name) or value.value in WIRE_MEMBERS.get(name, ()):
            report(line, f"wire constant {name} = {value.value}: use the core's enum")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith(tuple(f"{p}." for p in CORE_PACKAGES)):
                continue
            if node.module in CORE_PACKAGES:
                continue
            for alias in node.names:
                if _wire_name(alias.name):
                    report(node, f"imports wire constant {alias.name} from {node.module}")
        elif isinstance(node, ast.Call):
            func = node.func
            fname = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            get = isinstance(func, ast.Attribute) and fname == "get" and node.args
            if get and _int_literal(node.args[0]):
                report(node, f"AVP looked up by number: .get({ast.unparse(node.args[0])})")
            if fname in CODE_CALLS:
                literals = [a for a in node.args if _int_literal(a)]
                literals += [k.value for k in node.keywords if _int_literal(k.value)]
                if literals:
                    codes = ", ".join(ast.unparse(a) for a in literals)
                    report(node, f"{fname}() with bare result/error code(s) {codes}")
            for kw in node.keywords:
                if kw.arg in CODE_KEYWORDS and _int_literal(kw.value):
                    report(node, f"{fname}({kw.arg}={ast.unparse(kw.value)}): use the enum")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            defaulted = positional[len(positional) - len(args.defaults) :]
            pairs = list(zip(defaulted, args.defaults, strict=True))
            kwonly = zip(args.kwonlyargs, args.kw_defaults, strict=True)
            pairs += [(a, d) for a, d in kwonly if d is not None]
            for arg, default in pairs:
                if arg.arg in CODE_KEYWORDS and _int_literal(default):
                    report(default, f"{node.name}({arg.arg}={ast.unparse(default)}): use the enum")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            attrs = [
                o.attr
                for o in operands
                if isinstance(o, ast.Attribute) and o.attr in CODE_ATTRIBUTES
            ]
            if attrs and any(_int_literal(o) for o in operands):
                report(node, f".{attrs[0]} compared with a bare int: {ast.unparse(node)}")
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


WIRE_SNIPPETS_BAD = [
    "SCCRQ = 1",
    "ICRQ = 10",
    "CDN_ADMIN = 3",
    "STOPCCN_SHUTDOWN: int = 6",
    "RESULT_ADMIN = 3",
    "GENERAL_NO_RESOURCES = 4",
    "TUNNEL_RESULT = 2",
    "AVP_HOST_NAME = 7",
    "ADMINISTRATIVE = 3",
    "NO_ERROR = 0",
    "LCP = 0xC021",
    "class Codes:\n    CDN_TIMEOUT = 10",
    "from kl2tp.daemon.endpoint import RESULT_ADMIN",
    "peer = msg.get(9)",
    "runner.hangup(sid, 3, ErrorCode.NO_ERROR, 'bye')",
    "runner.hangup(sid, CdnResult.ADMINISTRATIVE, 0, 'bye')",
    "runner.hangup(sid, result=3)",
    "runner.close(1, 0, 'bye')",
    "self.core.close(now, StopCcnResult.GENERAL_ERROR, 4, 'x')",
    "info.closed = CallClosed(sid=sid, result=2, error=ErrorCode.NO_ERROR)",
    "info.closed = CallClosed(sid=sid, result=CdnResult.GENERAL_ERROR, error=0)",
    "if msg.msg_type != 1:\n    pass",
    "ok = 4 == closed.result",
    "def close(self, result: int = 1, message: str = '') -> None: ...",
    "async def hangup(sid: int, *, error: int = 0) -> None: ...",
]

WIRE_SNIPPETS_GOOD = [
    "RECEIVE_BATCH = 64",
    "RECEIVE_BUFFER = 4 << 20",
    "SUBSCRIBER = 1",
    "MAX_REQUEST = 65536",
    "TIMEOUT = 30",
    "HELLO_INTERVAL = 60",
    "CDN_WAIT = 2.5",
    "CDN_ENABLED = True",
    "def f() -> int:\n    count = 3\n    return count",
    "from kl2tp.l2tp.constants import CdnResult, StopCcnResult",
    "from kl2tp.l2tp.constants import AVP_M",
    "peer = msg.get(AvpType.ASSIGNED_TUNNEL_ID)",
    "n = info.extra.get('n', 0)",
    "x = counters.get(key, 0)",
    "runner.hangup(sid, CdnResult.ADMINISTRATIVE, ErrorCode.NO_ERROR, 'bye')",
    "runner.close(StopCcnResult.CLEAR_CONNECTION, message='bye')",
    "sock.close()",
    "link.close(now, DownReason.ADMIN, 'data plane error')",
    "x = round(value, 3)",
    "if msg.msg_type is MessageType.SCCRQ:\n    pass",
    "if len(tunnels) == 0:\n    pass",
    "ok = result.code == 0",
    "def close(self, result: StopCcnResult = StopCcnResult.CLEAR_CONNECTION) -> None: ...",
    "def wait(self, timeout: float = 1.0, retries: int = 3) -> None: ...",
]


@pytest.mark.parametrize("source", WIRE_SNIPPETS_BAD)
def test_wire_checker_flags(source: str) -> None:
    assert wire_number_findings(source), f"not flagged:\n{source}"


@pytest.mark.parametrize("source", WIRE_SNIPPETS_GOOD)
def test_wire_checker_passes(source: str) -> None:
    assert wire_number_findings(source) == []


def test_wire_checker_names_the_line() -> None:
    source = "import x\n\n\nrunner.close(1, StopCcnResult.SHUTTING_DOWN)\n"
    assert wire_number_findings(source, "m.py") == [
        "m.py:4: close() with bare result/error code(s) 1"
    ]


DAEMON = ROOT / "kl2tp" / "daemon"


def daemon_files() -> list[Path]:
    return sorted(DAEMON.glob("*.py"))


def test_daemon_files_exist() -> None:
    assert len(daemon_files()) > 3


@pytest.mark.parametrize("path", daemon_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_daemon_takes_wire_numbers_from_the_cores(path: Path) -> None:
    findings = wire_number_findings(path.read_text(), str(path.relative_to(ROOT)))
    assert not findings, "bare wire numbers (use the cores' enums):\n" + "\n".join(findings)


# -- import cycles -------------------------------------------------------------------------
#
# The graph: one node per module of kl2tp/ and ppp/ (a package is its __init__). An edge
# A -> B for every import in A that runs B:
# - ``import a.b.c`` and ``from a.b.c import x``: a.b.c; ``from a.b import c`` where c is a
#   submodule: a.b.c, else a.b; relative imports resolved against A's package.
# - The parent packages that Python imports on the way (a, a.b) are not edges: a package's
#   __init__ that re-exports its submodules is not a cycle with each of them. Importing from
#   the package itself (``from ppp import Link``) is an edge to it, and does close a cycle
#   when ppp/__init__ imports the importer.
# - Imports inside functions COUNT. They only move the cycle from import time to call time and
#   hide it from the reader (the usual reason to write one is to dodge an import error).
# - Imports under ``if TYPE_CHECKING:`` never run, so test_no_import_cycles leaves them out.
#   They still make two modules depend on each other: the ppp handlers <-> Link and
#   config <-> aaa.pool are such type-only cycles, so test_no_type_level_import_cycles
#   counts them too (a handler that needs Link's type should get a narrow Protocol instead).

SOURCE_PACKAGES = [ROOT / "kl2tp", ROOT / "ppp"]

Edge = tuple[str, int]
"""(target module, line of the import)."""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth, in source order; those under ``if TYPE_CHECKING:``
    only if `type_checking`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _longest_known(name: str, known: Mapping[str, object]) -> str | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def import_graph(
    modules: Mapping[str, tuple[str, bool]], *, type_checking: bool = False
) -> dict[str, list[Edge]]:
    """The import graph of `modules`: name -> (source, is_package). Only edges between them;
    imports under ``if TYPE_CHECKING:`` are edges only if `type_checking`."""
    graph: dict[str, list[Edge]] = {}
    for name, (source, is_package) in modules.items():
        edges: list[Edge] = []
        package = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(source, name), type_checking):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _longest_known(alias.name, modules)
                    if target is not None:
                        edges.append((target, node.lineno))
                continue
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else _longest_known(base, modules)
                if target is not None:
                    edges.append((target, node.lineno))
        graph[name] = edges
    return graph


def _strongly_connected(graph: Mapping[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with a cycle, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[Edge]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target, _ in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph.get(target, []))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    self_loop = any(t == node for t, _ in graph.get(node, []))
                    if len(component) > 1 or self_loop:
                        out.append(sorted(component))
    return sorted(out)


def _shortest_cycle(graph: Mapping[str, list[Edge]], start: str, members: set[str]) -> list[Edge]:
    """The shortest path start -> ... -> start inside `members`, as (module, line) hops."""
    previous: dict[str, tuple[str, int]] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target, line in graph[node]:
                if target not in members:
                    continue
                if target == start:
                    hops = [(start, line)]
                    while node != start:
                        before, before_line = previous[node]
                        hops.append((node, before_line))
                        node = before
                    return hops[::-1]
                if target not in previous:
                    previous[target] = (node, line)
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in no cycle")


def import_cycles(graph: Mapping[str, list[Edge]]) -> list[str]:
    """One line per strongly connected component: a shortest cycle through its first module,
    each hop with the line of its import, then the other modules of the component."""
    lines = []
    for component in _strongly_connected(graph):
        start = component[0]
        hops = _shortest_cycle(graph, start, set(component))
        path = start + "".join(f" -({line})-> {module}" for module, line in hops)
        rest = sorted(set(component) - {start} - {m for m, _ in hops})
        lines.append(path + (f"   [also in this cycle: {', '.join(rest)}]" if rest else ""))
    return lines


def source_modules() -> dict[str, tuple[str, bool]]:
    modules = {}
    for top in SOURCE_PACKAGES:
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = (path.read_text(), is_package)
    return modules


def _cycles_of(sources: dict[str, str], *, type_checking: bool = False) -> list[str]:
    """Test helper: modules given as name -> source; names ending in .__init__ are packages."""
    modules = {
        name.removesuffix(".__init__"): (src, name.endswith(".__init__"))
        for name, src in sources.items()
    }
    return import_cycles(import_graph(modules, type_checking=type_checking))


def test_cycle_checker_finds_a_cycle_and_names_it() -> None:
    cycles = _cycles_of(
        {
            "p.__init__": "",
            "p.a": "import os\nfrom p.b import thing\n",
            "p.b": "\n\nfrom p import c\n",
            "p.c": "from p.a import x\n",
            "p.d": "from p.a import x\n",
        }
    )
    assert cycles == ["p.a -(2)-> p.b -(3)-> p.c -(1)-> p.a"]


def test_cycle_checker_counts_function_level_imports() -> None:
    cycles = _cycles_of(
        {
            "p.__init__": "",
            "p.a": "from p.b import f\n",
            "p.b": "def f():\n    from p.a import g\n    return g\n",
        }
    )
    assert cycles == ["p.a -(1)-> p.b -(2)-> p.a"]


def test_cycle_checker_ignores_type_checking_imports() -> None:
    sources = {
        "p.__init__": "",
        "p.a": "from p.b import f\n",
        "p.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.a import g\n",
        "p.c": "import typing\nif typing.TYPE_CHECKING:\n    import p.a\nelse:\n    pass\n",
    }
    assert _cycles_of(sources) == []
    assert _cycles_of(sources, type_checking=True) == ["p.a -(1)-> p.b -(3)-> p.a"]
    sources["p.c"] = "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    import p.a\n"
    sources["p.a"] = "import p.c\n"
    assert _cycles_of(sources) == ["p.a -(1)-> p.c -(5)-> p.a"]


def test_cycle_checker_resolves_relative_imports_and_packages() -> None:
    cycles = _cycles_of(
        {
            "p.__init__": "from p.a import A\n",  # re-exports: not a cycle with p.a by itself
            "p.a": "from .q import helper\nA = 1\n",
            "p.q.__init__": "from . import r\n",
            "p.q.r": "from .. import A\n",  # the package p itself: p -> p.a -> p.q -> ...
        }
    )
    assert cycles == ["p -(1)-> p.a -(1)-> p.q -(1)-> p.q.r -(1)-> p"]
    assert _cycles_of({"p.__init__": "from p.a import A\n", "p.a": "import p.b\n", "p.b": ""}) == []


def test_cycle_checker_reports_each_component_once() -> None:
    cycles = _cycles_of(
        {
            "a": "import b\nimport c\n",
            "b": "import a\n",
            "c": "import a\n",
            "x": "import y\n",
            "y": "import x\n",
        }
    )
    assert cycles == ["a -(1)-> b -(1)-> a   [also in this cycle: c]", "x -(1)-> y -(1)-> x"]


def test_no_import_cycles() -> None:
    modules = source_modules()
    assert "ppp.link" in modules and "kl2tp.daemon.endpoint" in modules
    cycles = import_cycles(import_graph(modules))
    assert not cycles, "import cycles (module -(line)-> module it imports):\n" + "\n".join(cycles)


def test_no_type_level_import_cycles() -> None:
    cycles = import_cycles(import_graph(source_modules(), type_checking=True))
    assert not cycles, (
        "import cycles through `if TYPE_CHECKING:` imports (module -(line)-> module it imports):\n"
        + "\n".join(cycles)
    )
