"""Commands for clients, deposit tokens, programmable payments, operations and reconciliation."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from andchain.cliutil import JsonOpt, clean_errors, emit_json, err, fail, out
from andchain.context import Context
from andchain.money import format_minor, parse_amount

clients_app = typer.Typer(help="Clients of the bank and their deposit accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="Deposit tokens: set-up, mint, pay, redeem, DvP.", no_args_is_help=True)
rules_app = typer.Typer(help="Programmable payments: scheduled payments and sweeps.", no_args_is_help=True)
ops_app = typer.Typer(help="Operations: every external side effect, with its history.", no_args_is_help=True)

NetworkOpt = Annotated[str, typer.Option("--network", "-n", help="network name")]
KeyOpt = Annotated[str | None, typer.Option("--key", help="idempotency key (generated when absent)")]


def _service() -> Any:
    from andchain.tokens.service import TokenService

    return TokenService(Context())


def _usd(ctx: Context, text: str) -> int:
    amount = parse_amount(text if " " in text.strip() else f"{text} USD", ctx.assets)
    if amount.asset.code != "USD":
        fail(f"deposit tokens are USD: give an amount like '100.00 USD', was {text!r}")
    return amount.minor


def _key(key: str | None) -> str:
    if key:
        return key
    generated = f"cli-{uuid.uuid4()}"
    err.print(f"idempotency key: {generated}")
    return generated


def _op_row(op: Any) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind,
        "network": op.network,
        "status": op.status.value,
        "key": op.idempotency_key,
        "attempts": op.attempts,
        "error": op.error_code,
        "payload": op.payload,
        "result": op.result,
    }


def _print_op(op: Any, as_json: bool) -> None:
    if as_json:
        emit_json(_op_row(op))
    else:
        out.print(f"operation {op.id} {op.kind} {op.status.value}  (key {escape(op.idempotency_key)})")


# ------------------------------------------------------------------ clients


@clients_app.command("onboard")
@clean_errors
def clients_onboard(
    name: str,
    kind: Annotated[str, typer.Option(help="legal or natural")] = "legal",
    as_json: JsonOpt = False,
) -> None:
    """Onboard a client and open its USD deposit account (idempotent by name)."""
    client = _service().onboard(name, kind)
    if as_json:
        emit_json(asdict(client))
    else:
        out.print(f"client {client.id} {escape(client.name)} ({client.kind}, {client.status})")


@clients_app.command("list")
@clean_errors
def clients_list(as_json: JsonOpt = False) -> None:
    """Clients with their deposit account balances."""
    service = _service()
    rows = [{**asdict(c), "dda": format_minor(service.dda_balance(c.id), 2)} for c in service.clients()]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "name", "kind", "status", "DDA (USD)")
    for r in rows:
        table.add_row(r["id"], escape(r["name"]), r["kind"], r["status"], r["dda"])
    out.print(table)


def deposit(
    client: str,
    amount: Annotated[str, typer.Argument(help="e.g. '1000.00 USD'")],
    reference: Annotated[str, typer.Option(help="the credit notice's id (camt.054 NtryRef); books once")],
    memo: str = "",
) -> None:
    """Credit a client's deposit account (an operator deposit or a camt.054 credit notice)."""
    service = _service()
    transfer_id = service.deposit(client, _usd(service.ctx, amount), reference, memo)
    out.print(f"deposited: transfer {transfer_id}; DDA now {format_minor(service.dda_balance(client), 2)} USD")


# ------------------------------------------------------------------- tokens


@tokens_app.command("setup")
@clean_errors
def tokens_setup(network: NetworkOpt = "internal", as_json: JsonOpt = False) -> None:
    """Deploy (or adopt) the deposit token, the fund share and DvP on a network; set the bank's roles."""
    addresses = _service().setup(network)
    if as_json:
        emit_json(addresses)
    else:
        for name, address in addresses.items():
            out.print(f"{network}: {name} at {address}")


@tokens_app.command("mint")
@clean_errors
def tokens_mint(
    client: str, amount: str, network: NetworkOpt = "internal", key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Mint deposit tokens from the client's DDA to its wallet (the worker completes it)."""
    service = _service()
    _print_op(service.mint(client, network, _usd(service.ctx, amount), _key(key)), as_json)


@tokens_app.command("pay")
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
    service = _service()
    _print_op(service.pay(payer, payee, network, _usd(service.ctx, amount), memo, _key(key)), as_json)


@tokens_app.command("redeem")
@clean_errors
def tokens_redeem(
    client: str, amount: str, network: NetworkOpt = "internal", key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Redeem deposit tokens back to the client's DDA (burned on chain)."""
    service = _service()
    _print_op(service.redeem(client, network, _usd(service.ctx, amount), _key(key)), as_json)


@tokens_app.command("issue-shares")
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

    _print_op(_service().issue_shares(client, network, parse_minor(shares, 6), _key(key)), as_json)


@tokens_app.command("dvp")
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

    service = _service()
    op = service.dvp(buyer, seller, network, _usd(service.ctx, cash), parse_minor(shares, 6), _key(key))
    _print_op(op, as_json)


@tokens_app.command("holders")
@clean_errors
def tokens_holders(network: NetworkOpt = "internal", as_json: JsonOpt = False) -> None:
    """Every holder: its on-chain balance next to the ledger's mirror of it."""
    from andchain.tokens.model import TOKENS, holders_prefix
    from andchain.tokens.service import TOKEN_ABI

    service = _service()
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


@tokens_app.command("challenge")
@clean_errors
def tokens_challenge(client: str, network: NetworkOpt, as_json: JsonOpt = False) -> None:
    """A message the client signs (EIP-191) with the key of the public-network address it registers."""
    from andchain.tokens.moves import Moves

    nonce, message = Moves(_service()).challenge(client, network)
    if as_json:
        emit_json({"nonce": nonce, "message": message})
    else:
        out.print(f"nonce {nonce}\nsign this message (personal_sign):\n{escape(message)}")


@tokens_app.command("register-address")
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

    registered = Moves(_service()).register(client, network, nonce, address, signature)
    out.print(f"{registered} registered for {client} on {network}; it is allow-listed by its first operation")


@tokens_app.command("move")
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

    service = _service()
    _print_op(Moves(service).move(client, source, destination, _usd(service.ctx, amount), _key(key)), as_json)


# -------------------------------------------------------------------- rules


@rules_app.command("schedule")
@clean_errors
def rules_schedule(
    client: str,
    payee: str,
    amount: str,
    memo: Annotated[str, typer.Option()] = "",
    network: NetworkOpt = "internal",
    in_s: Annotated[int, typer.Option("--in", help="first run in N seconds")] = 0,
    every_s: Annotated[int | None, typer.Option("--every", help="repeat every N seconds")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pay `amount` to `payee` at a time, once or repeatedly."""
    from andchain.tokens.rules import Rules

    service = _service()
    rule = Rules(service).schedule(
        client,
        payee,
        network,
        _usd(service.ctx, amount),
        memo,
        at_us=service.ctx.clock() + in_s * 1_000_000,
        every_s=every_s,
    )
    emit_json(asdict(rule)) if as_json else out.print(f"rule {rule.id} scheduled ({rule.kind})")


@rules_app.command("sweep")
@clean_errors
def rules_sweep(
    client: str,
    max_amount: Annotated[str, typer.Option("--max", help="keep at most this in tokens")],
    network: NetworkOpt = "internal",
    as_json: JsonOpt = False,
) -> None:
    """Keep at most `--max` in tokens on a network; redeem the excess to the DDA."""
    from andchain.tokens.rules import Rules

    service = _service()
    rule = Rules(service).sweep(client, network, _usd(service.ctx, max_amount))
    emit_json(asdict(rule)) if as_json else out.print(f"rule {rule.id} sweeps above {max_amount}")


@rules_app.command("list")
@clean_errors
def rules_list(client: str | None = None, as_json: JsonOpt = False) -> None:
    """Programmable payment rules."""
    from andchain.tokens.rules import Rules

    rules = Rules(_service()).list(client)
    if as_json:
        emit_json([asdict(r) for r in rules])
        return
    table = Table("id", "client", "kind", "network", "status", "runs", "params")
    for r in rules:
        table.add_row(r.id, r.client_id, r.kind, r.network, r.status, str(r.runs), escape(str(r.params)))
    out.print(table)


@rules_app.command("cancel")
@clean_errors
def rules_cancel(rule_id: str) -> None:
    """Cancel a rule; runs already started finish."""
    from andchain.tokens.rules import Rules

    out.print(f"rule {Rules(_service()).cancel(rule_id).id} cancelled")


# ---------------------------------------------------------------------- ops


@ops_app.command("list")
@clean_errors
def ops_list(status: str | None = None, kind: str | None = None, limit: int = 100, as_json: JsonOpt = False) -> None:
    """Operations, oldest first."""
    ops = _service().ops.list(status=status, kind=kind, limit=limit)
    if as_json:
        emit_json([_op_row(op) for op in ops])
        return
    table = Table("id", "kind", "network", "status", "attempts", "error", "key")
    for op in ops:
        table.add_row(
            op.id,
            op.kind,
            op.network or "-",
            op.status.value,
            str(op.attempts),
            op.error_code or "",
            escape(op.idempotency_key),
        )
    out.print(table)


@ops_app.command("show")
@clean_errors
def ops_show(op_id: str, as_json: JsonOpt = False) -> None:
    """One operation and its status history."""
    service = _service()
    op = service.ops.get(op_id)
    history = service.ops.history(op_id)
    if as_json:
        emit_json(
            {
                **_op_row(op),
                "state": {k: v for k, v in op.state.items() if k != "tx"},
                "history": [asdict(h) for h in history],
            }
        )
        return
    out.print(f"[bold]{op.id}[/bold] {op.kind} on {op.network}: {op.status.value}")
    if op.error_code:
        out.print(f"error {op.error_code}: {escape(op.error_message or '')}")
    out.print(f"payload {escape(str(op.payload))}")
    if op.result:
        out.print(f"result {escape(str(op.result))}")
    table = Table("at", "status", "detail")
    for h in history:
        table.add_row(time.strftime("%H:%M:%S", time.gmtime(h.at_us / 1e6)), h.status, escape(h.detail))
    out.print(table)


@ops_app.command("retry")
@clean_errors
def ops_retry(op_id: str) -> None:
    """Ask for another attempt now (unfinished operations only)."""
    op = _service().ops.retry(op_id)
    out.print(f"operation {op.id} will be retried ({op.status.value})")


@ops_app.command("cancel")
@clean_errors
def ops_cancel(op_id: str, reason: str = "cancelled by operator") -> None:
    """Cancel an operation that has not been sent yet, releasing what it reserved."""
    from andchain.tokens.runtime import token_worker

    service = _service()
    op = token_worker(service.ctx, service).cancel(op_id, reason)
    out.print(f"operation {op.id} {op.status.value}")


# ------------------------------------------------------------ worker, reconcile, demo


def worker(
    seconds: Annotated[float, typer.Option(help="stop after this long (default: run until interrupted)")] = 10**9,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="stop once no operation is unfinished")] = False,
) -> None:
    """Run operations, the listeners and the programmable payment rules."""
    from andchain.tokens.runtime import run_until_idle, token_worker

    ctx = Context()
    ctx.upgrade_database()
    err.print("andchain worker: operations, listeners, rules (Ctrl-C to stop)")
    running = token_worker(ctx)
    try:
        if until_idle:
            if not run_until_idle(running, seconds=seconds):
                fail(f"operations still unfinished after {seconds:g}s: {running.ops.counts()}")
        else:
            running.run(seconds=seconds)
    except KeyboardInterrupt:
        err.print("worker stopped")


def reconcile_command(as_json: JsonOpt = False) -> None:
    """Prove that the ledger and every chain agree; exit 1 on any break."""
    from andchain.reconcile import reconcile

    report = reconcile(Context())
    if as_json:
        emit_json(report.as_dict())
    else:
        render_report(report)
    if report.breaks:
        raise typer.Exit(1)


def render_report(report: Any) -> None:
    table = Table("check", "subject", "expected", "found", "result", title="reconciliation")
    for c in report.checks:
        table.add_row(
            c.check,
            escape(c.subject),
            escape(c.expected),
            escape(c.found),
            "[green]ok[/green]" if c.ok else "[red]BREAK[/red]",
        )
    out.print(table)
    if report.in_flight:
        out.print(f"{len(report.in_flight)} operation(s) in flight (not breaks)")
    for alert in report.alerts:
        out.print(f"[yellow]alert:[/yellow] {escape(alert)}")
    out.print("[green]no breaks[/green]" if not report.breaks else f"[red]{len(report.breaks)} break(s)[/red]")


def demo() -> None:
    """The deposit-token story end to end on the embedded defaults; exit 0 only if reconcile is clean."""
    from andchain import demo as story

    report = story.run(out)
    if report.breaks:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(clients_app, name="clients")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(rules_app, name="rules")
    app.add_typer(ops_app, name="ops")
    app.command("deposit")(clean_errors(deposit))
    app.command("worker")(clean_errors(worker))
    app.command("reconcile")(clean_errors(reconcile_command))
    app.command("demo")(clean_errors(demo))
