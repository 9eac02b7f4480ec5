"""`andchain db`: schema migrations."""

from __future__ import annotations

import typer

from andchain.cli.common import (
    clean_errors,
    context,
    out,
)

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
@clean_errors
def db_upgrade(revision: str = "head") -> None:
    """Apply the schema migrations (SQLite or PostgreSQL, from the configured database URL)."""
    from andchain import migrate

    ctx = context()
    migrate.upgrade(ctx.engine, revision)
    out.print(
        f"database {ctx.engine.url.render_as_string(hide_password=True)} at revision {migrate.current(ctx.engine)}"
    )


@app.command("downgrade")
@clean_errors
def db_downgrade(revision: str) -> None:
    """Revert the schema to an earlier revision ('base' removes every table)."""
    from andchain import migrate

    ctx = context()
    migrate.downgrade(ctx.engine, revision)
    out.print(f"database at revision {migrate.current(ctx.engine)}")


@app.command("current")
@clean_errors
def db_current() -> None:
    """Show the schema revision of the database and the newest one known."""
    from andchain import migrate

    ctx = context()
    out.print(f"current {migrate.current(ctx.engine)}, head {migrate.head()}")
