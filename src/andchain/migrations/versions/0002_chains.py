"""Chains: contract deployments, persisted nonces, listener checkpoints and deliveries.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_deployments",
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("contract", sa.String(64), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("source_sha256", sa.String(64), nullable=True),
        sa.Column("deployed_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "name", name="pk_chain_deployments"),
    )
    op.create_table(
        "chain_nonces",
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("next_nonce", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "address", name="pk_chain_nonces"),
    )
    op.create_table(
        "listener_checkpoints",
        sa.Column("listener", sa.String(100), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("listener", "chain_id", name="pk_listener_checkpoints"),
    )
    op.create_table(
        "listener_blocks",
        sa.Column("listener", sa.String(100), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.PrimaryKeyConstraint("listener", "chain_id", "block_number", name="pk_listener_blocks"),
    )
    op.create_table(
        "listener_deliveries",
        sa.Column("listener", sa.String(100), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("topics", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("listener", "chain_id", "tx_hash", "log_index", name="pk_listener_deliveries"),
    )
    op.create_index("ix_listener_deliveries_block", "listener_deliveries", ["listener", "chain_id", "block_number"])


def downgrade() -> None:
    op.drop_index("ix_listener_deliveries_block", table_name="listener_deliveries")
    op.drop_table("listener_deliveries")
    op.drop_table("listener_blocks")
    op.drop_table("listener_checkpoints")
    op.drop_table("chain_nonces")
    op.drop_table("chain_deployments")
