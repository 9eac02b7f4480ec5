"""`andchain custodian`: the bundled reference custodian, a separate service with its own
database, keys and API key (docs/custody.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from andchain.cli.common import JsonOpt, clean_errors, emit_json, err, out
from andchain.config import load_settings

app = typer.Typer(help="The reference custodian: serve it, and approve or reject what waits.", no_args_is_help=True)


@app.command("serve")
@clean_errors
def custodian_serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (custodian.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (custodian.port, 8650)")] = None,
) -> None:
    """Run the custodian's HTTP API and its worker (transfers, deposits, webhooks)."""
    import uvicorn

    from andchain.custody.reference.app import create_app
    from andchain.custody.reference.runtime import build, directory_of, serve_lock

    settings = load_settings()
    lock = serve_lock(directory_of(settings))
    running = build(settings)
    worker = running.worker()
    app_ = create_app(running.custodian, running.api_key, worker)
    listen_host = host or settings.custodian.host
    listen_port = port or settings.custodian.port
    err.print(
        f"reference custodian on http://{listen_host}:{listen_port} (data in {running.directory}; "
        f"API key in {running.directory / 'api-key'} unless custodian.api_key is set)"
    )
    try:
        uvicorn.run(app_, host=listen_host, port=listen_port, log_level="warning", access_log=False)
    finally:
        running.close()
        lock.close()


@app.command("start")
@clean_errors
def custodian_start(as_json: JsonOpt = False) -> None:
    """Start the reference custodian in the background (like the local nodes), holding the configured
    tokens and, in development, the USDC stand-ins of the local networks; its webhooks go to the API."""
    from andchain.cli.common import context
    from andchain.custody.reference.local import LocalCustodian, local_tokens

    ctx = context()
    local = LocalCustodian(ctx)
    outcome = local.start()
    if as_json:
        emit_json({"outcome": outcome, **local.status()})
        return
    held = ", ".join(sorted(local_tokens(ctx))) or "no tokens"
    out.print(f"reference custodian {outcome} at {local.url} (holds {held}; log {local.log_file})")


@app.command("stop")
@clean_errors
def custodian_stop() -> None:
    """Stop the background reference custodian (its data stays in its directory)."""
    from andchain.cli.common import context
    from andchain.custody.reference.local import LocalCustodian

    out.print(f"reference custodian {LocalCustodian(context()).stop()}")


@app.command("status")
@clean_errors
def custodian_status(as_json: JsonOpt = False) -> None:
    """Whether the background reference custodian runs and answers."""
    from andchain.cli.common import context
    from andchain.custody.reference.local import LocalCustodian

    status = LocalCustodian(context()).status()
    if as_json:
        emit_json(status)
    else:
        state = "answering" if status["healthy"] else "not answering"
        out.print(f"reference custodian at {status['url']}: {state} (pid {status['pid'] or 'none'})")


def _decide(transfer_id: str, verb: str, reason: str | None, as_json: bool) -> None:
    from andchain.custody.reference.runtime import build

    running = build(load_settings())
    try:
        custodian = running.custodian
        view = (
            custodian.approve(transfer_id)
            if verb == "approve"
            else custodian.reject(transfer_id, reason or "rejected by the approver")
        )
    finally:
        running.close()
    if as_json:
        emit_json(view)
    else:
        out.print(f"{transfer_id}: {view['state']}")


@app.command("approve")
@clean_errors
def custodian_approve(transfer_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Approve a withdrawal that waits above the approval threshold: it is signed next."""
    _decide(transfer_id, "approve", None, as_json)


@app.command("reject")
@clean_errors
def custodian_reject(
    transfer_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="why, for the client's records")] = "rejected by the approver",
    as_json: JsonOpt = False,
) -> None:
    """Reject a withdrawal that waits for approval: it ends REJECTED and nothing moves."""
    _decide(transfer_id, "reject", reason, as_json)


@app.command("credit")
@clean_errors
def custodian_credit(
    account: Annotated[str, typer.Argument(help="the custodian's account id")],
    amount: Annotated[str, typer.Argument(help="a decimal amount, e.g. 0.5")],
    reference: Annotated[str, typer.Option(help="the deposit's output, <txid>:<vout> (recorded once)")],
    asset: Annotated[str, typer.Option(help="a booked asset")] = "BTC",
    network: Annotated[str, typer.Option(help="its network")] = "bitcoin",
    as_json: JsonOpt = False,
) -> None:
    """Record a deposit of a booked asset (BTC) as the custodian's own node would report it."""
    from andchain.custody.reference.runtime import build

    running = build(load_settings())
    try:
        view = running.custodian.credit(account, asset, network, amount, reference)
    finally:
        running.close()
    if as_json:
        emit_json(view)
    else:
        out.print(f"{view['id']}: {view['amount']} {asset} into {account}")
