"""Compliance's tables: parties and their KYC, the sanctions list, activity, alerts and their cases,
lawful orders, travel-rule records, ISO 20022 messages, and the hash-chained audit log."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from andchain.db import AmountType, metadata

# A client as a party of the bank's compliance: its KYC status and tier, and whether a lawful order
# froze it (the order's reference). One row per client, written when it is onboarded.
parties = Table(
    "compliance_parties",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("kyc_status", String(16), nullable=False),  # pending | approved | rejected | suspended
    Column("tier", String(32), nullable=False),
    Column("country", String(2), nullable=True),
    Column("frozen_order", String(120), nullable=True),  # the order that froze it, if frozen
    Column("screened_version", Integer, nullable=True),  # the list version its name was last screened on
    Column("updated_at_us", BigInteger, nullable=False),
)

# Every movement of value a party makes, in USD cents (exact, as text): what the tier limits and the
# monitoring rules count. Written in the transaction that records the movement.
activity = Table(
    "compliance_activity",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("flow", String(32), nullable=False),
    Column("direction", String(3), nullable=False),  # in | out
    Column("cash", Boolean, nullable=False),
    Column("amount_usd_minor", AmountType(), nullable=False),
    Column("ref", String(200), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Index("ix_compliance_activity_client", "client_id", "at_us"),
)

# A party's totals of one UTC day (days since 1970-01-01): what left it and what it moved in cash, in
# USD cents, kept with its activity rows under the party's lock. The tier limits and the cash rules
# read them in one look-up, where an aggregate over the day's rows grew with every movement.
party_days = Table(
    "compliance_party_days",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("out_usd_minor", AmountType(), nullable=False),
    Column("cash_usd_minor", AmountType(), nullable=False),
)

# The loaded versions of the sanctions list, and its entries as of the newest version.
sanctions_lists = Table(
    "sanctions_lists",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("source", Text, nullable=False),
    Column("source_format", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("entries", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("loaded_at_us", BigInteger, nullable=False),
    Column("loaded_by", String(120), nullable=False),
)

sanctions_entries = Table(
    "sanctions_entries",
    metadata,
    Column("uid", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("programs", Text, nullable=False),  # JSON list
    Column("aliases", Text, nullable=False),  # JSON list
    Column("addresses", Text, nullable=False),  # JSON list of [currency, address]
    Column("content_hash", String(64), nullable=False),
    Column("version", Integer, nullable=False),  # the version that added or last changed it
)

# Alerts: a sanctions hit, a monitoring rule, a travel-rule refusal. A case queue: open, assigned,
# closed with a reason; the history of each is kept in alert_history.
alerts = Table(
    "compliance_alerts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("rule", String(40), nullable=False),
    Column("client_id", String(64), nullable=True),
    Column("subject", Text, nullable=False),
    Column("details", Text, nullable=False),  # JSON
    Column("dedupe", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # open | assigned | closed
    Column("assignee", String(120), nullable=True),
    Column("reason", Text, nullable=True),
    # How a closed alert ended: false_positive (a sanctions hit so closed clears that party or address
    # for that list entry), reported (a SAR filed), no_action, escalated.
    Column("resolution", String(32), nullable=True),
    Column("opened_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("dedupe", name="uq_compliance_alerts_dedupe"),
    Index("ix_compliance_alerts_status", "status", "opened_at_us"),
)

alert_history = Table(
    "compliance_alert_history",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("alert_id", String(40), nullable=False),
    Column("action", String(16), nullable=False),  # opened | assigned | closed | noted | reopened
    Column("by", String(120), nullable=False),
    Column("note", Text, nullable=True),
    Column("at_us", BigInteger, nullable=False),
    Index("ix_compliance_alert_history_alert", "alert_id", "id"),
)

# Lawful orders: freeze, unfreeze, seize. Each runs as an operation (its chain steps) and is audited.
orders = Table(
    "compliance_orders",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("reference", String(120), nullable=False),
    Column("authority", String(200), nullable=False),
    Column("operation_id", String(40), nullable=True),
    Column("details", Text, nullable=False),  # JSON: accounts, addresses, amounts
    Column("by", String(120), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("kind", "client_id", "reference", name="uq_compliance_orders_ref"),
)

# The IVMS101 data carried with a movement (a withdrawal, a payment to another institution).
travel_rule = Table(
    "compliance_travel_rule",
    metadata,
    Column("ref", String(200), primary_key=True),  # the operation it travels with
    Column("flow", String(32), nullable=False),
    Column("amount_usd_minor", String(40), nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON
    Column("sha256", String(64), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

# ISO 20022 messages received (camt.054) and produced (pain.001, pacs.008), and the payments in them:
# EndToEndId and UETR <-> the ledger transfer and the chain transaction.
iso_messages = Table(
    "iso_messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),  # camt.054 | pain.001 | pacs.008
    Column("message_id", String(64), nullable=False),
    Column("direction", String(3), nullable=False),  # in | out
    Column("sha256", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("kind", "message_id", name="uq_iso_messages_id"),
)

iso_payments = Table(
    "iso_payments",
    metadata,
    Column("ref", String(200), primary_key=True),  # the entry reference (in) or the redemption (out)
    Column("direction", String(3), nullable=False),
    Column("end_to_end_id", String(64), nullable=True),
    Column("uetr", String(36), nullable=True),
    Column("client_id", String(64), nullable=True),
    Column("amount_minor", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # booked | refused | suspense | produced
    Column("transfer_id", String(200), nullable=True),  # the ledger transfer it booked
    Column("tx_hash", String(66), nullable=True),  # the chain transaction it relates to
    Column("message_id", String(64), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_iso_payments_e2e", "end_to_end_id"),
    Index("ix_iso_payments_uetr", "uetr"),
)

# The audit log: append-only and hash-chained. Each entry's hash covers the previous entry's hash
# and its own content, so that editing or removing an entry breaks every hash after it.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(80), nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
