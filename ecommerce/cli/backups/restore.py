"""``flask db restore``: a backup into a database, all or nothing.

PostgreSQL is restored with ``pg_restore`` in one transaction; SQLite by a page-by-page copy. A
database that already has tables is only replaced on ``--force``, and one created for the
restore is dropped again if the restore fails.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy.engine import URL, make_url

from ecommerce.cli.backups.databases import (
    BACKEND_NAMES,
    app_database_url,
    copy_sqlite,
    count_user_tables,
    create_database,
    database_exists,
    drop_database,
    masked_url,
    parse_database_url,
    pinned_to_primary,
    sqlite_connection,
    sqlite_path,
)
from ecommerce.cli.backups.pg_tools import run_pg_tool
from ecommerce.extensions import db

PG_DUMP_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"


def restore_postgres(dump: Path, url: URL, replace: bool = False) -> None:
    """pg_restore in one transaction: the target gets the whole dump or nothing."""
    args = ["--no-owner", "--exit-on-error", "--single-transaction"]
    if replace:
        args += ["--clean", "--if-exists"]
    run_pg_tool("pg_restore", [*args, str(dump)], url)


def _file_kind(path: Path) -> str:
    with path.open("rb") as file:
        head = file.read(len(SQLITE_MAGIC))
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    if head == SQLITE_MAGIC:
        return "sqlite"
    return "unknown"


def sqlite_tables(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with sqlite_connection(path) as connection:
        return connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]


def check_sqlite_backup(path: Path) -> None:
    with sqlite_connection(path) as connection:
        result = connection.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise click.ClickException(f"{path} is a damaged SQLite database: {result}")


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
    click.echo(f"Restored {file} into {masked_url(url)} in {time.perf_counter() - started:.2f} s.")


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
