"""The shape of the package, as docs/architecture.md describes it: no import circle (imports inside
functions included), no module over 420 lines, services that return data and import no schema,
session listeners in the database wing only, and no protocol client of our own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ecommerce"
MAX_LINES = 420


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imported(module: str, tree: ast.Module) -> set[str]:
    """Every module of ours that ``module`` imports, at its top or inside a function."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            # ``from a import b`` imports the module a.b when there is one, else a name of a.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


def test_no_import_circle():
    graph = {module: _imported(module, tree) for module, tree in _trees().items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_graph_sees_imports_inside_functions():
    """The check above would pass vacuously if function-level imports were missed."""
    tree = ast.parse("def f():\n    from ecommerce.extensions import db\n")
    assert _imported("ecommerce.core.models", tree) == {"ecommerce.extensions"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_limit(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines; split it by what it does"


def test_services_import_no_schema():
    """A response is shaped once, by its route's schema: services return data."""
    trees = _trees()
    offenders = {
        module: sorted(name for name in _imported(module, tree) if name.endswith(".schemas"))
        for module, tree in trees.items()
        if module.endswith((".services", ".checkout", ".emails"))
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_session_listeners_live_in_the_database_wing():
    outside = []
    for module, path in MODULES.items():
        text = path.read_text()
        if "event.listen" in text and "Session" in text and not module.startswith("ecommerce.core.db"):
            outside.append(module)
    assert outside == []


def test_no_socket_of_our_own():
    """Redis, SMTP and PostgreSQL are spoken to through their libraries."""
    users = [module for module, tree in _trees().items() if "socket" in _plain_imports(tree)]
    assert users == []


def _plain_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_rollbacks_happen_in_few_places():
    """The request's unit of work rolls back after any error (core/db/failover.py); services
    raise instead of rolling back by hand."""
    calls = {
        module: sum(
            1
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "rollback"
        )
        for module, tree in _trees().items()
    }
    assert sum(calls.values()) <= 6, {module: count for module, count in calls.items() if count}
