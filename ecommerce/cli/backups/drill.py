"""``flask db drill``: proof that a dump restores.

The drill dumps the database and counts and checksums its main tables in one exported snapshot,
restores the dump into a fresh database and compares the figures there. Dump and figures see
the same committed rows, so the drill passes while the shop keeps taking orders.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from ecommerce.cli.backups.databases import (
    app_database_url,
    create_database,
    database_errors,
    drop_database,
    engine_for,
    masked_url,
    pinned_to_primary,
)
from ecommerce.cli.backups.dump import dump_postgres, file_size
from ecommerce.cli.backups.restore import restore_postgres

DRILL_TABLES = ("users", "orders", "order_items", "products", "payments")
# Every row as text, hashed, in primary-key order: equal only if every value of every row is.
FIGURES_SQL = "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY t.id)) FROM {table} t"
# Row text depends on these session settings; both sides of a comparison use the same.
COMPARABLE_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "statement_timeout": "0",
}


@dataclass(frozen=True)
class TableFigures:
    rows: int
    checksum: str | None  # None for an empty table


@dataclass(frozen=True)
class TableComparison:
    table: str
    source: TableFigures
    restored: TableFigures

    @property
    def rows_match(self) -> bool:
        return self.source.rows == self.restored.rows

    @property
    def checksum_match(self) -> bool:
        return self.source.checksum == self.restored.checksum

    @property
    def matches(self) -> bool:
        return self.rows_match and self.checksum_match


def use_comparable_settings(connection: Connection) -> None:
    """Fix the settings that shape a row's text, for the current transaction only."""
    for name, value in COMPARABLE_SETTINGS.items():
        connection.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


def table_figures(connection: Connection, tables: tuple[str, ...] = DRILL_TABLES) -> dict[str, TableFigures]:
    """Row count and checksum of each table, as the connection's transaction sees them."""
    quote = connection.dialect.identifier_preparer.quote
    figures = {}
    for table in tables:
        rows, checksum = connection.execute(text(FIGURES_SQL.format(table=quote(table)))).one()
        figures[table] = TableFigures(rows, checksum)
    return figures


def compare_figures(
    source: Mapping[str, TableFigures], restored: Mapping[str, TableFigures]
) -> list[TableComparison]:
    """One comparison per table of the source; a table missing from the copy never matches."""
    missing = TableFigures(rows=-1, checksum="missing")
    return [
        TableComparison(table, figures, restored.get(table, missing)) for table, figures in source.items()
    ]


def comparison_table(comparisons: list[TableComparison]) -> str:
    width = max([len("table"), *(len(c.table) for c in comparisons)])
    lines = [f"{'table':<{width}}  {'rows source':>11}  {'rows restored':>13}  checksum"]
    for c in comparisons:
        checksum = "match" if c.checksum_match else "MISMATCH"
        lines.append(f"{c.table:<{width}}  {c.source.rows:>11}  {c.restored.rows:>13}  {checksum}")
    return "\n".join(lines)


def figures_of(url: URL, tables: tuple[str, ...] = DRILL_TABLES) -> dict[str, TableFigures]:
    engine = engine_for(url)
    try:
        with database_errors(url), engine.connect() as connection, connection.begin():
            use_comparable_settings(connection)
            return table_figures(connection, tables)
    finally:
        engine.dispose()


def dump_in_one_snapshot(url: URL, output: Path) -> tuple[dict[str, TableFigures], float]:
    """Dump the database and take its figures in one exported snapshot; the figures and the
    seconds pg_dump took. The exporting transaction stays open until both are done."""
    engine = engine_for(url)
    try:
        with database_errors(url), engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                use_comparable_settings(connection)
                snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
                started = time.perf_counter()
                dump_postgres(url, output, snapshot=snapshot)
                dump_seconds = time.perf_counter() - started
                return table_figures(connection), dump_seconds
    finally:
        engine.dispose()


def drill_database_url(url: URL) -> URL:
    # PostgreSQL names are at most 63 bytes: the stamp (with milliseconds) always fits.
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")[:-3]
    return url.set(database=f"{url.database[:36]}_drill_{stamp}")


@click.command("drill")
@click.option("--keep", is_flag=True, help="Keep the drill database afterwards (to inspect it).")
@with_appcontext
def drill_command(keep: bool) -> None:
    """Dump, restore into a fresh database, compare.

    Dumps the database and counts and checksums its main tables in one snapshot, restores the
    dump into a new database on the same server, compares the figures there and drops it.
    """
    url = app_database_url()
    if url.get_backend_name() != "postgresql":
        raise click.ClickException("The restore drill needs PostgreSQL; the app's database is SQLite.")
    url = pinned_to_primary(url)
    drill_url = drill_database_url(url)
    with tempfile.TemporaryDirectory(prefix="ecommerce-drill-") as scratch:
        dump = Path(scratch) / "drill.dump"
        source, dump_seconds = dump_in_one_snapshot(url, dump)
        create_database(drill_url)
        try:
            started = time.perf_counter()
            restore_postgres(dump, drill_url)
            restore_seconds = time.perf_counter() - started
            restored = figures_of(drill_url)
        finally:
            if not keep:
                drop_database(drill_url)
        size = file_size(dump)
    comparisons = compare_figures(source, restored)
    click.echo(f"Drill: {masked_url(url)} restored into {drill_url.database}")
    click.echo(comparison_table(comparisons))
    click.echo(f"Dump: {size} in {dump_seconds:.2f} s; restore: {restore_seconds:.2f} s.")
    click.echo(f"Kept {drill_url.database}." if keep else f"Dropped {drill_url.database}.")
    differing = [c.table for c in comparisons if not c.matches]
    if differing:
        raise click.ClickException(f"Drill failed: the restored copy differs in {', '.join(differing)}.")
    click.echo("Drill passed: every table has the same rows and checksum.")
