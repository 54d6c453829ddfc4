"""Drop the one-column indexes that 0004's (account, customer) and (account, parent) indexes cover:
stripe_invoice.customer_id, stripe_invoice_line.invoice_id, stripe_subscription.customer_id and
stripe_subscription_item.subscription_id.

Every query on these columns also names the account, so the one-column indexes only cost: each is one more
write for every row a sync stores, and a first night stores millions (docs/stripe.md, "Storage of a full
sync's pages"). Each query a night runs on them was EXPLAINed on a synced 20,000-customer account: on SQLite
every one plans the same before and after (the two-column indexes, as 0004 made them); on PostgreSQL, with
statistics, every one looks its rows up through the two-column index by both columns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:20:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stripe_invoice', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_invoice_customer_id')

    with op.batch_alter_table('stripe_invoice_line', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_invoice_line_invoice_id')

    with op.batch_alter_table('stripe_subscription', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_subscription_customer_id')

    with op.batch_alter_table('stripe_subscription_item', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_subscription_item_subscription_id')


def downgrade() -> None:
    with op.batch_alter_table('stripe_subscription_item', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_subscription_item_subscription_id', ['subscription_id'], unique=False)

    with op.batch_alter_table('stripe_subscription', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_subscription_customer_id', ['customer_id'], unique=False)

    with op.batch_alter_table('stripe_invoice_line', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_invoice_line_invoice_id', ['invoice_id'], unique=False)

    with op.batch_alter_table('stripe_invoice', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_invoice_customer_id', ['customer_id'], unique=False)
