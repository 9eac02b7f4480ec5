"""Operations (outbox) with history; token clients, wallets and programmable payment rules.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ops_operations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("network", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at_us", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ops_operations"),
        sa.UniqueConstraint("idempotency_key", name="uq_ops_operations_idempotency_key"),
    )
    op.create_index("ix_ops_operations_due", "ops_operations", ["status", "next_attempt_at_us"])
    op.create_index("ix_ops_operations_kind", "ops_operations", ["kind", "created_at_us"])
    op.create_table(
        "ops_history",
        sa.Column("seq", Id64, primary_key=True, autoincrement=True),
        sa.Column("op_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ops_history"),
    )
    op.create_index("ix_ops_history_op", "ops_history", ["op_id", "seq"])
    op.create_table(
        "token_clients",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_token_clients"),
        sa.UniqueConstraint("name", name="uq_token_clients_name"),
    )
    op.create_table(
        "token_wallets",
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("key_label", sa.String(100), nullable=False),
        sa.Column("allowlisted", sa.Boolean, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("network", "address", name="pk_token_wallets"),
        sa.UniqueConstraint("client_id", "network", name="uq_token_wallets_client_id_network"),
    )
    op.create_table(
        "token_rules",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_run_at_us", sa.BigInteger, nullable=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_token_rules"),
    )
    op.create_index("ix_token_rules_due", "token_rules", ["status", "next_run_at_us"])


def downgrade() -> None:
    op.drop_index("ix_token_rules_due", table_name="token_rules")
    op.drop_table("token_rules")
    op.drop_table("token_wallets")
    op.drop_table("token_clients")
    op.drop_index("ix_ops_history_op", table_name="ops_history")
    op.drop_table("ops_history")
    op.drop_index("ix_ops_operations_kind", table_name="ops_operations")
    op.drop_index("ix_ops_operations_due", table_name="ops_operations")
    op.drop_table("ops_operations")
