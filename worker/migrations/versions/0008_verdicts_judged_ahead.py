"""A customer's next present at-risk verdict kept beside its current one (worker/risk.py judges ahead when the
current one ends within two days, from the records it has read anyway: docs/at-risk.md); ix_ledger_line_customer
gains mrr_end, so who pays over a span is read from the index alone (built again once here: seconds at 100,000
customers).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('risk_verdict', schema=None) as batch_op:
        batch_op.add_column(sa.Column('then_basis', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('then_until', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('then_assessment', sa.JSON(), nullable=True))
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_line_customer')
        batch_op.create_index('ix_ledger_line_customer', ['account_id', 'customer_id', 'klass', 'counted', 'period_start', 'monthly_reporting', 'mrr_end'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_line_customer')
        batch_op.create_index('ix_ledger_line_customer', ['account_id', 'customer_id', 'klass', 'counted', 'period_start', 'monthly_reporting'], unique=False)
    with op.batch_alter_table('risk_verdict', schema=None) as batch_op:
        batch_op.drop_column('then_assessment')
        batch_op.drop_column('then_until')
        batch_op.drop_column('then_basis')
