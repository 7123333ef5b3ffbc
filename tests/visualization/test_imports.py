"""No module of ``vidpose.visualization`` imports one that imports it back (issue #24).

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions
(a lazy import still ties the modules together). The data types live in
``trajectory``, which imports no drawing; the drawing modules import it, and
``search`` imports both.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "vidpose.visualization"
FOLDER = Path(__file__).resolve().parents[2] / "vidpose" / "visualization"


def package_imports() -> dict[str, set[str]]:
    """module name -> the modules of the package it imports (anywhere in its source)."""
    modules = {path.stem: path for path in FOLDER.glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target.startswith(f"{PACKAGE}."):
                    module = target[len(PACKAGE) + 1 :].split(".")[0]
                    if module in modules and module != name:
                        imported.add(module)
        graph[name] = imported
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            cycle = visit(imported, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_no_module_imports_one_that_imports_it_back():
    graph = package_imports()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # the layering of issue #24: data below drawing below writing
    assert graph["trajectory"] == set()
    assert "trajectory" in graph["search_panels"] and "search" not in graph["search_panels"]
    assert "search" not in graph["search_plot"]
    assert {"trajectory", "search_panels", "search_plot"} <= graph["search"]


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
