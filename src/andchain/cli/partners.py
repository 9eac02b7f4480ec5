"""`andchain partners`: the apps (an exchange) that reach customers' accounts with their consent (docs/connect.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, clean_errors, context, emit_json, out

app = typer.Typer(help="Partner apps: OAuth clients that reach customers' accounts with consent.", no_args_is_help=True)


def _service() -> Any:
    from andchain.connect.oauth import ConnectService

    ctx = context()
    ctx.upgrade_database()
    return ConnectService(ctx.engine, ctx.settings.connect, ctx.api_keys.digest, clock=ctx.clock)


@app.command("register")
@clean_errors
def partners_register(
    name: Annotated[str, typer.Argument(help="the app's name, shown to customers on the consent screen")],
    redirect_uri: Annotated[list[str], typer.Option("--redirect-uri", help="an exact redirect URI (repeat)")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="accounts:read, payments:write (repeat; default accounts:read)")
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="a public client: no secret, PKCE alone")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register a partner app; its client secret is shown once."""
    partner, secret = _service().register_partner(name, redirect_uri, scope or ["accounts:read"], public=public)
    view = {**partner.view(), "client_secret": secret}
    if as_json:
        emit_json(view)
        return
    out.print(f"partner {partner.client_id} ({partner.name}); scopes {', '.join(partner.scopes)}")
    if secret:
        out.print(f"client secret (shown once): {secret}")


@app.command("list")
@clean_errors
def partners_list(as_json: JsonOpt = False) -> None:
    """The registered partner apps (never their secrets)."""
    views = [p.view() for p in _service().partners()]
    if as_json:
        emit_json(views)
        return
    table = Table("client id", "name", "public", "redirect URIs", "scopes")
    for v in views:
        table.add_row(v["client_id"], v["name"], str(v["public"]), " ".join(v["redirect_uris"]), " ".join(v["scopes"]))
    out.print(table)


@app.command("disable")
@clean_errors
def partners_disable(client_id: Annotated[str, typer.Argument(help="the partner's client id")]) -> None:
    """Disable a partner: its tokens stop working at once and it gets no new ones."""
    partner = _service().set_active(client_id, False)
    out.print(f"partner {partner.client_id} ({partner.name}) disabled")


@app.command("enable")
@clean_errors
def partners_enable(client_id: Annotated[str, typer.Argument(help="the partner's client id")]) -> None:
    """Enable a disabled partner again (its consents that have not ended work again)."""
    partner = _service().set_active(client_id, True)
    out.print(f"partner {partner.client_id} ({partner.name}) enabled")
