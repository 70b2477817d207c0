"""Checkout in one statement on PostgreSQL: the function place_order(), which takes the cart,
locks and checks its products, writes the order and, with an Idempotency-Key, its stored answer.
Called in autocommit, it is its own transaction: its row locks last as long as the function
runs inside the server, not the round trips to the app and the app's turn in its event loop
(ecommerce/orders/checkout.py, docs/db_optimization.md "Checkout"). Nothing on SQLite.

Revision ID: 0008_checkout_function
Revises: 0007_order_item_timestamps
Create Date: 2026-12-05
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0008_checkout_function'
down_revision = '0007_order_item_timestamps'
branch_labels = None
depends_on = None


# Each statement of a PL/pgSQL function (VOLATILE, READ COMMITTED) reads a snapshot taken when it
# starts, so the UPDATE of the products, after the statement that locked them, sees them as they
# are now (the deadlock that a lock and an update in one statement risk cannot happen here).
# Locks in the same order as every other path: the Idempotency-Key, the cart, the products by id.
PLACE_ORDER = r"""
CREATE OR REPLACE FUNCTION place_order(
    p_user_id integer,
    p_address text,
    p_method text,
    p_cost numeric,
    p_route json,
    p_now timestamptz,
    p_key_id integer,
    p_key_token text
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_cart integer;
    v_ids integer[];
    v_quantities integer[];
    v_short jsonb;
    v_order integer;
    v_body jsonb;
    v_stamp text := to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
BEGIN
    IF p_key_id IS NOT NULL THEN
        PERFORM 1 FROM idempotency_keys
        WHERE id = p_key_id AND claim_token = p_key_token AND state = 'in_progress'
        FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('outcome', 'taken_over');
        END IF;
    END IF;

    -- The cart first: a second checkout of it waits here, then finds it empty.
    SELECT id INTO v_cart FROM shopping_carts WHERE user_id = p_user_id FOR NO KEY UPDATE;
    IF v_cart IS NULL THEN
        RETURN jsonb_build_object('outcome', 'empty');
    END IF;

    -- A block of its own: a short line undoes what it did (the cart's lines come back).
    BEGIN
        -- The lines are taken at once: an edit or removal of a line racing this checkout
        -- either happened before (and counts) or finds the line gone.
        WITH lines AS (
            DELETE FROM cart_items WHERE cart_id = v_cart RETURNING product_id, quantity
        )
        SELECT array_agg(product_id ORDER BY product_id), array_agg(quantity ORDER BY product_id)
        INTO v_ids, v_quantities
        FROM lines;
        IF v_ids IS NULL THEN
            RETURN jsonb_build_object('outcome', 'empty');
        END IF;

        -- Their products, in id order (NO KEY: adding one to a cart, a foreign-key check, need
        -- not wait).
        PERFORM 1 FROM products WHERE id = ANY (v_ids) ORDER BY id FOR NO KEY UPDATE;

        SELECT jsonb_agg(
                   jsonb_build_object(
                       'product_id', wanted.product_id,
                       'name', products.name,
                       'requested', wanted.quantity,
                       'available', coalesce(products.stock_quantity, 0)
                   ) ORDER BY wanted.product_id)
        INTO v_short
        FROM unnest(v_ids, v_quantities) AS wanted (product_id, quantity)
        LEFT JOIN products ON products.id = wanted.product_id
        WHERE products.id IS NULL OR products.stock_quantity < wanted.quantity;
        IF v_short IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'EC409';
        END IF;

        WITH wanted AS (
            SELECT * FROM unnest(v_ids, v_quantities) AS wanted (product_id, quantity)
        ),
        taken AS (
            UPDATE products
            SET stock_quantity = products.stock_quantity - wanted.quantity
            FROM wanted
            WHERE products.id = wanted.product_id
            RETURNING products.id, products.name, products.price, wanted.quantity
        ),
        placed AS (
            INSERT INTO orders (user_id, order_status, total_amount, shipping_address,
                                shipping_method, shipping_cost, shipping_route, created_at,
                                updated_at)
            SELECT p_user_id, 'pending', sum(price * quantity) + p_cost, p_address, p_method,
                   p_cost, p_route, p_now, p_now
            FROM taken
            RETURNING id
        ),
        items AS (
            INSERT INTO order_items (order_id, product_id, product_name, quantity, price,
                                     created_at, updated_at)
            SELECT placed.id, taken.id, taken.name, taken.quantity, taken.price, p_now, p_now
            FROM placed CROSS JOIN taken
        ),
        event AS (
            INSERT INTO order_events (order_id, from_status, to_status, actor_id, note,
                                      created_at)
            SELECT id, NULL, 'pending', p_user_id, 'placed', p_now FROM placed
        ),
        counted AS (
            UPDATE users SET orders_count = orders_count + 1, updated_at = p_now
            WHERE id = p_user_id
        )
        SELECT placed.id INTO v_order FROM placed;
    EXCEPTION WHEN SQLSTATE 'EC409' THEN
        RETURN jsonb_build_object('outcome', 'short', 'products', v_short);
    END;

    -- The answer, as OrderSchema dumps it (a test compares the two): money as strings with two
    -- decimals, times in UTC with a Z.
    SELECT jsonb_build_object(
               'id', orders.id,
               'user_id', orders.user_id,
               'order_status', orders.order_status,
               'total_amount', orders.total_amount::text,
               'shipping_address', orders.shipping_address,
               'shipping_method', orders.shipping_method,
               'shipping_cost', orders.shipping_cost::text,
               'shipping_route', orders.shipping_route::jsonb,
               'items', (
                   SELECT jsonb_agg(
                              jsonb_build_object(
                                  'product_id', order_items.product_id,
                                  'product_name', order_items.product_name,
                                  'quantity', order_items.quantity,
                                  'price', order_items.price::text,
                                  'created_at', v_stamp,
                                  'updated_at', v_stamp
                              ) ORDER BY order_items.product_id)
                   FROM order_items WHERE order_items.order_id = orders.id
               ),
               'created_at', v_stamp,
               'updated_at', v_stamp
           )
    INTO v_body
    FROM orders WHERE orders.id = v_order;

    IF p_key_id IS NOT NULL THEN
        UPDATE idempotency_keys
        SET state = 'completed', response_status = 201,
            response_content_type = 'application/json',
            response_body = convert_to(v_body::text, 'UTF8'), completed_at = p_now
        WHERE id = p_key_id;
    END IF;
    RETURN jsonb_build_object('outcome', 'placed', 'order', v_body);
END
$$;
"""


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PLACE_ORDER)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            'DROP FUNCTION IF EXISTS place_order(integer, text, text, numeric, json, timestamptz, '
            'integer, text)'
        )
