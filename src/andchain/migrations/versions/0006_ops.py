"""Operations: versions, request digests, the transactions journal, leases, worker heartbeats;
listener deliveries get a generation (an event re-delivered after a reorg is booked anew).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ops_operations") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
    with op.batch_alter_table("listener_deliveries") as batch:
        batch.add_column(sa.Column("generation", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "ops_transactions",
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(66), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("op_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("sender", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("network", "hash", name="pk_ops_transactions"),
    )
    op.create_index("ix_ops_transactions_nonce", "ops_transactions", ["chain_id", "sender", "nonce"])
    op.create_index("ix_ops_transactions_status", "ops_transactions", ["network", "status", "block_number"])
    op.create_index("ix_ops_transactions_op", "ops_transactions", ["op_id"])
    op.create_table(
        "ops_leases",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("until_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_ops_leases"),
    )
    op.create_table(
        "ops_workers",
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("started_at_us", sa.BigInteger, nullable=False),
        sa.Column("beat_at_us", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_ops_workers"),
    )


def downgrade() -> None:
    op.drop_table("ops_workers")
    op.drop_table("ops_leases")
    op.drop_index("ix_ops_transactions_op", "ops_transactions")
    op.drop_index("ix_ops_transactions_status", "ops_transactions")
    op.drop_index("ix_ops_transactions_nonce", "ops_transactions")
    op.drop_table("ops_transactions")
    with op.batch_alter_table("listener_deliveries") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("ops_operations") as batch:
        batch.drop_column("request_sha256")
        batch.drop_column("version")
