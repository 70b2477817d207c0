"""Backups and the restore drill: ``flask db backup``, ``flask db restore``, ``flask db drill``.

PostgreSQL is dumped with ``pg_dump --format=custom`` and restored with ``pg_restore``; SQLite is
copied with its online backup API. The drill proves that a dump restores: it dumps the database
and counts and checksums its main tables in one exported snapshot, restores the dump into a
fresh database and compares the figures there. Dump and figures see the same committed rows, so
the drill passes while the shop keeps taking orders.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ecommerce.config import libpq_url, normalise_database_url
from ecommerce.extensions import db

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
USER_TABLES_SQL = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"""
PG_DUMP_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"
BACKEND_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
PG_INSTALL_ROOT = Path("/usr/lib/postgresql")
CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "ecommerce-backup"
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


# -- comparing a database with its restored copy ----------------------------------------------


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


# -- URLs, binaries, errors ---------------------------------------------------------------------


def masked_url(url: URL) -> str:
    """The URL as libpq writes it, password replaced by ***: safe to print and log."""
    if url.get_backend_name() == "postgresql":
        return libpq_url(url.render_as_string(hide_password=True))
    return url.render_as_string(hide_password=True)


def mask_passwords(message: str, url: URL | None = None) -> str:
    message = _URL_PASSWORD.sub(r"\1***@", message)
    if url is not None and url.password:
        message = message.replace(str(url.password), "***")
    return message


def parse_database_url(value: str, param_hint: str = "--target-url") -> URL:
    try:
        url = make_url(normalise_database_url(value))
    except ArgumentError:
        raise click.BadParameter("not a database URL", param_hint=param_hint) from None
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        raise click.BadParameter("only PostgreSQL and SQLite databases are supported", param_hint=param_hint)
    return url


def app_database_url() -> URL:
    # The engine's URL, not the setting: Flask-SQLAlchemy resolves a relative SQLite path.
    return db.engine.url


def _version_key(directory: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in directory.parent.name.split("."))
    except ValueError:
        return ()


def _has_tools(directory: Path) -> bool:
    return all(os.access(directory / tool, os.X_OK) for tool in ("pg_dump", "pg_restore"))


def pg_tool(name: str) -> str:
    """The path of pg_dump or pg_restore: PG_BIN_DIR, else the newest installed, else PATH."""
    configured = current_app.config.get("PG_BIN_DIR")
    if configured:
        path = Path(configured) / name
        if not os.access(path, os.X_OK):
            raise click.ClickException(f"{name} not found in PG_BIN_DIR ({configured}).")
        return str(path)
    installed = sorted(PG_INSTALL_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    for directory in installed:
        if _has_tools(directory):
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise click.ClickException(
            f"{name} not found: install the PostgreSQL client tools (e.g. apt-get install "
            f"postgresql-client) or set PG_BIN_DIR to the directory that has them."
        )
    return found


def _tool_environment(url: URL) -> dict[str, str]:
    # The password travels in the environment, never on a command line others can read in ps.
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_SECONDS))
    env.setdefault("PGAPPNAME", APPLICATION_NAME)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def _tool_dsn(url: URL) -> str:
    return libpq_url(url._replace(password=None).render_as_string(hide_password=False))


def run_pg_tool(name: str, args: list[str], url: URL) -> None:
    """Run pg_dump or pg_restore against ``url``; any failure is a ClickException with its stderr."""
    command = [pg_tool(name), *args, f"--dbname={_tool_dsn(url)}"]
    try:
        result = subprocess.run(command, env=_tool_environment(url), capture_output=True, text=True)
    except OSError as error:
        raise click.ClickException(f"Could not run {command[0]}: {error.strerror}.") from None
    if result.returncode != 0:
        detail = mask_passwords(result.stderr.strip() or f"exit status {result.returncode}", url)
        raise click.ClickException(f"{name} failed on {masked_url(url)}:\n{detail}")


def _engine(url: URL, autocommit: bool = False) -> Engine:
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return create_engine(
        url,
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": APPLICATION_NAME},
        **options,
    )


@contextmanager
def database_errors(url: URL, hint: str = "") -> Iterator[None]:
    """Turn a database error into a one-line ClickException naming the (masked) database."""
    try:
        yield
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        if hint and "does not exist" in reason:
            reason += f" ({hint})"
        raise click.ClickException(f"{masked_url(url)}: {mask_passwords(reason, url)}") from None


def _seconds_since(started: float) -> float:
    return time.perf_counter() - started


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _utc_stamp(fmt: str) -> str:
    return datetime.now(UTC).strftime(fmt)


def _file_kind(path: Path) -> str:
    with path.open("rb") as file:
        head = file.read(len(SQLITE_MAGIC))
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    if head == SQLITE_MAGIC:
        return "sqlite"
    return "unknown"


# -- PostgreSQL ---------------------------------------------------------------------------------


def dump_postgres(url: URL, output: Path, snapshot: str | None = None) -> None:
    """pg_dump in custom format, written to a temporary name and renamed once complete."""
    partial = output.with_name(output.name + ".partial")
    args = ["--format=custom", f"--file={partial}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    try:
        run_pg_tool("pg_dump", args, url)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)


def restore_postgres(dump: Path, url: URL, replace: bool = False) -> None:
    """pg_restore in one transaction: the target gets the whole dump or nothing."""
    args = ["--no-owner", "--exit-on-error", "--single-transaction"]
    if replace:
        args += ["--clean", "--if-exists"]
    run_pg_tool("pg_restore", [*args, str(dump)], url)


def count_user_tables(url: URL, hint: str = "") -> int:
    engine = _engine(url)
    try:
        with database_errors(url, hint), engine.connect() as connection:
            return connection.scalar(text(USER_TABLES_SQL))
    finally:
        engine.dispose()


@contextmanager
def _maintenance_connection(url: URL) -> Iterator[Connection]:
    """An autocommit connection to the ``postgres`` maintenance database of ``url``'s server."""
    engine = _engine(url.set(database="postgres"), autocommit=True)
    try:
        with database_errors(url), engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def database_exists(url: URL) -> bool:
    with _maintenance_connection(url) as connection:
        exists = text("SELECT 1 FROM pg_database WHERE datname = :name")
        return connection.scalar(exists, {"name": url.database}) is not None


def create_database(url: URL) -> None:
    """CREATE DATABASE on the server ``url`` is on (through its ``postgres`` maintenance database)."""
    with _maintenance_connection(url) as connection:
        name = connection.dialect.identifier_preparer.quote(url.database)
        connection.execute(text(f"CREATE DATABASE {name}"))


def drop_database(url: URL) -> None:
    with _maintenance_connection(url) as connection:
        name = connection.dialect.identifier_preparer.quote(url.database)
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def figures_of(url: URL, tables: tuple[str, ...] = DRILL_TABLES) -> dict[str, TableFigures]:
    engine = _engine(url)
    try:
        with database_errors(url), engine.connect() as connection, connection.begin():
            use_comparable_settings(connection)
            return table_figures(connection, tables)
    finally:
        engine.dispose()


def dump_in_one_snapshot(url: URL, output: Path) -> tuple[dict[str, TableFigures], float]:
    """Dump the database and take its figures in one exported snapshot; the figures and the
    seconds pg_dump took. The exporting transaction stays open until both are done."""
    engine = _engine(url)
    try:
        with database_errors(url), engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                use_comparable_settings(connection)
                snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
                started = time.perf_counter()
                dump_postgres(url, output, snapshot=snapshot)
                dump_seconds = _seconds_since(started)
                return table_figures(connection), dump_seconds
    finally:
        engine.dispose()


def pinned_to_primary(url: URL) -> URL:
    """A multi-host URL (a Patroni cluster) narrowed to the node it reaches now.

    A database created a moment ago exists on the primary but maybe not yet on a standby, and
    libpq does not try the next host after a server refused the connection ("database does not
    exist"): every step of a restore or a drill must talk to the one node that created it.
    """
    hosts = url.query.get("host")
    if url.get_backend_name() != "postgresql" or not isinstance(hosts, tuple) or len(hosts) < 2:
        return url
    # Through the maintenance database: the target itself may not exist yet.
    with _maintenance_connection(url) as connection:
        where = text("SELECT host(inet_server_addr()), inet_server_port()")
        address, port = connection.execute(where).one()
    if address is None:  # a Unix socket: nothing to pin
        return url
    query = {key: value for key, value in url.query.items() if key not in {"host", "load_balance_hosts"}}
    return url.set(host=address, port=port, query=query)


def drill_database_url(url: URL) -> URL:
    # PostgreSQL names are at most 63 bytes: the stamp (with milliseconds) always fits.
    stamp = _utc_stamp("%Y%m%d%H%M%S%f")[:-3]
    return url.set(database=f"{url.database[:36]}_drill_{stamp}")


# -- SQLite -------------------------------------------------------------------------------------


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise click.ClickException("Only an SQLite database in a file can be backed up or restored.")
    return Path(url.database)


def sqlite_tables(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with _sqlite(path) as connection:
        return connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        connection = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as error:
        raise click.ClickException(f"{path}: {error}") from None
    try:
        yield connection
    except sqlite3.Error as error:
        raise click.ClickException(f"{path}: {error}") from None
    finally:
        connection.close()


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent page-by-page copy with SQLite's online backup API (safe while the app writes)."""
    with _sqlite(source) as reading, _sqlite(target) as writing:
        reading.backup(writing)


def backup_sqlite(source: Path, output: Path) -> None:
    if not source.is_file():
        raise click.ClickException(f"No SQLite database at {source}.")
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        copy_sqlite(source, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)


def check_sqlite_backup(path: Path) -> None:
    with _sqlite(path) as connection:
        result = connection.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise click.ClickException(f"{path} is a damaged SQLite database: {result}")


# -- the commands -------------------------------------------------------------------------------


@click.command("backup")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="File to write (default: BACKUP_DIR/ecommerce-<UTC timestamp>.dump).",
)
@with_appcontext
def backup_command(output: Path | None) -> None:
    """Back up the app's database to a file.

    PostgreSQL: pg_dump in custom format. SQLite: a consistent copy made with its backup API.
    """
    url = app_database_url()
    if output is None:
        output = Path(current_app.config["BACKUP_DIR"]) / f"ecommerce-{_utc_stamp('%Y%m%dT%H%M%SZ')}.dump"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(f"Cannot create {output.parent}: {error.strerror}.") from None
    started = time.perf_counter()
    if url.get_backend_name() == "sqlite":
        backup_sqlite(sqlite_path(url), output)
    else:
        dump_postgres(url, output)
    click.echo(
        f"Backed up {masked_url(url)} to {output} ({_size(output)}) in {_seconds_since(started):.2f} s."
    )


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--target-url", help="Database to restore into (default: the app's own).")
@click.option("--create", is_flag=True, help="Create the target database if it does not exist.")
@click.option(
    "--force", is_flag=True, help="Restore into a database that has tables (the dump's objects are replaced)."
)
@with_appcontext
def restore_command(file: Path, target_url: str | None, create: bool, force: bool) -> None:
    """Restore a backup into a database.

    PostgreSQL: pg_restore in one transaction (all or nothing). SQLite: a page-by-page copy.
    """
    url = parse_database_url(target_url) if target_url else app_database_url()
    kind = _file_kind(file)
    backend = url.get_backend_name()
    if kind == "unknown":
        raise click.ClickException(f"{file} is not a backup made by `flask db backup`.")
    if kind != backend:
        raise click.ClickException(
            f"{file} is a backup of a {BACKEND_NAMES[kind]} database; "
            f"{masked_url(url)} is a {BACKEND_NAMES[backend]} database."
        )
    if url == app_database_url():
        db.engine.dispose()  # no pooled connection survives into the restored database
    started = time.perf_counter()
    if backend == "sqlite":
        _restore_sqlite(file, sqlite_path(url), force)
    else:
        _restore_postgres(file, url, create, force)
    click.echo(f"Restored {file} into {masked_url(url)} in {_seconds_since(started):.2f} s.")


def _refuse_non_empty(url: URL, tables: int) -> None:
    raise click.ClickException(
        f"{masked_url(url)} already has {tables} tables: refusing to restore into it "
        f"(pass --force to replace them, or restore into a new database with --create)."
    )


def _restore_sqlite(file: Path, target: Path, force: bool) -> None:
    check_sqlite_backup(file)
    tables = sqlite_tables(target)
    if tables and not force:
        _refuse_non_empty(make_url(f"sqlite:///{target}"), tables)
    target.parent.mkdir(parents=True, exist_ok=True)
    copy_sqlite(file, target)


def _restore_postgres(file: Path, url: URL, create: bool, force: bool) -> None:
    url = pinned_to_primary(url)
    created = False
    if create and not database_exists(url):
        create_database(url)
        created = True
    tables = count_user_tables(url, hint="pass --create to create it")
    if tables and not force:
        _refuse_non_empty(url, tables)
    try:
        restore_postgres(file, url, replace=bool(tables))
    except click.ClickException:
        if created:
            drop_database(url)
        raise


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
            restore_seconds = _seconds_since(started)
            restored = figures_of(drill_url)
        finally:
            if not keep:
                drop_database(drill_url)
        size = _size(dump)
    comparisons = compare_figures(source, restored)
    click.echo(f"Drill: {masked_url(url)} restored into {drill_url.database}")
    click.echo(comparison_table(comparisons))
    click.echo(f"Dump: {size} in {dump_seconds:.2f} s; restore: {restore_seconds:.2f} s.")
    click.echo(f"Kept {drill_url.database}." if keep else f"Dropped {drill_url.database}.")
    differing = [c.table for c in comparisons if not c.matches]
    if differing:
        raise click.ClickException(f"Drill failed: the restored copy differs in {', '.join(differing)}.")
    click.echo("Drill passed: every table has the same rows and checksum.")


BACKUP_COMMANDS = (backup_command, restore_command, drill_command)
