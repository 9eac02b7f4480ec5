"""`andchain custody`: the bank's custodians, through the custodian port (docs/custody.md).

The accounts the bank opened for its clients and its desk, their deposit addresses, the
balances each custodian reports beside the ledger's positions, withdrawals and internal
transfers (operations: the worker completes them), and each custodian's transfers.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, KeyOpt, clean_errors, context, emit_json, idempotency_key, out, print_op
from andchain.custody.port import Custodian
from andchain.money import format_minor, parse_minor

if TYPE_CHECKING:
    from andchain.custody.service import CustodyService

app = typer.Typer(
    help="Custodians: accounts, deposit addresses, balances, withdrawals, transfers.", no_args_is_help=True
)
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


def _service() -> CustodyService:
    from andchain.custody.service import CustodyService

    return CustodyService(context())


def _amount(service: CustodyService, text: str, asset: str) -> int:
    return parse_minor(text, service.scale(asset))


@app.command("open")
@clean_errors
def custody_open(
    owner: Annotated[str, typer.Argument(help="a client (id or name), or desk")],
    custodian: CustodianOpt = "reference",
    as_json: JsonOpt = False,
) -> None:
    """Open the owner's account at a custodian (once: again, it is the same account)."""
    record = _service().open_account(custodian, owner)
    if as_json:
        emit_json(asdict(record))
    else:
        out.print(f"{record.custodian} account {record.account_id} of {record.owner}")


@app.command("accounts")
@clean_errors
def custody_accounts(
    custodian: Annotated[str | None, typer.Option("--custodian", "-c", help="only this custodian")] = None,
    owner: Annotated[str | None, typer.Option(help="only this owner (a client id, or desk)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The accounts the bank opened at its custodians, and whose they are."""
    rows = [asdict(r) for r in _service().accounts(custodian, owner)]
    if as_json:
        emit_json(rows)
        return
    table = Table("custodian", "owner", "account")
    for row in rows:
        table.add_row(row["custodian"], row["owner"], row["account_id"])
    out.print(table)


@app.command("deposit-address")
@clean_errors
def custody_deposit_address(
    owner: Annotated[str, typer.Argument(help="a client (id or name), or desk")],
    asset: Annotated[str, typer.Option(help="e.g. USDC, BTC")],
    network: Annotated[str, typer.Option(help="e.g. base, bitcoin")],
    custodian: CustodianOpt = "reference",
    as_json: JsonOpt = False,
) -> None:
    """Where the owner's account receives an asset on a network (the account is opened if need be)."""
    found = _service().deposit_address(custodian, owner, asset, network)
    if as_json:
        emit_json(asdict(found))
    else:
        out.print(f"{found.asset} on {found.network}: {found.address}" + (f" (tag {found.tag})" if found.tag else ""))


@app.command("balances")
@clean_errors
def custody_balances(
    owner: Annotated[str | None, typer.Argument(help="a client (id or name), or desk; default: every account")] = None,
    custodian: CustodianOpt = "reference",
    as_json: JsonOpt = False,
) -> None:
    """What the custodian reports each account holds, beside the owner's position in the ledger."""
    service = _service()
    owner_id = service.owner_of(owner, active=False)[0] if owner else None
    positions = {(p.owner, p.asset): p for p in service.positions(owner_id, custodian)}
    rows: list[dict[str, Any]] = []
    for record in service.accounts(custodian, owner_id):
        reported = {b.asset: b for b in service.custodian(custodian).balances(record.account_id)}
        for asset in sorted(set(reported) | {a for o, a in positions if o == record.owner}):
            scale = service.scale(asset)
            balance = reported.get(asset)
            position = positions.get((record.owner, asset))
            rows.append(
                {
                    "owner": record.owner,
                    "account_id": record.account_id,
                    "asset": asset,
                    "total": format_minor(balance.total_minor if balance else 0, scale),
                    "available": format_minor(balance.available_minor if balance else 0, scale),
                    "ledger": position.view()["balance"] if position else format_minor(0, scale),
                    "ledger_available": position.view()["available"] if position else format_minor(0, scale),
                }
            )
    if as_json:
        emit_json(rows)
        return
    table = Table("owner", "asset", "custodian total", "available", "ledger", "ledger available")
    for row in rows:
        table.add_row(
            row["owner"], row["asset"], row["total"], row["available"], row["ledger"], row["ledger_available"]
        )
    out.print(table)


@app.command("withdraw")
@clean_errors
def custody_withdraw(
    owner: Annotated[str, typer.Argument(help="a client (id or name), or desk")],
    amount: Annotated[str, typer.Argument(help="in the asset's units, e.g. 25.5")],
    asset: Annotated[str, typer.Option(help="e.g. USDC, BTC")],
    network: Annotated[str, typer.Option(help="e.g. base, bitcoin")],
    to: Annotated[str, typer.Option("--to", help="the destination address (a client's: registered and verified)")],
    custodian: CustodianOpt = "reference",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw to an external address: held in the ledger now, sent by the worker, booked when the
    custodian completes it (released if it fails or is rejected)."""
    service = _service()
    print_op(
        service.withdraw(custodian, owner, asset, network, _amount(service, amount, asset), to, idempotency_key(key)),
        as_json,
    )


@app.command("transfer")
@clean_errors
def custody_transfer(
    source: Annotated[str, typer.Argument(help="from: a client (id or name), or desk")],
    target: Annotated[str, typer.Argument(help="to: a client (id or name), or desk")],
    amount: Annotated[str, typer.Argument(help="in the asset's units")],
    asset: Annotated[str, typer.Option(help="e.g. USDC, BTC")],
    network: Annotated[str, typer.Option(help="e.g. base, bitcoin")],
    custodian: CustodianOpt = "reference",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move value between two accounts at the same custodian (an operation, like a withdrawal)."""
    service = _service()
    op = service.transfer(
        custodian, source, target, asset, network, _amount(service, amount, asset), idempotency_key(key)
    )
    print_op(op, as_json)


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
