"""stored verdicts: risk_verdict and backtest_verdict (worker/risk_store.py)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 15:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('backtest_verdict',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('basis', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('spans', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'customer_id')
    )
    op.create_table('risk_verdict',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('basis', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('judged_at', sa.BigInteger(), nullable=False),
    sa.Column('valid_until', sa.BigInteger(), nullable=False),
    sa.Column('assessment', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'customer_id')
    )


def downgrade() -> None:
    op.drop_table('risk_verdict')
    op.drop_table('backtest_verdict')
