"""`andchain stablecoin convert`: stablecoins into USD deposits and back (docs/custody.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from andchain.cli.common import JsonOpt, KeyOpt, clean_errors, context, emit_json, err, idempotency_key, out, print_op
from andchain.money import parse_minor

app = typer.Typer(help="Stablecoins: convert to and from USD deposits.", no_args_is_help=True)


@app.command("convert")
@clean_errors
def stablecoin_convert(
    client: Annotated[str, typer.Argument(help="the client (id or name)")],
    amount: Annotated[str, typer.Argument(help="in the --from asset's units, e.g. 250.00")],
    from_asset: Annotated[str, typer.Option("--from", help="USDC or USD")],
    to_asset: Annotated[str, typer.Option("--to", help="USD or USDC")],
    network: Annotated[
        str | None, typer.Option(help="where stablecoins are delivered (custody.stablecoin_network)")
    ] = None,
    custodian: Annotated[
        str | None, typer.Option("--custodian", "-c", help="default: custody.stablecoin_custodian")
    ] = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """USDC held for the client at the custodian into USD in its deposit account, 1:1; or USD from
    its deposit account into USDC withdrawn to its registered address (IVMS101 travel-rule data
    above custody.travel_rule_from). The worker completes it."""
    from andchain.custody.service import CustodyService

    service = CustodyService(context())
    op = service.convert(
        client,
        parse_minor(amount, service.scale(from_asset.upper())),
        from_asset,
        to_asset,
        idempotency_key(key),
        network=network,
        custodian=custodian,
    )
    print_op(op, as_json)


@app.command("setup")
@clean_errors
def stablecoin_setup(
    network: Annotated[
        list[str] | None, typer.Option("--network", "-n", help="a local public network (default: every one running)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Development: deploy (or find) the USDC stand-in on local public networks. Elsewhere USDC is
    Circle's: configure its address under custodian.tokens / custody.custodians.*.tokens."""
    from andchain.chains.usdc import setup_local

    ctx = context()
    ctx.upgrade_database()
    names = network or [
        n for n, cfg in ctx.settings.networks.items() if cfg.local and cfg.kind == "public" and cfg.enabled
    ]
    done = {}
    for name in names:
        cfg = ctx.settings.network(name)
        if not cfg.local:
            raise typer.BadParameter(f"{name} is not a local network: its USDC is Circle's, never a stand-in")
        if not ctx.node(name).status().healthy:
            if network:  # asked for by name: it cannot be done
                raise typer.BadParameter(f"{name}: its node is not running (`andchain networks up {name}`)")
            err.print(f"[yellow]{name}: its node is not running (`andchain networks up`); skipped[/yellow]")
            continue
        done[name] = setup_local(ctx, name)
    if as_json:
        emit_json(done)
        return
    for name, address in done.items():
        out.print(f"USDC stand-in on {name}: {address}")


@app.command("faucet")
@clean_errors
def stablecoin_faucet(
    address: Annotated[str, typer.Argument(help="who receives it (0x...)")],
    amount: Annotated[str, typer.Argument(help="USDC, e.g. 250")],
    network: Annotated[str, typer.Option("--network", "-n", help="a local public network")] = "base",
) -> None:
    """Development: mint stand-in USDC to an address on a local network (Circle's part, played here)."""
    from andchain.chains.usdc import faucet

    ctx = context()
    tx = faucet(ctx, network, address, parse_minor(amount, 6))
    out.print(f"minted {amount} USDC to {address} on {network} ({tx})")
