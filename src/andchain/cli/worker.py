"""`andchain worker` and `andchain reconcile`."""

from __future__ import annotations

from typing import Annotated

import typer

from andchain.cli.common import (
    JsonOpt,
    emit_json,
    err,
    fail,
    render_report,
)
from andchain.context import Context


def worker(
    seconds: Annotated[float, typer.Option(help="stop after this long (default: run until interrupted)")] = 10**9,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="stop once no operation is unfinished")] = False,
) -> None:
    """Run operations, the listeners and the programmable payment rules."""
    from andchain.tokens.runtime import run_until_idle, token_worker

    ctx = Context()
    ctx.upgrade_database()
    err.print("andchain worker: operations, listeners, rules (Ctrl-C to stop)")
    running = token_worker(ctx)
    try:
        if until_idle:
            if not run_until_idle(running, seconds=seconds):
                fail(f"operations still unfinished after {seconds:g}s: {running.ops.counts()}")
        else:
            running.run(seconds=seconds)
    except KeyboardInterrupt:
        err.print("worker stopped")


def reconcile_command(as_json: JsonOpt = False) -> None:
    """Prove that the ledger and every chain agree; exit 1 on any break."""
    from andchain.reconcile import reconcile

    report = reconcile(Context())
    if as_json:
        emit_json(report.as_dict())
    else:
        render_report(report)
    if report.breaks:
        raise typer.Exit(1)
