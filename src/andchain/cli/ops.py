"""`andchain ops`: operations and their history."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from andchain.cli.common import (
    JsonOpt,
    clean_errors,
    emit_json,
    op_row,
    out,
    token_service,
)

app = typer.Typer(help="Operations: every external side effect, with its history.", no_args_is_help=True)


@app.command("list")
@clean_errors
def ops_list(
    status: Annotated[
        str | None,
        typer.Option(help="received, submitted, confirming, needs_attention, succeeded, failed, cancelled"),
    ] = None,
    kind: str | None = None,
    unfinished: Annotated[bool, typer.Option("--unfinished", help="only operations not finished yet")] = False,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """Operations, oldest first."""
    from andchain.ops.core import UNFINISHED

    statuses = [s.value for s in UNFINISHED] if unfinished else status
    ops = token_service().ops.list(status=statuses, kind=kind, limit=limit)
    if as_json:
        emit_json([op_row(op) for op in ops])
        return
    table = Table("id", "kind", "network", "status", "attempts", "error", "key")
    for op in ops:
        table.add_row(
            op.id,
            op.kind,
            op.network or "-",
            op.status.value,
            str(op.attempts),
            op.error_code or "",
            escape(op.idempotency_key),
        )
    out.print(table)


@app.command("show")
@clean_errors
def ops_show(op_id: str, as_json: JsonOpt = False) -> None:
    """One operation and its status history."""
    service = token_service()
    op = service.ops.get(op_id)
    history = service.ops.history(op_id)
    if as_json:
        emit_json(
            {
                **op_row(op),
                "state": {k: v for k, v in op.state.items() if k != "tx"},
                "history": [asdict(h) for h in history],
            }
        )
        return
    out.print(f"[bold]{op.id}[/bold] {op.kind} on {op.network}: {op.status.value}")
    if op.error_code:
        out.print(f"error {op.error_code}: {escape(op.error_message or '')}")
    out.print(f"payload {escape(str(op.payload))}")
    if op.result:
        out.print(f"result {escape(str(op.result))}")
    table = Table("at", "status", "detail")
    for h in history:
        table.add_row(time.strftime("%H:%M:%S", time.gmtime(h.at_us / 1e6)), h.status, escape(h.detail))
    out.print(table)


@app.command("retry")
@clean_errors
def ops_retry(op_id: str) -> None:
    """Ask for another attempt now; an operation waiting in needs_attention resumes with a fresh retry budget."""
    op = token_service().ops.retry(op_id)
    out.print(f"operation {op.id} will be retried ({op.status.value})")


@app.command("cancel")
@clean_errors
def ops_cancel(op_id: str, reason: str = "cancelled by operator") -> None:
    """Cancel an operation that has not been sent yet, releasing what it reserved."""
    from andchain.trading.runtime import platform_worker

    service = token_service()
    op = platform_worker(service.ctx, service).cancel(op_id, reason)
    out.print(f"operation {op.id} {op.status.value}")
