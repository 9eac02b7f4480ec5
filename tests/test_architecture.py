"""The house rules, checked: arrows point down only, and no module imports itself in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import andchain

ROOT = Path(andchain.__file__).parent

# Each layer may import only from the layers below it (and infrastructure modules at the top level).
LAYERS = {
    "ledger": 1,
    "chains": 2,
    "events": 2,
    "ops": 3,
    "tokens": 4,
    "custody": 4,
    "compliance": 4,
    "trading": 5,
    "connect": 5,
    "reconcile": 5,
    "reconcile_store": 3,
    "bench": 6,
    "api": 6,
    "cli": 7,
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = _module(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("andchain"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("andchain"):
                found.add(node.module)
        graph[name] = found
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_arrows_point_down_only():
    wrong = []
    for module, imported in _imports().items():
        mine = _layer(module)
        for other in imported:
            theirs = _layer(other)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{module} -> {other}")
    assert wrong == []


def test_no_import_circles():
    graph = _imports()
    known = set(graph)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {r for i in imported if (r := resolve(i)) and r != m} for m, imported in graph.items()}
    # A package's __init__ re-exporting its own modules is not a circle of meaning: leave out edges
    # from a package to its own submodules.
    for module, targets in edges.items():
        edges[module] = {t for t in targets if not t.startswith(module + ".")}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []
