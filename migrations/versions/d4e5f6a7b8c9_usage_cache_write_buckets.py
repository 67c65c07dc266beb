"""usage cache write buckets

Revision ID: d4e5f6a7b8c9
Revises: a3c1d2e4f5b6
Create Date: 2026-12-02 00:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4e5f6a7b8c9'
down_revision = 'a3c1d2e4f5b6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cache_write_tokens', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('cache_write_1h_tokens', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_column('cache_write_1h_tokens')
        batch_op.drop_column('cache_write_tokens')
