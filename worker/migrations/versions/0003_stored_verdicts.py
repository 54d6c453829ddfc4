"""stored verdicts: risk_verdict, backtest_verdict and verdict_epoch (worker/risk_store.py) replace backtest_point

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table('backtest_point')  # per-date flags never forgotten when history changed: spans replace them
    op.create_table('backtest_verdict',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('basis', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mrr', sa.JSON(), nullable=False),
    sa.Column('spans', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'customer_id')
    )
    op.create_table('verdict_epoch',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id')
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
    op.drop_table('verdict_epoch')
    op.drop_table('backtest_verdict')
    op.create_table('backtest_point',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('thresholds', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'day', 'thresholds')
    )
