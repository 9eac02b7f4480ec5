"""The bank's side of custody: which account at which custodian is whose, what each custodian
reported of the transfers that concern the bank, where polling reads on, and the webhooks seen.

(The custodian's own records live in its own database; `custody.kept.schema` are the tables of
custody kept by andchain itself.)
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from andchain.db import metadata

accounts = Table(
    "custody_accounts",
    metadata,
    Column("custodian", String(64), primary_key=True),
    # A client's id, or "desk" for the bank's trading desk.
    Column("owner", String(200), primary_key=True),
    Column("account_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ux_custody_accounts_account", "custodian", "account_id", unique=True),
)

transfers = Table(
    "custody_transfers",
    metadata,
    Column("custodian", String(64), primary_key=True),
    Column("transfer_id", String(200), primary_key=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("op_id", String(40), nullable=True),  # the bank's operation that asked for it, if one did
    Column("incoming", Integer, nullable=False),  # a deposit from outside
    Column("account_id", String(200), nullable=True),  # the bank's account it moved into or out of
    Column("asset", String(16), nullable=False),
    Column("network", String(64), nullable=False),
    Column("amount_minor", String(80), nullable=False),
    Column("state", String(24), nullable=False),
    Column("raw_status", String(100), nullable=False),
    Column("tx_hash", String(100), nullable=True),
    # A deposit credited to its owner's position (the ledger transfer's id).
    Column("booked", String(200), nullable=True),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_custody_transfers_op", "op_id"),
)

cursors = Table(
    "custody_cursors",
    metadata,
    Column("custodian", String(64), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("updated_at_us", BigInteger, nullable=False),
)

webhooks = Table(
    "custody_webhooks",
    metadata,
    Column("custodian", String(64), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("transfer_id", String(200), nullable=True),
    Column("received_at_us", BigInteger, nullable=False),
    Column("applied", Integer, nullable=False, default=0),
)
