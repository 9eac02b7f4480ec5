"""`andchain rules`: programmable payments."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from andchain.cli.common import (
    JsonOpt,
    NetworkOpt,
    clean_errors,
    emit_json,
    out,
    token_service,
    usd_minor,
)

app = typer.Typer(help="Programmable payments: scheduled payments and sweeps.", no_args_is_help=True)


@app.command("schedule")
@clean_errors
def rules_schedule(
    client: str,
    payee: str,
    amount: str,
    memo: Annotated[str, typer.Option()] = "",
    network: NetworkOpt = "internal",
    in_s: Annotated[int, typer.Option("--in", help="first run in N seconds")] = 0,
    every_s: Annotated[int | None, typer.Option("--every", help="repeat every N seconds")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pay `amount` to `payee` at a time, once or repeatedly."""
    from andchain.tokens.rules import Rules

    service = token_service()
    rule = Rules(service).schedule(
        client,
        payee,
        network,
        usd_minor(service.ctx, amount),
        memo,
        at_us=service.ctx.clock() + in_s * 1_000_000,
        every_s=every_s,
    )
    emit_json(asdict(rule)) if as_json else out.print(f"rule {rule.id} scheduled ({rule.kind})")


@app.command("sweep")
@clean_errors
def rules_sweep(
    client: str,
    max_amount: Annotated[str, typer.Option("--max", help="keep at most this in tokens")],
    network: NetworkOpt = "internal",
    as_json: JsonOpt = False,
) -> None:
    """Keep at most `--max` in tokens on a network; redeem the excess to the DDA."""
    from andchain.tokens.rules import Rules

    service = token_service()
    rule = Rules(service).sweep(client, network, usd_minor(service.ctx, max_amount))
    emit_json(asdict(rule)) if as_json else out.print(f"rule {rule.id} sweeps above {max_amount}")


@app.command("list")
@clean_errors
def rules_list(client: str | None = None, as_json: JsonOpt = False) -> None:
    """Programmable payment rules."""
    from andchain.tokens.rules import Rules

    rules = Rules(token_service()).list(client)
    if as_json:
        emit_json([asdict(r) for r in rules])
        return
    table = Table("id", "client", "kind", "network", "status", "runs", "params")
    for r in rules:
        table.add_row(r.id, r.client_id, r.kind, r.network, r.status, str(r.runs), escape(str(r.params)))
    out.print(table)


@app.command("cancel")
@clean_errors
def rules_cancel(rule_id: str) -> None:
    """Cancel a rule; runs already started finish."""
    from andchain.tokens.rules import Rules

    out.print(f"rule {Rules(token_service()).cancel(rule_id).id} cancelled")
