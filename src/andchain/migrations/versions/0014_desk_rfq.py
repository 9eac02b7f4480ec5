"""The desk's quotes, fills and client tiers.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_quotes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("instrument", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.String(48), nullable=False),
        sa.Column("price", sa.String(48), nullable=False),
        sa.Column("notional_minor", sa.BigInteger, nullable=False),
        sa.Column("mid", sa.String(48), nullable=False),
        sa.Column("spread_bps", sa.String(16), nullable=False),
        sa.Column("pay_with", sa.String(16), nullable=False),
        sa.Column("network", sa.String(64), nullable=True),
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("decided_at_us", sa.BigInteger, nullable=True),
        sa.Column("trade_id", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_desk_quotes"),
    )
    op.create_index("ix_desk_quotes_status", "desk_quotes", ["status", "expires_at_us"])
    op.create_index("ix_desk_quotes_client", "desk_quotes", ["client_id", "created_at_us"])
    op.create_table(
        "desk_fills",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(120), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("trade_id", sa.String(40), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("instrument", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("place", sa.String(80), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.String(48), nullable=False),
        sa.Column("price", sa.String(48), nullable=False),
        sa.Column("fee", sa.String(48), nullable=False),
        sa.Column("notional_minor", sa.BigInteger, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_desk_fills"),
        sa.UniqueConstraint("ref", name="uq_desk_fills_ref"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_desk_fills_client", "desk_fills", ["client_id", "at_us"])
    op.create_index("ix_desk_fills_at", "desk_fills", ["at_us"])
    op.create_table(
        "desk_client_tiers",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column("set_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("client_id", name="pk_desk_client_tiers"),
    )


def downgrade() -> None:
    op.drop_table("desk_client_tiers")
    op.drop_table("desk_fills")
    op.drop_table("desk_quotes")
