"""Imports run one way (issue #24): no module of ``vidpose`` imports one that imports it
back, and every import runs down the floors of the package map in docs/architecture.md.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions (a
lazy import still ties the modules together). The map is read from the page itself, so
the page and the code cannot drift apart: a package missing from the map, a name in it
that no longer exists, or an import up a floor fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vidpose"
MAP_PAGE = ROOT / "docs" / "architecture.md"

# Imports that run up the map today, each with why it is still there. A fix deletes its
# line here (the last test below insists).
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package's name
    stands for its ``__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``module`` imports, anywhere in its source: the
    most specific module a name reaches (``from X import a`` is X.a where that is a
    module, else X)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    is_package = path.name == "__init__.py"
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: counted from the module's own package
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in modules else resolve(base))
    return {target for target in found if target and target != module}


def package_imports() -> dict[str, set[str]]:
    """module -> the modules of vidpose it imports."""
    modules = module_files()
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
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


def entry(module: str) -> str:
    """The map's entry of a module: ``engine/`` for ``vidpose.engine.trainer``,
    ``cli.py`` for ``vidpose.cli``, ``__init__.py`` for ``vidpose`` itself."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__.py"
    if (PACKAGE / parts[1]).is_dir():
        return f"{parts[1]}/"
    return f"{parts[1]}.py"


def map_rows() -> list[tuple[int, str, str]]:
    """(floor, entry, what it holds) of every row of the page's package map."""
    text = MAP_PAGE.read_text()
    section = text[text.index("## The package map") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| (\d+) \| `([^`]+)` \| (.*) \|$", section, flags=re.MULTILINE)
    return [(int(floor), name, holds) for floor, name, holds in rows]


def test_the_map_names_every_package_and_module_that_exists():
    rows = map_rows()
    entries = [name for _, name, _ in rows]
    present = {
        f"{path.name}/" if path.is_dir() else path.name
        for path in PACKAGE.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists()) or path.suffix == ".py"
    }
    assert len(entries) == len(set(entries)), entries
    assert set(entries) == present
    floors = [floor for floor, _, _ in rows]
    assert floors == sorted(floors, reverse=True), "the map lists the top floor first"
    for _, name, holds in rows:
        # a row names its own modules, or (a module's row) other packages
        base = PACKAGE / name if name.endswith("/") else PACKAGE
        for mentioned in re.findall(r"`([\w/]+(?:\.py|/))`", holds):
            assert (base / mentioned.rstrip("/")).exists(), (
                f"the map's row {name} names {mentioned}, which is not in {base}"
            )


def test_no_module_imports_one_that_imports_it_back():
    graph = package_imports()
    for importer, imported in KNOWN_UPWARD:
        graph[importer].discard(imported)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_imports_run_down_the_floors_of_the_map():
    floor = {name: number for number, name, _ in map_rows()}
    upward = []
    for module, imported in package_imports().items():
        for target in imported:
            here, there = entry(module), entry(target)
            if here != there and floor[there] >= floor[here]:
                if (module, target) not in KNOWN_UPWARD:
                    upward.append(f"{module} (floor {floor[here]}) -> {target} ({floor[there]})")
    assert not upward, "imports that do not run down the map:\n" + "\n".join(sorted(upward))


def test_the_search_visualisation_is_layered():
    graph = package_imports()
    prefix = "vidpose.visualization."
    # the data types draw nothing; the renderers read them and never the writer
    assert not {m for m in graph[f"{prefix}trajectory"] if m.startswith(prefix)}
    for renderer in ("search_panels", "search_grid", "search_plot", "temporal_view"):
        assert not {f"{prefix}search", f"{prefix}search_input"} & graph[prefix + renderer]


def test_every_known_upward_import_is_still_there():
    graph = package_imports()
    for (importer, imported), why in KNOWN_UPWARD.items():
        assert imported in graph[importer], (
            f"{importer} no longer imports {imported}: delete it from KNOWN_UPWARD ({why})"
        )


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_lazy_and_type_checking_imports_are_counted(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from vidpose.config import Config\n"
        "def f():\n    from vidpose.cli import main\n"
    )
    modules = {"vidpose.config": Path(), "vidpose.cli": Path(), "vidpose.m": source}
    assert imports_of("vidpose.m", source, modules) == {"vidpose.config", "vidpose.cli"}
