"""The trading desk's states (active, reducing, halted), for the desk and per instrument.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_states",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("changed_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_desk_states"),
    )


def downgrade() -> None:
    op.drop_table("desk_states")
