"""Events: the event log, webhook subscriptions, their deliveries and attempts, standing reconcile findings.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _serial() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _serial(), nullable=False, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_client", "events", ["client_id", "id"])
    op.create_index("ix_events_type", "events", ["type", "id"])
    op.create_table(
        "events_webhooks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("types", sa.Text, nullable=True),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("after_event_id", sa.BigInteger, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events_webhooks"),
    )
    op.create_index("ix_events_webhooks_client", "events_webhooks", ["client_id"])
    op.create_table(
        "events_deliveries",
        sa.Column("id", _serial(), nullable=False, autoincrement=True),
        sa.Column("webhook_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at_us", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events_deliveries"),
        sa.UniqueConstraint("webhook_id", "event_id", name="uq_events_deliveries_webhook_id_event_id"),
    )
    op.create_index("ix_events_deliveries_due", "events_deliveries", ["status", "next_attempt_at_us"])
    op.create_table(
        "events_delivery_attempts",
        sa.Column("seq", _serial(), nullable=False, autoincrement=True),
        sa.Column("delivery_id", sa.BigInteger, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=True),
        sa.Column("owner", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_events_delivery_attempts"),
    )
    op.create_index("ix_events_delivery_attempts_delivery", "events_delivery_attempts", ["delivery_id", "seq"])
    op.create_table(
        "events_standing",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("since_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_events_standing"),
    )


def downgrade() -> None:
    op.drop_table("events_standing")
    op.drop_index("ix_events_delivery_attempts_delivery", "events_delivery_attempts")
    op.drop_table("events_delivery_attempts")
    op.drop_index("ix_events_deliveries_due", "events_deliveries")
    op.drop_table("events_deliveries")
    op.drop_index("ix_events_webhooks_client", "events_webhooks")
    op.drop_table("events_webhooks")
    op.drop_index("ix_events_type", "events")
    op.drop_index("ix_events_client", "events")
    op.drop_table("events")
