"""The results of reconcile runs, kept so that the last one can be read without running it again.

`POST /v1/reconcile` runs the reconciliation and records its report here; `GET
/v1/reconcile/last` and the metrics read `last_result(engine)`. A run is recorded
whole (every check, what was in flight, the alerts) with when it started and ended
and who asked for it. Only the newest `RUNS_KEPT` runs are kept: the table is a
short record of recent runs, not an archive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Engine, Index, Integer, String, Table, Text, delete, select

from andchain.db import metadata, write_transaction
from andchain.ledger.model import IdSource

RUNS_KEPT = 2000  # about three months of hourly runs: the reserve attestation reads a month of them

runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("started_at_us", BigInteger, nullable=False),
    Column("finished_at_us", BigInteger, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("breaks", Integer, nullable=False),
    Column("alerts", Integer, nullable=False),
    Column("requested_by", String(100), nullable=False),
    # The whole report as JSON: {"ok", "breaks", "checks", "in_flight", "alerts"} (reconcile.Report.as_dict).
    Column("report", Text, nullable=False),
    Index("ix_reconcile_runs_finished", "finished_at_us"),
)


@dataclass(frozen=True)
class Run:
    id: str
    started_at_us: int
    finished_at_us: int
    ok: bool
    breaks: int
    alerts: int
    requested_by: str
    report: dict[str, Any]


def _run_of(row: Any) -> Run:
    return Run(
        row.id,
        int(row.started_at_us),
        int(row.finished_at_us),
        bool(row.ok),
        int(row.breaks),
        int(row.alerts),
        row.requested_by,
        json.loads(row.report),
    )


def record(
    engine: Engine,
    report: dict[str, Any],
    *,
    started_at_us: int,
    finished_at_us: int,
    requested_by: str,
    ids: IdSource,
) -> Run:
    """Keep one run's report (as `Report.as_dict()` gives it); the oldest beyond RUNS_KEPT go."""
    if finished_at_us < started_at_us:
        raise AssertionError(f"a reconcile run ends after it starts: {started_at_us} > {finished_at_us}")
    run_id = ids.new_id()
    values = dict(
        id=run_id,
        started_at_us=started_at_us,
        finished_at_us=finished_at_us,
        ok=bool(report["ok"]),
        breaks=len(report["breaks"]),
        alerts=len(report["alerts"]),
        requested_by=requested_by[:100],
        report=json.dumps(report, sort_keys=True, default=str),
    )
    with write_transaction(engine) as conn:
        conn.execute(runs.insert().values(**values))
        kept = select(runs.c.id).order_by(runs.c.finished_at_us.desc(), runs.c.id.desc()).limit(RUNS_KEPT)
        conn.execute(delete(runs).where(runs.c.id.not_in(kept.scalar_subquery())))
        row = conn.execute(select(runs).where(runs.c.id == run_id)).one()
    return _run_of(row)


def last_result(engine: Engine) -> Run | None:
    """The newest recorded run, or None when reconcile was never recorded."""
    with engine.connect() as conn:
        row = conn.execute(select(runs).order_by(runs.c.finished_at_us.desc(), runs.c.id.desc()).limit(1)).first()
    return None if row is None else _run_of(row)
