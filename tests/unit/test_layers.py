"""The layering the README's Layout describes, read from the imports of every module (lazy ones too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gateway

ROOT = Path(gateway.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it: gateway's modules by name, others by top-level package."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in MODULES else node.module)
    return {name if name.startswith("gateway") else name.split(".")[0] for name in names}


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _within(package: str) -> list[str]:
    return [name for name in MODULES if name == package or name.startswith(package + ".")]


def test_mlflow_rules_are_pure():
    allowed = {"__future__", "collections", "dataclasses", "json", "posixpath", "re", "typing", "urllib", "base64",
               "binascii", "gateway.errors", "gateway.model"}
    for name in _within("gateway.mlflow"):
        outside = {i for i in IMPORTS[name] if not i.startswith("gateway.mlflow")} - allowed
        assert not outside, f"{name} imports {sorted(outside)}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("gateway.api", ("asyncpg",)),
        ("gateway.search", ("asyncpg", "aiohttp", "gateway.store", "gateway.api")),
        ("gateway.ingest", ("asyncpg", "aiohttp", "gateway.store", "gateway.api")),
        ("gateway.store", ("aiohttp", "gateway.api")),
        ("gateway.relay", ("asyncpg", "gateway.store")),
    ],
)
def test_layers_import_only_what_they_may(package, forbidden):
    for name in _within(package):
        wrong = sorted(i for i in IMPORTS[name] if any(i == f or i.startswith(f + ".") for f in forbidden))
        assert not wrong, f"{name} imports {wrong}"


def test_no_import_circle():
    graph = {name: {i for i in imports if i in MODULES} for name, imports in IMPORTS.items()}
    # A package's __init__ re-exports its own modules; that is not a circle through them.
    for name in graph:
        graph[name] = {i for i in graph[name] if not name.startswith(i + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circle = path[path.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
