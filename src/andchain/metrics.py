"""What /metrics reports beyond the HTTP requests: the platform's state, read when scraped.

- `andchain_operations{kind,status}`: operations in the database by kind and status;
- `andchain_listener_lag_blocks{network}`: final blocks each network's listener has yet
  to read, as the live worker holding its lease last reported (ops_workers heartbeats);
- `andchain_workers_alive`: workers whose last heartbeat is recent;
- `andchain_database_up`: 0 when the database did not answer the scrape (nothing else is
  then reported for it, rather than zeros that would read as "all is well");
- `andchain_reconcile_breaks{check}`, `andchain_reconcile_checks`,
  `andchain_reconcile_last_run_timestamp_seconds`: the last reconciliation this process
  ran. No reconciliation result is stored in the database, and `andchain reconcile` is
  a process of its own: `andchain reconcile --metrics-file` writes the same gauges to a
  file for node_exporter's textfile collector (the usual way to report a batch job).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from andchain.config import OpsSettings
from andchain.ledger.model import Clock
from andchain.ops import Operations
from andchain.ops import schema as ops_schema
from andchain.ops.worker import worker_status

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from andchain.reconcile import Report

log = logging.getLogger(__name__)


def live_lag_blocks(workers: list[dict[str, Any]]) -> dict[str, int | None]:
    """Per network, the listener lag the live workers report (a number wins over None:
    a worker standing by for a network reports nothing about it)."""
    lag_blocks: dict[str, int | None] = {}
    for w in workers:
        if w["alive"]:
            for network, lag in (w.get("lag_blocks") or {}).items():
                if lag is not None or network not in lag_blocks:
                    lag_blocks[network] = lag
    return lag_blocks


@dataclass(frozen=True)
class ReconcileResult:
    checks: int
    breaks_by_check: dict[str, int]
    finished_at_s: float


_last_reconcile: ReconcileResult | None = None
_lock = threading.Lock()


def reconcile_result(report: Report, finished_at_s: float | None = None) -> ReconcileResult:
    breaks: dict[str, int] = {}
    for check in report.checks:
        breaks.setdefault(check.check, 0)
        if not check.ok:
            breaks[check.check] += 1
    return ReconcileResult(len(report.checks), breaks, time.time() if finished_at_s is None else finished_at_s)


def record_reconcile(report: Report) -> ReconcileResult:
    """Keep this reconciliation's figures for this process's /metrics."""
    global _last_reconcile
    result = reconcile_result(report)
    with _lock:
        _last_reconcile = result
    return result


def last_reconcile() -> ReconcileResult | None:
    with _lock:
        return _last_reconcile


def reconcile_metrics(result: ReconcileResult) -> Iterator[Metric]:
    breaks = GaugeMetricFamily(
        "andchain_reconcile_breaks", "Breaks found by the last reconciliation, per kind of check", labels=["check"]
    )
    for check, count in sorted(result.breaks_by_check.items()):
        breaks.add_metric([check], count)
    yield breaks
    yield GaugeMetricFamily("andchain_reconcile_checks", "Checks made by the last reconciliation", value=result.checks)
    yield GaugeMetricFamily(
        "andchain_reconcile_last_run_timestamp_seconds",
        "When the last reconciliation finished (Unix time)",
        value=result.finished_at_s,
    )


class _Figures(Collector):
    def __init__(self, result: ReconcileResult) -> None:
        self.result = result

    def collect(self) -> Iterator[Metric]:
        return reconcile_metrics(self.result)


def write_reconcile_metrics(report: Report, path: Path) -> None:
    """The reconciliation's gauges as a Prometheus text file (written whole, then renamed into place)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Figures(reconcile_result(report)))
    write_to_textfile(str(path), registry)


class PlatformCollector(Collector):
    """Reads the operations and the workers' heartbeats from the database at each scrape."""

    def __init__(self, engine: Engine, clock: Clock, settings: OpsSettings) -> None:
        self.engine = engine
        self.clock = clock
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        try:
            by_kind = self._operations()
            workers = worker_status(
                Operations(self.engine, clock=self.clock, settings=self.settings), self.settings.worker_stale_after_s
            )
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer", extra={"error": type(exc).__name__})
            yield GaugeMetricFamily("andchain_database_up", "1 when the database answered this scrape", value=0)
        else:
            yield GaugeMetricFamily("andchain_database_up", "1 when the database answered this scrape", value=1)
            operations = GaugeMetricFamily(
                "andchain_operations", "Operations by kind and status", labels=["kind", "status"]
            )
            for (kind, status), count in sorted(by_kind.items()):
                operations.add_metric([kind, status], count)
            yield operations
            lag = GaugeMetricFamily(
                "andchain_listener_lag_blocks",
                "Final blocks the network's listener has yet to read (live workers' heartbeats)",
                labels=["network"],
            )
            for network, blocks in sorted(live_lag_blocks(workers).items()):
                if blocks is not None:
                    lag.add_metric([network], blocks)
            yield lag
            yield GaugeMetricFamily(
                "andchain_workers_alive",
                "Workers whose last heartbeat is within ops.worker_stale_after_s",
                value=sum(1 for w in workers if w["alive"]),
            )
        result = last_reconcile()
        if result is not None:
            yield from reconcile_metrics(result)

    def _operations(self) -> dict[tuple[str, str], int]:
        t = ops_schema.operations
        query = select(t.c.kind, t.c.status, func.count()).group_by(t.c.kind, t.c.status)
        with self.engine.connect() as conn:
            return {(str(row[0]), str(row[1])): int(row[2]) for row in conn.execute(query)}
