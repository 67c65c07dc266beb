"""stripe credits, refunds and attention; optimistic subscription sync

Revision ID: c3a91f7d2e68
Revises: 5db987a6bd10
Create Date: 2026-11-23 10:12:31.418205

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3a91f7d2e68'
down_revision = '5db987a6bd10'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stripe_credits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('payment', sa.String(length=255), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('credited_micros', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_stripe_credits_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_credits')),
    sa.UniqueConstraint('source', 'payment', name=op.f('uq_stripe_credits_source'))
    )
    with op.batch_alter_table('stripe_credits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_credits_payment'), ['payment'], unique=False)

    op.create_table('stripe_refunds',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('charge', sa.String(length=255), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('debited_micros', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_stripe_refunds_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_refunds'))
    )
    with op.batch_alter_table('stripe_refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_refunds_charge'), ['charge'], unique=False)

    op.create_table('billing_attention',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('stripe_object', sa.String(length=255), nullable=True),
    sa.Column('event_id', sa.String(length=255), nullable=True),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_billing_attention_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_attention')),
    sa.UniqueConstraint('ref', name=op.f('uq_billing_attention_ref'))
    )

    # Subscription state now comes from Stripe itself, under an optimistic sync counter; the
    # time of the last event applied is no longer kept.
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subscription_sync', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('period_credits_micros', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.drop_column('subscription_event_at')


def downgrade():
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subscription_event_at', sa.BigInteger(), nullable=True))
        batch_op.drop_column('period_credits_micros')
        batch_op.drop_column('subscription_sync')

    op.drop_table('billing_attention')
    with op.batch_alter_table('stripe_refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_refunds_charge'))

    op.drop_table('stripe_refunds')
    with op.batch_alter_table('stripe_credits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_credits_payment'))

    op.drop_table('stripe_credits')
