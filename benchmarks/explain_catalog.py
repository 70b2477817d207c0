"""EXPLAIN ANALYZE every query the catalog and account endpoints send, as they send them.

The script calls the real service functions, captures the SQL and parameters each one sends
(a ``before_cursor_execute`` listener) and runs ``EXPLAIN (ANALYZE, BUFFERS)`` on exactly that
SQL. Order history gets a synthetic customer with 10,000 orders, inside a transaction that is
rolled back.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ecommerce_dev \
        .venv/bin/python benchmarks/explain_catalog.py > plans.txt

Run it on a database seeded with ``flask seed --products 100000``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from sqlalchemy import event, func, select, text

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ecommerce import create_app  # noqa: E402
from ecommerce.auth import services as auth_services  # noqa: E402
from ecommerce.categories.models import Category  # noqa: E402
from ecommerce.extensions import db  # noqa: E402
from ecommerce.products import services as product_services  # noqa: E402
from ecommerce.products.models import Product  # noqa: E402
from ecommerce.reviews import services as review_services  # noqa: E402


def capture(call: Callable[[], object]) -> list[str]:
    """Run ``call`` and return every SELECT it sent, with its parameters inlined."""
    sent: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append(cursor.mogrify(statement, parameters).decode())

    engine = db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return sent


def explain(title: str, call: Callable[[], object]) -> None:
    print(f"\n## {title}\n")
    for sql in capture(call):
        print("```sql")
        print(sql.strip())
        print("```")
        plan = db.session.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars().all()
        print("```")
        print("\n".join(plan))
        print("```")


def main() -> None:
    app = create_app()
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            raise SystemExit("Point DATABASE_URL at PostgreSQL.")
        products = db.session.scalar(select(func.count()).select_from(Product))
        print(f"# Query plans ({products} products)")
        db.session.execute(text("ANALYZE"))
        root = db.session.scalar(
            select(Category.id).where(Category.parent_id.is_(None)).order_by(Category.id)
        )
        leaf = db.session.scalar(
            select(Product.category_id).group_by(Product.category_id).order_by(Product.category_id)
        )
        reviewed = db.session.scalar(select(Product.id).where(Product.rating_count > 0).order_by(Product.id))

        def page(filters, number=1, size=20):
            return lambda: product_services.list_products(filters, number, size)

        explain("Product list, default order, page 1", page({}))
        explain("Product list, default order, page 500 (deep OFFSET)", page({}, 500))
        explain(
            "Product list, category (root, with descendants), sort price",
            page({"category": root, "sort": "price"}),
        )
        explain(
            "Product list, leaf category, price range",
            page({"category": leaf, "min_price": 10, "max_price": 200}),
        )
        explain(
            "Product list, price range, sort -price",
            page({"min_price": 100, "max_price": 200, "sort": "-price"}),
        )
        explain("Product list, in stock, sort -created_at", page({"in_stock": True, "sort": "-created_at"}))
        explain("Product list, sort -rating", page({"sort": "-rating"}))
        explain("Product list, sort name", page({"sort": "name"}))
        explain("Product list, full-text q=kettle", page({"q": "kettle"}))
        explain("Product detail", lambda: product_services.get_product(12345))
        _synthetic_history(reviewed)


def _login_lookup(name: str) -> None:
    from sqlalchemy import or_

    from ecommerce.users.models import User

    db.session.scalar(select(User).where(or_(User.username == name, User.email == name.lower())))


def _synthetic_history(reviewed: int) -> None:
    """Accounts, reviews and orders at shop scale, explained, then rolled back.

    50,000 users; 5,000 reviews of one product and 50,000 spread over the catalog; one login
    session per user; 10,000 orders for one customer among 100,000.
    """
    db.session.execute(
        text(
            "INSERT INTO users (username, email, password_hash, role) "
            "SELECT 'synthetic' || g, 'synthetic' || g || '@example.com', 'x', 'customer' "
            "FROM generate_series(1, 50000) g"
        )
    )
    first = db.session.execute(text("SELECT min(id) FROM users WHERE username LIKE 'synthetic%'")).scalar()
    db.session.execute(
        text(
            "INSERT INTO reviews (product_id, user_id, rating, comment) "
            "SELECT :p, :first + g, 1 + g % 5, 'synthetic' FROM generate_series(0, 4999) g "
            "UNION ALL SELECT 1 + (g * 7919) % 100000, :first + g, 1 + g % 5, 'synthetic' "
            "FROM generate_series(0, 49999) g WHERE 1 + (g * 7919) % 100000 <> :p"
        ),
        {"p": reviewed, "first": first},
    )
    db.session.execute(
        text(
            "INSERT INTO auth_sessions (id, user_id, refresh_jti, created_at, expires_at) "
            "SELECT md5(id::text), id, md5(id::text || 'r'), now(), now() + interval '30 days' "
            "FROM users WHERE username LIKE 'synthetic%'"
        )
    )
    db.session.execute(text("ANALYZE users; ANALYZE reviews; ANALYZE auth_sessions"))
    family = db.session.execute(text("SELECT md5(CAST(:u AS text))"), {"u": first + 123}).scalar()
    explain(
        "A product's reviews, newest first (5,000 reviews of 55,000)",
        lambda: review_services.list_reviews(reviewed, 1, 20),
    )
    explain(
        "Login lookup (username or email) among 50,000 users",
        lambda: _login_lookup("synthetic4242@example.com"),
    )
    explain(
        "Token check on every authenticated request (50,000 sessions)",
        lambda: auth_services.load_active_login(family, str(first + 123)),
    )

    customer = first
    db.session.execute(
        text(
            "INSERT INTO orders (user_id, order_status, total_amount, created_at, updated_at) "
            "SELECT CASE WHEN g <= 10000 THEN :me ELSE (SELECT min(id) FROM users) + 1 + g % 4 END, "
            "'pending', 10, now() - g * interval '1 minute', now() FROM generate_series(1, 100000) g"
        ),
        {"me": customer},
    )
    db.session.execute(text("ANALYZE orders"))
    sql = (
        f"SELECT * FROM orders WHERE user_id = {customer} ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 0"
    )
    print("\n## A customer's orders, newest first (10,000 orders of 100,000)\n")
    print("```sql\n" + sql + "\n```")
    plan = db.session.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars().all()
    print("```\n" + "\n".join(plan) + "\n```")
    db.session.rollback()


if __name__ == "__main__":
    main()
