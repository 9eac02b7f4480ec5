"""Every route, every role: the allowed set comes from the route table, so a new route without a rule fails here."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from andchain.api.auth import Allow, Role

# Liveness for load balancers, metrics for the monitoring network (docs/api.md), the docs pages: no key.
# The custodians' webhooks carry no API key: each custodian's signature is their credential.
PUBLIC = {
    "/health",
    "/health/live",
    "/metrics",
    "/docs",
    "/redoc",
    "/docs/oauth2-redirect",
    "/v1/custody/webhooks/{custodian}",
}
# The partner side (docs/connect.md): the OAuth endpoints take a partner's client credentials and the
# customer's sign-in; the FDX resources take a partner's access token, never an API key (walked below).
OAUTH = {
    "/.well-known/oauth-authorization-server",
    "/oauth/authorize",
    "/oauth/token",
}
FDX_PREFIX = ("/fdx/", "/connect/v1/")
ROLES = [None, *Role]


def _rule(route: APIRoute) -> frozenset[Role] | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if isinstance(dependency.call, Allow):
            return dependency.call.roles
        stack.extend(dependency.dependencies)
    return None


def _routes(app) -> list[APIRoute]:
    """Every route the app serves. FastAPI (0.165) keeps an included router as one entry of
    `app.routes` that holds the router's own routes, so they are walked into here."""
    found: list[APIRoute] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            pending.extend(route.original_router.routes)
    return found


def test_the_walk_finds_every_router_of_the_app(client):
    paths = {r.path for r in _routes(client.app)}
    for wanted in (
        "/v1/accounts",
        "/v1/transfers/{transfer_id}/post",
        "/v1/clients",
        "/v1/deposits",
        "/v1/tokens/mint",
        "/v1/operations/{op_id}/cancel",
        "/v1/rules",
        "/v1/networks",
        "/v1/reconcile",
    ):
        assert wanted in paths


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "id:1", template)


def _keyed(path: str) -> bool:
    """A route an API key opens (not the public ones, not the partner side)."""
    return path not in PUBLIC and path not in OAUTH and not path.startswith(FDX_PREFIX)


def test_every_route_declares_who_may_call_it(client):
    missing = [f"{sorted(r.methods)} {r.path}" for r in _routes(client.app) if _keyed(r.path) and _rule(r) is None]
    assert missing == []


def test_the_partner_resources_take_a_partner_token_never_an_api_key(make_client):
    http = make_client(role="admin")
    fdx = [r for r in _routes(http.app) if r.path.startswith(FDX_PREFIX)]
    assert len(fdx) >= 4
    for route in fdx:
        method = sorted(route.methods)[0]
        for headers in ({}, {"Authorization": http.headers["Authorization"]}, {"Authorization": "Bearer at_nope"}):
            extra = {"Idempotency-Key": "walk"} if method == "POST" else {}
            answer = http.request(method, _path(route.path), headers={"Authorization": "", **extra, **headers},
                                  json={"accountId": "1", "amount": "1.00"} if method == "POST" else None)  # fmt: skip
            assert answer.status_code == 401, (route.path, answer.text)
            assert answer.json()["code"] == "invalid_token"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("role", ROLES, ids=lambda r: "no key" if r is None else r.value)
def test_every_route_answers_each_role_as_its_rule_says(make_client, role):
    http = make_client(role=None if role is None else role.value, client_id="c1" if role == Role.CLIENT else None)
    for route in _routes(http.app):
        if not _keyed(route.path):
            continue
        allowed = _rule(route)
        assert allowed is not None
        for method in sorted(route.methods):
            headers = {"Idempotency-Key": f"walk-{method}-{route.path}"[:255]} if method == "POST" else {}
            if route.path.endswith("/stream"):
                headers["Last-Event-ID"] = "not-an-id"  # refused (400) once admitted: the walk never waits on a stream
            response = http.request(method, _path(route.path), json={} if method == "POST" else None, headers=headers)
            where = f"{role} {method} {route.path}: {response.status_code} {response.text[:200]}"
            if role is None:
                assert response.status_code == 401, where
                assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
            elif role in allowed:
                assert response.status_code not in (401, 403), where
            else:
                assert response.status_code == 403, where
                assert response.json()["code"] == "forbidden", where


def test_a_bad_revoked_or_expired_key_is_refused_with_a_challenge(make_client, clock):
    http = make_client(role=None)
    keys = http.app.state.api_keys
    for header in ("Bearer nope", "Bearer ak_0123456789abcdef_" + "x" * 43, "Basic dXNlcjpwYXNz"):
        refused = http.get("/v1/accounts", headers={"Authorization": header})
        assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"], header
    record, key = keys.create("auditor", label="short-lived", ttl_s=60)
    assert http.get("/v1/accounts", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    clock.advance(61)
    expired = http.get("/v1/accounts", headers={"Authorization": f"Bearer {key}"})
    assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    record, key = keys.create("operator")
    assert http.get("/v1/accounts", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    keys.revoke(record.id)
    assert http.get("/v1/accounts", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    # The key itself is never stored: only its keyed hash.
    from sqlalchemy import select

    from andchain.api.auth import keys as table

    with http.app.state.context.engine.connect() as conn:
        stored = [tuple(str(v) for v in row) for row in conn.execute(select(table))]
    secret = key.split("_", 2)[2]  # ak_<id>_<secret>: the secret is URL-safe base64, which may hold "_" itself
    assert len(secret) == 43 and all(secret not in " ".join(row) for row in stored)


def test_a_client_sees_only_its_own_accounts_and_another_clients_are_not_there(make_client):
    admin = make_client()
    for name in ("clients:c1:usd:dda", "clients:c2:usd:dda", "bank:usd:cash"):
        opened = admin.post("/v1/accounts", json={"name": name, "asset": "USD"}, headers={"Idempotency-Key": name})
        assert opened.status_code == 201, opened.text
    moved = admin.post(
        "/v1/transfers",
        json={
            "debit_account": "bank:usd:cash",
            "credit_account": "clients:c2:usd:dda",
            "amount": "5.00",
            "asset": "USD",
        },
        headers={"Idempotency-Key": "t-c2"},
    )
    assert moved.status_code == 201, moved.text
    c1 = make_client(role="client", client_id="c1")
    names = [a["name"] for a in c1.get("/v1/accounts").json()["data"]]
    assert names == ["clients:c1:usd:dda"]
    assert c1.get("/v1/accounts", params={"prefix": "clients:c2:"}).json()["data"] == []
    for path in ("/v1/accounts/clients:c2:usd:dda", "/v1/accounts/clients:c2:usd:dda/transfers", "/v1/transfers/t-c2"):
        hidden = c1.get(path)
        assert hidden.status_code == 404, (path, hidden.text)
        assert set(hidden.json()) <= {"type", "title", "status", "code", "detail"} and "5.00" not in hidden.text
    assert c1.get("/v1/accounts/clients:c1:usd:dda").status_code == 200
    # By id too, and in the words of an account that does not exist: walking the ids tells nothing.
    c2_id = admin.get("/v1/accounts/clients:c2:usd:dda").json()["id"]
    for path in ("/v1/accounts/id:{}", "/v1/accounts/id:{}/transfers"):
        hidden, missing = c1.get(path.format(c2_id)), c1.get(path.format(999_999))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"] == missing.json()["detail"].replace("999999", str(c2_id))
        assert "c2" not in hidden.text


def test_idempotency_keys_are_scoped_per_api_key(make_client):
    first, second = make_client(role="operator"), make_client(role="operator")
    body = {"name": "bank:usd:fees", "asset": "USD"}
    assert first.post("/v1/accounts", json=body, headers={"Idempotency-Key": "same"}).status_code == 201
    # The same key from another API key is another request: no 409, no replay of the first one's answer.
    other = second.post(
        "/v1/accounts", json={"name": "bank:usd:other", "asset": "USD"}, headers={"Idempotency-Key": "same"}
    )
    assert other.status_code == 201 and other.headers.get("Idempotent-Replayed") is None


def test_make_run_leaves_working_development_keys_in_the_data_directory(engine, clock, tmp_path):
    from fastapi.testclient import TestClient

    from andchain.api import create_app
    from andchain.cli.serve import development_keys
    from andchain.config import Settings
    from andchain.context import Context

    url = str(engine.url.render_as_string(hide_password=False))
    ctx = Context(Settings(data_dir=tmp_path, database_url=url), clock=clock)
    ctx.__dict__["engine"] = engine
    directory = development_keys(ctx)
    first = {p.name: p.read_text() for p in directory.glob("*.key")}
    assert sorted(first) == ["acme.key", "admin.key", "desk.key", "globex.key", "operator.key"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in directory.glob("*.key"))
    assert {p.name: p.read_text() for p in directory.glob("*.key")} == first
    development_keys(ctx)  # again (the next `make run`): the same keys, still working
    assert {p.name: p.read_text() for p in directory.glob("*.key")} == first
    with TestClient(create_app(ctx), base_url="http://localhost", raise_server_exceptions=False) as http:
        admin = {"Authorization": "Bearer " + first["admin.key"].strip()}
        acme = {"Authorization": "Bearer " + first["acme.key"].strip()}
        assert http.get("/v1/accounts", headers=admin).status_code == 200
        mine = http.get("/v1/accounts", headers=acme).json()["data"]
        assert len(mine) == 1 and mine[0]["balances"]["posted"] == "1000000.00"
        assert http.post("/v1/transfers", json={}, headers={**acme, "Idempotency-Key": "x"}).status_code == 403
