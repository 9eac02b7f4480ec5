"""An API client on each database (SQLite and PostgreSQL), with the app's default limits or others;
and the bank's API on the shared anvil node (`bank`), for the routers that move tokens.

`make_client(**api)` takes api.* settings (rate limits, allowed hosts...). The test client
sends `Host: testserver`, one of the allowed hosts here unless a test sets its own."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from andchain.api import create_app
from andchain.api.limits import RequestLimits
from andchain.config import Settings
from andchain.context import Context
from andchain.tokens.service import TokenService
from tests.chains.conftest import anvil, ctx  # noqa: F401 - one shared node, a context per test
from tests.tokens.conftest import settle, tokens  # noqa: F401 - a TokenService with the internal network set up


@pytest.fixture
def make_client(engine, clock, tmp_path) -> Iterator[Callable[..., TestClient]]:
    with ExitStack() as stack:

        def make(
            limits: RequestLimits | None = None,
            role: str | None = "admin",
            client_id: str | None = None,
            **api: Any,
        ) -> TestClient:
            """A client of a fresh app with `api` settings; it authenticates with a new key of `role`
            (None: no key at all)."""
            url = str(engine.url.render_as_string(hide_password=False))
            api = {"allowed_hosts": ["testserver"], **api}
            # A test keystore's keys cost a light scrypt each: the first request that opens the bank's keys
            # (a lawful order, a mint) would otherwise spend seconds deriving them.
            keystore = {"passphrase": "test-only-passphrase", "scrypt_n": 1024}
            ctx = Context(Settings(data_dir=tmp_path, database_url=url, api=api, keystore=keystore), clock=clock)
            ctx.__dict__["engine"] = engine
            app = create_app(ctx, limits=limits) if limits is not None else create_app(ctx)
            http = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            if role is not None:
                _, key = ctx.api_keys.create(role, client_id=client_id, label=f"test {role}")
                http.headers["Authorization"] = f"Bearer {key}"
            return http

        yield make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


# ------------------------------------------------------------------ the bank on a real chain

_request_keys = itertools.count()


def _post_model(app, path: str, status: int) -> type[BaseModel] | None:
    from tests.api.test_roles import _routes

    for route in _routes(app):
        if "POST" in route.methods and route.path_regex.fullmatch(path):
            extra = route.responses.get(status, {}).get("model")
            return extra or (route.response_model if status == (route.status_code or 200) else None)
    return None


@dataclass
class Bank:
    """The API of a bank whose internal network runs on the shared anvil node, and who calls it."""

    ctx: Context
    tokens: TokenService
    http: TestClient

    def key(self, role: str, client_id: str | None = None) -> dict[str, str]:
        """The Authorization header of a new API key of `role` (a client key names its client)."""
        _, key = self.ctx.api_keys.create(role, client_id=client_id, label=f"test {role}")
        return {"Authorization": f"Bearer {key}"}

    def post(self, path: str, body: dict | None, who: dict[str, str], *, key: str | None = None) -> httpx.Response:
        """POST; a success must be what the route's response model says (the answer of a POST is stored and
        replayed as it is, never passed through the model, so nothing else checks it)."""
        headers = {**who, "Idempotency-Key": key or f"request-{next(_request_keys)}"}
        response = self.http.post(path, json=body, headers=headers)
        if response.is_success:
            model = _post_model(self.http.app, path, response.status_code)
            assert model is not None, f"POST {path} answers {response.status_code} with no model"
            model.model_validate(response.json())
        return response

    def get(self, path: str, who: dict[str, str], **params: object) -> httpx.Response:
        return self.http.get(path, headers=who, params=params)

    def settle(self) -> None:
        """Run the worker until every operation is finished and the listener caught up."""
        settle(self.ctx, self.tokens)


@pytest.fixture
def bank(ctx, tokens) -> Iterator[Bank]:  # noqa: F811
    with TestClient(create_app(ctx), base_url="http://localhost", raise_server_exceptions=False) as http:
        yield Bank(ctx, tokens, http)
