"""Tables of the chains layer: deployments, nonces, listener checkpoints and deliveries, non-EVM submissions."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from andchain.db import metadata

deployments = Table(
    "chain_deployments",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("network", String(64), nullable=False),
    Column("contract", String(64), nullable=False),
    Column("address", String(42), nullable=False),
    Column("tx_hash", String(66), nullable=True),
    Column("block_number", BigInteger, nullable=True),
    Column("source_sha256", String(64), nullable=True),
    Column("deployed_at_us", BigInteger, nullable=False),
)

nonces = Table(
    "chain_nonces",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("address", String(42), primary_key=True),
    Column("next_nonce", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

checkpoints = Table(
    "listener_checkpoints",
    metadata,
    Column("listener", String(100), primary_key=True),
    Column("chain_id", BigInteger, primary_key=True),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", String(66), nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

# The block hashes a listener has finalised up to, to find the common ancestor after a reorg.
listener_blocks = Table(
    "listener_blocks",
    metadata,
    Column("listener", String(100), primary_key=True),
    Column("chain_id", BigInteger, primary_key=True),
    Column("block_number", BigInteger, primary_key=True),
    Column("block_hash", String(66), nullable=False),
)

deliveries = Table(
    "listener_deliveries",
    metadata,
    Column("listener", String(100), primary_key=True),
    Column("chain_id", BigInteger, primary_key=True),
    Column("tx_hash", String(66), primary_key=True),
    Column("log_index", Integer, primary_key=True),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", String(66), nullable=False),
    Column("address", String(42), nullable=False),
    Column("event", String(64), nullable=False),
    Column("topics", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # How many times the event was retracted by a reorg: a re-delivery books under a new id.
    Column("generation", Integer, nullable=False, server_default="0"),
    Index("ix_listener_deliveries_block", "listener", "chain_id", "block_number"),
)

# Transactions signed for a non-EVM network (GCUL), kept under the caller's idempotency key
# before they are sent: a retry after a crash resubmits these bytes (same nonce, same digest)
# instead of signing a second, different transaction.
network_submissions = Table(
    "network_submissions",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("idempotency_key", String(200), primary_key=True),
    Column("request_sha256", String(64), nullable=False),
    Column("sender", String(200), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("signed_tx", LargeBinary, nullable=False),
    Column("tx_id", String(64), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("submitted_at_us", BigInteger, nullable=True),
)
