"""`andchain keys`: API keys for clients, operators, compliance, auditors and admins."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, clean_errors, context, emit_json, out

app = typer.Typer(
    help="API keys: shown once when created, stored hashed, revocable, with an expiry.", no_args_is_help=True
)


def _when(us: int | None) -> str | None:
    return None if us is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1e6))


@app.command("create")
@clean_errors
def keys_create(
    role: Annotated[str, typer.Option(help="client, operator, compliance, auditor or admin")],
    client: Annotated[str | None, typer.Option(help="a client key's client (id or name)")] = None,
    label: Annotated[str, typer.Option(help="what the key is for")] = "",
    expires_in_days: Annotated[int | None, typer.Option(help="the key stops working after this many days")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key. It is printed once: keep it; only its keyed hash is stored."""
    ctx = context()
    ctx.upgrade_database()
    client_id = None
    if client is not None:
        from andchain.tokens.service import TokenService

        client_id = TokenService(ctx).client(client).id
    record, key = ctx.api_keys.create(
        role, client_id=client_id, label=label, ttl_s=None if expires_in_days is None else expires_in_days * 86_400
    )
    if as_json:
        emit_json({"id": record.id, "key": key, "role": record.role.value, "client_id": record.client_id})
    else:
        out.print(f"key {record.id} ({record.role.value}{', client ' + client_id if client_id else ''}):")
        out.print(key)
        out.print("it is shown this once; send it as `Authorization: Bearer <key>`")


@app.command("list")
@clean_errors
def keys_list(as_json: JsonOpt = False) -> None:
    """Every key: id, role, client, label, created, expires, revoked (never the key itself)."""
    ctx = context()
    rows = [
        {
            "id": k.id,
            "role": k.role.value,
            "client_id": k.client_id,
            "label": k.label,
            "created_at": _when(k.created_at_us),
            "expires_at": _when(k.expires_at_us),
            "revoked_at": _when(k.revoked_at_us),
            "usable": k.usable(ctx.clock()),
        }
        for k in ctx.api_keys.list()
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "role", "client", "label", "created", "expires", "revoked")
    for r in rows:
        table.add_row(
            *(str(r[k] or "-") for k in ("id", "role", "client_id", "label", "created_at", "expires_at", "revoked_at"))
        )
    out.print(table)


@app.command("revoke")
@clean_errors
def keys_revoke(key_id: str) -> None:
    """Revoke a key: from the next request on, it is refused."""
    key = context().api_keys.revoke(key_id)
    out.print(f"key {key.id} revoked at {_when(key.revoked_at_us)}")
