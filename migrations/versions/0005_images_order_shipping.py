"""Product pictures (files in the media storage, named by their content), and the shipping an
order was placed with (method, cost and route: a snapshot of the quote).

Revision ID: 0005_images_order_shipping
Revises: 0004_order_event_payment_status
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_images_order_shipping'
down_revision = '0004_order_event_payment_status'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('product_images',
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('thumbnail_name', sa.String(length=255), nullable=False),
    sa.Column('thumbnail_width', sa.Integer(), nullable=False),
    sa.Column('thumbnail_height', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('position >= 0', name=op.f('ck_product_images_position_non_negative')),
    sa.CheckConstraint('width > 0 AND height > 0', name=op.f('ck_product_images_size_positive')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_product_images_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_images'))
    )
    with op.batch_alter_table('product_images', schema=None) as batch_op:
        batch_op.create_index('ix_product_images_file_name', ['file_name'], unique=False)
        batch_op.create_index('ix_product_images_product_id_position', ['product_id', 'position'], unique=False)
        batch_op.create_index('ix_product_images_thumbnail_name', ['thumbnail_name'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shipping_method', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('shipping_cost', sa.Numeric(precision=12, scale=2), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('shipping_route', sa.JSON(), nullable=True))
        batch_op.create_check_constraint(op.f('ck_orders_shipping_cost_non_negative'), 'shipping_cost >= 0')



def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_orders_shipping_cost_non_negative'), type_='check')
        batch_op.drop_column('shipping_route')
        batch_op.drop_column('shipping_cost')
        batch_op.drop_column('shipping_method')

    with op.batch_alter_table('product_images', schema=None) as batch_op:
        batch_op.drop_index('ix_product_images_thumbnail_name')
        batch_op.drop_index('ix_product_images_product_id_position')
        batch_op.drop_index('ix_product_images_file_name')

    op.drop_table('product_images')
