"""Fixtures: every ledger test runs on SQLite and on a real PostgreSQL started here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from andchain import migrate
from andchain.db import make_engine
from andchain.devtools.postgres import RunningPostgres, throwaway_postgres
from andchain.ledger import Ledger
from andchain.tables import metadata

BACKENDS = ["sqlite", "postgresql"]


class FakeClock:
    """A clock in microseconds that only moves when a test moves it."""

    def __init__(self, start_us: int = 1_800_000_000_000_000) -> None:
        self.now_us = start_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[RunningPostgres]:
    if os.environ.get("ANDCHAIN_TEST_SKIP_POSTGRESQL") == "1":
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
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'andchain.db'}")
        migrate.upgrade(engine)
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
    """Empty every table, for property tests that need a fresh book per example."""
    if engine.dialect.name == "postgresql":
        _truncate(engine)
    else:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
