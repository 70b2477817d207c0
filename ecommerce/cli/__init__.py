"""Operator commands. They call services, never the other way round.

- ``flask seed`` (seed.py, with the load-test data of load_data.py)
- ``flask users create-admin | set-role | deactivate`` (users.py)
- ``flask cache clear``, ``flask auth purge-sessions``, ``flask idempotency purge``,
  ``flask media prune`` (maintenance.py)
- ``flask db backup | restore | drill`` (backups/), in Flask-Migrate's ``db`` group
"""

from __future__ import annotations

from flask import Flask
from flask.cli import AppGroup
from flask_migrate.cli import db as db_cli

from ecommerce.cli.backups import BACKUP_COMMANDS
from ecommerce.cli.maintenance import (
    cache_clear_command,
    idempotency_purge_command,
    media_prune_command,
    purge_sessions_command,
)
from ecommerce.cli.seed import seed_command
from ecommerce.cli.users import create_admin_command, deactivate_command, set_role_command

users_cli = AppGroup(
    "users",
    help="Manage user accounts.",
    commands=[create_admin_command, set_role_command, deactivate_command],
)
cache_cli = AppGroup("cache", help="Manage the catalog cache.", commands=[cache_clear_command])
auth_cli = AppGroup("auth", help="Manage login sessions.", commands=[purge_sessions_command])
idempotency_cli = AppGroup(
    "idempotency", help="Manage stored Idempotency-Key responses.", commands=[idempotency_purge_command]
)

media_cli = AppGroup("media", help="Manage stored media files.", commands=[media_prune_command])


def register_commands(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(cache_cli)
    app.cli.add_command(auth_cli)
    app.cli.add_command(idempotency_cli)
    app.cli.add_command(media_cli)
    # Flask-Migrate's group is the one `flask db` runs (migrate.init_app registered it).
    for command in BACKUP_COMMANDS:
        db_cli.add_command(command)
