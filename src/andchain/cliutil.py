"""Helpers shared by the command-line modules: consoles, clean errors, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from andchain.errors import DomainError

F = TypeVar("F", bound=Callable[..., Any])

out = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="print data as JSON")]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def clean_errors(fn: F) -> F:
    """Domain errors become a one-line message and exit code 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DomainError as exc:
            fail(f"{exc.message} [{exc.code}]")
        except OSError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
