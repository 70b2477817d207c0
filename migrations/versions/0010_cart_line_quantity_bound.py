"""A cart line holds at most 10,000 units, checked by the database (CHECK), as the API has always
refused more: an add-to-cart is one statement that commits by itself, so the bound is enforced by
that statement, not by rolling it back afterwards. Lines above the bound (none can have been made
through the API) are brought down to it first.

Revision ID: 0010_cart_line_quantity_bound
Revises: 0009_checkout_batches
Create Date: 2026-12-06
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0010_cart_line_quantity_bound'
down_revision = '0009_checkout_batches'
branch_labels = None
depends_on = None

BOUND = 'quantity <= 10000'  # ecommerce/carts/models.py MAX_LINE_QUANTITY


def upgrade():
    op.execute('UPDATE cart_items SET quantity = 10000 WHERE quantity > 10000')
    if op.get_bind().dialect.name == 'postgresql':
        # NOT VALID, then VALIDATE in a transaction of its own: the ADD locks the table only
        # until its transaction commits (a moment: it scans nothing), and the scan of the
        # existing lines runs under a lock that lets carts be read and changed meanwhile.
        op.execute(
            f'ALTER TABLE cart_items ADD CONSTRAINT ck_cart_items_quantity_at_most_10000 '
            f'CHECK ({BOUND}) NOT VALID'
        )
        with op.get_context().autocommit_block():
            op.execute('ALTER TABLE cart_items VALIDATE CONSTRAINT ck_cart_items_quantity_at_most_10000')
        return
    with op.batch_alter_table('cart_items', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_cart_items_quantity_at_most_10000'), BOUND)


def downgrade():
    with op.batch_alter_table('cart_items', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_cart_items_quantity_at_most_10000'), type_='check')
