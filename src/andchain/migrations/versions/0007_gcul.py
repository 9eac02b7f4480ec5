"""Non-EVM networks: signed submissions kept for resubmission.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_submissions",
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(200), nullable=False),
        sa.Column("nonce", sa.BigInteger, nullable=False),
        sa.Column("signed_tx", sa.LargeBinary, nullable=False),
        sa.Column("tx_id", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("submitted_at_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("network", "idempotency_key", name="pk_network_submissions"),
    )


def downgrade() -> None:
    op.drop_table("network_submissions")
