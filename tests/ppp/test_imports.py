"""The PPP core's modules form a layered graph: no module imports one that imports it back.

Protocol handlers reach their link only through :mod:`ppp.services` (issue 7, item 6), so
``ppp.link`` sits on top and nothing below it names it; imports under ``TYPE_CHECKING`` count
too, since they are how a cycle usually sneaks back in.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PPP = Path(__file__).resolve().parents[2] / "ppp"


def ppp_imports(root: Path = PPP) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        name = "ppp" if path.stem == "__init__" else f"ppp.{path.stem}"
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                if node.module == "ppp":  # from ppp import mschapv2 (or a re-exported name)
                    for alias in node.names:
                        is_module = (PPP / f"{alias.name}.py").exists()
                        edges.add(f"ppp.{alias.name}" if is_module else "ppp")
                elif node.module.startswith("ppp."):
                    edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("ppp."))
    return graph


def test_the_graph_is_read() -> None:
    graph = ppp_imports()
    assert "ppp.fsm" in graph["ppp.lcp"]
    assert "ppp.mschapv2" in graph["ppp.auth"]  # the "from ppp import x" form


def test_no_import_cycle_in_ppp() -> None:
    graph = ppp_imports()
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle in ppp/: {' -> '.join(exc.args[1])}") from None
    assert order.index("ppp.services") < order.index("ppp.link")


def test_handlers_do_not_know_the_link() -> None:
    graph = ppp_imports()
    for handler in ("ppp.auth", "ppp.lcp", "ppp.ipcp", "ppp.ipv6cp", "ppp.ncp", "ppp.fsm"):
        assert "ppp.link" not in graph[handler], handler
