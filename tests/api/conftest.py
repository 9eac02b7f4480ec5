"""An API client on each database (SQLite and PostgreSQL), with the app's default limits or others.

`make_client(**api)` takes api.* settings (rate limits, allowed hosts...). The test client
sends `Host: testserver`, one of the allowed hosts here unless a test sets its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from andchain.api import create_app
from andchain.api.limits import RequestLimits
from andchain.config import Settings
from andchain.context import Context


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
            ctx = Context(Settings(data_dir=tmp_path, database_url=url, api=api), clock=clock)
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
