"""Tables of kept custody: accounts whose keys are kept here, their transfers, webhook deliveries,
the book of assets not held on a node (BTC), and deposit checkpoints.

The same tables (andchain's migrations) serve the reference custodian, in its own database
(a third party's: the bank never writes there), and andchain's `self` adapter, in the bank's.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from andchain.db import metadata

accounts = Table(
    "custody_kept_accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("key_label", String(100), nullable=False),
    Column("address", String(42), nullable=False, unique=True),
    Column("created_at_us", BigInteger, nullable=False),
)

transfers = Table(
    "custody_kept_transfers",
    metadata,
    # The sequence is the order of creation: the cursor of GET /v1/transfers?after=.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("idempotency_key", String(128), nullable=True, unique=True),
    Column("request_sha256", String(64), nullable=True),
    Column("kind", String(16), nullable=False),  # withdrawal | internal | deposit
    Column("source_account", String(40), nullable=True),
    Column("destination_account", String(40), nullable=True),
    Column("destination_address", String(100), nullable=True),
    Column("destination_tag", String(100), nullable=True),
    Column("asset", String(16), nullable=False),
    Column("network", String(64), nullable=False),
    # Exact on both engines at any size: a decimal string of minor units.
    Column("amount_minor", String(80), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("travel_rule", Text, nullable=True),
    Column("state", String(24), nullable=False),
    Column("reason", Text, nullable=True),
    Column("fuel_tx_hash", String(66), nullable=True),
    Column("tx_hash", String(100), nullable=True),  # a chain's hash, or a Bitcoin output (txid:vout)
    # The signed transaction, kept before it is broadcast: a restart sends these same bytes
    # again, never a second transaction for the same transfer.
    Column("raw_tx", Text, nullable=True),
    Column("block_number", BigInteger, nullable=True),
    Column("log_index", Integer, nullable=True),
    Column("version", Integer, nullable=False, default=1),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_custody_kept_transfers_state", "state"),
)

deliveries = Table(
    "custody_kept_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transfer_id", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at_us", BigInteger, nullable=False),
    Column("delivered_at_us", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_custody_kept_deliveries_due", "delivered_at_us", "next_attempt_at_us"),
)

# The custodian's own book of the assets it does not hold on a node it runs (BTC): one entry per
# movement, signed, in minor units; an account's balance is the sum of its entries.
book = Table(
    "custody_kept_book",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transfer_id", String(40), nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("network", String(64), nullable=False),
    Column("amount_minor", String(80), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_custody_kept_book_account", "account_id", "asset", "network"),
    # One entry per transfer and account: a booking can never be written twice.
    UniqueConstraint("transfer_id", "account_id"),
)

checkpoints = Table(
    "custody_kept_checkpoints",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("block_number", BigInteger, nullable=False),
)
