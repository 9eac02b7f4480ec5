"""`andchain desk`: the trading desk (docs/trading.md): quotes, trades, positions, tiers and its states."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, clean_errors, context, emit_json, out

app = typer.Typer(
    help="The trading desk: quotes and their acceptance, positions, tiers; halt, reduce, resume.",
    no_args_is_help=True,
)
InstrumentOpt = Annotated[
    str | None, typer.Option("--instrument", "-i", help="one instrument (default: the whole desk)")
]
ReasonOpt = Annotated[str, typer.Option(help="why (kept with the state, shown to whoever is refused)")]


def _set(state: str, instrument: str | None, reason: str) -> None:
    from andchain.trading.instruments import Instruments
    from andchain.trading.risk import GLOBAL, States, TradingState

    ctx = context()
    ctx.upgrade_database()
    scope = Instruments(ctx.settings.trading).get(instrument).symbol if instrument else GLOBAL
    States(ctx.engine, ctx.clock).set(TradingState(state), scope=scope, reason=reason, by=f"cli:{getpass.getuser()}")
    out.print(f"{'the desk' if scope == GLOBAL else scope}: {state} ({reason})")


@app.command("halt")
@clean_errors
def desk_halt(reason: ReasonOpt, instrument: InstrumentOpt = None) -> None:
    """No new trade at all, for the desk or one instrument."""
    _set("halted", instrument, reason)


@app.command("reduce")
@clean_errors
def desk_reduce(reason: ReasonOpt, instrument: InstrumentOpt = None) -> None:
    """Only trades that reduce the desk's position in the asset."""
    _set("reducing", instrument, reason)


@app.command("resume")
@clean_errors
def desk_resume(reason: ReasonOpt = "resumed", instrument: InstrumentOpt = None) -> None:
    """Trade again."""
    _set("active", instrument, reason)


@app.command("status")
@clean_errors
def desk_status(as_json: JsonOpt = False) -> None:
    """The desk's state and every instrument's."""
    from andchain.trading.instruments import Instruments
    from andchain.trading.risk import GLOBAL, States, TradingState

    ctx = context()
    ctx.upgrade_database()
    states = States(ctx.engine, ctx.clock)
    desk_state, desk_reason = states.all().get(GLOBAL, (TradingState.ACTIVE, ""))
    rows = [{"scope": "desk", "state": desk_state.value, "reason": desk_reason}]
    for instrument in Instruments(ctx.settings.trading):
        state, reason = states.of(instrument.symbol)
        rows.append({"scope": instrument.symbol, "state": state.value, "reason": reason})
    if as_json:
        emit_json(rows)
        return
    table = Table("scope", "state", "reason")
    for row in rows:
        table.add_row(row["scope"], row["state"], row["reason"])
    out.print(table)


def _desk() -> Any:
    from andchain.trading.desk import DeskService

    ctx = context()
    ctx.upgrade_database()
    return DeskService(ctx)


def _quote_table(view: dict[str, Any]) -> None:
    table = Table("quote", "client", "instrument", "side", "quantity", "price", "notional", "status", "expires")
    table.add_row(
        view["id"], view["client"], view["instrument"], view["side"], view["quantity"], view["price"],
        view["notional"], view["status"], view["expires_at"],
    )  # fmt: skip
    out.print(table)


@app.command("quote")
@clean_errors
def desk_quote(
    client: Annotated[str, typer.Argument(help="the client, by id or name")],
    side: Annotated[str, typer.Argument(help="the client's side: buy or sell")],
    instrument: Annotated[str, typer.Argument(help="e.g. BTC-USD")],
    quantity: Annotated[str | None, typer.Option(help="in the base asset, e.g. 0.5")] = None,
    notional: Annotated[str | None, typer.Option(help="in USD, e.g. 25000.00 (instead of --quantity)")] = None,
    pay_with: Annotated[str, typer.Option("--pay-with", help="usd (the DDA) or deposit_token")] = "usd",
    network: Annotated[str | None, typer.Option(help="the deposit tokens' network")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the desk for a firm price, open for trading.quote_ttl_s (accept it with `desk accept`)."""
    desk = _desk()
    quote = desk.quote(
        client, instrument, side, quantity=quantity, notional=notional, pay_with=pay_with, network=network
    )
    view = quote.view(desk.ctx.clock())
    if as_json:
        emit_json(view)
    else:
        _quote_table(view)


@app.command("accept")
@clean_errors
def desk_accept(
    quote: Annotated[str, typer.Argument(help="the quote's id")],
    as_json: JsonOpt = False,
) -> None:
    """Accept a quote within its life: the trade is recorded with its hold; the worker settles it."""
    desk = _desk()
    op = desk.accept(quote)
    view = {"trade": op.id, "status": op.status.value, "quote": quote}
    if as_json:
        emit_json(view)
    else:
        out.print(f"trade {op.id} {op.status.value} (quote {quote}); `andchain ops show {op.id}` follows it")


@app.command("quotes")
@clean_errors
def desk_quotes(
    client: Annotated[str | None, typer.Option(help="one client's, by id or name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The newest quotes and what became of them."""
    desk = _desk()
    client_id = desk.clients.client(client).id if client else None
    now = desk.ctx.clock()
    views = [q.view(now) for q in desk.quotes(client=client_id, limit=limit)]
    if as_json:
        emit_json(views)
        return
    table = Table("quote", "client", "instrument", "side", "quantity", "price", "notional", "status", "trade")
    for v in views:
        table.add_row(
            v["id"], v["client"], v["instrument"], v["side"], v["quantity"], v["price"], v["notional"],
            v["status"], v["trade"] or "",
        )  # fmt: skip
    out.print(table)


@app.command("positions")
@clean_errors
def desk_positions(as_json: JsonOpt = False) -> None:
    """The desk's positions per asset and place, average cost, realised and unrealised P&L at the venue's mid."""
    view = _desk().positions_view()
    if as_json:
        emit_json(view)
        return
    table = Table("asset", "place", "quantity", "average cost", "realised P&L", "unrealised P&L", "mark")
    for row in view["positions"]:
        table.add_row(
            row["asset"], row["place"], row["quantity"], row["average_cost"] or "", row["realised_pnl"],
            row["unrealised_pnl"] or "", row["mark"] or "",
        )  # fmt: skip
    out.print(table)
    out.print(f"net {view['net']}  realised {view['realised_pnl']} USD  unrealised {view['unrealised_pnl']} USD")
    for name, held in view["held_at_custodians"].items():
        out.print(f"held at custodian: {name} {held.get('balance')}")


@app.command("tier")
@clean_errors
def desk_tier(
    client: Annotated[str, typer.Argument(help="the client, by id or name")],
    tier: Annotated[str | None, typer.Argument(help="the tier to set (omit to show it)")] = None,
) -> None:
    """Show or set a client's trading tier (its limits, instruments and spread: trading.risk.tiers)."""
    desk = _desk()
    if tier is None:
        client_id = desk.clients.client(client).id
        out.print(f"{client_id}: {desk.tier_of(client_id)}")
        return
    client_id = desk.set_tier(client, tier, by=f"cli:{getpass.getuser()}")
    out.print(f"{client_id}: {tier}")


def _books() -> Any:
    from andchain.trading.orders import OrderBooks

    return OrderBooks(_desk())


def _placed(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(view)
        return
    out.print(
        f"order {view['id']} ({view['client_order_id']}): {view['side']} {view['quantity']} {view['instrument']} "
        f"{'@ ' + view['price'] if view['price'] else 'at market'} {view['time_in_force']} -> {view['status']}"
        f", filled {view['filled']}" + (f" ({view['reason']})" if view.get("reason") else "")
    )
    for trade in view.get("trades", []):
        out.print(f"  trade {trade['trade']}: {trade['quantity']} at {trade['price']} with the {trade['with']}")


@app.command("order")
@clean_errors
def desk_order(
    client: Annotated[str, typer.Argument(help="the client, by id or name")],
    side: Annotated[str, typer.Argument(help="buy or sell")],
    instrument: Annotated[str, typer.Argument(help="e.g. BTC-USD")],
    quantity: Annotated[str, typer.Argument(help="in the base asset, e.g. 0.5")],
    price: Annotated[str | None, typer.Option(help="the limit (none: a market order)")] = None,
    tif: Annotated[str, typer.Option("--tif", help="gtc, ioc or fok")] = "gtc",
    post_only: Annotated[bool, typer.Option("--post-only", help="rest only; refused if it would take")] = False,
    route: Annotated[bool, typer.Option("--route", help="what the book cannot fill trades with the desk")] = False,
    client_order_id: Annotated[str | None, typer.Option("--id", help="the client's id for it (replays)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place an order on the desk's book: matched between clients by price, then time."""
    placed = _books().place(
        client, instrument, side, quantity, price=price, tif=tif, post_only=post_only, route=route,
        client_order_id=client_order_id,
    )  # fmt: skip
    _placed(placed.view(), as_json)


@app.command("cancel")
@clean_errors
def desk_cancel(order: Annotated[str, typer.Argument(help="the order's id")], as_json: JsonOpt = False) -> None:
    """Cancel a resting order: what it holds is released."""
    _placed(_books().cancel(order).view(), as_json)


@app.command("amend")
@clean_errors
def desk_amend(
    order: Annotated[str, typer.Argument(help="the order's id")],
    quantity: Annotated[str | None, typer.Option(help="the new total, fills included")] = None,
    price: Annotated[str | None, typer.Option(help="the new limit")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Amend a resting limit order (a smaller quantity at the same price keeps its place)."""
    _placed(_books().amend(order, quantity=quantity, price=price).view(), as_json)


@app.command("orders")
@clean_errors
def desk_orders(
    client: Annotated[str | None, typer.Option(help="one client's, by id or name")] = None,
    status: Annotated[str | None, typer.Option(help="open, filled, cancelled or rejected")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The newest orders."""
    books = _books()
    client_id = books.desk.clients.client(client).id if client else None
    views = [o.view() for o in books.list(client=client_id, status=status, limit=limit)]
    if as_json:
        emit_json(views)
        return
    table = Table("order", "client", "instrument", "side", "quantity", "price", "filled", "status")
    for v in views:
        table.add_row(v["id"], v["client"], v["instrument"], v["side"], v["quantity"], v["price"] or "market",
                      v["filled"], v["status"])  # fmt: skip
    out.print(table)


@app.command("book")
@clean_errors
def desk_book(
    instrument: Annotated[str, typer.Argument(help="e.g. BTC-USD")],
    levels: Annotated[int, typer.Option(min=1, max=100)] = 10,
    as_json: JsonOpt = False,
) -> None:
    """What rests on the desk's book, per price level."""
    depth = _books().depth(instrument, levels)
    if as_json:
        emit_json(depth)
        return
    table = Table("bid size", "bid", "ask", "ask size")
    bids, asks = depth["bids"], depth["asks"]
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else ["", ""]
        a = asks[i] if i < len(asks) else ["", ""]
        table.add_row(b[1], b[0], a[0], a[1])
    out.print(table)
