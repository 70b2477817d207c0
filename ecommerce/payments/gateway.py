"""The payment provider, behind an interface. The sandbox is chosen by config (PAYMENT_GATEWAY).

A real provider deduplicates by the idempotency key we send with every request: a charge
retried with the same key is charged once and answers with the first result. The sandbox
behaves the same way, keeping its ledger in a database of its own (a SQLite file, like a
provider's own storage), so a charge survives our processes crashing and restarting.

Sandbox tokens (API.md): ``tok_decline...`` is declined; ``tok_flaky...`` fails with a
transient error on the first attempt for its key and is approved after that; any other token
is approved. For tests and drills, ``tok_slow_<ms>...`` is approved but answers only after
<ms> milliseconds (the charge is already in the ledger while the answer is on its way).
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from flask import Flask, current_app


class TransientGatewayError(Exception):
    """The provider could not answer this time (timeout, 5xx): the same request may be retried."""


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    transaction_id: str | None = None
    decline_reason: str | None = None


class PaymentGateway(ABC):
    @abstractmethod
    def charge(self, idempotency_key: str, amount: Decimal, token: str) -> ChargeResult:
        """Charge once per key; a retry with the same key returns the first result."""

    @abstractmethod
    def refund(self, idempotency_key: str) -> str:
        """Refund the charge made under ``idempotency_key`` (once); returns the refund id."""


_SLOW = re.compile(r"^tok_slow_(\d+)")


class SandboxGateway(PaymentGateway):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS charges ("
                " idempotency_key TEXT PRIMARY KEY, amount TEXT NOT NULL, token TEXT NOT NULL,"
                " approved INTEGER NOT NULL, transaction_id TEXT, decline_reason TEXT,"
                " refund_id TEXT, created_at REAL NOT NULL)"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS attempts (idempotency_key TEXT PRIMARY KEY, count INTEGER)"
            )

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def charge(self, idempotency_key: str, amount: Decimal, token: str) -> ChargeResult:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(
                "SELECT approved, transaction_id, decline_reason FROM charges WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO attempts VALUES (?, 1) ON CONFLICT(idempotency_key) "
                    "DO UPDATE SET count = count + 1",
                    (idempotency_key,),
                )
                attempts = connection.execute(
                    "SELECT count FROM attempts WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()[0]
                if token.startswith("tok_flaky") and attempts == 1:
                    connection.execute("COMMIT")
                    raise TransientGatewayError("sandbox: temporary failure, retry")
                approved = not token.startswith("tok_decline")
                row = (
                    int(approved),
                    "ch_" + uuid.uuid4().hex[:24] if approved else None,
                    None if approved else "card_declined",
                )
                connection.execute(
                    "INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                    (idempotency_key, str(amount), token, *row, time.time()),
                )
            connection.execute("COMMIT")
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.close()
        slow = _SLOW.match(token)
        if slow:
            time.sleep(int(slow.group(1)) / 1000)
        return ChargeResult(bool(row[0]), row[1], row[2])

    def refund(self, idempotency_key: str) -> str:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(
                "SELECT approved, refund_id FROM charges WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if row is None or not row[0]:
                raise ValueError(f"sandbox: no approved charge under {idempotency_key}")
            refund_id = row[1] or "re_" + uuid.uuid4().hex[:24]
            connection.execute(
                "UPDATE charges SET refund_id = ? WHERE idempotency_key = ?", (refund_id, idempotency_key)
            )
            connection.execute("COMMIT")
            return refund_id
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.close()

    def ledger(self) -> list[dict]:
        """Every charge the sandbox holds (for tests and drills)."""
        connection = self._connect()
        connection.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in connection.execute("SELECT * FROM charges ORDER BY created_at")]
        finally:
            connection.close()


GATEWAYS = {"sandbox": lambda app: SandboxGateway(Path(app.config["SANDBOX_GATEWAY_PATH"]))}


def init_gateway(app: Flask) -> None:
    name = app.config["PAYMENT_GATEWAY"]
    if name not in GATEWAYS:
        raise RuntimeError(f"PAYMENT_GATEWAY must be one of {sorted(GATEWAYS)}, not {name!r}")
    app.extensions["payment_gateway"] = GATEWAYS[name](app)


def gateway() -> PaymentGateway:
    return current_app.extensions["payment_gateway"]
