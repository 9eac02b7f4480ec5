"""The clients' orders on the desk's book, and each book's version.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("instrument", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("tif", sa.String(4), nullable=False),
        sa.Column("post_only", sa.Boolean, nullable=False),
        sa.Column("route", sa.Boolean, nullable=False),
        sa.Column("price", sa.String(48), nullable=True),
        sa.Column("quantity", sa.String(48), nullable=False),
        sa.Column("filled", sa.String(48), nullable=False),
        sa.Column("cost", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("priority", sa.BigInteger, nullable=False),
        sa.Column("hold_seq", sa.Integer, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_desk_orders"),
        sa.UniqueConstraint("client_id", "client_order_id", name="uq_desk_orders_client_order"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_desk_orders_book", "desk_orders", ["instrument", "status", "priority"])
    op.create_index("ix_desk_orders_client", "desk_orders", ["client_id", "created_at_us"])
    op.create_table(
        "desk_books",
        sa.Column("instrument", sa.String(32), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("instrument", name="pk_desk_books"),
    )


def downgrade() -> None:
    op.drop_table("desk_books")
    op.drop_table("desk_orders")
