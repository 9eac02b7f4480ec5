"""Tables of operations and their status history."""

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
