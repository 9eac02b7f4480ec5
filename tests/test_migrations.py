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


def test_a_database_at_the_newest_revision_is_left_as_it_is_and_one_behind_is_migrated(engine, monkeypatch):
    """Every command migrates first: at the newest revision, Alembic's environment (which imports every
    table's module) is not even started."""
    started: list[str] = []
    upgrade = migrate.command.upgrade

    def counted(config, revision):
        started.append(revision)
        upgrade(config, revision)

    monkeypatch.setattr(migrate.command, "upgrade", counted)
    migrate.upgrade(engine)
    assert started == []
    previous = migrate.ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_revision(migrate.head()).down_revision
    migrate.downgrade(engine, previous)
    migrate.upgrade(engine)
    assert started == ["head"]
    assert migrate.current(engine) == migrate.head()


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


def test_the_day_totals_of_today_and_yesterday_are_filled_from_the_activity_already_recorded(engine):
    """0019 keeps each party's day totals beside its activity; the movements recorded before it count."""
    import time

    from sqlalchemy import text

    from andchain.db import encode_amount_postgresql, encode_amount_sqlite

    day_us = 86_400 * 1_000_000
    today = time.time_ns() // 1000 // day_us
    encode = encode_amount_sqlite if engine.dialect.name == "sqlite" else encode_amount_postgresql
    migrate.downgrade(engine, "0018")
    rows = [
        ("c1", "out", False, 2**70, today * day_us + 5),  # beyond 64 bits: kept exact
        ("c1", "out", True, 1_000, today * day_us + 6),
        ("c1", "in", True, 500, today * day_us + 7),
        ("c1", "in", False, 9_999, today * day_us + 8),  # neither out nor cash: not in the totals
        ("c1", "out", False, 300, (today - 1) * day_us + 1),
        ("c2", "out", False, 7, (today - 3) * day_us),  # older than yesterday: never read, not filled
    ]
    with engine.begin() as conn:
        for client, direction, cash, amount, at_us in rows:
            conn.execute(
                text(
                    "INSERT INTO compliance_activity (client_id, flow, direction, cash, amount_usd_minor, ref, at_us) "
                    "VALUES (:c, 'pay', :d, :cash, :a, 'r', :at)"
                ),
                {"c": client, "d": direction, "cash": cash, "a": encode(amount), "at": at_us},
            )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT client_id, day, out_usd_minor, cash_usd_minor FROM compliance_party_days ORDER BY day")
        ).all()
    assert [(c, d, int(o), int(k)) for c, d, o, k in found] == [
        ("c1", today - 1, 300, 0),
        ("c1", today, 2**70 + 1_000, 1_500),
    ]
