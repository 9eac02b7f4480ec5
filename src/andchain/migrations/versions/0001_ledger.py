"""Ledger: accounts with cached balances, immutable transfers, two-phase state; API idempotency keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from andchain.db import AmountType

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", Id64, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("flags", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metadata", sa.Text, nullable=True),
        sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("debits_pending", AmountType(), nullable=False),
        sa.Column("debits_posted", AmountType(), nullable=False),
        sa.Column("credits_pending", AmountType(), nullable=False),
        sa.Column("credits_posted", AmountType(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_accounts"),
        sa.UniqueConstraint("name", name="uq_ledger_accounts_name"),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("seq", Id64, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("debit_account_id", Id64, nullable=False),
        sa.Column("credit_account_id", Id64, nullable=False),
        sa.Column("amount", AmountType(), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("pending_id", sa.String(128), nullable=True),
        sa.Column("timeout_s", sa.Integer, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("memo", sa.String(256), nullable=False),
        sa.Column("metadata", sa.Text, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ledger_transfers"),
        sa.UniqueConstraint("id", name="uq_ledger_transfers_id"),
        sa.ForeignKeyConstraint(
            ["debit_account_id"], ["ledger_accounts.id"], name="fk_ledger_transfers_debit_account_id_ledger_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id"], ["ledger_accounts.id"], name="fk_ledger_transfers_credit_account_id_ledger_accounts"
        ),
    )
    op.create_index("ix_ledger_transfers_debit", "ledger_transfers", ["debit_account_id", "seq"])
    op.create_index("ix_ledger_transfers_credit", "ledger_transfers", ["credit_account_id", "seq"])
    op.create_index("ix_ledger_transfers_pending_id", "ledger_transfers", ["pending_id"])
    op.create_table(
        "ledger_pending",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_pending"),
        sa.ForeignKeyConstraint(["id"], ["ledger_transfers.id"], name="fk_ledger_pending_id_ledger_transfers"),
    )
    op.create_index("ix_ledger_pending_status_expires", "ledger_pending", ["status", "expires_at_us"])
    op.create_table(
        "api_idempotency_keys",
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("response_body", sa.Text, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_api_idempotency_keys"),
    )


def downgrade() -> None:
    op.drop_table("api_idempotency_keys")
    op.drop_index("ix_ledger_pending_status_expires", table_name="ledger_pending")
    op.drop_table("ledger_pending")
    op.drop_index("ix_ledger_transfers_pending_id", table_name="ledger_transfers")
    op.drop_index("ix_ledger_transfers_credit", table_name="ledger_transfers")
    op.drop_index("ix_ledger_transfers_debit", table_name="ledger_transfers")
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
