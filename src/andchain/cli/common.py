"""Helpers shared by the command modules: consoles, clean errors, JSON output, common options."""

from __future__ import annotations

import getpass
import json
import logging
import sys
import uuid
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import DBAPIError, OperationalError

from andchain.context import Context
from andchain.errors import DomainError
from andchain.money import parse_amount

if TYPE_CHECKING:
    from andchain.ops import Operation
    from andchain.reconcile import Report
    from andchain.tokens.service import TokenService

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

out = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="print data as JSON")]
NetworkOpt = Annotated[str, typer.Option("--network", "-n", help="network name")]
KeyOpt = Annotated[str | None, typer.Option("--key", help="idempotency key (generated when absent)")]


def fail(message: str, code: int = 1) -> None:
    # One line whatever the terminal's width: scripts and log collectors read it whole.
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _first_line(exc: BaseException, length_max: int = 200) -> str:
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:length_max]


def clean_errors(fn: F) -> F:
    """Domain errors become a one-line message and exit code 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            _audit_command()
            return result
        except DomainError as exc:
            fail(f"{exc.message} [{exc.code}]")
        except OperationalError as exc:
            detail = _first_line(exc.orig or exc)
            if "locked" in detail or "busy" in detail:
                fail(
                    "the database is busy (another process holds its write lock); the request was not taken: "
                    f"try again [database_busy: {detail}]"
                )
            fail(f"the database is unavailable; the request was not taken: try again [database_unavailable: {detail}]")
        except DBAPIError as exc:
            fail(
                f"the database refused the request; nothing was taken [database_error: {_first_line(exc.orig or exc)}]"
            )
        except OSError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


# Commands that change nothing, or run for long and log by themselves: not operator actions to audit.
_NOT_AUDITED = frozenset(
    {
        "version", "serve", "worker", "demo", "bench", "openapi", "reconcile", "report", "audit", "db",
        "list", "show", "status", "balances", "verify", "accounts", "holders", "controls", "quotes", "orders",
        "book", "positions", "alerts", "custodians", "transfers", "pulls", "screen", "deposit-address",
    }
)  # fmt: skip


def _audit_command() -> None:
    """An operator's command that ran is written to the audit log: the command and its parameters (no
    secret is ever a parameter: passphrases and keys come from the environment)."""
    click_ctx = click.get_current_context(silent=True)
    if click_ctx is None:
        return
    words = click_ctx.command_path.split()[1:]
    if not words or set(words) & _NOT_AUDITED:
        return
    try:
        from andchain.compliance import audit

        ctx = Context()
        params = {k: v for k, v in click_ctx.params.items() if k != "as_json"}
        audit.record(ctx.engine, ctx.clock, f"cli:{getpass.getuser()}", f"cli {' '.join(words)}"[:80],
                     " ".join(str(v) for v in params.values() if v not in (None, False, ""))[:2000],
                     json.loads(json.dumps(params, default=str)))  # fmt: skip
        ctx.close()
    except Exception as exc:  # a database without the log yet (`andchain db upgrade` first): say so, go on
        log.warning("audit entry not written for %s: %s", " ".join(words), exc)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def context() -> Context:
    from andchain.trading.prices import install

    return install(Context())


def token_service() -> TokenService:
    from andchain.tokens.service import TokenService

    return TokenService(context())


def usd_minor(ctx: Context, text: str) -> int:
    amount = parse_amount(text if " " in text.strip() else f"{text} USD", ctx.assets)
    if amount.asset.code != "USD":
        fail(f"deposit tokens are USD: give an amount like '100.00 USD', was {text!r}")
    return amount.minor


def idempotency_key(key: str | None) -> str:
    """The caller's key, or a new one (printed with the operation it names, so a retry can reuse it)."""
    return key or f"cli-{uuid.uuid4()}"


def op_row(op: Operation) -> dict[str, Any]:
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


def print_op(op: Operation, as_json: bool) -> None:
    if as_json:
        emit_json(op_row(op))
    else:
        out.print(f"operation {op.id} {op.kind} {op.status.value}  (key {escape(op.idempotency_key)})")


def render_report(report: Report) -> None:
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
