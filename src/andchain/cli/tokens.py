"""`andchain tokens`: deposit tokens on every network."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from andchain.cli.common import (
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    clean_errors,
    emit_json,
    fail,
    idempotency_key,
    out,
    print_op,
    token_service,
    usd_minor,
)
from andchain.money import format_minor

app = typer.Typer(help="Deposit tokens: set-up, mint, pay, redeem, DvP, moves.", no_args_is_help=True)


@app.command("setup")
@clean_errors
def tokens_setup(network: NetworkOpt = "internal", as_json: JsonOpt = False) -> None:
    """Deploy (or adopt) the deposit token, the fund share and DvP on a network; set the bank's roles."""
    addresses = token_service().setup(network)
    if as_json:
        emit_json(addresses)
    else:
        for name, address in addresses.items():
            out.print(f"{network}: {name} at {address}")


@app.command("mint")
@clean_errors
def tokens_mint(
    client: str, amount: str, network: NetworkOpt = "internal", key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Mint deposit tokens from the client's DDA to its wallet (the worker completes it)."""
    service = token_service()
    print_op(service.mint(client, network, usd_minor(service.ctx, amount), idempotency_key(key)), as_json)


@app.command("pay")
@clean_errors
def tokens_pay(
    payer: str,
    payee: str,
    amount: str,
    memo: Annotated[str, typer.Option(help="payment reference")],
    network: NetworkOpt = "internal",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pay another client in deposit tokens, with a memo (at most 32 bytes)."""
    service = token_service()
    print_op(service.pay(payer, payee, network, usd_minor(service.ctx, amount), memo, idempotency_key(key)), as_json)


@app.command("redeem")
@clean_errors
def tokens_redeem(
    client: str, amount: str, network: NetworkOpt = "internal", key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Redeem deposit tokens back to the client's DDA (burned on chain)."""
    service = token_service()
    print_op(service.redeem(client, network, usd_minor(service.ctx, amount), idempotency_key(key)), as_json)


@app.command("issue-shares")
@clean_errors
def tokens_issue_shares(
    client: str,
    shares: Annotated[str, typer.Argument(help="e.g. '1.5' (6 decimals)")],
    network: NetworkOpt = "internal",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue tokenized money-market fund shares to a client."""
    from andchain.money import parse_minor

    print_op(token_service().issue_shares(client, network, parse_minor(shares, 6), idempotency_key(key)), as_json)


@app.command("dvp")
@clean_errors
def tokens_dvp(
    buyer: str,
    seller: str,
    cash: Annotated[str, typer.Option(help="deposit tokens, e.g. '200.00'")],
    shares: Annotated[str, typer.Option(help="fund shares, e.g. '1.5'")],
    network: NetworkOpt = "internal",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delivery versus payment: the buyer's deposit tokens against the seller's fund shares, atomically."""
    from andchain.money import parse_minor

    service = token_service()
    op = service.dvp(buyer, seller, network, usd_minor(service.ctx, cash), parse_minor(shares, 6), idempotency_key(key))
    print_op(op, as_json)


@app.command("holders")
@clean_errors
def tokens_holders(network: NetworkOpt = "internal", as_json: JsonOpt = False) -> None:
    """Every holder: its on-chain balance next to the ledger's mirror of it."""
    from andchain.tokens.model import TOKENS, holders_prefix
    from andchain.tokens.service import TOKEN_ABI

    service = token_service()
    rows = []
    for token in TOKENS.values():
        address = service.chain(network).deployment(token.deployment, required=False)
        if not address:
            continue
        for mirror in service.ledger.list_accounts(prefix=holders_prefix(network, token), limit=100_000):
            holder = mirror.name.rsplit(":", 1)[1]
            chain_balance = service.chain(network).read(address, TOKEN_ABI, "balanceOf", holder)
            owner = service.wallet_owner(network, holder)
            rows.append(
                {
                    "token": token.symbol,
                    "holder": holder,
                    "client": owner,
                    "chain": format_minor(chain_balance, token.decimals),
                    "ledger": format_minor(mirror.balance_posted, token.decimals),
                    "agree": chain_balance == mirror.balance_posted,
                }
            )
    if as_json:
        emit_json(rows)
        return
    table = Table("token", "holder", "client", "on chain", "ledger", "agree")
    for r in rows:
        table.add_row(
            r["token"],
            r["holder"],
            r["client"] or "-",
            r["chain"],
            r["ledger"],
            "yes" if r["agree"] else "[red]NO[/red]",
        )
    out.print(table)


@app.command("challenge")
@clean_errors
def tokens_challenge(client: str, network: NetworkOpt, as_json: JsonOpt = False) -> None:
    """A message the client signs (EIP-191) with the key of the public-network address it registers."""
    from andchain.tokens.moves import Moves

    nonce, message = Moves(token_service()).challenge(client, network)
    if as_json:
        emit_json({"nonce": nonce, "message": message})
    else:
        out.print(f"nonce {nonce}\nsign this message (personal_sign):\n{escape(message)}")


@app.command("register-address")
@clean_errors
def tokens_register_address(
    client: str,
    network: NetworkOpt,
    nonce: Annotated[str, typer.Option(help="from `tokens challenge`")],
    address: Annotated[str, typer.Option(help="the client's own address")],
    signature: Annotated[str, typer.Option(help="0x... personal_sign signature")],
) -> None:
    """Register a client-owned address on a public network after checking its signature and screening it."""
    from andchain.tokens.moves import Moves

    registered = Moves(token_service()).register(client, network, nonce, address, signature)
    out.print(f"{registered} registered for {client} on {network}; it is allow-listed by its first operation")


@app.command("move")
@clean_errors
def tokens_move(
    client: str,
    amount: str,
    source: Annotated[str, typer.Option("--from", help="source network")],
    destination: Annotated[str, typer.Option("--to", help="destination network")],
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move deposit tokens between networks: burn on the source, mint on the destination."""
    from andchain.tokens.moves import Moves

    service = token_service()
    print_op(
        Moves(service).move(client, source, destination, usd_minor(service.ctx, amount), idempotency_key(key)), as_json
    )


@app.command("return-stray")
@clean_errors
def tokens_return_stray(
    receiver: Annotated[str, typer.Argument(help="the address the tokens go back to")],
    amount: Annotated[str, typer.Argument(help="e.g. '12.50' (in the token's units)")],
    network: NetworkOpt = "internal",
    token: Annotated[str, typer.Option(help="deposit_token or mmf_share")] = "deposit_token",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Return tokens sent to the DvP contract outside any trade (a plain transfer by mistake)."""
    from andchain.money import parse_minor
    from andchain.tokens.model import TOKENS

    if token not in TOKENS:
        fail(f"--token must be one of {', '.join(TOKENS)}, was {token!r}", 2)
    service = token_service()
    minor = parse_minor(amount, TOKENS[token].decimals)
    print_op(service.return_stray(network, receiver, minor, idempotency_key(key), deployment=token), as_json)
