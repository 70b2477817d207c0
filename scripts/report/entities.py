"""The table entities, from the SQLAlchemy models' metadata (as migrations/env.py gets it: every
model imported through ``ecommerce.models``): each table's columns with their SQL types
(PostgreSQL's), nullability, defaults and keys, its indexes and constraints, the ORM
relationships, and an ER diagram drawn by Graphviz from the same metadata."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import CheckConstraint, Column, Index, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import RelationshipDirection

from scripts.report.figures import FONT, render_dot
from scripts.report.tables import html_table

DIALECT = postgresql.dialect()
# Every table has these (ecommerce/core/models.py's mixin): listed in the tables, left out of the
# diagram so that it stays readable.
TIMESTAMPS = {"created_at", "updated_at"}


def load_metadata():
    """The metadata and the mapper registry of every model."""
    import ecommerce.models  # noqa: F401  every model, as migrations/env.py does
    from ecommerce.extensions import db

    return db.metadata, db.Model.registry


def _sql(clause) -> str:
    compiled = clause.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})
    return re.sub(r"\s+", " ", str(compiled)).strip()


def sql_type(column: Column) -> str:
    return column.type.compile(dialect=DIALECT)


def short_type(column: Column) -> str:
    text = sql_type(column).lower()
    return text.replace("timestamp with time zone", "timestamptz").replace("character varying", "varchar")


def default_of(column: Column) -> str:
    if column.server_default is not None:
        arg = getattr(column.server_default, "arg", None)
        text = getattr(arg, "text", arg)
        return f"{text} (server)" if text is not None else "server"
    if column.default is not None:
        arg = column.default.arg
        if callable(arg):
            target = getattr(arg, "__wrapped__", arg)
            return f"{getattr(target, '__name__', 'function')}() (app)"
        return f"{arg!r} (app)"
    return ""


def keys_of(column: Column, table: Table) -> list[str]:
    keys = []
    if column.primary_key:
        keys.append("PK")
    for foreign_key in column.foreign_keys:
        rule = f", ON DELETE {foreign_key.ondelete}" if foreign_key.ondelete else ""
        keys.append(f"FK → {foreign_key.target_fullname}{rule}")
    single_unique = any(
        isinstance(constraint, UniqueConstraint) and [c.name for c in constraint.columns] == [column.name]
        for constraint in table.constraints
    )
    if column.unique or single_unique:
        keys.append("unique")
    return keys


def index_description(index: Index) -> str:
    parts = [", ".join(_expression(e) for e in index.expressions)]
    options = index.dialect_options["postgresql"]
    if options.get("using"):
        parts.append(f"using {options['using']}")
    if options.get("where") is not None:
        parts.append(f"where {_sql(options['where'])}")
    if options.get("include"):
        parts.append(f"include ({', '.join(options['include'])})")
    return "; ".join(parts)


def _expression(expression) -> str:
    name = getattr(expression, "name", None)
    return name if name is not None and isinstance(expression, Column) else _sql(expression)


@dataclass
class Relationship:
    source: str
    attribute: str
    target: str
    kind: str
    back_populates: str
    behaviour: str


@dataclass
class Schema:
    tables: list[Table]
    relationships: list[Relationship] = field(default_factory=list)


def schema() -> Schema:
    metadata, registry = load_metadata()
    kinds = {
        RelationshipDirection.MANYTOONE: "many-to-one",
        RelationshipDirection.ONETOMANY: "one-to-many",
        RelationshipDirection.MANYTOMANY: "many-to-many",
    }
    relationships = []
    for mapper in sorted(registry.mappers, key=lambda m: m.class_.__name__):
        for prop in mapper.relationships:
            kind = kinds[prop.direction]
            if kind == "one-to-many" and not prop.uselist:
                kind = "one-to-one"
            behaviour = [str(prop.cascade)] if prop.cascade.delete else []
            if prop.passive_deletes:
                behaviour.append("passive deletes (the database's ON DELETE)")
            if prop.viewonly:
                behaviour.append("view only")
            if prop.lazy not in ("select", True):
                behaviour.append(f"loaded {prop.lazy}")
            relationships.append(
                Relationship(
                    mapper.class_.__name__,
                    prop.key,
                    prop.mapper.class_.__name__,
                    kind,
                    prop.back_populates or (prop.backref if isinstance(prop.backref, str) else "") or "",
                    "; ".join(behaviour),
                )
            )
    return Schema(list(metadata.sorted_tables), relationships)


def _ordered_columns(table: Table) -> list[Column]:
    return sorted(table.columns, key=lambda c: (not c.primary_key, c.name in TIMESTAMPS))


# -- HTML -----------------------------------------------------------------------------------------


def table_html(table: Table, heading_id: str) -> str:
    e = html.escape
    rows = [
        [
            f"<code>{e(column.name)}</code>",
            f"<code>{e(sql_type(column))}</code>",
            "yes" if column.nullable else "no",
            e(default_of(column)),
            e("; ".join(keys_of(column, table))),
        ]
        for column in _ordered_columns(table)
    ]
    model = _model_of(table)
    out = [
        f'<h3 id="{heading_id}"><code>{e(table.name)}</code></h3>',
        f'<p class="entity-model">{e(model)}</p>' if model else "",
        html_table(
            ["Column", "SQL type", "Null", "Default", "Keys"],
            rows,
            css="data entity",
            widths=[20, 24, 6, 20, 30],
        ),
    ]
    details = []
    for index in sorted(table.indexes, key=lambda i: i.name or ""):
        kind = "unique index" if index.unique else "index"
        details.append(f"{kind} <code>{e(index.name or '')}</code>: {e(index_description(index))}")
    for constraint in sorted(table.constraints, key=lambda c: c.name or ""):
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) > 1:
            columns = ", ".join(c.name for c in constraint.columns)
            details.append(f"unique <code>{e(constraint.name or '')}</code>: ({e(columns)})")
        elif isinstance(constraint, CheckConstraint):
            details.append(f"check <code>{e(constraint.name or '')}</code>: {e(_sql(constraint.sqltext))}")
    if details:
        out.append('<ul class="entity-details">' + "".join(f"<li>{d}</li>" for d in details) + "</ul>")
    return "\n".join(out) + "\n"


_MODEL_NAMES: dict[str, str] = {}


def _model_of(table: Table) -> str:
    if not _MODEL_NAMES:
        _, registry = load_metadata()
        for mapper in registry.mappers:
            for mapped in mapper.tables:
                _MODEL_NAMES[mapped.name] = f"{mapper.class_.__module__}.{mapper.class_.__name__}"
    name = _MODEL_NAMES.get(table.name)
    return f"Model: {name}" if name else ""


def relationships_html(relationships: list[Relationship]) -> str:
    e = html.escape
    rows = [
        [
            f"<code>{e(r.source)}.{e(r.attribute)}</code>",
            f"<code>{e(r.target)}</code>",
            e(r.kind),
            e(r.back_populates),
            e(r.behaviour),
        ]
        for r in relationships
    ]
    headers = ["Relationship", "To", "Kind", "Back-populates", "Cascade and loading"]
    return html_table(headers, rows, css="data entity")


def foreign_keys_html(tables: list[Table]) -> str:
    e = html.escape
    rows = []
    for table in tables:
        for constraint in sorted(table.foreign_key_constraints, key=lambda c: c.name or ""):
            columns = ", ".join(c.name for c in constraint.columns)
            rows.append(
                [
                    f"<code>{e(table.name)}</code> ({e(columns)})",
                    f"<code>{e(constraint.referred_table.name)}</code>",
                    e(constraint.ondelete or "NO ACTION"),
                    f"<code>{e(constraint.name or '')}</code>",
                ]
            )
    return html_table(["From", "To", "ON DELETE", "Constraint"], rows, css="data entity")


# -- the ER diagram ---------------------------------------------------------------------------


def er_diagram(tables: list[Table], path: Path) -> Path:
    e = html.escape
    nodes, edges = [], []
    for table in tables:
        foreign = {fk.parent.name for fk in table.foreign_keys}
        rows = [
            '<TR><TD BGCOLOR="#2c5282" COLSPAN="2" CELLPADDING="3">'
            f'<FONT COLOR="white"><B>{e(table.name)}</B></FONT></TD></TR>'
        ]
        for column in _ordered_columns(table):
            if column.name in TIMESTAMPS:
                continue
            marks = " ".join(
                m for m, on in (("PK", column.primary_key), ("FK", column.name in foreign)) if on
            )
            name = f"<B>{e(column.name)}</B>" if column.primary_key else e(column.name)
            if not column.nullable and not column.primary_key:
                name += " *"
            rows.append(
                f'<TR><TD PORT="{e(column.name)}" ALIGN="LEFT">{name}</TD>'
                + (
                    f'<TD ALIGN="LEFT"><FONT COLOR="#2c5282" POINT-SIZE="8">{marks}</FONT></TD>'
                    if marks
                    else "<TD></TD>"
                )
                + "</TR>"
            )
        label = (
            '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2">' + "".join(rows) + "</TABLE>"
        )
        nodes.append(f"  {table.name} [label=<{label}>];")
        for constraint in table.foreign_key_constraints:
            column = constraint.columns[0]
            target = constraint.referred_table.name
            target_column = constraint.elements[0].column.name
            optional = "odot" if all(c.nullable for c in constraint.columns) else ""
            edges.append(
                f"  {table.name}:{column.name} -> {target}:{target_column} "
                f'[arrowtail=crow, arrowhead="{optional}tee", dir=both, '
                f'label="{(constraint.ondelete or "").lower()}"];'
            )
    source = (
        "digraph er {\n"
        f'  graph [rankdir=TB, fontname="{FONT}", nodesep=0.18, ranksep=0.7, pad=0.1, concentrate=false];\n'
        f'  node [shape=plaintext, fontname="{FONT}", fontsize=10];\n'
        f'  edge [fontname="{FONT}", fontsize=9, color="#4a5568", arrowsize=0.7];\n'
        + "\n".join(nodes)
        + "\n"
        + "\n".join(edges)
        + "\n}\n"
    )
    return render_dot(source, path)
