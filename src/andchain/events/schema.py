"""Tables of events, webhook subscriptions, their deliveries and attempts, and standing reconcile findings."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from andchain.db import metadata

# Ids come from one autoincrement sequence (SQLite: AUTOINCREMENT, so an id is never reused even
# after the newest rows are deleted). Readers never skip a gap: see andchain.events.store.
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("occurred_at_us", BigInteger, nullable=False),
    # The client the event belongs to; NULL for a bank-wide event (reconcile, alerts).
    Column("client_id", String(64), nullable=True),
    # What it is about: an operation id, a chain event (tx hash:ordinal), a reconcile finding.
    Column("subject", String(300), nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_events_client", "client_id", "id"),
    Index("ix_events_type", "type", "id"),
    sqlite_autoincrement=True,
)

webhooks = Table(
    "events_webhooks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", String(2000), nullable=False),
    # The signing secret (whsec_ + base64): shown once when created, kept to sign every delivery.
    Column("secret", String(200), nullable=False),
    # The client whose events it receives; NULL: the bank's, every event.
    Column("client_id", String(64), nullable=True),
    # JSON list of types ("operation.succeeded") or families ("operation.*"); NULL: every type.
    Column("types", Text, nullable=True),
    Column("description", String(500), nullable=False),
    Column("active", Boolean, nullable=False),
    # The last event id turned into deliveries (events after it are still to be fanned out).
    Column("after_event_id", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_events_webhooks_client", "client_id"),
)

# One delivery per (subscription, event): its attempts, replays and outcome. Its message id
# (`webhook-id`) is the event's, the same on every attempt and replay.
deliveries = Table(
    "events_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("webhook_id", String(40), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    # pending -> succeeded | failed; a replay makes it pending again.
    Column("status", String(16), nullable=False),
    # Attempts since it was queued (or replayed): the position in the retry schedule.
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at_us", BigInteger, nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until_us", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("webhook_id", "event_id"),
    Index("ix_events_deliveries_due", "status", "next_attempt_at_us"),
)

# The delivery log: every attempt, with what the receiver answered, and every replay.
attempts = Table(
    "events_delivery_attempts",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    # attempt | replay
    Column("kind", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(500), nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("owner", String(100), nullable=True),
    Index("ix_events_delivery_attempts_delivery", "delivery_id", "seq"),
)

# What reconcile last reported, so that a standing break or alert is emitted once (and again
# only when it changes), and its end is emitted when it is gone.
standing = Table(
    "events_standing",
    metadata,
    # SHA-256 of what identifies the finding (its check and subject; an alert's text without its figures).
    Column("key", String(64), primary_key=True),
    # reconcile.break | alert
    Column("kind", String(32), nullable=False),
    # The network the finding concerns ("" for none): a network that could not be read keeps its findings.
    Column("scope", String(64), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("since_us", BigInteger, nullable=False),
)
