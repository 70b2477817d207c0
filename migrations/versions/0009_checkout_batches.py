"""Checkouts in batches on PostgreSQL: the function place_orders() places the orders of several
carts in one transaction, each as place_order() does it, so that a hot product's row changes
hands once per batch instead of once per order (ecommerce/orders/batching.py,
docs/db_optimization.md "Checkout"). place_order() also answers 'retry' instead of failing when
its products' locks deadlock. Nothing on SQLite.

Revision ID: 0009_checkout_batches
Revises: 0008_checkout_function
Create Date: 2026-12-05
"""
import importlib.util
from pathlib import Path

from alembic import op


# revision identifiers, used by Alembic.
revision = '0009_checkout_batches'
down_revision = '0008_checkout_function'
branch_labels = None
depends_on = None


# place_order() of 0008, whose block of its own (the cart's lines, the products' locks, the stock
# and the order) also ends in 'retry' on a deadlock and in 'error' on any other failure (not a
# cancel): the block's changes are undone, and the batch's other members stand. (Adding to a cart
# takes a share lock on the cart row, so no line can join a cart between the batch's locks and
# its member's turn, and its products' locks are never out of id order; 'retry' is a safety net.)
RETRY_ON_DEADLOCK = (
    "    EXCEPTION WHEN SQLSTATE 'EC409' THEN\n"
    "        RETURN jsonb_build_object('outcome', 'short', 'products', v_short);\n"
    "    WHEN deadlock_detected THEN\n"
    "        RETURN jsonb_build_object('outcome', 'retry');\n"
    "    WHEN OTHERS THEN\n"
    "        RETURN jsonb_build_object('outcome', 'error', 'sqlstate', SQLSTATE, 'message', SQLERRM);\n"
)

# One transaction for the batch. Every lock a member will take is taken first, in the order
# every other path takes them (the Idempotency-Keys, the carts, the products, each by id), so
# that two batches, or a batch and a single checkout, never wait on each other in a cycle.
# The members then run in the order given; each sees the stock the members before it left.
PLACE_ORDERS = r"""
CREATE OR REPLACE FUNCTION place_orders(p_orders jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_users integer[];
    v_keys integer[];
    v_products integer[];
    v_member jsonb;
    v_results jsonb := '[]'::jsonb;
BEGIN
    -- Arrays, so that each lock below is an index scan by id (a join with the JSON made the
    -- planner scan every product).
    SELECT array_agg((member ->> 'user_id')::integer),
           array_agg((member ->> 'key_id')::integer) FILTER (WHERE member ->> 'key_id' IS NOT NULL)
    INTO v_users, v_keys
    FROM jsonb_array_elements(p_orders) AS member;
    PERFORM 1 FROM idempotency_keys WHERE id = ANY (v_keys) ORDER BY id FOR UPDATE;
    PERFORM 1 FROM shopping_carts WHERE user_id = ANY (v_users) ORDER BY id FOR NO KEY UPDATE;
    SELECT array_agg(DISTINCT cart_items.product_id)
    INTO v_products
    FROM shopping_carts JOIN cart_items ON cart_items.cart_id = shopping_carts.id
    WHERE shopping_carts.user_id = ANY (v_users);
    PERFORM 1 FROM products WHERE id = ANY (v_products) ORDER BY id FOR NO KEY UPDATE;

    FOR v_member IN SELECT member FROM jsonb_array_elements(p_orders) AS member LOOP
        v_results := v_results || jsonb_build_array(place_order(
            (v_member ->> 'user_id')::integer,
            v_member ->> 'address',
            v_member ->> 'method',
            (v_member ->> 'cost')::numeric,
            nullif(v_member -> 'route', 'null'::jsonb)::json,
            (v_member ->> 'now')::timestamptz,
            (v_member ->> 'key_id')::integer,
            v_member ->> 'key_token'
        ));
    END LOOP;
    RETURN v_results;
END
$$;
"""


def _place_order_of_0008() -> str:
    """The function's text as revision 0008 created it (its file, loaded by path: the
    migrations are not a package)."""
    path = Path(__file__).with_name('0008_checkout_function.py')
    spec = importlib.util.spec_from_file_location('checkout_function_0008', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PLACE_ORDER


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    original = _place_order_of_0008()
    handler = (
        "    EXCEPTION WHEN SQLSTATE 'EC409' THEN\n"
        "        RETURN jsonb_build_object('outcome', 'short', 'products', v_short);\n"
    )
    assert original.count(handler) == 1
    op.execute(original.replace(handler, RETRY_ON_DEADLOCK))
    op.execute(PLACE_ORDERS)


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('DROP FUNCTION IF EXISTS place_orders(jsonb)')
    op.execute(_place_order_of_0008())
