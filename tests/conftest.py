"""Fixtures: every ledger test runs on SQLite and on a real PostgreSQL started here."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, is_hypothesis_test, settings
from sqlalchemy import Engine

from andchain import migrate
from andchain.db import make_engine
from andchain.devtools.postgres import RunningPostgres, throwaway_postgres
from andchain.ledger import Ledger
from andchain.tables import metadata

BACKENDS = ["sqlite", "postgresql"]

# Property tests (hypothesis). `make test` runs them derandomized: the examples come
# from a seed fixed per test and no example database is replayed, so every run tries
# the same examples and the suite cannot flake. `make test-deep` runs them with random
# seeds and 1,000 examples each, to find what the fixed examples miss; a failure
# prints a blob to replay it with @reproduce_failure. Choose a profile with
# HYPOTHESIS_PROFILE=deep or `pytest --hypothesis-profile deep`. No profile has a
# deadline or a too_slow check: timings on a shared machine must not fail a test.
# (The ledger's property tests reset the book per example, so a function-scoped
# fixture is what they want.)
_UNTIMED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "derandomized", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=_UNTIMED
)
settings.register_profile(
    "deep", max_examples=1000, derandomize=False, deadline=None, print_blob=True, suppress_health_check=_UNTIMED
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))


# The suite's longest files (`--durations=0` of a clean-clone run, docs/benchmarks.md), started first:
# pytest-xdist hands out whole files in the order they were collected, and a long file handed out last
# keeps one process busy after the others are done. A file not named here keeps its place after them.
_LONGEST_FIRST = (
    "tests/api/test_fuzz.py",
    "tests/test_cli.py",
    "tests/tokens/test_crash_safety.py",
    "tests/tokens/test_moves.py",
    "tests/custody/test_bank.py",
    "tests/api/test_hostile_input.py",
    "tests/custody/test_contract.py",
    "tests/api/test_contract.py",
    "tests/tokens/test_demo.py",
    "tests/tokens/test_requests_while_workers_run.py",
    "tests/ledger/test_properties.py",
    "tests/api/test_roles.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every hypothesis test `property`, so that `make test-deep` selects them all (-m property); start
    the longest files first (the order within a file is kept)."""
    for item in items:
        if isinstance(item, pytest.Function) and is_hypothesis_test(item.obj):
            item.add_marker(pytest.mark.property)
    rank = {path: i for i, path in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


class FakeClock:
    """A clock in microseconds that only moves when a test moves it."""

    def __init__(self, start_us: int = 1_800_000_000_000_000) -> None:
        self.now_us = start_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)


def postgresql_skipped() -> bool:
    """ANDCHAIN_TEST_SKIP_POSTGRESQL=1: the PostgreSQL tests are skipped (on a machine without it)."""
    return os.environ.get("ANDCHAIN_TEST_SKIP_POSTGRESQL") == "1"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[RunningPostgres]:
    if postgresql_skipped():
        pytest.skip("ANDCHAIN_TEST_SKIP_POSTGRESQL=1")
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def _postgres_engine(postgres_server: RunningPostgres) -> Iterator[Engine]:
    engine = make_engine(postgres_server.url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _truncate(engine: Engine) -> None:
    """Empty every table of the book and restart its ids, as `TRUNCATE ... RESTART IDENTITY` would.

    DELETE, because the tests' tables hold a few rows: TRUNCATE makes new files for each of the 65
    tables (110 ms a time here, against 20 ms), and a test's PostgreSQL database is emptied before
    every test. Triggers are off for it (the server is the tests' own, run by its superuser): the audit
    log's refuses deletes, and the foreign keys need no order.
    """
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for table in reversed(metadata.sorted_tables):
            conn.exec_driver_sql(f"DELETE FROM {table.name}")
        key = engine.url.render_as_string(hide_password=True)
        if key not in _sequences:  # the schema does not change while the tests run
            _sequences[key] = [row[0] for row in conn.exec_driver_sql(_OWNED_SEQUENCES)]
        for sequence in _sequences[key]:
            conn.exec_driver_sql("SELECT setval(%s, 1, false)", (sequence,))


_sequences: dict[str, list[str]] = {}


# The sequences behind the book's serial and identity columns (what RESTART IDENTITY restarts).
_OWNED_SEQUENCES = (
    "SELECT pg_get_serial_sequence(quote_ident(table_name), column_name) AS seq FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND (column_default LIKE 'nextval%%' OR is_identity = 'YES') "
    "AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL"
)


_sqlite_template: list[Path] = []  # the migrated database this test process copies, made on first use


def migrated_sqlite(path: Path) -> str:
    """The URL of a SQLite database at the newest revision at `path`: the one there, migrated (another
    fixture of the same test may have made it), or else a fresh one.

    A fresh one is a copy of a database this test process migrated once: a copy takes under a millisecond,
    a migration from nothing a tenth of a second or more, and hundreds of tests open a fresh database.
    The migrations themselves are tested from nothing in tests/test_migrations.py.
    """
    url = f"sqlite:///{path}"
    if path.exists():
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        return url
    if not _sqlite_template:
        directory = Path(tempfile.mkdtemp(prefix="andchain-template-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        template = directory / "andchain.db"
        engine = make_engine(f"sqlite:///{template}")
        migrate.upgrade(engine)
        with engine.begin() as conn:  # everything in the main file, none of it left in the -wal file
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        _sqlite_template.append(template)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, as Settings.ensure_data_dir makes it
    # Created private (and never over one there) before a byte is copied into it.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    shutil.copyfile(_sqlite_template[0], path)
    return url


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(migrated_sqlite(tmp_path / "andchain.db"))
        yield engine
        engine.dispose()
    else:
        pg_engine = request.getfixturevalue("_postgres_engine")
        _truncate(pg_engine)
        yield pg_engine


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(engine: Engine, clock: FakeClock) -> Ledger:
    return Ledger(engine, clock=clock)


def reset(engine: Engine) -> None:
    """Empty every table, for tests that need a fresh book per example. On SQLite the audit log stays:
    a trigger refuses to delete from it (it is append-only, and no other table refers to it)."""
    if engine.dialect.name == "postgresql":
        _truncate(engine)
    else:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if table.name != "audit_log":
                    conn.execute(table.delete())
