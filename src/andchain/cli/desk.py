"""`andchain desk`: the trading desk (docs/trading.md). Its states today; quotes and orders to come."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, clean_errors, context, emit_json, out

app = typer.Typer(help="The trading desk: halt, reduce, resume, and its state.", no_args_is_help=True)
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
