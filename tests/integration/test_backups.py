"""``flask db backup / restore / drill`` against the real PostgreSQL (and a real SQLite file):
round trips, refusals, the snapshot-consistent drill under concurrent writes, clear errors."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from ecommerce.cli.backups import DRILL_TABLES, compare_figures, comparison_table, figures_of
from ecommerce.config import TestingConfig
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderItem
from ecommerce.payments.models import Payment, PaymentMethod
from tests.factories import UserFactory
from tests.helpers import drop_database, invoke_cli, truncate_every_table
from tests.integration.servers import wait_until
from tests.integration.test_migrations import MIGRATIONS

SOURCE = make_url(TestingConfig.SQLALCHEMY_DATABASE_URI)
ALL_TABLES = (*DRILL_TABLES, "categories", "reviews", "order_events")


def failed_cleanly(result, message: str) -> bool:
    """A non-zero exit with ``message`` and no traceback: what an operator should see."""
    return (
        result.exit_code != 0
        and isinstance(result.exception, SystemExit)
        and message in result.output
        and "Traceback" not in result.output
    )


def scalar(url: URL, sql: str):
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.scalar(text(sql))
    finally:
        engine.dispose()


def execute(url: URL, sql: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text(sql))
    finally:
        engine.dispose()


def add_orders(count: int) -> None:
    """``count`` orders of fresh customers, each with two lines and a payment (committed)."""
    for number in range(count):
        customer = UserFactory()
        order = Order(
            user_id=customer.id, total_amount=Decimal("30.50"), shipping_address=f"{number} Main St"
        )
        db.session.add(order)
        db.session.flush()
        db.session.add_all(
            [
                OrderItem(order_id=order.id, product_name="Lamp", quantity=1, price=Decimal("10.50")),
                OrderItem(order_id=order.id, product_name="Mug", quantity=2, price=Decimal("10.00")),
                Payment(
                    order_id=order.id,
                    payment_method=PaymentMethod.CARD,
                    amount=Decimal("30.50"),
                    idempotency_key=f"backup-test-{customer.id}",
                ),
            ]
        )
        db.session.commit()


@pytest.fixture
def shop(app: Flask, committed: None) -> None:
    """A seeded catalog with customers, reviews, orders, lines and payments."""
    with app.app_context():
        truncate_every_table()
    seeded = invoke_cli(app, "seed", "--products", "300", "--customers", "3")
    assert seeded.exit_code == 0, seeded.output
    with app.app_context():
        add_orders(20)
        db.session.remove()


@pytest.fixture
def target() -> Iterator[URL]:
    """A restore target next to the test database; it does not exist before, nor after."""
    url = SOURCE.set(database=f"{SOURCE.database}_restore")
    drop_database(url.render_as_string(hide_password=False))
    yield url
    drop_database(url.render_as_string(hide_password=False))


@pytest.fixture
def drill_databases() -> Iterator[list[str]]:
    """The drill databases left on the server (--keep, or a failure); all dropped afterwards."""

    def left() -> list[str]:
        pattern = f"{SOURCE.database}\\_drill\\_%"
        names = scalar(
            SOURCE.set(database="postgres"),
            f"SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{pattern}'",
        )
        return names.split(",") if names else []

    class Leftovers(list):
        def refresh(self) -> list[str]:
            self[:] = left()
            return self

    leftovers = Leftovers()
    yield leftovers
    for name in left():
        drop_database(SOURCE.set(database=name).render_as_string(hide_password=False))


def drill_database(output: str) -> str:
    return re.search(r"restored into (\S+)", output).group(1)


def test_backup_restore_round_trip(app, shop, target, tmp_path):
    dump = tmp_path / "shop.dump"
    backup = invoke_cli(app, "db", "backup", "--output", str(dump))
    assert backup.exit_code == 0, backup.output
    assert f"to {dump} (" in backup.output and re.search(r"in \d+\.\d\d s\.", backup.output)
    assert dump.read_bytes().startswith(b"PGDMP")
    assert not list(tmp_path.glob("*.partial"))

    target_url = target.render_as_string(hide_password=False)
    restored = invoke_cli(app, "db", "restore", str(dump), "--target-url", target_url, "--create")
    assert restored.exit_code == 0, restored.output
    assert f"@{target.host}:{target.port}/{target.database} in " in restored.output

    source = figures_of(SOURCE, ALL_TABLES)
    assert source["orders"].rows == 20 and source["order_items"].rows == 40
    assert source["products"].rows == 300 and source["reviews"].rows > 0
    comparisons = compare_figures(source, figures_of(target, ALL_TABLES))
    assert all(c.matches for c in comparisons), comparison_table(comparisons)
    version = "SELECT version_num FROM alembic_version"
    assert scalar(target, version) == scalar(SOURCE, version) is not None

    # The target has tables now: refused without --force, replaced with it.
    execute(target, "UPDATE products SET price = price + 1 WHERE id = 1")
    refused = invoke_cli(app, "db", "restore", str(dump), "--target-url", target_url)
    assert failed_cleanly(refused, "refusing to restore"), refused.output
    assert not all(c.matches for c in compare_figures(source, figures_of(target, ALL_TABLES)))
    forced = invoke_cli(app, "db", "restore", str(dump), "--target-url", target_url, "--force")
    assert forced.exit_code == 0, forced.output
    assert all(c.matches for c in compare_figures(source, figures_of(target, ALL_TABLES)))


def test_backup_goes_to_backup_dir_by_default(make_instance, shop, tmp_path):
    instance = make_instance(BACKUP_DIR=str(tmp_path / "backups"))
    result = invoke_cli(instance, "db", "backup")
    assert result.exit_code == 0, result.output
    [written] = (tmp_path / "backups").iterdir()
    assert re.fullmatch(r"ecommerce-\d{8}T\d{6}Z\.dump", written.name)
    assert str(written) in result.output


def test_restore_refuses_the_apps_own_non_empty_database(app, shop, tmp_path):
    dump = tmp_path / "shop.dump"
    assert invoke_cli(app, "db", "backup", "--output", str(dump)).exit_code == 0
    with app.app_context():
        UserFactory(username="after-the-backup")
        db.session.remove()
    refused = invoke_cli(app, "db", "restore", str(dump))
    assert failed_cleanly(refused, "already has"), refused.output
    assert "--force" in refused.output
    # Nothing was touched.
    assert scalar(SOURCE, "SELECT count(*) FROM users WHERE username = 'after-the-backup'") == 1


def test_drill_passes_and_drops_its_database(app, shop, drill_databases):
    result = invoke_cli(app, "db", "drill")
    assert result.exit_code == 0, result.output
    assert "Drill passed" in result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()}
    assert rows["orders"] == ["20", "20", "match"]
    assert rows["order_items"] == ["40", "40", "match"]
    assert rows["products"] == ["300", "300", "match"]
    assert re.search(r"Dump: .+ in \d+\.\d\d s; restore: \d+\.\d\d s\.", result.output)
    assert f"Dropped {drill_database(result.output)}" in result.output
    assert drill_databases.refresh() == []


def test_drill_is_consistent_while_orders_keep_coming(app, shop, drill_databases):
    """Another thread commits customers and orders during the whole drill; the dump and the
    figures share one snapshot, so the restored copy still matches them exactly."""
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def keep_ordering() -> None:
        with app.app_context():
            try:
                while not stop.is_set():
                    add_orders(1)
                    written.append(1)
            except BaseException as error:  # surfaced by the assertion below
                errors.append(error)
            finally:
                db.session.remove()

    writer = threading.Thread(target=keep_ordering)
    writer.start()
    try:
        wait_until(lambda: len(written) >= 5, timeout=10, message="the first concurrent orders")
        before = len(written)
        result = invoke_cli(app, "db", "drill")
        during = len(written) - before
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not errors, errors
    assert result.exit_code == 0, result.output
    assert "Drill passed" in result.output
    assert during > 0, "no order was committed while the drill ran"
    source_orders = int(re.search(r"^orders\s+(\d+)", result.output, re.MULTILINE).group(1))
    # The snapshot is a point in time: orders committed after it are in the database, not the copy.
    assert 20 + before <= source_orders < scalar(SOURCE, "SELECT count(*) FROM orders")
    assert drill_databases.refresh() == []


def test_comparison_reports_a_restored_row_that_differs(app, shop, drill_databases):
    kept = invoke_cli(app, "db", "drill", "--keep")
    assert kept.exit_code == 0, kept.output
    copy = SOURCE.set(database=drill_database(kept.output))
    assert drill_databases.refresh() == [copy.database]
    assert all(c.matches for c in compare_figures(figures_of(SOURCE), figures_of(copy)))

    # One value of one row changed: same row counts, different checksum.
    execute(copy, "UPDATE products SET price = price + 0.01 WHERE id = (SELECT max(id) FROM products)")
    # One row gone: the count differs.
    execute(copy, "DELETE FROM payments WHERE id = (SELECT min(id) FROM payments)")
    comparisons = {c.table: c for c in compare_figures(figures_of(SOURCE), figures_of(copy))}
    assert comparisons["products"].rows_match and not comparisons["products"].checksum_match
    assert not comparisons["payments"].rows_match and not comparisons["payments"].matches
    assert [table for table, c in comparisons.items() if not c.matches] == ["products", "payments"]
    report = comparison_table(list(comparisons.values()))
    assert re.search(r"^products\s+300\s+300\s+MISMATCH$", report, re.MULTILINE)
    assert re.search(r"^payments\s+20\s+19\s+MISMATCH$", report, re.MULTILINE)
    # A table the copy lacks never matches.
    [missing] = compare_figures({"users": comparisons["users"].source}, {})
    assert not missing.matches


def test_sqlite_backup_and_restore(make_instance, tmp_path):
    database = tmp_path / "shop.db"
    instance = make_instance(SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}")
    with instance.app_context():
        upgrade(directory=MIGRATIONS)
    assert invoke_cli(instance, "seed", "--products", "40", "--customers", "2").exit_code == 0

    dump = tmp_path / "shop.dump"
    backup = invoke_cli(instance, "db", "backup", "--output", str(dump))
    assert backup.exit_code == 0, backup.output
    assert dump.read_bytes().startswith(b"SQLite format 3\x00")

    copy = tmp_path / "copy.db"
    restored = invoke_cli(instance, "db", "restore", str(dump), "--target-url", f"sqlite:///{copy}")
    assert restored.exit_code == 0, restored.output

    def snapshot(path: Path) -> dict[str, list]:
        with sqlite3.connect(path) as connection:
            return {
                table: connection.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
                for table in ("products", "users", "categories", "reviews")
            } | {"version": connection.execute("SELECT version_num FROM alembic_version").fetchall()}

    original = snapshot(database)
    assert len(original["products"]) == 40 and original["version"]
    assert snapshot(copy) == original

    # The app's own database is not empty: refused, then replaced with --force.
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM reviews")
    refused = invoke_cli(instance, "db", "restore", str(dump))
    assert failed_cleanly(refused, "refusing to restore"), refused.output
    forced = invoke_cli(instance, "db", "restore", str(dump), "--force")
    assert forced.exit_code == 0, forced.output
    assert snapshot(database) == original

    drill = invoke_cli(instance, "db", "drill")
    assert failed_cleanly(drill, "needs PostgreSQL"), drill.output
    # A PostgreSQL app is told that an SQLite backup is not its kind.
    wrong_kind = invoke_cli(
        instance, "db", "restore", str(dump), "--target-url", SOURCE.render_as_string(False)
    )
    assert failed_cleanly(wrong_kind, "is a backup of a SQLite database"), wrong_kind.output


def test_clear_errors(app, make_instance, shop, target, tmp_path):
    target_url = target.render_as_string(hide_password=False)
    missing = invoke_cli(app, "db", "restore", str(tmp_path / "nope.dump"), "--target-url", target_url)
    assert missing.exit_code == 2 and "does not exist" in missing.output

    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"not a dump at all\n" * 100)
    not_a_dump = invoke_cli(app, "db", "restore", str(garbage), "--target-url", target_url, "--create")
    assert failed_cleanly(not_a_dump, "is not a backup made by `flask db backup`"), not_a_dump.output

    # A real dump cut short: pg_restore fails, its single transaction leaves nothing, and the
    # database created for it is dropped again.
    dump = tmp_path / "shop.dump"
    assert invoke_cli(app, "db", "backup", "--output", str(dump)).exit_code == 0
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    corrupt = invoke_cli(app, "db", "restore", str(truncated), "--target-url", target_url, "--create")
    assert failed_cleanly(corrupt, "pg_restore failed"), corrupt.output
    exists = f"SELECT count(*) FROM pg_database WHERE datname = '{target.database}'"
    assert scalar(SOURCE.set(database="postgres"), exists) == 0

    no_database = invoke_cli(app, "db", "restore", str(dump), "--target-url", target_url)
    assert failed_cleanly(no_database, "pass --create"), no_database.output

    # Unreachable server (the password never shows); no pg_dump where PG_BIN_DIR points.
    unreachable = make_instance(SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://shop:s3cret@127.0.0.1:1/shop")
    for command in (["db", "backup", "--output", str(tmp_path / "x.dump")], ["db", "drill"]):
        result = invoke_cli(unreachable, *command)
        assert failed_cleanly(result, "127.0.0.1"), result.output
        assert "s3cret" not in result.output and "refused" in result.output
    no_tools = make_instance(PG_BIN_DIR=str(tmp_path))
    result = invoke_cli(no_tools, "db", "backup", "--output", str(tmp_path / "y.dump"))
    assert failed_cleanly(result, "pg_dump not found in PG_BIN_DIR"), result.output
    assert not (tmp_path / "y.dump").exists()


def test_flask_db_lists_the_backup_commands_next_to_the_migrations(app):
    result = invoke_cli(app, "db", "--help")
    assert result.exit_code == 0
    for command in ("backup", "restore", "drill", "upgrade", "downgrade", "current"):
        assert re.search(rf"^\s+{command}\s", result.output, re.MULTILINE), command
    current = invoke_cli(app, "db", "current")
    assert current.exit_code == 0, current.output
