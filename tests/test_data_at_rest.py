"""Keys and data at rest: a private data directory and database files, and a key store that needs a passphrase."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from andchain.chains.keys import KeyStoreError, keystore_passphrase
from andchain.config import Settings
from andchain.context import Context
from andchain.db import make_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask there is, so that only andchain's own modes can keep files private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def dev_settings(data_dir: Path, passphrase: str | None = None) -> Settings:
    return Settings(data_dir=data_dir, database_url=None, keystore={"passphrase": passphrase, "scrypt_n": 1024})


def test_the_data_directory_and_the_sqlite_files_are_private_whatever_the_umask(tmp_path, open_umask):
    ctx = Context(dev_settings(tmp_path / "var"))
    try:
        ctx.upgrade_database()
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            db = tmp_path / "var" / "andchain.db"
            files = [db, db.with_name("andchain.db-wal"), db.with_name("andchain.db-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(tmp_path / "var") == 0o700
        ctx.keys.create("bank:treasury")
        assert mode(tmp_path / "var" / "keys") == 0o700
        assert {mode(p) for p in (tmp_path / "var" / "keys").iterdir()} == {0o600}
    finally:
        ctx.close()


def test_sqlite_files_left_readable_by_an_older_version_are_tightened(tmp_path, open_umask):
    db = tmp_path / "old.db"
    for name in ("old.db", "old.db-wal", "old.db-shm"):
        (tmp_path / name).touch(mode=0o644)
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            assert {mode(p) for p in tmp_path.iterdir()} == {0o600}
    finally:
        engine.dispose()


def test_an_existing_data_directory_open_to_others_is_kept_but_reported(tmp_path, caplog):
    shared = tmp_path / "var"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    with caplog.at_level(logging.WARNING, logger="andchain.config"):
        dev_settings(shared).ensure_data_dir()
    assert mode(shared) == 0o750
    assert "chmod 700" in caplog.text


def test_development_uses_the_generated_passphrase_and_warns_every_process_that_does(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="andchain.chains.keys"):
        first = Context(dev_settings(tmp_path))
        address = first.keys.create("bank:treasury")
        second = Context(dev_settings(tmp_path))
        signer = second.keys.signer(address)
    warnings = [r.getMessage() for r in caplog.records if "for development only" in r.getMessage()]
    assert len(warnings) == 2
    assert signer.address == address
    passphrase = (tmp_path / "keys" / ".dev-passphrase").read_text()
    assert passphrase not in caplog.text
    assert mode(tmp_path / "keys" / ".dev-passphrase") == 0o600


def test_a_configured_passphrase_is_used_without_a_warning_and_no_passphrase_file_is_made(tmp_path, caplog):
    settings = dev_settings(tmp_path, passphrase="from-the-vault")
    with caplog.at_level(logging.WARNING):
        Context(settings).keys.create("bank:treasury")
    assert "development only" not in caplog.text
    assert not (tmp_path / "keys" / ".dev-passphrase").exists()


def test_outside_development_the_key_store_refuses_to_open_without_a_passphrase(tmp_path):
    with pytest.raises(KeyStoreError) as caught:
        keystore_passphrase(tmp_path / "keys", None, "production")
    assert caught.value.code == "keystore_passphrase_missing"
    assert "ANDCHAIN_KEYSTORE__PASSPHRASE" in caught.value.message
    assert not (tmp_path / "keys").exists()
    assert keystore_passphrase(tmp_path / "keys", "from-the-vault", "production") == "from-the-vault"


def test_opening_another_engine_on_the_same_file_never_drops_a_writers_lock(tmp_path):
    """SQLite's locks are POSIX locks: a descriptor of the file opened and closed anywhere in the
    process drops them all. A second engine (the API and the worker of `andchain serve`), or a new
    pooled connection, must never let another process write while this one holds the write lock."""
    import subprocess
    import sys

    from sqlalchemy import text

    from andchain.db import make_engine

    url = f"sqlite:///{tmp_path / 'andchain.db'}"
    first = make_engine(url)
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = first.connect().execution_options(andchain_write=True)
    writing = holder.begin()  # BEGIN IMMEDIATE: this process holds the write lock
    holder.exec_driver_sql("INSERT INTO t VALUES (1)")
    second = make_engine(url)  # the same file, in the same process
    with second.connect() as conn:
        conn.execute(text("SELECT count(*) FROM t")).scalar()
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=0.2, isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO t VALUES (2)'); c.execute('COMMIT')",
            str(tmp_path / "andchain.db"),
        ],
        capture_output=True,
        text=True,
    )
    assert other.returncode != 0 and "locked" in other.stderr, other.stderr
    writing.commit()
    holder.close()
    with second.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
    first.dispose()
    second.dispose()


def test_a_database_error_never_shows_the_values_it_was_given(engine):
    """An unexpected database error is logged; the values of its statement (a webhook's secret, a
    stored answer) are not part of its text."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from andchain.db import write_transaction

    insert = text(
        "INSERT INTO api_idempotency_keys (scope, key, request_hash, state, response_body, created_at_us, "
        "updated_at_us) VALUES ('s', 'k', 'h', 'done', :body, 0, 0)"
    )
    with write_transaction(engine) as conn:
        conn.execute(insert, {"body": "whsec_first"})
    with pytest.raises(IntegrityError) as caught, write_transaction(engine) as conn:
        conn.execute(insert, {"body": "whsec_SECRET"})
    assert "whsec_SECRET" not in str(caught.value) and "hidden" in str(caught.value)
