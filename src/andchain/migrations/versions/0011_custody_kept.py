"""Kept custody: accounts whose keys are kept here, their transfers, webhook deliveries, the book of
assets not held on a node (BTC), deposit checkpoints. Used by the reference custodian in its own
database and by the `self` custody adapter in the bank's.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "custody_kept_accounts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("key_label", sa.String(100), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_custody_kept_accounts"),
        sa.UniqueConstraint("idempotency_key", name="uq_custody_kept_accounts_idempotency_key"),
        sa.UniqueConstraint("address", name="uq_custody_kept_accounts_address"),
    )
    op.create_table(
        "custody_kept_transfers",
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("request_sha256", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_account", sa.String(40), nullable=True),
        sa.Column("destination_account", sa.String(40), nullable=True),
        sa.Column("destination_address", sa.String(100), nullable=True),
        sa.Column("destination_tag", sa.String(100), nullable=True),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.String(80), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("travel_rule", sa.Text, nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("fuel_tx_hash", sa.String(66), nullable=True),
        sa.Column("tx_hash", sa.String(100), nullable=True),
        sa.Column("raw_tx", sa.Text, nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("log_index", sa.Integer, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_custody_kept_transfers"),
        sa.UniqueConstraint("id", name="uq_custody_kept_transfers_id"),
        sa.UniqueConstraint("idempotency_key", name="uq_custody_kept_transfers_idempotency_key"),
    )
    op.create_index("ix_custody_kept_transfers_state", "custody_kept_transfers", ["state"])
    op.create_table(
        "custody_kept_deliveries",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("transfer_id", sa.String(40), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at_us", sa.BigInteger, nullable=False),
        sa.Column("delivered_at_us", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_custody_kept_deliveries"),
    )
    op.create_index(
        "ix_custody_kept_deliveries_due", "custody_kept_deliveries", ["delivered_at_us", "next_attempt_at_us"]
    )
    op.create_table(
        "custody_kept_book",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("transfer_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.String(80), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_custody_kept_book"),
        sa.UniqueConstraint("transfer_id", "account_id", name="uq_custody_kept_book_transfer_id_account_id"),
    )
    op.create_index("ix_custody_kept_book_account", "custody_kept_book", ["account_id", "asset", "network"])
    op.create_table(
        "custody_kept_checkpoints",
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("network", name="pk_custody_kept_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("custody_kept_checkpoints")
    op.drop_index("ix_custody_kept_book_account", table_name="custody_kept_book")
    op.drop_table("custody_kept_book")
    op.drop_index("ix_custody_kept_deliveries_due", table_name="custody_kept_deliveries")
    op.drop_table("custody_kept_deliveries")
    op.drop_index("ix_custody_kept_transfers_state", table_name="custody_kept_transfers")
    op.drop_table("custody_kept_transfers")
    op.drop_table("custody_kept_accounts")
