"""The `andchain` command: one module per noun, assembled here."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from andchain import __version__
from andchain.cli import (
    bench,
    clients,
    compliance,
    custodian,
    custody,
    db,
    demo,
    desk,
    keys,
    ledger,
    networks,
    ops,
    partners,
    rules,
    serve,
    stablecoin,
    tokens,
    worker,
)
from andchain.cli.common import clean_errors, out

app = typer.Typer(
    help="andchain: the bank's book of record and digital-asset platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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


app.add_typer(db.app, name="db")
app.add_typer(ledger.app, name="ledger")
app.add_typer(networks.app, name="networks")
app.add_typer(clients.app, name="clients")
app.add_typer(tokens.app, name="tokens")
app.add_typer(rules.app, name="rules")
app.add_typer(ops.app, name="ops")
app.add_typer(bench.app, name="bench")
app.add_typer(keys.app, name="keys")
app.add_typer(custodian.app, name="custodian")
app.add_typer(custody.app, name="custody")
app.add_typer(stablecoin.app, name="stablecoin")
app.add_typer(desk.app, name="desk")
app.add_typer(partners.app, name="partners")
app.add_typer(compliance.app, name="compliance")
app.add_typer(compliance.audit_app, name="audit")
app.add_typer(compliance.report_app, name="report")
app.command("deposit")(clean_errors(clients.deposit))
app.command("serve")(serve.serve)
app.command("openapi")(serve.openapi)
app.command("worker")(clean_errors(worker.worker))
app.command("reconcile")(clean_errors(worker.reconcile_command))
app.command("demo")(clean_errors(demo.demo))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
