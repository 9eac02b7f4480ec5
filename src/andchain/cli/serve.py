"""`andchain serve`: the HTTP API, optionally with the worker beside it."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from pathlib import Path
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
from andchain.errors import DomainError
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


SAMPLE_CLIENTS = (("acme", "Acme Corp", 1_000_000_00), ("globex", "Globex", 250_000_00))
DEV_KEYS_DIR = "dev-keys"


def development_keys(ctx: Context) -> Path:
    """Development only: an admin key, an operator key, a desk key and a client key for each sample client, each
    written once to `<data_dir>/dev-keys/<name>.key` (0600), so that the README's first calls work.
    A key file whose key no longer works (revoked, or another database) is written anew."""
    import os

    from andchain.tokens.service import TokenService

    if ctx.settings.environment != "development":
        raise DomainError("development keys are made in development only", code="not_development")
    directory = ctx.settings.ensure_data_dir() / DEV_KEYS_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    service = TokenService(ctx)
    wanted: list[tuple[str, str, str | None]] = [
        ("admin", "admin", None),
        ("operator", "operator", None),
        ("desk", "desk", None),
    ]
    for name, full_name, cents in SAMPLE_CLIENTS:
        client = service.onboard(full_name)
        service.deposit(client.id, cents, f"sample:{name}", memo="opening deposit")
        wanted.append((name, "client", client.id))
    for name, role, client_id in wanted:
        path = directory / f"{name}.key"
        if path.exists():
            principal = ctx.api_keys.verify(path.read_text().strip())
            if principal is not None and principal.role == role and principal.client_id == client_id:
                continue
        _, key = ctx.api_keys.create(role, client_id=client_id, label=f"development {name}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    return directory


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
        if ctx.settings.environment == "development":
            keys = development_keys(ctx)
            err.print(
                f"development API keys in {keys}/ (admin, operator, acme, globex): "
                f'curl -H "Authorization: Bearer $(cat {keys}/admin.key)" http://{host}:{port}/v1/accounts'
            )
    app = create_app(ctx, bind_host=host)
    stop = threading.Event()
    if with_worker:
        from andchain.ops.core import worker_identity
        from andchain.trading.runtime import platform_worker

        worker_ctx = Context()
        owner = worker_identity()
        start_worker(app, lambda: platform_worker(worker_ctx, owner=owner), owner, stop)
        err.print("operations worker running (operations, listeners, rules, maintenance)")
    err.print(f"andchain {__version__} API on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    try:
        # Logging stays as configured above (JSON lines); the API writes its own access log.
        uvicorn.run(
            app, host=host, port=port, log_config=None, log_level=ctx.settings.log_level.lower(), access_log=False
        )
    finally:
        stop.set()


@clean_errors
def openapi(
    output: Annotated[Path | None, typer.Option(help="write it to this file (default: print it)")] = None,
) -> None:
    """The API's OpenAPI document, as the server generates it (docs/openapi.json is a committed copy)."""
    import json
    import tempfile

    from andchain.api import create_app
    from andchain.config import Settings

    with tempfile.TemporaryDirectory(prefix="andchain-openapi-") as tmp:
        # The document depends on the routes only: a throwaway app on an empty database makes it.
        ctx = Context(Settings(data_dir=Path(tmp), database_url=f"sqlite:///{Path(tmp) / 'openapi.db'}"))
        text = json.dumps(create_app(ctx).openapi(), indent=2, sort_keys=True) + "\n"
        ctx.close()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        err.print(f"wrote {output}")
