"""`andchain partners`: the apps (an exchange) that reach customers' accounts with their consent (docs/connect.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, clean_errors, context, emit_json, out

app = typer.Typer(help="Partner apps: OAuth clients that reach customers' accounts with consent.", no_args_is_help=True)


def _service() -> Any:
    from andchain.connect.oauth import ConnectService

    ctx = context()
    ctx.upgrade_database()
    return ConnectService(ctx.engine, ctx.settings.connect, ctx.api_keys.digest, clock=ctx.clock)


@app.command("register")
@clean_errors
def partners_register(
    name: Annotated[str, typer.Argument(help="the app's name, shown to customers on the consent screen")],
    redirect_uri: Annotated[list[str], typer.Option("--redirect-uri", help="an exact redirect URI (repeat)")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="accounts:read, payments:write (repeat; default accounts:read)")
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="a public client: no secret, PKCE alone")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register a partner app; its client secret is shown once."""
    partner, secret = _service().register_partner(name, redirect_uri, scope or ["accounts:read"], public=public)
    view = {**partner.view(), "client_secret": secret}
    if as_json:
        emit_json(view)
        return
    out.print(f"partner {partner.client_id} ({partner.name}); scopes {', '.join(partner.scopes)}")
    if secret:
        out.print(f"client secret (shown once): {secret}")


@app.command("list")
@clean_errors
def partners_list(as_json: JsonOpt = False) -> None:
    """The registered partner apps (never their secrets)."""
    views = [p.view() for p in _service().partners()]
    if as_json:
        emit_json(views)
        return
    table = Table("client id", "name", "public", "redirect URIs", "scopes")
    for v in views:
        table.add_row(v["client_id"], v["name"], str(v["public"]), " ".join(v["redirect_uris"]), " ".join(v["scopes"]))
    out.print(table)


@app.command("disable")
@clean_errors
def partners_disable(client_id: Annotated[str, typer.Argument(help="the partner's client id")]) -> None:
    """Disable a partner: its tokens stop working at once and it gets no new ones."""
    partner = _service().set_active(client_id, False)
    out.print(f"partner {partner.client_id} ({partner.name}) disabled")


@app.command("enable")
@clean_errors
def partners_enable(client_id: Annotated[str, typer.Argument(help="the partner's client id")]) -> None:
    """Enable a disabled partner again (its consents that have not ended work again)."""
    partner = _service().set_active(client_id, True)
    out.print(f"partner {partner.client_id} ({partner.name}) enabled")


def _pulls() -> Any:
    from andchain.connect.pulls import Pulls

    ctx = context()
    ctx.upgrade_database()
    return Pulls(ctx)


@app.command("pulls")
@clean_errors
def partners_pulls(
    client: Annotated[str | None, typer.Option(help="one customer's, by client id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Partners' pulls from customers' accounts (ACH-like debits), newest first."""
    views = [p.view() for p in _pulls().list(customer=client.lower() if client else None, limit=limit)]
    if as_json:
        emit_json(views)
        return
    table = Table("pull", "account", "amount", "status", "return", "settlement date", "window ends")
    for v in views:
        table.add_row(v["pullId"], v["accountId"], v["amount"], v["status"], v["returnCode"] or "",
                      v["settlementDate"], v["returnWindowEnds"])  # fmt: skip
    out.print(table)


@app.command("return-pull")
@clean_errors
def partners_return_pull(
    pull: Annotated[str, typer.Argument(help="the pull's id")],
    code: Annotated[str, typer.Argument(help="R01 insufficient funds, R02 closed, R10 not authorized, ...")],
) -> None:
    """Return a pull before its window closes: a pending one is released, a posted one reversed."""
    returned = _pulls().return_(pull, code)
    out.print(f"{returned.id}: returned {returned.return_code} ({returned.view()['returnReason']})")


@app.command("advance-pulls")
@clean_errors
def partners_advance_pulls() -> None:
    """Post the pulls whose settlement date came, settle those whose return window closed (the worker does
    this by itself)."""
    out.print(f"{_pulls().advance()} pull(s) moved on")


@app.command("issue-card")
@clean_errors
def partners_issue_card(
    client: Annotated[str, typer.Argument(help="the customer, by id or name")],
    limit: Annotated[str, typer.Option(help="the credit limit, e.g. 5000.00")],
) -> None:
    """Issue a retail credit card to a customer (its credit line in the ledger), to share with partners."""
    from andchain.connect.cards import Cards, line_account

    ctx = context()
    ctx.upgrade_database()
    card = Cards(ctx).issue(client, limit)
    account = ctx.ledger.account(line_account(card.customer, card.id))
    out.print(f"card {card.id} for {card.customer}: limit {limit} USD, its account {account.id} ({account.name})")


@app.command("redeem-points")
@clean_errors
def partners_redeem_points(
    client: Annotated[str, typer.Argument(help="the customer, by id or name")],
    points: Annotated[int, typer.Argument(help="how many points", min=1)],
    network: Annotated[str, typer.Option(help="where its own verified address is")] = "base",
    key: Annotated[str | None, typer.Option(help="an idempotency key (default: a new one)")] = None,
) -> None:
    """Redeem a customer's rewards points for USDC delivered to its own wallet (the worker follows the
    delivery: the points are taken when the custodian completes it)."""
    import uuid

    from andchain.connect.rewards import Rewards

    ctx = context()
    ctx.upgrade_database()
    made = Rewards(ctx).redeem(client, points, network, key or f"cli-{uuid.uuid4().hex}")
    out.print(f"redemption {made.id}: {made.points} points -> {made.view()['usdc']} USDC to {made.address} "
              f"({made.status}; withdrawal {made.withdrawal_id})")  # fmt: skip
