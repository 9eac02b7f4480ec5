"""Moves between networks: network controls (pause, rate limits), client-owned addresses, challenges.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_network_controls",
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("outbound_level", sa.Text, nullable=False),
        sa.Column("inbound_level", sa.Text, nullable=False),
        sa.Column("levels_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("network", name="pk_token_network_controls"),
    )
    op.create_table(
        "token_client_addresses",
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("allowlisted", sa.Boolean, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("registered_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("network", "address", name="pk_token_client_addresses"),
    )
    op.create_index("ix_token_client_addresses_client", "token_client_addresses", ["client_id", "network"])
    op.create_table(
        "token_challenges",
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_token_challenges"),
    )


def downgrade() -> None:
    op.drop_table("token_challenges")
    op.drop_index("ix_token_client_addresses_client", table_name="token_client_addresses")
    op.drop_table("token_client_addresses")
    op.drop_table("token_network_controls")
