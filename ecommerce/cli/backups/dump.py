"""``flask db backup``: the app's database to a file.

PostgreSQL is dumped with ``pg_dump --format=custom``; SQLite is copied with its online backup
API. Either way the file is written under a temporary name and renamed once complete, so a
backup that fails half-way never leaves a file that looks whole.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import URL

from ecommerce.cli.backups.databases import app_database_url, copy_sqlite, masked_url, sqlite_path
from ecommerce.cli.backups.pg_tools import run_pg_tool


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


def file_size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


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
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        output = Path(current_app.config["BACKUP_DIR"]) / f"ecommerce-{stamp}.dump"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(f"Cannot create {output.parent}: {error.strerror}.") from None
    started = time.perf_counter()
    if url.get_backend_name() == "sqlite":
        backup_sqlite(sqlite_path(url), output)
    else:
        dump_postgres(url, output)
    seconds = time.perf_counter() - started
    click.echo(f"Backed up {masked_url(url)} to {output} ({file_size(output)}) in {seconds:.2f} s.")
