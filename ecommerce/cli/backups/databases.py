"""The databases a backup is taken from or restored into: their URLs (parsed, and masked for
printing), short-lived connections, creating and dropping PostgreSQL databases, and SQLite files.

Every failure becomes a one-line ``click.ClickException`` that names the database with its
password masked, so an operator sees what went wrong and never a secret or a traceback.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ecommerce.config import libpq_url, normalise_database_url
from ecommerce.extensions import db

BACKEND_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "ecommerce-backup"
USER_TABLES_SQL = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"""
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


# -- URLs -----------------------------------------------------------------------------------------


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


# -- PostgreSQL -----------------------------------------------------------------------------------


def engine_for(url: URL, autocommit: bool = False) -> Engine:
    """An engine without a pool: each step of a backup opens its connection and closes it."""
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


def count_user_tables(url: URL, hint: str = "") -> int:
    engine = engine_for(url)
    try:
        with database_errors(url, hint), engine.connect() as connection:
            return connection.scalar(text(USER_TABLES_SQL))
    finally:
        engine.dispose()


@contextmanager
def maintenance_connection(url: URL) -> Iterator[Connection]:
    """An autocommit connection to the ``postgres`` maintenance database of ``url``'s server."""
    engine = engine_for(url.set(database="postgres"), autocommit=True)
    try:
        with database_errors(url), engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def database_exists(url: URL) -> bool:
    with maintenance_connection(url) as connection:
        exists = text("SELECT 1 FROM pg_database WHERE datname = :name")
        return connection.scalar(exists, {"name": url.database}) is not None


def create_database(url: URL) -> None:
    """CREATE DATABASE on the server ``url`` is on (through its ``postgres`` maintenance database)."""
    with maintenance_connection(url) as connection:
        name = connection.dialect.identifier_preparer.quote(url.database)
        connection.execute(text(f"CREATE DATABASE {name}"))


def drop_database(url: URL) -> None:
    with maintenance_connection(url) as connection:
        name = connection.dialect.identifier_preparer.quote(url.database)
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


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
    with maintenance_connection(url) as connection:
        where = text("SELECT host(inet_server_addr()), inet_server_port()")
        address, port = connection.execute(where).one()
    if address is None:  # a Unix socket: nothing to pin
        return url
    query = {key: value for key, value in url.query.items() if key not in {"host", "load_balance_hosts"}}
    return url.set(host=address, port=port, query=query)


# -- SQLite ---------------------------------------------------------------------------------------


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise click.ClickException("Only an SQLite database in a file can be backed up or restored.")
    return Path(url.database)


@contextmanager
def sqlite_connection(path: Path) -> Iterator[sqlite3.Connection]:
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
    with sqlite_connection(source) as reading, sqlite_connection(target) as writing:
        reading.backup(writing)
