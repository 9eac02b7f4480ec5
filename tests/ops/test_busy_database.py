"""A busy SQLite database (another process holds its write lock past the busy timeout): the worker
waits and goes on; a request from the command line is refused in one line and records nothing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from andchain.context import Context
from andchain.ledger.schema import transfers
from andchain.ops import OpStatus, schema
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TokenService
from tests.chains.conftest import make_context

BUSY_TIMEOUT_S = 0.2
ANDCHAIN = str(Path(sys.executable).parent / "andchain")

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline() if sys.argv[2] == "stdin" else time.sleep(float(sys.argv[2]))
    conn.execute("ROLLBACK")
    """
)


@contextmanager
def write_lock_held(database: Path, seconds: float | None = None) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the database's write lock: for `seconds`, or until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database), "stdin" if seconds is None else str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None and seconds is None:
            holder.communicate("release\n", timeout=10)
        holder.wait(timeout=30)


@pytest.fixture
def busy_ctx(tmp_path: Path, anvil) -> Iterator[Context]:
    ctx = make_context(tmp_path, anvil, database_url=f"sqlite:///{tmp_path / 'andchain.db'}?timeout={BUSY_TIMEOUT_S}")
    yield ctx
    ctx.close()


@pytest.fixture
def service(busy_ctx: Context) -> TokenService:
    tokens = TokenService(busy_ctx)
    tokens.setup("internal")
    return tokens


def cli_env(ctx: Context, tmp_path: Path) -> dict[str, str]:
    """The same database, keys and node for `andchain` in a subprocess, as an operator configures them."""
    network = ctx.settings.networks["internal"]
    config = tmp_path / "andchain.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            data_dir = "{ctx.settings.data_dir}"
            database_url = "{ctx.settings.database_url}"
            [keystore]
            passphrase = "test-only-passphrase"
            scrypt_n = 1024
            [networks.internal]
            display_name = "{network.display_name}"
            chain_id = {network.chain_id}
            rpc_url = "{network.rpc_url}"
            kind = "{network.kind}"
            gas_policy = "{network.gas_policy}"
            gas_limit = {network.gas_limit}
            """
        )
    )
    return {**os.environ, "ANDCHAIN_CONFIG": str(config), "COLUMNS": "80"}


def recorded(ctx: Context) -> tuple[int, int]:
    """How many operations and ledger transfers there are."""
    with ctx.engine.connect() as conn:
        ops = conn.execute(select(func.count()).select_from(schema.operations)).scalar_one()
        moved = conn.execute(select(func.count()).select_from(transfers)).scalar_one()
    return ops, moved


def test_the_busy_timeout_comes_from_the_database_url(busy_ctx):
    with busy_ctx.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == int(BUSY_TIMEOUT_S * 1000)


def test_a_busy_database_makes_the_worker_wait_and_finish_once_it_is_free(busy_ctx, service, caplog):
    acme = service.onboard("Acme").id
    service.deposit(acme, 10_000, "camt-1")
    mint = service.mint(acme, "internal", 4_000, "mint-1")
    worker = token_worker(busy_ctx, service)
    database = Path(str(busy_ctx.engine.url.database))
    with caplog.at_level(logging.WARNING, logger="andchain.ops.worker"), write_lock_held(database, seconds=3.0):
        assert run_until_idle(worker, seconds=60)
    assert any("database is locked" in r.getMessage() for r in caplog.records)  # it did meet the lock
    assert service.ops.get(mint.id).status == OpStatus.SUCCEEDED
    assert service.dda_balance(acme) == 6_000


@pytest.mark.parametrize("command", ["mint", "deposit"])
def test_a_request_while_the_database_is_busy_is_refused_in_one_line_and_records_nothing(
    busy_ctx, service, tmp_path, command
):
    acme = service.onboard("Acme").id
    service.deposit(acme, 10_000, "camt-1")
    env = cli_env(busy_ctx, tmp_path)
    args = {
        "mint": ["tokens", "mint", acme, "25.00", "--key", "mint-while-busy"],
        "deposit": ["deposit", acme, "25.00 USD", "--reference", "camt-while-busy"],
    }[command]
    before = recorded(busy_ctx)
    with write_lock_held(Path(str(busy_ctx.engine.url.database))):
        done = subprocess.run([ANDCHAIN, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the database is busy") and "not taken" in lines[0]
    assert recorded(busy_ctx) == before
    assert service.dda_balance(acme) == 10_000
    # Once the lock is gone the same request is taken.
    again = subprocess.run([ANDCHAIN, *args], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert recorded(busy_ctx)[0] == before[0] + (command == "mint")


def test_the_worker_command_rides_out_a_busy_database_and_exits_0(busy_ctx, service, tmp_path):
    acme = service.onboard("Acme").id
    service.deposit(acme, 10_000, "camt-1")
    mint = service.mint(acme, "internal", 4_000, "mint-1")
    env = cli_env(busy_ctx, tmp_path)
    # The lock is held until the worker has met it (however long it takes to start on a busy machine).
    seen: list[str] = []
    with write_lock_held(Path(str(busy_ctx.engine.url.database))):
        worker = subprocess.Popen(
            [ANDCHAIN, "worker", "--until-idle", "--seconds", "60"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stderr is not None
        for line in worker.stderr:
            seen.append(line)
            if "database is locked" in line:
                break
    _, rest = worker.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert worker.returncode == 0, stderr
    assert "database is locked" in stderr and "Traceback" not in stderr
    assert service.ops.get(mint.id).status == OpStatus.SUCCEEDED
