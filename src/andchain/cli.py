"""The `andchain` command."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from andchain import __version__, cli_tokens
from andchain.cliutil import JsonOpt, clean_errors, emit_json, err, fail, out
from andchain.context import Context
from andchain.errors import DomainError
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, TransferFlags, TransferSpec
from andchain.money import format_minor, parse_amount

app = typer.Typer(
    help="andchain: the bank's book of record and digital-asset platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
accounts_app = typer.Typer(help="Ledger accounts.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks against the raw limit measured in the same run.", no_args_is_help=True)
networks_app = typer.Typer(help="EVM networks: local nodes and their status.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
ledger_app.add_typer(accounts_app, name="accounts")
app.add_typer(bench_app, name="bench")
app.add_typer(networks_app, name="networks")


def _context() -> Context:
    return Context()


@app.callback()
def main_callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log at DEBUG")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


# ----------------------------------------------------------------------- db


@db_app.command("upgrade")
@clean_errors
def db_upgrade(revision: str = "head") -> None:
    """Apply the schema migrations (SQLite or PostgreSQL, from the configured database URL)."""
    from andchain import migrate

    ctx = _context()
    migrate.upgrade(ctx.engine, revision)
    out.print(
        f"database {ctx.engine.url.render_as_string(hide_password=True)} at revision {migrate.current(ctx.engine)}"
    )


@db_app.command("downgrade")
@clean_errors
def db_downgrade(revision: str) -> None:
    """Revert the schema to an earlier revision ('base' removes every table)."""
    from andchain import migrate

    ctx = _context()
    migrate.downgrade(ctx.engine, revision)
    out.print(f"database at revision {migrate.current(ctx.engine)}")


@db_app.command("current")
@clean_errors
def db_current() -> None:
    """Show the schema revision of the database and the newest one known."""
    from andchain import migrate

    ctx = _context()
    out.print(f"current {migrate.current(ctx.engine)}, head {migrate.head()}")


# ------------------------------------------------------------------- ledger


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
    name: Annotated[str, typer.Argument(help="colon path, e.g. clients:acme:usd:dda")],
    asset: Annotated[str, typer.Option(help="asset code, e.g. USD")],
    kind: Annotated[AccountKind, typer.Option(help="accounting kind")] = AccountKind.ASSET,
    no_overdraft: Annotated[bool, typer.Option("--no-overdraft", help="debits must not exceed credits")] = False,
    no_overcredit: Annotated[bool, typer.Option("--no-overcredit", help="credits must not exceed debits")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Open an account (idempotent by name)."""
    ctx = _context()
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
    ctx = _context()
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
    account: Annotated[str, typer.Argument(help="id or name")],
    history: Annotated[int, typer.Option(help="how many recent transfers to show")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """One account, its balances and its recent history."""
    ctx = _context()
    a = ctx.ledger.account(int(account) if account.isdigit() else account)
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


@ledger_app.command("transfer")
@clean_errors
def ledger_transfer(
    debit: Annotated[str, typer.Option("--from", help="debit account (id or name)")],
    credit: Annotated[str, typer.Option("--to", help="credit account (id or name)")],
    amount: Annotated[str, typer.Option(help="amount with asset, e.g. '12.34 USD'")],
    transfer_id: Annotated[str | None, typer.Option("--id", help="idempotency key; generated if absent")] = None,
    code: Annotated[str, typer.Option(help="reason code, e.g. deposit")] = "",
    memo: str = "",
    pending: Annotated[bool, typer.Option(help="reserve only (two-phase)")] = False,
    timeout_s: Annotated[int, typer.Option(help="pending only: expire after this many seconds")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Book one transfer. Replaying the same --id books nothing new."""
    ctx = _context()
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


@ledger_app.command("post")
@clean_errors
def ledger_post(
    pending_id: str,
    amount: Annotated[str | None, typer.Option(help="part to post, e.g. '5.00 USD'")] = None,
    transfer_id: Annotated[str | None, typer.Option("--id")] = None,
) -> None:
    """Post a pending transfer, in full or in part."""
    ctx = _context()
    minor = parse_amount(amount, ctx.assets).minor if amount else None
    result = ctx.ledger.create_transfer(
        TransferSpec(id=transfer_id, flags=int(TransferFlags.POST_PENDING), pending_id=pending_id, amount=minor)
    )
    out.print(f"{result.result.value}: {result.id}")
    if not result.ok:
        raise typer.Exit(1)


@ledger_app.command("void")
@clean_errors
def ledger_void(pending_id: str, transfer_id: Annotated[str | None, typer.Option("--id")] = None) -> None:
    """Void a pending transfer, releasing its reserve."""
    ctx = _context()
    result = ctx.ledger.create_transfer(
        TransferSpec(id=transfer_id, flags=int(TransferFlags.VOID_PENDING), pending_id=pending_id)
    )
    out.print(f"{result.result.value}: {result.id}")
    if not result.ok:
        raise typer.Exit(1)


@ledger_app.command("balances")
@clean_errors
def ledger_balances(as_json: JsonOpt = False) -> None:
    """Totals per asset: debits and credits, posted and pending. They must be equal."""
    ctx = _context()
    totals = ctx.ledger.totals()
    rows: list[dict[str, Any]] = []
    for asset, t in totals.items():
        scale = ctx.assets.get(asset).scale if asset in ctx.assets else 0
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


@ledger_app.command("verify")
@clean_errors
def ledger_verify(as_json: JsonOpt = False) -> None:
    """Recompute every balance from the transfers; exit non-zero on any break."""
    breaks = _context().ledger.verify()
    if as_json:
        emit_json({"breaks": breaks})
    elif breaks:
        for b in breaks:
            err.print(f"[red]break:[/red] {b}")
    else:
        out.print("ledger verified: every balance derives from its transfers; debits == credits per asset")
    if breaks:
        raise typer.Exit(1)


@ledger_app.command("expire")
@clean_errors
def ledger_expire() -> None:
    """Expire every pending transfer past its timeout."""
    out.print(f"expired {_context().ledger.expire_pending()} pending transfers")


# ----------------------------------------------------------------- networks


def _selected(ctx: Context, names: list[str] | None, *, local_only: bool) -> list[str]:
    if names:
        for name in names:
            ctx.settings.network(name)
        return names
    return [n for n, net in ctx.settings.networks.items() if net.enabled and (net.local or not local_only)]


@networks_app.command("up")
@clean_errors
def networks_up(
    names: Annotated[list[str] | None, typer.Argument(help="networks (default: enabled local ones)")] = None,
) -> None:
    """Start a local anvil node for each local network and wait until it answers."""
    ctx = _context()
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


@networks_app.command("down")
@clean_errors
def networks_down(
    names: Annotated[list[str] | None, typer.Argument(help="networks (default: all local)")] = None,
) -> None:
    """Stop the local nodes andchain started (their state is kept under the data directory)."""
    ctx = _context()
    chosen = names or [n for n, net in ctx.settings.networks.items() if net.local]
    for name in chosen:
        out.print(f"{name}: {ctx.node(name).stop()}")


@networks_app.command("status")
@clean_errors
def networks_status(names: Annotated[list[str] | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Chain id, block height and health of every configured network."""
    ctx = _context()
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
                "rpc_url": network.rpc_url,
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


@networks_app.command("deploy")
@clean_errors
def networks_deploy(
    names: Annotated[list[str] | None, typer.Argument(help="networks (default: every enabled one)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy (or adopt) the deposit token, the fund share and DvP on each network; record their addresses."""
    from andchain.tokens.service import TokenService

    ctx = _context()
    service = TokenService(ctx)
    chosen = names or [n for n, net in ctx.settings.networks.items() if net.enabled]
    deployed = {name: service.setup(name) for name in chosen}
    if as_json:
        emit_json(deployed)
        return
    for name, addresses in deployed.items():
        for contract, address in addresses.items():
            out.print(f"{name}: {contract} at {address}")


@networks_app.command("pause")
@clean_errors
def networks_pause(name: str, reason: Annotated[str, typer.Option(help="why, shown to whoever is refused")]) -> None:
    """Refuse every move into or out of a network until it is resumed."""
    from andchain.tokens.moves import Moves
    from andchain.tokens.service import TokenService

    controls = Moves(TokenService(_context())).pause(name, reason)
    out.print(f"{name}: moves paused ({escape(controls.reason or '')})")


@networks_app.command("resume")
@clean_errors
def networks_resume(name: str) -> None:
    """Accept moves again on a paused network."""
    from andchain.tokens.moves import Moves
    from andchain.tokens.service import TokenService

    Moves(TokenService(_context())).resume(name)
    out.print(f"{name}: moves resumed")


@networks_app.command("controls")
@clean_errors
def networks_controls(as_json: JsonOpt = False) -> None:
    """Pause switch and move rate-limit headroom of every enabled network."""
    from dataclasses import asdict

    from andchain.tokens.moves import Moves
    from andchain.tokens.service import TokenService

    ctx = _context()
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


# -------------------------------------------------------------------- serve


SAMPLE_ACCOUNTS = [
    AccountSpec("bank:usd:cash", "USD", kind=AccountKind.ASSET),
    AccountSpec(
        "clients:acme:usd:dda",
        "USD",
        kind=AccountKind.LIABILITY,
        flags=int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    ),
    AccountSpec(
        "clients:globex:usd:dda",
        "USD",
        kind=AccountKind.LIABILITY,
        flags=int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    ),
    AccountSpec("bank:usd:fees", "USD", kind=AccountKind.INCOME),
]


def seed_sample(ctx: Context) -> None:
    results = ctx.ledger.create_accounts(SAMPLE_ACCOUNTS)
    assert all(r.ok for r in results), results
    cash, acme, globex = (r.account_id for r in results[:3])
    ctx.ledger.create_transfers(
        [
            TransferSpec(cash, acme, 1_000_000, id="sample:deposit:acme", code="deposit", memo="opening deposit"),
            TransferSpec(cash, globex, 250_000, id="sample:deposit:globex", code="deposit", memo="opening deposit"),
        ]
    )


@app.command()
@clean_errors
def serve(
    host: Annotated[str | None, typer.Option(help="default from config: 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default from config: 8000")] = None,
    sample_data: Annotated[bool, typer.Option("--sample-data", help="open a few sample accounts first")] = False,
    with_worker: Annotated[
        bool, typer.Option("--worker", help="also run the operations worker in this process")
    ] = False,
) -> None:
    """Run the HTTP API (uvicorn). Migrates the database first."""
    import socket

    import uvicorn

    from andchain.api import create_app

    ctx = _context()
    host = host or ctx.settings.api.host
    port = port or ctx.settings.api.port
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            fail(f"port {port} on {host} is already in use; stop what holds it or pass --port")
    ctx.upgrade_database()
    if sample_data:
        seed_sample(ctx)
    if with_worker:
        import threading

        from andchain.tokens.runtime import token_worker

        worker_ctx = Context()
        thread = threading.Thread(
            target=lambda: token_worker(worker_ctx).run(seconds=10**9), name="andchain-worker", daemon=True
        )
        thread.start()
        err.print("operations worker running (operations, listeners, rules)")
    err.print(f"andchain {__version__} API on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    uvicorn.run(create_app(ctx), host=host, port=port, log_level="info")


# -------------------------------------------------------------------- bench


@bench_app.command("ledger")
@clean_errors
def bench_ledger(
    backend: Annotated[str, typer.Option(help="sqlite or postgresql")] = "sqlite",
    seconds: Annotated[float, typer.Option(help="measuring time")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Transfers/s through the ledger (batches of 1,000, one hot account) vs plain INSERTs of the same rows."""
    from andchain.bench import ledger as bench

    if backend not in ("sqlite", "postgresql"):
        fail(f"--backend must be sqlite or postgresql, was {backend!r}", 2)
    result = bench.run(backend, seconds)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in ("backend", "engine", "transfers_per_s", "single_transfers_per_s", "raw_limit_per_s", "ratio"):
        table.add_row(key, str(result[key]))
    out.print(table)


@bench_app.command("chain")
@clean_errors
def bench_chain(
    seconds: Annotated[float, typer.Option(help="measuring time")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Token transfers/s through the chain client vs pre-signed raw transfers, and via batchTransfer."""
    from andchain.bench import chain as bench

    result = bench.run(seconds)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in ("transfers_per_s", "raw_limit_per_s", "ratio", "batched_transfers_per_s"):
        table.add_row(key, str(result[key]))
    out.print(table)


@bench_app.command("mint")
@clean_errors
def bench_mint(
    count: Annotated[int, typer.Option(help="mints, then as many payments")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Mints and payments per second end to end (ledger + chain + listener), p50/p99 latency to finality."""
    from andchain.bench import mint as bench

    if count < 10:
        fail("--count must be at least 10", 2)
    result = bench.run(count)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in (
        "mints_per_s",
        "mint_latency_ms_p50",
        "mint_latency_ms_p99",
        "pays_per_s",
        "pay_latency_ms_p50",
        "pay_latency_ms_p99",
        "raw_limit_per_s",
        "mint_ratio",
        "pay_ratio",
    ):
        table.add_row(key, str(result[key]))
    out.print(table)


@bench_app.command("move")
@clean_errors
def bench_move(
    count: Annotated[int, typer.Option(help="moves per network pair")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Moves per second and p50/p99 latency to finality for each network pair (internal <-> base)."""
    from andchain.bench import move as bench

    if count < 1:
        fail("--count must be at least 1", 2)
    result = bench.run(count)
    if as_json:
        emit_json(result)
        return
    table = Table("pair", "moves/s", "p50 ms", "p99 ms")
    for pair, figures in result["pairs"].items():
        table.add_row(pair, str(figures["moves_per_s"]), str(figures["latency_ms_p50"]), str(figures["latency_ms_p99"]))
    out.print(table)


cli_tokens.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
