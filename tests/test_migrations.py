"""Migrations are numbered, reversible, run on both engines and match the code's tables."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from andchain import migrate
from andchain.tables import metadata


def test_the_schema_matches_the_tables_the_code_declares(engine):
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diffs == []


def test_migrations_go_down_to_nothing_and_back_up(engine):
    assert migrate.current(engine) == migrate.head()
    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert [t for t in inspect(engine).get_table_names() if t != "alembic_version"] == []
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    assert "ledger_transfers" in inspect(engine).get_table_names()


def test_hot_tables_leave_room_for_in_place_updates_on_postgresql(engine):
    """Balances, operations and signed transactions are updated on every step: on PostgreSQL their pages
    keep room so that an update stays on its page (HOT) and leaves the indexes alone."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL storage parameter; SQLite has none")
    with engine.connect() as conn:
        options = dict(
            conn.exec_driver_sql(
                "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s)",
                (["ledger_accounts", "ops_operations", "ops_transactions", "ledger_transfers"],),
            ).all()
        )
    assert options["ledger_accounts"] == ["fillfactor=70"]
    assert options["ops_operations"] == options["ops_transactions"] == ["fillfactor=80"]
    assert options["ledger_transfers"] is None  # appended to, never updated: pages stay full
