"""Dependency checks for the readiness probe."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import text

from ecommerce.extensions import db

log = logging.getLogger(__name__)


def check_database() -> str:
    try:
        with db.engine.connect() as connection:  # a pooled connection, returned at once
            connection.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any failure means "not ready"
        log.warning("readiness: database check failed: %s", exc)
        return "down"


def check_redis() -> str:
    client = current_app.extensions.get("redis")
    if client is None:
        return "not configured"
    try:
        client.ping()
        return "ok"
    except Exception as exc:  # any failure means "not ready"
        log.warning("readiness: redis check failed: %s", exc)
        return "down"


def readiness() -> dict[str, str]:
    return {"database": check_database(), "redis": check_redis()}
