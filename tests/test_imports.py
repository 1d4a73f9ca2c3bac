"""The source has no import cycles: each module imports only modules below it.

A cycle held apart by an import placed inside a function works until someone moves that
import; the shared piece belongs a floor down instead. The graph is read from the source
(every `import`, at module level or inside a function, but not under `TYPE_CHECKING`), over
the workspace's own modules. A package's `__init__` re-exports its modules and is left out
as a source of edges: `from cnnzoo import create_model` leads to `cnnzoo.registry`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(ROOT.glob("packages/**/src/*/")) + sorted(ROOT.glob("apps/*/src/*/"))


def module_files() -> dict[str, Path]:
    modules = {}
    for package in SOURCES:
        for path in package.rglob("*.py"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(tree: ast.AST):
    """Each (module, names) an import statement asks for, outside TYPE_CHECKING blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, tuple(alias.name for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    reexports = {}  # package -> {name: module that defines it}
    for name, path in files.items():
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text())
            reexports[name] = {
                alias.asname or alias.name: module
                for module, names in imported_names(tree)
                for alias in [ast.alias(n) for n in names]
                if module in files
            }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        if path.name == "__init__.py":
            continue
        edges = set()
        for module, names in imported_names(ast.parse(path.read_text())):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in files]
            targets += [reexports.get(module, {}).get(n) for n in names]
            targets = [t for t in targets if t] or ([module] if module in files else [])
            edges.update(t for t in targets if files[t].name != "__init__.py")
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_covers_the_workspace_and_finds_its_imports():
    graph = import_graph()
    assert len(graph) > 80
    assert "cnnzoo.registry" in graph["cnnzoo.module"]
    # through the package's re-export
    assert "cnnzoo.registry" in graph["cnnzoo_classify.models_table"]
    assert "cnnzoo_classify.trainer" in graph["cnnzoo_classify.cli"]


def test_a_cycle_is_found_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", [p.name for p in SOURCES])
def test_no_import_cycles(package):
    found = [c for c in cycles(import_graph()) if c[0].split(".")[0] == package]
    assert not found, f"import cycles in {package}: {found}"
