"""`andchain worker` and `andchain reconcile`."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from andchain.cli.common import (
    JsonOpt,
    emit_json,
    err,
    fail,
    render_report,
)
from andchain.context import Context


def worker(
    seconds: Annotated[
        float | None,
        typer.Option(help="stop after this long (default: run until interrupted; with --until-idle, at most 1 h)"),
    ] = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="stop once no operation is active and every listener has caught up with its network",
        ),
    ] = False,
) -> None:
    """Run operations, the listeners, the programmable payment rules and each network's maintenance."""
    from andchain.logs import configure_logging
    from andchain.tokens.runtime import UNTIL_IDLE_S, run_until_idle
    from andchain.trading.runtime import platform_worker

    ctx = Context()
    configure_logging(ctx.settings.log_level)
    ctx.upgrade_database()
    err.print("andchain worker: operations, listeners, rules (Ctrl-C to stop)")
    running = platform_worker(ctx)
    try:
        if until_idle:
            bound = seconds if seconds is not None else UNTIL_IDLE_S
            if not run_until_idle(running, seconds=bound):
                fail(f"not idle after {bound:g}s: operations {running.ops.counts()}; parts {running.failing_parts()}")
            attention = running.ops.counts().get("needs_attention", 0)
            if attention:
                err.print(
                    f"[yellow]{attention} operation(s) need attention:[/yellow] "
                    "`andchain ops list --status needs_attention`"
                )
            for part, error in running.failing_parts().items():
                err.print(f"[yellow]{part} failing:[/yellow] {escape(error)}")
        else:
            running.run(seconds=seconds if seconds is not None else float("inf"))
    except KeyboardInterrupt:
        err.print("worker stopped")


def reconcile_command(
    as_json: JsonOpt = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
            help="also write the breaks as Prometheus gauges to this file (node_exporter's textfile collector)",
        ),
    ] = None,
) -> None:
    """Prove that the ledger and every chain agree; exit 1 on any break."""
    from andchain import reconcile_store
    from andchain.metrics import record_reconcile, write_reconcile_metrics
    from andchain.reconcile import reconcile

    ctx = Context()
    started = ctx.clock()
    report = reconcile(ctx)
    record_reconcile(report)
    # Kept as evidence (the monthly reserve attestation reports the month's runs), as the API does.
    reconcile_store.record(
        ctx.engine,
        report.as_dict(),
        started_at_us=started,
        finished_at_us=max(started, ctx.clock()),
        requested_by=f"cli:{getpass.getuser()}",
        ids=ctx.ledger.ids,
    )
    if metrics_file is not None:
        write_reconcile_metrics(report, metrics_file)
    if as_json:
        emit_json(report.as_dict())
    else:
        render_report(report)
    if report.breaks:
        raise typer.Exit(1)
