"""The stored invoice line's quantity and discounts on each ledger line.

The at-risk signals and the backtest read them for every recurring line; joined back to stripe_invoice_line by
id, each line cost a random read of that wide table (every customer's lines at 100,000 customers: 12.6-15.1 s
joined, 8.1-9.3 s from the ledger alone). Existing rows get NULL and 0 here: LEDGER_FORMAT 2
(worker/rebuild.py) makes the next rebuild a full one, which writes them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 07:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quantity', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('discount_total', sa.BigInteger(), nullable=False, server_default='0'))
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.alter_column('discount_total', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.drop_column('discount_total')
        batch_op.drop_column('quantity')
