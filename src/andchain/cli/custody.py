"""`andchain custody`: the bank's custodians, through the custodian port (docs/custody.md).

Accounts, deposit addresses, balances and transfers as each custodian reports them. Moving
value out (a withdrawal) is an operation of the bank's books and comes with them; these
commands move nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, clean_errors, context, emit_json, out
from andchain.custody.port import Custodian
from andchain.money import format_minor

app = typer.Typer(help="Custodians: accounts, deposit addresses, balances, transfers.", no_args_is_help=True)
CustodianOpt = Annotated[str, typer.Option("--custodian", "-c", help="a configured custodian (custody.custodians)")]


def _port(name: str) -> Custodian:
    from andchain.custody.registry import custodian

    return custodian(context(), name)


@app.command("custodians")
@clean_errors
def custody_custodians(as_json: JsonOpt = False) -> None:
    """The configured custodians and their kinds."""
    configured = context().settings.custody.custodians
    rows = [{"name": name, "kind": cfg.kind, "base_url": cfg.base_url} for name, cfg in sorted(configured.items())]
    if as_json:
        emit_json(rows)
        return
    table = Table("custodian", "kind", "base URL")
    for row in rows:
        table.add_row(row["name"], row["kind"], row["base_url"] or "(default)")
    out.print(table)


@app.command("accounts")
@clean_errors
def custody_accounts(
    name: Annotated[str, typer.Argument(help="the account's name at the custodian")],
    owner: Annotated[str, typer.Option(help="a client id, or desk")],
    custodian: CustodianOpt = "reference",
    key: Annotated[str | None, typer.Option(help="idempotency key (default: custodian, owner and name)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open an account (a vault) at a custodian, or find the one this key opened."""
    account = _port(custodian).create_account(name, owner=owner, idempotency_key=key or f"account:{owner}:{name}")
    if as_json:
        emit_json(asdict(account))
    else:
        out.print(f"{account.custodian} account {account.id} ({account.name}, owner {account.owner})")


@app.command("deposit-address")
@clean_errors
def custody_deposit_address(
    account: Annotated[str, typer.Argument(help="the custodian's account id")],
    asset: Annotated[str, typer.Option(help="e.g. USDC, BTC")],
    network: Annotated[str, typer.Option(help="e.g. base, bitcoin")],
    custodian: CustodianOpt = "reference",
    as_json: JsonOpt = False,
) -> None:
    """Where the account receives an asset on a network."""
    found = _port(custodian).deposit_address(account, asset, network)
    if as_json:
        emit_json(asdict(found))
    else:
        out.print(f"{found.asset} on {found.network}: {found.address}" + (f" (tag {found.tag})" if found.tag else ""))


@app.command("balances")
@clean_errors
def custody_balances(
    account: Annotated[str, typer.Argument(help="the custodian's account id")],
    custodian: CustodianOpt = "reference",
    as_json: JsonOpt = False,
) -> None:
    """What the custodian reports the account holds (available: less what withdrawals hold)."""
    ctx = context()
    from andchain.custody.registry import custodian as port

    balances = port(ctx, custodian).balances(account)
    registry = ctx.settings.asset_registry
    rows: list[dict[str, Any]] = [
        {
            "asset": b.asset,
            "total": format_minor(b.total_minor, registry.get(b.asset).scale),
            "available": format_minor(b.available_minor, registry.get(b.asset).scale),
        }
        for b in balances
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("asset", "total", "available")
    for row in rows:
        table.add_row(row["asset"], row["total"], row["available"])
    out.print(table)


@app.command("transfers")
@clean_errors
def custody_transfers(
    custodian: CustodianOpt = "reference",
    cursor: Annotated[str | None, typer.Option(help="read on from this cursor")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The custodian's transfers since a cursor, in its normalised states (the raw one beside)."""
    ctx = context()
    from andchain.custody.registry import custodian as port

    page = port(ctx, custodian).transfers(cursor, limit=limit)
    registry = ctx.settings.asset_registry
    rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "state": t.state.value,
            "raw_status": t.raw_status,
            "incoming": t.incoming,
            "asset": t.asset,
            "network": t.network,
            "amount": format_minor(t.amount_minor, registry.get(t.asset).scale),
            "source_account": t.source_account_id,
            "destination": (t.destination.account_id or t.destination.address) if t.destination else None,
            "tx_hash": t.tx_hash,
        }
        for t in page.transfers
    ]
    if as_json:
        emit_json({"transfers": rows, "cursor": page.cursor, "more": page.more})
        return
    table = Table("id", "state", "in", "amount", "asset", "network", "to")
    for row in rows:
        table.add_row(
            row["id"],
            row["state"],
            "in" if row["incoming"] else "",
            row["amount"],
            row["asset"],
            row["network"],
            str(row["destination"] or ""),
        )
    out.print(table)
    out.print(f"cursor {page.cursor}" + (" (more)" if page.more else ""))
