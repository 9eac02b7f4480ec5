"""Migrations are numbered, reversible, run on both engines and match the code's tables."""

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
