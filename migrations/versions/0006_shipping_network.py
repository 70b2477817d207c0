"""The carrier network for shipping quotes: zones (some of them warehouses) and the directed legs
carriers offer between them, several per lane allowed, at a cost that may be negative (a rebate)
and in whole days.

Revision ID: 0006_shipping_network
Revises: 0005_images_order_shipping
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_shipping_network'
down_revision = '0005_images_order_shipping'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('shipping_zones',
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('is_warehouse', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shipping_zones')),
    sa.UniqueConstraint('code', name=op.f('uq_shipping_zones_code'))
    )
    op.create_table('shipping_legs',
    sa.Column('from_zone_id', sa.Integer(), nullable=False),
    sa.Column('to_zone_id', sa.Integer(), nullable=False),
    sa.Column('cost', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('days >= 1', name=op.f('ck_shipping_legs_days_positive')),
    sa.CheckConstraint('from_zone_id <> to_zone_id', name=op.f('ck_shipping_legs_not_a_loop')),
    sa.ForeignKeyConstraint(['from_zone_id'], ['shipping_zones.id'], name=op.f('fk_shipping_legs_from_zone_id_shipping_zones'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['to_zone_id'], ['shipping_zones.id'], name=op.f('fk_shipping_legs_to_zone_id_shipping_zones'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shipping_legs'))
    )
    with op.batch_alter_table('shipping_legs', schema=None) as batch_op:
        batch_op.create_index('ix_shipping_legs_from_zone_id', ['from_zone_id'], unique=False)
        batch_op.create_index('ix_shipping_legs_to_zone_id', ['to_zone_id'], unique=False)


def downgrade():
    with op.batch_alter_table('shipping_legs', schema=None) as batch_op:
        batch_op.drop_index('ix_shipping_legs_to_zone_id')
        batch_op.drop_index('ix_shipping_legs_from_zone_id')

    op.drop_table('shipping_legs')
    op.drop_table('shipping_zones')
