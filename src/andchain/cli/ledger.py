"""`andchain ledger`: the double-entry book of record."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from andchain.cli.common import (
    JsonOpt,
    clean_errors,
    context,
    emit_json,
    err,
    fail,
    out,
)
from andchain.context import Context
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, TransferFlags, TransferSpec
from andchain.money import format_minor, parse_amount

# Accounts are named by their name or by their id written id:42, never by a bare number.
ACCOUNT_REF_HELP = "account name (e.g. clients:acme:usd:dda) or id written id:42"

app = typer.Typer(
    help="The double-entry ledger. Accounts are given by name or by id written id:42.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Ledger accounts, given by name or by id written id:42.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


def _account_row(ctx: Context, a: Any) -> dict[str, Any]:
    scale = ctx.assets.get(a.asset).scale
    return {
        "id": a.id,
        "name": a.name,
        "asset": a.asset,
        "kind": a.kind,
        "flags": int(a.flags),
        "closed": a.closed,
        "posted": format_minor(a.balance_posted, scale),
        "available": format_minor(a.available, scale),
        "debits_pending": format_minor(a.debits_pending, scale),
        "credits_pending": format_minor(a.credits_pending, scale),
        "debits_posted": format_minor(a.debits_posted, scale),
        "credits_posted": format_minor(a.credits_posted, scale),
        "metadata": a.metadata or {},
    }


@accounts_app.command("create")
@clean_errors
def accounts_create(
    name: Annotated[str, typer.Argument(help="colon path of ASCII letters, digits and _.-, e.g. clients:acme:usd:dda")],
    asset: Annotated[str, typer.Option(help="asset code, e.g. USD")],
    kind: Annotated[AccountKind, typer.Option(help="accounting kind")] = AccountKind.ASSET,
    no_overdraft: Annotated[bool, typer.Option("--no-overdraft", help="debits must not exceed credits")] = False,
    no_overcredit: Annotated[bool, typer.Option("--no-overcredit", help="credits must not exceed debits")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Open an account (idempotent by name)."""
    ctx = context()
    flags = (AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if no_overdraft else 0) | (
        AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS if no_overcredit else 0
    )
    (result,) = ctx.ledger.create_accounts([AccountSpec(name, asset.upper(), kind=kind, flags=int(flags))])
    if not result.ok:
        fail(f"account {name!r} refused: {result.result.value}")
    account = _account_row(ctx, ctx.ledger.account(result.account_id or 0))
    if as_json:
        emit_json({"result": result.result.value, "account": account})
    else:
        out.print(f"{result.result.value}: account {account['id']} {account['name']} ({account['asset']})")


@accounts_app.command("list")
@clean_errors
def accounts_list(
    asset: Annotated[str | None, typer.Option(help="only this asset")] = None,
    prefix: Annotated[str | None, typer.Option(help="only names starting with this")] = None,
    limit: int = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List accounts with their balances."""
    ctx = context()
    rows = [_account_row(ctx, a) for a in ctx.ledger.list_accounts(limit=limit, asset=asset, prefix=prefix)]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "name", "asset", "kind", "posted", "available", "pending dr", "pending cr")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["asset"],
            r["kind"],
            r["posted"],
            r["available"],
            r["debits_pending"],
            r["credits_pending"],
        )
    out.print(table)


@accounts_app.command("show")
@clean_errors
def accounts_show(
    account: Annotated[str, typer.Argument(help=ACCOUNT_REF_HELP)],
    history: Annotated[int, typer.Option(help="how many recent transfers to show")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """One account, its balances and its recent history. An id is written id:42."""
    ctx = context()
    a = ctx.ledger.account(account)
    row = _account_row(ctx, a)
    transfers = ctx.ledger.list_transfers(account_id=a.id, limit=history, newest_first=True)
    scale = ctx.assets.get(a.asset).scale
    moves: list[dict[str, Any]] = [
        {
            "id": t.id,
            "seq": t.seq,
            "direction": "debit" if t.debit_account_id == a.id else "credit",
            "amount": format_minor(t.amount, scale),
            "code": t.code,
            "memo": t.memo,
            "pending_status": t.pending_status,
        }
        for t in transfers
    ]
    if as_json:
        emit_json({"account": row, "history": moves})
        return
    out.print(f"[bold]{a.name}[/bold] (id {a.id}, {a.asset}, {a.kind}{', closed' if a.closed else ''})")
    out.print(
        f"posted {row['posted']}  available {row['available']}  pending dr {row['debits_pending']}  "
        f"pending cr {row['credits_pending']}"
    )
    table = Table("seq", "id", "side", "amount", "code", "memo", "pending")
    for m in moves:
        table.add_row(
            str(m["seq"]),
            escape(m["id"]),
            m["direction"],
            m["amount"],
            escape(m["code"]),
            escape(m["memo"]),
            m["pending_status"] or "",
        )
    out.print(table)


@app.command("transfer")
@clean_errors
def ledger_transfer(
    debit: Annotated[str, typer.Option("--from", help=f"debit account: {ACCOUNT_REF_HELP}")],
    credit: Annotated[str, typer.Option("--to", help=f"credit account: {ACCOUNT_REF_HELP}")],
    amount: Annotated[str, typer.Option(help="amount with asset, e.g. '12.34 USD'")],
    transfer_id: Annotated[str | None, typer.Option("--id", help="idempotency key; generated if absent")] = None,
    code: Annotated[str, typer.Option(help="reason code, e.g. deposit")] = "",
    memo: str = "",
    pending: Annotated[bool, typer.Option(help="reserve only (two-phase)")] = False,
    timeout_s: Annotated[int, typer.Option(help="pending only: expire after this many seconds")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Book one transfer between two accounts (names, or ids written id:42).

    Replaying an --id books nothing new. An --id refused on the state of the book stays refused.
    """
    if code == "seize":
        fail("the code 'seize' is reserved for seizures on a lawful order (andchain compliance seize)")
    ctx = context()
    value = parse_amount(amount, ctx.assets)
    spec = TransferSpec(
        debit_account_id=ctx.ledger.account_id(debit),
        credit_account_id=ctx.ledger.account_id(credit),
        amount=value.minor,
        asset=value.asset.code,
        id=transfer_id,
        code=code,
        memo=memo,
        flags=int(TransferFlags.PENDING) if pending else 0,
        timeout_s=timeout_s,
    )
    result = ctx.ledger.create_transfer(spec)
    if as_json:
        emit_json({"id": result.id, "result": result.result.value})
    else:
        out.print(f"{result.result.value}: transfer {result.id} {value}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("post")
@clean_errors
def ledger_post(
    pending_id: str,
    amount: Annotated[str | None, typer.Option(help="part to post, e.g. '5.00 USD'")] = None,
    transfer_id: Annotated[str | None, typer.Option("--id")] = None,
) -> None:
    """Post a pending transfer, in full or in part."""
    ctx = context()
    minor = parse_amount(amount, ctx.assets).minor if amount else None
    result = ctx.ledger.create_transfer(
        TransferSpec(id=transfer_id, flags=int(TransferFlags.POST_PENDING), pending_id=pending_id, amount=minor)
    )
    out.print(f"{result.result.value}: {result.id}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("void")
@clean_errors
def ledger_void(pending_id: str, transfer_id: Annotated[str | None, typer.Option("--id")] = None) -> None:
    """Void a pending transfer, releasing its reserve."""
    ctx = context()
    result = ctx.ledger.create_transfer(
        TransferSpec(id=transfer_id, flags=int(TransferFlags.VOID_PENDING), pending_id=pending_id)
    )
    out.print(f"{result.result.value}: {result.id}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("balances")
@clean_errors
def ledger_balances(as_json: JsonOpt = False) -> None:
    """Totals per asset: debits and credits, posted and pending. They must be equal."""
    ctx = context()
    totals = ctx.ledger.totals()
    rows: list[dict[str, Any]] = []
    for asset, t in totals.items():
        scale = ctx.assets.get(asset).scale
        rows.append(
            {
                "asset": asset,
                **{k: format_minor(v, scale) for k, v in t.items()},
                "balanced": t["debits_posted"] == t["credits_posted"] and t["debits_pending"] == t["credits_pending"],
            }
        )
    if as_json:
        emit_json(rows)
    else:
        table = Table("asset", "debits posted", "credits posted", "debits pending", "credits pending", "balanced")
        for r in rows:
            table.add_row(
                r["asset"],
                r["debits_posted"],
                r["credits_posted"],
                r["debits_pending"],
                r["credits_pending"],
                "yes" if r["balanced"] else "[red]NO[/red]",
            )
        out.print(table)
    if not all(r["balanced"] for r in rows):
        raise typer.Exit(1)


@app.command("verify")
@clean_errors
def ledger_verify(as_json: JsonOpt = False) -> None:
    """Recompute every balance from the transfers; exit non-zero on any break."""
    breaks = context().ledger.verify()
    if as_json:
        emit_json({"breaks": breaks})
    elif breaks:
        for b in breaks:
            err.print(f"[red]break:[/red] {b}")
    else:
        out.print("ledger verified: every balance derives from its transfers; debits == credits per asset")
    if breaks:
        raise typer.Exit(1)


@app.command("expire")
@clean_errors
def ledger_expire() -> None:
    """Expire every pending transfer past its timeout."""
    out.print(f"expired {context().ledger.expire_pending()} pending transfers")
