"""`andchain serve`: the HTTP API, optionally with the worker beside it."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from andchain import __version__
from andchain.cli.common import (
    clean_errors,
    context,
    err,
    fail,
)
from andchain.context import Context
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, TransferSpec

if TYPE_CHECKING:
    from fastapi import FastAPI

    from andchain.ops.worker import Worker

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


def exposure_warning(host: str, behind_tls_proxy: bool) -> str | None:
    """A warning when the API listens beyond this machine without a TLS-terminating proxy declared.

    `andchain serve` speaks plain HTTP: bearer keys and clients' data cross the network in clear
    unless a proxy in front terminates TLS (and sets api.behind_tls_proxy)."""
    if behind_tls_proxy or _is_loopback(host):
        return None
    return (
        f"the API listens on {host}, beyond this machine, over plain HTTP: API keys and client data would "
        "cross the network in clear. It must sit behind a proxy that terminates TLS; once it does, set "
        "api.behind_tls_proxy = true"
    )


def _is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def start_worker(app: FastAPI, make: Callable[[], Worker], owner: str, stop: threading.Event) -> threading.Thread:
    """Run the worker `make` builds in a thread beside the API, under a supervisor that builds it
    again should its loop ever die; /health reports that thread and the heartbeat of `owner`."""
    from andchain.ops.worker import supervise

    thread = threading.Thread(target=supervise, args=(make, stop), name="andchain-worker", daemon=True)
    thread.start()
    app.state.worker_thread = thread
    app.state.worker_owner = owner
    return thread


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
    from andchain.logs import configure_logging

    ctx = context()
    configure_logging(ctx.settings.log_level)
    host = host or ctx.settings.api.host
    port = port or ctx.settings.api.port
    warning = exposure_warning(host, ctx.settings.api.behind_tls_proxy)
    if warning is not None:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            fail(f"port {port} on {host} is already in use; stop what holds it or pass --port")
    ctx.upgrade_database()
    if sample_data:
        seed_sample(ctx)
    app = create_app(ctx, bind_host=host)
    stop = threading.Event()
    if with_worker:
        from andchain.ops.core import worker_identity
        from andchain.tokens.runtime import token_worker

        worker_ctx = Context()
        owner = worker_identity()
        start_worker(app, lambda: token_worker(worker_ctx, owner=owner), owner, stop)
        err.print("operations worker running (operations, listeners, rules, maintenance)")
    err.print(f"andchain {__version__} API on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    try:
        # Logging stays as configured above (JSON lines); the API writes its own access log.
        uvicorn.run(
            app, host=host, port=port, log_config=None, log_level=ctx.settings.log_level.lower(), access_log=False
        )
    finally:
        stop.set()
