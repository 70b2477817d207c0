"""Housekeeping of stored state: ``flask cache clear``, ``flask auth purge-sessions``,
``flask idempotency purge`` and ``flask media prune``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ecommerce.auth.services import purge_expired_logins
from ecommerce.core.cache.store import clear_all
from ecommerce.core.idempotency import purge_expired
from ecommerce.products.images import prune_media

IN_PROCESS_CACHE_TYPES = (None, "SimpleCache")


def cache_is_in_process(config: Mapping[str, Any]) -> bool:
    """True when each server process keeps its own cache (the embedded default: no Redis), so
    a separate process such as this command cannot reach the server's cached entries."""
    return not config.get("REDIS_URL") and config.get("CACHE_TYPE") in IN_PROCESS_CACHE_TYPES


@click.command("clear")
@with_appcontext
def cache_clear_command() -> None:
    """Drop every cached catalog entry."""
    if cache_is_in_process(current_app.config):
        raise click.ClickException(
            "The cache lives inside the running server (no REDIS_URL): restart the server to clear it."
        )
    clear_all()
    click.echo("Cache cleared.")


@click.command("purge-sessions")
@click.option("--older-than-days", default=1, show_default=True)
@with_appcontext
def purge_sessions_command(older_than_days: int) -> None:
    """Delete login sessions expired or revoked more than N days ago."""
    removed = purge_expired_logins(timedelta(days=older_than_days))
    click.echo(f"Removed {removed} login sessions.")


@click.command("purge")
@with_appcontext
def idempotency_purge_command() -> None:
    """Delete Idempotency-Key records older than their 24-hour retention."""
    click.echo(f"Removed {purge_expired()} expired Idempotency-Key records.")


@click.command("prune")
@click.option(
    "--older-than",
    "older_than",
    default=3600,
    show_default=True,
    type=click.IntRange(min=0),
    help="Spare files written less than this many seconds ago (uploads still in flight).",
)
@with_appcontext
def media_prune_command(older_than: int) -> None:
    """Delete stored media files that no product picture names any more."""
    counts = prune_media(older_than)
    click.echo(f"Removed {counts['removed']} media files; kept {counts['kept']}.")
