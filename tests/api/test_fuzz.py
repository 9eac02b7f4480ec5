"""A generated walk over the whole API with hostile inputs (schemathesis, from /openapi.json).

Every operation gets the schema's examples, the coverage phase's boundary and
negative cases (wrong types, missing required headers, over-long strings...) and
fuzzed requests, positive and negative, on SQLite and PostgreSQL. The run is
deterministic (a fixed seed, derandomized, no example database) and bounded in
examples, so it cannot flake and stays well under a minute.

The checks: no 5xx ever; every status, content type and body conforms to the
document (so every error is a problem+json Problem); invalid input is refused;
a missing required header (Idempotency-Key) is refused; an unsupported method is 405
with an Allow header. Valid-looking input may still be refused (an account that does
not exist is 422), so `positive_data_acceptance` is off.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine

from andchain.api import create_app
from andchain.config import Settings
from andchain.context import Context
from andchain.db import make_engine
from tests.conftest import BACKENDS, FakeClock, migrated_sqlite, postgresql_skipped, reset

EXAMPLES_MAX = 25
# Values that once broke the API, mixed into the generated strings and integers.
HOSTILE_STRINGS = [
    "\u0000",  # PostgreSQL cannot store or compare NUL
    "a\u0000b",
    "²",  # "²".isdigit() is True and int("²") raises
    "id:²",
    "id:9223372036854775808",  # 2^63: one past the largest id
    "id:" + "9" * 40,
    "id:2",
    "2",
    "١٢",  # Arabic-Indic digits
    "１２.３４",  # full-width digits
    "12.٣٤",
    "x" * 300,  # longer than any id, name or idempotency scope
]
HOSTILE_INTEGERS = [2**63, 2**64, -(2**63) - 1, 10**30, 0, -1]
CONFIG = {
    "seed": 20_250_101,
    "dictionaries": {"hostile-strings": {"values": HOSTILE_STRINGS}, "hostile-integers": {"values": HOSTILE_INTEGERS}},
    "generation": {
        "mode": "all",
        "deterministic": True,
        "database": "none",
        "max-examples": EXAMPLES_MAX,
        "dictionaries": {
            "string": {"dictionary": "hostile-strings", "probability": 0.25},
            "integer": {"dictionary": "hostile-integers", "probability": 0.25},
        },
    },
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        "positive_data_acceptance": {"enabled": False},
        # It re-sends each request without the key over HTTP, which this in-process app has no URL for;
        # tests/api/test_roles.py walks every route without a key and with every role instead.
        "ignored_auth": {"enabled": False},
        # A body over the size limit is refused before it is read, as 413.
        "negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 409, 413, 415, 422, 431]},
    },
    "operations": [
        {
            # GET /v1/transfers/{transfer_id} serves /v1/transfers/batch too (a transfer may be
            # named "batch"), so `Allow: GET, POST` there is true, though the document lists the
            # concrete path with POST alone.
            "include-path": "/v1/transfers/batch",
            "checks": {"allow_header_conformance": {"enabled": False}},
        },
        {
            # A valid request opens a stream that lasts events.stream_max_s: tests/events/test_api.py
            # drives it (and its refusals) against a real server instead.
            "include-path": "/v1/events/stream",
            "enabled": False,
        },
    ],
}


def _document() -> dict:
    # Only the routes matter for the document; this app never touches its (in-memory) database.
    settings_ = Settings(data_dir=Path(tempfile.gettempdir()), database_url="sqlite:///:memory:")
    return create_app(Context(settings_)).openapi()


schema = schemathesis.openapi.from_dict(_document(), config=schemathesis.Config.from_dict(CONFIG))


# The databases every case goes to: both, unless the PostgreSQL tests are skipped. The parameter names them
# in each test's id, which also gives each operation's test an id of its own: under pytest 9, schemathesis
# gives the tests of an unparametrized function one id, and pytest-xdist runs only one of those.
WALKED = [b for b in BACKENDS if not (b == "postgresql" and postgresql_skipped())]


@pytest.fixture(scope="module", params=[WALKED], ids=["+".join(WALKED)])
def walks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FastAPI]]:
    """One app per database for the whole walk: building one per operation made each test build FastAPI's
    route state again (about half a second). Each generated request goes to every database's app in turn,
    so the cases are generated once (generating them is about half the walk's time). The rate limits are
    lifted: the walk is about what each request answers, and tests/api/test_rate_limits.py tests the
    limits."""
    api = {"allowed_hosts": ["testserver"], "rate_limit_reads": "100000/second", "rate_limit_writes": "100000/second"}
    keystore = {"passphrase": "test-only-passphrase", "scrypt_n": 1024}
    apps: dict[str, FastAPI] = {}
    engines: list[Engine] = []
    for backend in request.param:
        data_dir = tmp_path_factory.mktemp(f"fuzz-{backend}")
        if backend == "sqlite":
            engine = make_engine(migrated_sqlite(data_dir / "andchain.db"))
            engines.append(engine)
        else:
            engine = request.getfixturevalue("_postgres_engine")
        url = engine.url.render_as_string(hide_password=False)
        ctx = Context(Settings(data_dir=data_dir, database_url=url, api=api, keystore=keystore), clock=FakeClock())
        ctx.__dict__["engine"] = engine
        apps[backend] = create_app(ctx)
    yield apps
    for engine in engines:
        engine.dispose()


@pytest.fixture
def apps(walks: dict[str, FastAPI]) -> dict[str, FastAPI]:
    """The walk's apps, each on an empty book for each operation, so that what one operation's requests stored
    (a desk halted, an account frozen) does not change what the next one meets. What an app keeps in memory
    (its services, built on first use, and their caches) carries over, as in a deployment serving every
    caller; so do SQLite's append-only audit log and its AUTOINCREMENT ids. The walk runs in the same order
    every time, so a run of the whole file meets the same state every time."""
    for api_app in walks.values():
        ctx = api_app.state.context
        reset(ctx.engine)
        _, key = ctx.api_keys.create("admin", label="test admin")
        api_app.state.test_authorization = f"Bearer {key}"
        with TestClient(api_app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}) as http:
            # Two accounts, so that generated references sometimes name real ones.
            for name in ("bank:usd:cash", "clients:acme:usd:dda"):
                r = http.post("/v1/accounts", json={"name": name, "asset": "USD"}, headers={"Idempotency-Key": name})
                assert r.status_code == 201, r.text
    return walks


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_answers_hostile_input_with_a_conforming_4xx_never_a_5xx(case, apps):
    for backend, app in apps.items():
        try:
            # The timeout guards against a hang, it is no speed limit (timings are never tested): on a slow
            # shared machine under the whole suite's load, a request that takes 2 s alone once took over the
            # default 10 s.
            case.call_and_validate(app=app, headers={"Authorization": app.state.test_authorization}, timeout=60)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises its failed checks as a group
            exc.add_note(f"on {backend}")
            raise
