"""A customer's next present at-risk verdict kept beside its current one (worker/risk.py judges ahead when the
current one ends within two days, from the records it has read anyway: docs/at-risk.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('risk_verdict', schema=None) as batch_op:
        batch_op.add_column(sa.Column('then_basis', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('then_until', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('then_assessment', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('risk_verdict', schema=None) as batch_op:
        batch_op.drop_column('then_assessment')
        batch_op.drop_column('then_until')
        batch_op.drop_column('then_basis')
