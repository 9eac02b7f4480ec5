"""The bank's side of custody: accounts at custodians, reported transfers, polling cursors, webhooks.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "custody_accounts",
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("custodian", "owner", name="pk_custody_accounts"),
    )
    op.create_index("ux_custody_accounts_account", "custody_accounts", ["custodian", "account_id"], unique=True)
    op.create_table(
        "custody_transfers",
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("transfer_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("op_id", sa.String(40), nullable=True),
        sa.Column("incoming", sa.Integer, nullable=False),
        sa.Column("account_id", sa.String(200), nullable=True),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.String(80), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("raw_status", sa.String(100), nullable=False),
        sa.Column("tx_hash", sa.String(100), nullable=True),
        sa.Column("booked", sa.String(200), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("custodian", "transfer_id", name="pk_custody_transfers"),
    )
    op.create_index("ix_custody_transfers_op", "custody_transfers", ["op_id"])
    op.create_table(
        "custody_cursors",
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("cursor", sa.Text, nullable=True),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("custodian", name="pk_custody_cursors"),
    )
    op.create_table(
        "custody_webhooks",
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("transfer_id", sa.String(200), nullable=True),
        sa.Column("received_at_us", sa.BigInteger, nullable=False),
        sa.Column("applied", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("custodian", "event_id", name="pk_custody_webhooks"),
    )


def downgrade() -> None:
    op.drop_table("custody_webhooks")
    op.drop_table("custody_cursors")
    op.drop_index("ix_custody_transfers_op", table_name="custody_transfers")
    op.drop_table("custody_transfers")
    op.drop_index("ux_custody_accounts_account", table_name="custody_accounts")
    op.drop_table("custody_accounts")
