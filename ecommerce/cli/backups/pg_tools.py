"""Finding and running PostgreSQL's pg_dump and pg_restore.

A pg_dump older than the server refuses to dump it, so the newest installed client tools win
over whatever PATH finds first; ``PG_BIN_DIR`` names them outright.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import click
from flask import current_app
from sqlalchemy.engine import URL

from ecommerce.cli.backups.databases import (
    APPLICATION_NAME,
    CONNECT_TIMEOUT_SECONDS,
    mask_passwords,
    masked_url,
)
from ecommerce.config import libpq_url

PG_INSTALL_ROOT = Path("/usr/lib/postgresql")


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
    # URL is a namedtuple: _replace is its public copy-with; URL.set() reads None as "unchanged".
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
