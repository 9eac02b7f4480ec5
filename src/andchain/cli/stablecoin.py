"""`andchain stablecoin convert`: stablecoins into USD deposits and back (docs/custody.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from andchain.cli.common import JsonOpt, KeyOpt, clean_errors, context, idempotency_key, print_op
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
