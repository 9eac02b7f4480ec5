"""`andchain bench ledger`: transfers/s through the ledger against plain INSERTs of the same rows.

Both sides run in alternating time slices on one database, so they share the
machine's state (cache, table size, other load) and the ratio is fair even on a
noisy shared machine.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from andchain import migrate
from andchain.bench import machine, stopped_cleanly_on_sigterm
from andchain.db import amount_encoder, make_engine, write_transaction
from andchain.devtools.postgres import throwaway_postgres
from andchain.ledger import AccountFlags, AccountSpec, Ledger, Result, TransferSpec
from andchain.ledger.core import TRANSFER_COLUMNS, insert_rows

BATCH_SIZE = 1000
CLIENTS = 10_000
SLICE_S = 0.5


@contextlib.contextmanager
def bench_engine(backend: str) -> Iterator[Engine]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="andchain-bench-") as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            yield engine
            engine.dispose()
        return
    if backend != "postgresql":
        raise ValueError(f"backend must be sqlite or postgresql, was {backend!r}")
    url = os.environ.get("ANDCHAIN_DATABASE_URL")
    if url and url.startswith("postgresql"):
        # Never touch the installation's tables: work in a schema of our own and drop it.
        schema = f"andchain_bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine = make_engine(url, connect_args={"options": f"-c search_path={schema}"})
        try:
            yield engine
        finally:
            engine.dispose()
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
        return
    with throwaway_postgres("bench") as server:
        engine = make_engine(server.url)
        yield engine
        engine.dispose()


def _engine_version(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with engine.connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar_one())


def _create_raw_table(engine: Engine) -> None:
    """A copy of ledger_transfers with the same columns, keys, indexes and foreign keys."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            ddl: list[str] = list(
                conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'ledger_transfers' AND sql IS NOT NULL"
                )
                .scalars()
                .all()
            )
            for statement in ddl:
                conn.exec_driver_sql(statement.replace("ledger_transfers", "bench_raw_transfers"))
        else:
            conn.exec_driver_sql("CREATE TABLE bench_raw_transfers (LIKE ledger_transfers INCLUDING ALL)")
            for side in ("debit", "credit"):
                conn.exec_driver_sql(
                    f"ALTER TABLE bench_raw_transfers ADD FOREIGN KEY ({side}_account_id) "
                    "REFERENCES ledger_accounts (id)"
                )


def run(backend: str, seconds: float) -> dict[str, Any]:
    with stopped_cleanly_on_sigterm(), bench_engine(backend) as engine:
        migrate.upgrade(engine)
        ledger = Ledger(engine)
        specs = [
            AccountSpec("bank:usd:hot", "USD", flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
            AccountSpec("bank:usd:funding", "USD"),
        ]
        specs += [AccountSpec(f"clients:c{i}:usd", "USD") for i in range(CLIENTS)]
        for start in range(0, len(specs), 5000):
            ledger.create_accounts(specs[start : start + 5000])
        hot, funding = 1, 2
        assert ledger.create_transfer(TransferSpec(funding, hot, 10**30, id="fund")).result == Result.OK

        counter = 0

        def ledger_batch(size: int) -> int:
            nonlocal counter
            batch = []
            for _ in range(size):
                counter += 1
                batch.append(TransferSpec(hot, 3 + counter % CLIENTS, 1, id=f"b{counter}", code="bench"))
            results = ledger.create_transfers(batch)
            ok = sum(r.result is Result.OK for r in results)
            assert ok == size, [r for r in results if r.result is not Result.OK][:3]
            return ok

        encode = amount_encoder(engine.dialect.name)
        _create_raw_table(engine)
        raw_counter = 0

        def raw_batch(size: int) -> int:
            nonlocal raw_counter
            now = time.time_ns() // 1000
            rows = []
            for _ in range(size):
                raw_counter += 1
                rows.append(
                    (
                        f"r{raw_counter}",
                        hot,
                        3 + raw_counter % CLIENTS,
                        encode(1),
                        "USD",
                        0,
                        None,
                        0,
                        "bench",
                        "",
                        None,
                        now,
                    )
                )
            with write_transaction(engine) as conn:
                insert_rows(conn, "bench_raw_transfers", TRANSFER_COLUMNS, rows)
            return size

        ledger_batch(BATCH_SIZE)  # warm up caches and prepared paths
        raw_batch(BATCH_SIZE)
        timings = {"ledger": [0.0, 0], "raw": [0.0, 0], "single": [0.0, 0]}
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for name, fn, size in (
                ("raw", raw_batch, BATCH_SIZE),
                ("ledger", ledger_batch, BATCH_SIZE),
                ("single", ledger_batch, 1),
            ):
                slice_end = time.perf_counter() + SLICE_S / (4 if name == "single" else 1)
                while True:
                    t0 = time.perf_counter()
                    done = fn(size)
                    timings[name][0] += time.perf_counter() - t0
                    timings[name][1] += done
                    if time.perf_counter() >= slice_end:
                        break
        breaks = ledger.verify()
        per_s = {name: (count / spent if spent else 0.0) for name, (spent, count) in timings.items()}
        return {
            "bench": "ledger",
            "backend": backend,
            "engine": _engine_version(engine),
            "transfers_per_s": round(per_s["ledger"]),
            "single_transfers_per_s": round(per_s["single"]),
            "raw_limit_per_s": round(per_s["raw"]),
            "ratio": round(per_s["ledger"] / per_s["raw"], 3) if per_s["raw"] else 0.0,
            "batch_size": BATCH_SIZE,
            "hot_accounts": 1,
            "client_accounts": CLIENTS,
            "transfers_measured": int(timings["ledger"][1] + timings["single"][1]),
            "seconds": seconds,
            "balances_verified": not breaks,
            "machine": machine(),
        }
