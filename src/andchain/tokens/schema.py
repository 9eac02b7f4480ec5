"""Tables of the tokens domain: clients, their wallets per network, programmable payment rules."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from andchain.db import metadata

clients = Table(
    "token_clients",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

wallets = Table(
    "token_wallets",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("address", String(42), primary_key=True),
    Column("client_id", String(32), nullable=False),
    Column("key_label", String(100), nullable=False),
    Column("allowlisted", Boolean, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("client_id", "network", name="uq_token_wallets_client_id_network"),
)

rules = Table(
    "token_rules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("network", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("next_run_at_us", BigInteger, nullable=False),
    Column("runs", Integer, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_token_rules_due", "status", "next_run_at_us"),
)

# The operator's switches per network: a pause, and the state of the move rate limits.
network_controls = Table(
    "token_network_controls",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("paused", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Column("outbound_level", Text, nullable=False),  # exact integers beyond 64 bits, as text
    Column("inbound_level", Text, nullable=False),
    Column("levels_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

# Addresses clients own on public networks, proven by an EIP-191 signature and screened.
client_addresses = Table(
    "token_client_addresses",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("address", String(42), primary_key=True),
    Column("client_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("allowlisted", Boolean, nullable=False),
    Column("signature", Text, nullable=False),
    Column("registered_at_us", BigInteger, nullable=False),
    Index("ix_token_client_addresses_client", "client_id", "network"),
)

challenges = Table(
    "token_challenges",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("client_id", String(32), nullable=False),
    Column("network", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False),
)
