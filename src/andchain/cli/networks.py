"""`andchain networks`: local nodes, deployments, the pause switch and rate limits."""

from __future__ import annotations

from dataclasses import asdict
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
    out,
)
from andchain.context import Context
from andchain.errors import DomainError
from andchain.money import format_minor

app = typer.Typer(help="EVM networks: local nodes and their status.", no_args_is_help=True)


def _selected(ctx: Context, names: list[str] | None, *, local_only: bool) -> list[str]:
    if names:
        for name in names:
            ctx.settings.network(name)
        return names
    return [n for n, net in ctx.settings.networks.items() if net.enabled and (net.local or not local_only)]


@app.command("up")
@clean_errors
def networks_up(
    names: Annotated[list[str] | None, typer.Argument(help="networks (default: enabled local ones)")] = None,
) -> None:
    """Start a local anvil node for each local network and wait until it answers."""
    ctx = context()
    failed = False
    for name in _selected(ctx, names, local_only=True):
        node = ctx.node(name)
        try:
            outcome = node.start()
            out.print(f"{name}: {outcome} (chain id {node.network.chain_id}, {node.network.rpc_url})")
        except DomainError as exc:
            failed = True
            err.print(f"[red]{name}:[/red] {escape(exc.message)}")
    if failed:
        raise typer.Exit(1)


@app.command("down")
@clean_errors
def networks_down(
    names: Annotated[list[str] | None, typer.Argument(help="networks (default: all local)")] = None,
) -> None:
    """Stop the local nodes andchain started (their state is kept under the data directory)."""
    ctx = context()
    chosen = names or [n for n, net in ctx.settings.networks.items() if net.local]
    for name in chosen:
        out.print(f"{name}: {ctx.node(name).stop()}")


@app.command("status")
@clean_errors
def networks_status(names: Annotated[list[str] | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Chain id, block height and health of every configured network."""
    ctx = context()
    chosen = names or list(ctx.settings.networks)
    rows: list[dict[str, Any]] = []
    for name in chosen:
        network = ctx.settings.network(name)
        status = ctx.node(name).status()
        rows.append(
            {
                "network": name,
                "display_name": network.display_name,
                "kind": network.kind,
                "chain_id": status.chain_id,
                "expected_chain_id": network.chain_id,
                "block": status.block,
                "healthy": status.healthy,
                "local": network.local,
                "enabled": network.enabled,
                "pid": status.pid,
                "rpc_url": network.rpc_url_shown,
                "confirmations": network.confirmations,
                "detail": status.detail,
            }
        )
    if as_json:
        emit_json(rows)
    else:
        table = Table("network", "kind", "chain id", "block", "health", "rpc", "confirmations")
        for r in rows:
            health = "[green]up[/green]" if r["healthy"] else f"[red]{escape(r['detail'])}[/red]"
            table.add_row(
                r["network"],
                r["kind"],
                str(r["expected_chain_id"]),
                "-" if r["block"] is None else str(r["block"]),
                health,
                r["rpc_url"],
                str(r["confirmations"]),
            )
        out.print(table)
    enabled = [r for r in rows if r["enabled"] or names]
    if any(not r["healthy"] for r in enabled):
        raise typer.Exit(1)


@app.command("deploy")
@clean_errors
def networks_deploy(
    names: Annotated[list[str] | None, typer.Argument(help="networks (default: every enabled one)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy (or adopt) the deposit token, the fund share and DvP on each network; record their addresses."""
    from andchain.tokens.service import TokenService

    ctx = context()
    service = TokenService(ctx)
    chosen = names or [n for n, net in ctx.settings.networks.items() if net.enabled]
    deployed = {name: service.setup(name) for name in chosen}
    if as_json:
        emit_json(deployed)
        return
    for name, addresses in deployed.items():
        for contract, address in addresses.items():
            out.print(f"{name}: {contract} at {address}")


@app.command("pause")
@clean_errors
def networks_pause(name: str, reason: Annotated[str, typer.Option(help="why, shown to whoever is refused")]) -> None:
    """Refuse every move into or out of a network until it is resumed."""
    from andchain.tokens.moves import Moves
    from andchain.tokens.service import TokenService

    controls = Moves(TokenService(context())).pause(name, reason)
    out.print(f"{name}: moves paused ({escape(controls.reason or '')})")


@app.command("resume")
@clean_errors
def networks_resume(name: str) -> None:
    """Accept moves again on a paused network."""
    from andchain.tokens.moves import Moves
    from andchain.tokens.service import TokenService

    Moves(TokenService(context())).resume(name)
    out.print(f"{name}: moves resumed")


@app.command("controls")
@clean_errors
def networks_controls(as_json: JsonOpt = False) -> None:
    """Pause switch and move rate-limit headroom of every enabled network."""

    from andchain.tokens.moves import Moves
    from andchain.tokens.service import TokenService

    ctx = context()
    moves = Moves(TokenService(ctx))
    rows = [asdict(moves.controls(n)) for n, net in ctx.settings.networks.items() if net.enabled]
    if as_json:
        emit_json(rows)
        return
    table = Table("network", "paused", "reason", "outbound available", "inbound available")
    for r in rows:
        table.add_row(
            r["network"],
            "yes" if r["paused"] else "no",
            escape(r["reason"] or ""),
            format_minor(r["outbound_available"], 2),
            format_minor(r["inbound_available"], 2),
        )
    out.print(table)
