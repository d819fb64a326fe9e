"""No import cycles between unlearnkit's modules, and the core never imports vision/recsys.

Every ``import`` / ``from ... import`` statement counts, at module level or inside a function (a
lazy import still ties the two modules together). ``from package import name`` counts as an
import of the submodule ``package.name`` when that is a module, else of ``package``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import unlearnkit

ROOT = Path(unlearnkit.__file__).parent
#: Core modules (DESIGN: vision/recsys depend on them, never the reverse).
CORE = (
    "unlearnkit.base",
    "unlearnkit.module",
    "unlearnkit.streams",
    "unlearnkit.data",
    "unlearnkit.runs",
    "unlearnkit.jobs",
    "unlearnkit.cache",
    "unlearnkit.checkpoint",
    "unlearnkit.atomic",
    "unlearnkit.evaluation",
    "unlearnkit.influence",
    "unlearnkit.datasets",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module name → the unlearnkit modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        graph[name].add(sub)
                    elif target in modules:
                        graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_lazy_imports():
    graph = import_graph()
    # cli imports the jobs lazily (inside functions); they must still be edges
    assert "unlearnkit.vision.experiment" in graph["unlearnkit.cli"]
    assert "unlearnkit.streams" in graph["unlearnkit.base"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_core_does_not_import_vision_or_recsys():
    graph = import_graph()
    bad = [
        (module, target)
        for module, targets in graph.items()
        if module.startswith(CORE)
        for target in targets
        if target.startswith(("unlearnkit.vision", "unlearnkit.recsys"))
    ]
    assert bad == []
