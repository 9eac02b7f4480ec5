"""Compliance: parties and KYC, the sanctions list, activity, alerts and cases, lawful orders, travel-rule
records, ISO 20022 messages and payments, the hash-chained audit log; ledger accounts can be frozen.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

from andchain.db import AmountType

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _append_only() -> None:
    """The audit log refuses UPDATE and DELETE on both engines: an edit needs the trigger dropped first,
    and `andchain audit verify` still finds it by its hashes."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_table(
        "compliance_activity",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("cash", sa.Boolean(), nullable=False),
        sa.Column("amount_usd_minor", AmountType(), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compliance_activity"),
    )
    op.create_index("ix_compliance_activity_client", "compliance_activity", ["client_id", "at_us"], unique=False)
    op.create_table(
        "compliance_alert_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=120), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compliance_alert_history"),
    )
    op.create_index("ix_compliance_alert_history_alert", "compliance_alert_history", ["alert_id", "id"], unique=False)
    op.create_table(
        "compliance_alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("dedupe", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assignee", sa.String(length=120), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("opened_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compliance_alerts"),
        sa.UniqueConstraint("dedupe", name="uq_compliance_alerts_dedupe"),
    )
    op.create_index("ix_compliance_alerts_status", "compliance_alerts", ["status", "opened_at_us"], unique=False)
    op.create_table(
        "compliance_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=120), nullable=False),
        sa.Column("authority", sa.String(length=200), nullable=False),
        sa.Column("operation_id", sa.String(length=40), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=120), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compliance_orders"),
        sa.UniqueConstraint("kind", "client_id", "reference", name="uq_compliance_orders_ref"),
    )
    op.create_table(
        "compliance_parties",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("kyc_status", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("frozen_order", sa.String(length=120), nullable=True),
        sa.Column("screened_version", sa.Integer(), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name="pk_compliance_parties"),
    )
    op.create_table(
        "compliance_travel_rule",
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("amount_usd_minor", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ref", name="pk_compliance_travel_rule"),
    )
    op.create_table(
        "iso_messages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_iso_messages"),
        sa.UniqueConstraint("kind", "message_id", name="uq_iso_messages_id"),
    )
    op.create_table(
        "iso_payments",
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=64), nullable=True),
        sa.Column("uetr", sa.String(length=36), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transfer_id", sa.String(length=200), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ref", name="pk_iso_payments"),
    )
    op.create_index("ix_iso_payments_e2e", "iso_payments", ["end_to_end_id"], unique=False)
    op.create_index("ix_iso_payments_uetr", "iso_payments", ["uetr"], unique=False)
    op.create_table(
        "sanctions_entries",
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("programs", sa.Text(), nullable=False),
        sa.Column("aliases", sa.Text(), nullable=False),
        sa.Column("addresses", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_sanctions_entries"),
    )
    op.create_table(
        "sanctions_lists",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_format", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("loaded_at_us", sa.BigInteger(), nullable=False),
        sa.Column("loaded_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_sanctions_lists"),
    )
    # Both engines add a NOT NULL column with a default in place (no table rebuild).
    op.add_column("ledger_accounts", sa.Column("frozen", sa.Boolean(), server_default="0", nullable=False))
    _append_only()


def downgrade() -> None:
    op.drop_column("ledger_accounts", "frozen")
    op.drop_table("sanctions_lists")
    op.drop_table("sanctions_entries")
    op.drop_index("ix_iso_payments_uetr", table_name="iso_payments")
    op.drop_index("ix_iso_payments_e2e", table_name="iso_payments")
    op.drop_table("iso_payments")
    op.drop_table("iso_messages")
    op.drop_table("compliance_travel_rule")
    op.drop_table("compliance_parties")
    op.drop_table("compliance_orders")
    op.drop_index("ix_compliance_alerts_status", table_name="compliance_alerts")
    op.drop_table("compliance_alerts")
    op.drop_index("ix_compliance_alert_history_alert", table_name="compliance_alert_history")
    op.drop_table("compliance_alert_history")
    op.drop_index("ix_compliance_activity_client", table_name="compliance_activity")
    op.drop_table("compliance_activity")
    op.drop_table("audit_log")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
