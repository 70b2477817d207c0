"""Order events carry the payment's status (the live order stream's snapshot), and are read by
order and id (a stream's replay after Last-Event-ID).

Revision ID: 0004_order_event_payment_status
Revises: 0003_order_emails_refunds
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_order_event_payment_status'
down_revision = '0003_order_emails_refunds'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_status', sa.Enum('pending', 'succeeded', 'failed', 'refunded', name='order_event_payment_status', native_enum=False, create_constraint=True, length=17), nullable=True))
        batch_op.drop_index('ix_order_events_order_id')
        batch_op.create_index('ix_order_events_order_id_id', ['order_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.drop_index('ix_order_events_order_id_id')
        batch_op.create_index('ix_order_events_order_id', ['order_id'], unique=False)
        # the column's CHECK first: SQLite's batch copy would otherwise keep it on a missing column
        batch_op.drop_constraint(op.f('ck_order_events_order_event_payment_status'), type_='check')
        batch_op.drop_column('payment_status')
