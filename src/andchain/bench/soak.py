"""`andchain bench soak`: a steady stream of mints and payments for N minutes, watching what grows.

The bench starts its own anvil node (internal profile) and SQLite database in a
temporary directory, onboards clients, then for `minutes` submits operations at `rate_per_s` (half
mints, half payments) while the worker runs in the same process. Every `sample_s` it records the
process's resident memory, the database's size on disk (with its WAL), the operations done, those
unfinished, and the listener's lag behind the chain's head. A flat run shows memory that levels off,
a database that grows by a constant number of bytes per operation, and a lag that stays bounded.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from andchain.bench import machine, throwaway_internal_chain
from andchain.chains import schema as chain_schema
from andchain.context import Context
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TokenService

CLIENTS = 20
SUBMIT_BATCH_MAX = 50  # operations submitted between two worker rounds at most


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _db_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("andchain.db*") if p.is_file())


def run(minutes: float, rate_per_s: float, sample_s: float) -> dict[str, Any]:
    with throwaway_internal_chain("andchain-bench-soak-") as ctx:
        return _soak(ctx, minutes, rate_per_s, sample_s)


def _soak(ctx: Context, minutes: float, rate_per_s: float, sample_s: float) -> dict[str, Any]:
    service = TokenService(ctx)
    service.setup("internal")
    worker = token_worker(ctx, service)
    clients = [service.onboard(f"soak client {i}").id for i in range(CLIENTS)]
    for client in clients:
        service.deposit(client, 10**13, reference=f"soak-{client}")
        service.mint(client, "internal", 10**7, f"soak-seed-{client}")
    assert run_until_idle(worker, seconds=120), service.ops.counts()
    worker.recover()
    chain = service.chain("internal")
    data_dir = Path(ctx.settings.data_dir)
    samples: list[dict[str, Any]] = []
    submitted = 0
    started = time.monotonic()
    deadline = started + minutes * 60
    next_sample = started
    ops_at_start = service.ops.counts().get(OpStatus.SUCCEEDED.value, 0)
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        due = int((now - started) * rate_per_s) - submitted
        for _ in range(max(0, min(due, SUBMIT_BATCH_MAX))):
            i = submitted
            client = clients[i % CLIENTS]
            if i % 2 == 0:
                service.mint(client, "internal", 100 + i % 1000, f"soak-mint-{i}")
            else:
                service.pay(client, clients[(i + 1) % CLIENTS], "internal", 1 + i % 50, f"soak {i}", f"soak-pay-{i}")
            submitted += 1
        if worker.run_once() == 0:
            time.sleep(0.01)
        if now >= next_sample:
            samples.append(_sample(service, chain, data_dir, now - started, ops_at_start, submitted))
            next_sample = now + sample_s
    run_until_idle(worker, seconds=120)
    samples.append(_sample(service, chain, data_dir, time.monotonic() - started, ops_at_start, submitted))
    report = reconcile(ctx)
    return _summary(samples, submitted, minutes, rate_per_s, report.breaks == [])


def _sample(
    service: TokenService,
    chain: Any,
    data_dir: Path,
    elapsed_s: float,
    ops_at_start: int,
    submitted: int,
) -> dict[str, Any]:
    counts = service.ops.counts()
    done = counts.get(OpStatus.SUCCEEDED.value, 0) - ops_at_start
    unfinished = sum(v for k, v in counts.items() if k not in ("succeeded", "failed", "cancelled"))
    head = chain.block_number()
    with service.ctx.engine.connect() as conn:
        checkpoint = conn.execute(
            select(chain_schema.checkpoints.c.block_number).order_by(chain_schema.checkpoints.c.block_number)
        ).scalar()
    return {
        "elapsed_s": round(elapsed_s, 1),
        "submitted": submitted,
        "succeeded": done,
        "unfinished": unfinished,
        "rss_mb": round(_rss_bytes() / 2**20, 1),
        "db_mb": round(_db_bytes(data_dir) / 2**20, 2),
        "listener_lag_blocks": None if checkpoint is None else max(0, head - int(checkpoint)),
    }


def _summary(
    samples: list[dict[str, Any]], submitted: int, minutes: float, rate_per_s: float, clean: bool
) -> dict[str, Any]:
    # Memory after the first sample (imports, caches and connections warm) against the end.
    warm = samples[min(1, len(samples) - 1)]
    last = samples[-1]
    done = max(1, last["succeeded"])
    growth_db = (last["db_mb"] - samples[0]["db_mb"]) * 2**20
    half = samples[len(samples) // 2]
    per_op_first = (half["db_mb"] - samples[0]["db_mb"]) * 2**20 / max(1, half["succeeded"] - samples[0]["succeeded"])
    per_op_second = (last["db_mb"] - half["db_mb"]) * 2**20 / max(1, last["succeeded"] - half["succeeded"])
    lags = [s["listener_lag_blocks"] for s in samples if s["listener_lag_blocks"] is not None]
    return {
        "bench": "soak",
        "minutes": minutes,
        "rate_per_s": rate_per_s,
        "submitted": submitted,
        "succeeded": last["succeeded"],
        "unfinished_at_end": last["unfinished"],
        "rss_mb_warm": warm["rss_mb"],
        "rss_mb_end": last["rss_mb"],
        "rss_mb_max": max(s["rss_mb"] for s in samples),
        "db_bytes_per_op": round(growth_db / done),
        "db_bytes_per_op_first_half": round(per_op_first),
        "db_bytes_per_op_second_half": round(per_op_second),
        "listener_lag_blocks_max": max(lags) if lags else None,
        "listener_lag_blocks_median": statistics.median(lags) if lags else None,
        "reconcile_clean": clean,
        "samples": samples,
        "node": "anvil, internal profile (one block per transaction, zero gas)",
        "database": "SQLite (WAL) in a temporary directory",
        "pid": os.getpid(),
        "machine": machine(),
    }
