"""Short excerpts of the critical code, taken from the source by name at build time (``ast``), so
that they cannot drift from it: a renamed or moved function fails the build."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from scripts.report import ROOT

MAX_LINES = 40
PACKAGE = ROOT / "ecommerce"


@dataclass(frozen=True)
class Excerpt:
    topic: str
    name: str  # a function or class, "Class.method" for a method
    hint: str  # the file it is expected in; the whole package is searched if it moved


# The critical parts, in the order the development chapter shows them.
EXCERPTS = (
    Excerpt("Checkout: the whole cart or nothing", "place_order", "ecommerce/orders/checkout.py"),
    Excerpt(
        "Checkout: its cart placed by place_order() within a batched call of place_orders(), in autocommit",
        "_check_out_in_one_call",
        "ecommerce/orders/checkout.py",
    ),
    Excerpt("Cache: the stampede-safe fill", "get_or_compute", "ecommerce/core/cache/store.py"),
    Excerpt("Cache: the purge after the commit", "purge_committed", "ecommerce/core/cache/purge.py"),
    Excerpt("Idempotency-Key: the view decorator", "idempotent", "ecommerce/core/idempotency.py"),
    Excerpt("Idempotency-Key: claiming a key", "claim", "ecommerce/core/idempotency.py"),
    Excerpt(
        "Replica routing: which reads may go to a standby",
        "read_from_replica",
        "ecommerce/core/db/replicas.py",
    ),
    Excerpt("Read-your-writes: the commit's WAL position", "stamp_commit", "ecommerce/core/db/replicas.py"),
)


@dataclass
class Source:
    path: str  # relative to the repository
    name: str
    first_line: int
    last_line: int
    text: str  # trimmed to MAX_LINES
    total_lines: int

    @property
    def trimmed(self) -> bool:
        return self.total_lines > MAX_LINES


def _find(tree: ast.AST, dotted: str) -> ast.AST | None:
    scope: list[ast.stmt] = tree.body
    found = None
    for part in dotted.split("."):
        found = next(
            (
                node
                for node in scope
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and node.name == part
            ),
            None,
        )
        if found is None:
            return None
        scope = found.body
    return found


def _locate(excerpt: Excerpt) -> tuple[Path, ast.AST]:
    hinted = ROOT / excerpt.hint
    candidates = [hinted] if hinted.is_file() else []
    candidates += sorted(p for p in PACKAGE.rglob("*.py") if p != hinted)
    matches = []
    for path in candidates:
        node = _find(ast.parse(path.read_text(encoding="utf-8")), excerpt.name)
        if node is not None:
            if path == hinted:
                return path, node
            matches.append((path, node))
    if len(matches) != 1:
        where = ", ".join(str(p.relative_to(ROOT)) for p, _ in matches) or "nowhere"
        raise LookupError(f"{excerpt.name} ({excerpt.topic}) is defined in {where} under ecommerce/")
    return matches[0]


def extract(excerpt: Excerpt) -> Source:
    path, node = _locate(excerpt)
    lines = path.read_text(encoding="utf-8").splitlines()
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    last = node.end_lineno
    body = lines[first - 1 : last]
    indent = min(len(line) - len(line.lstrip()) for line in body if line.strip())
    body = [line[indent:] for line in body]
    total = len(body)
    if total > MAX_LINES:
        kept = MAX_LINES - 2
        body = [*body[:kept], "", f"# ... {total - kept} more lines, to line {last} of the file"]
    return Source(str(path.relative_to(ROOT)), excerpt.name, first, last, "\n".join(body) + "\n", total)


def all_sources() -> list[tuple[Excerpt, Source]]:
    return [(excerpt, extract(excerpt)) for excerpt in EXCERPTS]
