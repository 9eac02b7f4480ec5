"""Ledger: failed transfer ids, persisted assets.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_failed_transfers",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("result", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_failed_transfers"),
    )
    op.create_table(
        "ledger_assets",
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("scale", sa.Integer, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_ledger_assets"),
    )


def downgrade() -> None:
    op.drop_table("ledger_assets")
    op.drop_table("ledger_failed_transfers")
