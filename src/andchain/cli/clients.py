"""`andchain clients` and `andchain deposit`: clients and their deposit accounts."""

from __future__ import annotations

import getpass
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from andchain.cli.common import (
    JsonOpt,
    clean_errors,
    emit_json,
    out,
    token_service,
    usd_minor,
)
from andchain.money import format_minor

app = typer.Typer(help="Clients of the bank and their deposit accounts.", no_args_is_help=True)


@app.command("onboard")
@clean_errors
def clients_onboard(
    name: str,
    kind: Annotated[str, typer.Option(help="legal or natural")] = "legal",
    as_json: JsonOpt = False,
) -> None:
    """Onboard a client and open its USD deposit account (idempotent by name)."""
    client = token_service().onboard(name, kind, by=f"cli:{getpass.getuser()}")
    if as_json:
        emit_json(asdict(client))
    else:
        out.print(f"client {client.id} {escape(client.name)} ({client.kind}, {client.status})")


@app.command("list")
@clean_errors
def clients_list(as_json: JsonOpt = False) -> None:
    """Clients with their deposit account balances."""
    service = token_service()
    rows = [{**asdict(c), "dda": format_minor(service.dda_balance(c.id), 2)} for c in service.clients.clients()]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "name", "kind", "status", "DDA (USD)")
    for r in rows:
        table.add_row(r["id"], escape(r["name"]), r["kind"], r["status"], r["dda"])
    out.print(table)


@app.command("status")
@clean_errors
def clients_status(
    client: str,
    status: Annotated[str, typer.Argument(help="active or suspended")],
    as_json: JsonOpt = False,
) -> None:
    """Suspend a client (its new requests are refused with client_not_active), or make it active again."""
    updated = token_service().clients.set_status(client, status)
    if as_json:
        emit_json(asdict(updated))
    else:
        out.print(f"client {updated.id} {escape(updated.name)} is {updated.status}")


def deposit(
    client: str,
    amount: Annotated[str, typer.Argument(help="e.g. '1000.00 USD'")],
    reference: Annotated[str, typer.Option(help="the credit notice's id (camt.054 NtryRef); books once")],
    memo: str = "",
    cash: Annotated[
        bool, typer.Option("--cash", help="currency paid in at a teller (cash monitoring counts it)")
    ] = False,
) -> None:
    """Credit a client's deposit account (an operator deposit or a camt.054 credit notice)."""
    service = token_service()
    transfer_id = service.deposit(client, usd_minor(service.ctx, amount), reference, memo, cash=cash)
    out.print(f"deposited: transfer {transfer_id}; DDA now {format_minor(service.dda_balance(client), 2)} USD")
