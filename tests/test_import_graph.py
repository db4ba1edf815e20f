"""The import graph of the packages has no circle, except through ``TYPE_CHECKING``.

``lint-imports`` checks the layers (``ops → transport → actors → engine``) and keeps
storage and the actor runtime apart; this checks what layers cannot see: two modules
of the same layer importing each other at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "actors", "transport", "ops")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Modules imported at import time: top level and in module-level blocks, not in
    functions (lazy) and not under ``if TYPE_CHECKING``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:  # ``from package import module`` is the module
                    name = f"{base}.{alias.name}"
                    found.add(name if name in known else base)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for block in ("body", "orelse", "handlers", "finalbody"):
                    visit([n for n in getattr(node, block, []) if isinstance(n, ast.stmt)])
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    paths = {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    known = set(paths)
    return {module: _runtime_imports(module, path, known) for module, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_finder_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_packages_import_each_other_without_circles() -> None:
    graph = import_graph()
    assert "actors.sessions.actor" in graph  # the walk found the tree
    assert "actors.sessions.pump" in graph["actors.sessions.actor"]
    assert circles(graph) == []
