"""Ledger tables. Accounts carry cached balances; transfers are immutable rows."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from andchain.db import AmountType, metadata
from andchain.ledger.model import CODE_LENGTH_MAX, ID_LENGTH_MAX, MEMO_LENGTH_MAX, NAME_LENGTH_MAX

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id64 = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", Id64, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH_MAX), nullable=False, unique=True),
    Column("asset", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("flags", Integer, nullable=False, server_default="0"),
    Column("metadata", Text, nullable=True),
    Column("closed", Boolean, nullable=False, server_default="0"),
    # Frozen on a lawful order: nothing new may debit it but a seizure (credits still arrive).
    Column("frozen", Boolean, nullable=False, server_default="0"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("debits_pending", AmountType(), nullable=False),
    Column("debits_posted", AmountType(), nullable=False),
    Column("credits_pending", AmountType(), nullable=False),
    Column("credits_posted", AmountType(), nullable=False),
)

transfers = Table(
    "ledger_transfers",
    metadata,
    Column("seq", Id64, primary_key=True, autoincrement=True),
    Column("id", String(ID_LENGTH_MAX), nullable=False, unique=True),
    Column("debit_account_id", Id64, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("credit_account_id", Id64, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("amount", AmountType(), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("flags", Integer, nullable=False),
    Column("pending_id", String(ID_LENGTH_MAX), nullable=True),
    Column("timeout_s", Integer, nullable=False),
    Column("code", String(CODE_LENGTH_MAX), nullable=False),
    Column("memo", String(MEMO_LENGTH_MAX), nullable=False),
    Column("metadata", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_ledger_transfers_debit", "debit_account_id", "seq"),
    Index("ix_ledger_transfers_credit", "credit_account_id", "seq"),
    Index("ix_ledger_transfers_pending_id", "pending_id"),
)

# The two-phase state of each pending transfer; the transfer row itself never changes.
pending = Table(
    "ledger_pending",
    metadata,
    Column("id", String(ID_LENGTH_MAX), ForeignKey("ledger_transfers.id"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("resolved_by", String(ID_LENGTH_MAX), nullable=True),
    Index("ix_ledger_pending_status_expires", "status", "expires_at_us"),
)

# Ids of transfers that failed for a transient reason, with that result: such an id
# answers id_already_failed forever (TigerBeetle's rule), so a retry never books it.
failed_transfers = Table(
    "ledger_failed_transfers",
    metadata,
    Column("id", String(ID_LENGTH_MAX), primary_key=True),
    Column("result", String(CODE_LENGTH_MAX), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

# The assets the book knows beyond the built-in ones (token assets such as MMF/6),
# recorded when registered or when an account is opened in them, so that every
# process on this database prints and parses their amounts at the right scale.
assets = Table(
    "ledger_assets",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("scale", Integer, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)
