"""Order lines get created_at and updated_at like the other tables whose rows change. Existing lines take their
order's created_at for both: a line is written with its order and never changed after.

Revision ID: 0007_order_item_timestamps
Revises: 0006_shipping_network
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_order_item_timestamps'
down_revision = '0006_shipping_network'
branch_labels = None
depends_on = None


def upgrade():
    # Added nullable first and filled from the order: SQLite cannot ADD COLUMN with a
    # CURRENT_TIMESTAMP default, and the lines of old orders should not all read "today".
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        'UPDATE order_items SET '
        'created_at = (SELECT orders.created_at FROM orders WHERE orders.id = order_items.order_id), '
        'updated_at = (SELECT orders.created_at FROM orders WHERE orders.id = order_items.order_id)'
    )
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.alter_column('created_at', existing_type=sa.DateTime(timezone=True), nullable=False,
                              server_default=sa.text('CURRENT_TIMESTAMP'))
        batch_op.alter_column('updated_at', existing_type=sa.DateTime(timezone=True), nullable=False,
                              server_default=sa.text('CURRENT_TIMESTAMP'))


def downgrade():
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
        batch_op.drop_column('created_at')
