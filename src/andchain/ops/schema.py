"""Tables of operations, their status history, the transactions they signed, leases and workers."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from andchain.db import metadata

operations = Table(
    "ops_operations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("network", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("result", Text, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at_us", BigInteger, nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until_us", BigInteger, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # Every change is conditional on the version its writer read, and bumps it.
    Column("version", Integer, nullable=False, server_default="1"),
    # SHA-256 of what the caller sent: the same key with another request is a conflict.
    Column("request_sha256", String(64), nullable=True),
    Index("ix_ops_operations_due", "status", "next_attempt_at_us"),
    Index("ix_ops_operations_kind", "kind", "created_at_us"),
)

history = Table(
    "ops_history",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("op_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Index("ix_ops_history_op", "op_id", "seq"),
)

# Every transaction an operation signed, recorded before it leaves the process: which
# operation and step it serves, its sender and nonce, its exact bytes, and what became
# of it. A gap in a sender's nonces is filled with the transaction that owns the nonce
# (or a no-op when none does); a final transaction that a deep reorg removed is sent
# again, byte for byte.
transactions = Table(
    "ops_transactions",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("hash", String(66), primary_key=True),
    Column("chain_id", BigInteger, nullable=False),
    Column("op_id", String(32), nullable=False),
    Column("step", String(200), nullable=False),
    Column("sender", String(42), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("raw", Text, nullable=False),
    # signed -> final | replaced | reverted; final -> dropped (a finality violation) -> final again
    Column("status", String(16), nullable=False),
    Column("block_number", BigInteger, nullable=True),
    Column("block_hash", String(66), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_ops_transactions_nonce", "chain_id", "sender", "nonce"),
    Index("ix_ops_transactions_status", "network", "status", "block_number"),
    Index("ix_ops_transactions_op", "op_id"),
)

# Named leases: one holder at a time for work that must not run twice at once
# (a listener's range, the rules engine), on SQLite and PostgreSQL alike.
leases = Table(
    "ops_leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("until_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

# Each worker's heartbeat, for /health and reconcile: when it last completed a round,
# what its listeners lag behind, and the last error of each part it supervises.
workers = Table(
    "ops_workers",
    metadata,
    Column("owner", String(100), primary_key=True),
    Column("started_at_us", BigInteger, nullable=False),
    Column("beat_at_us", BigInteger, nullable=False),
    Column("detail", Text, nullable=False),
)
