"""Alembic environment: runs on the connection andchain hands it (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context

from andchain.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - andchain always passes its own connection
    raise RuntimeError("run migrations through `andchain db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
