"""Order emails (the outbox of the mail jobs) and payment refunds.

Revision ID: 0003_order_emails_refunds
Revises: 0002_order_events_idempotency
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_order_emails_refunds'
down_revision = '0002_order_events_idempotency'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('order_emails',
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('order_confirmation', 'order_cancelled', name='order_email_kind', native_enum=False, create_constraint=True, length=26), nullable=False),
    sa.Column('status', sa.Enum('pending', 'sending', 'sent', name='order_email_status', native_enum=False, create_constraint=True, length=15), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_emails_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_emails')),
    sa.UniqueConstraint('order_id', 'kind', name='uq_order_emails_order_id_kind')
    )
    with op.batch_alter_table('order_emails', schema=None) as batch_op:
        batch_op.create_index('ix_order_emails_status_updated_at', ['status', 'updated_at'], unique=False)

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refund_id', sa.String(length=128), nullable=True))
        batch_op.create_index('ix_payments_status_updated_at', ['status', 'updated_at'], unique=False)



def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_status_updated_at')
        batch_op.drop_column('refund_id')

    with op.batch_alter_table('order_emails', schema=None) as batch_op:
        batch_op.drop_index('ix_order_emails_status_updated_at')

    op.drop_table('order_emails')
