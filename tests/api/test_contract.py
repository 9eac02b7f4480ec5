"""The API's contract: the committed OpenAPI document is what the server generates, and the live app keeps
it with every role, call after call (schemathesis, stateful links included)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from andchain.api import create_app
from andchain.config import Settings
from andchain.context import Context

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
ROLES = ("admin", "operator", "compliance", "auditor", "client")


def _generated() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(Settings(data_dir=Path(tmp), database_url=f"sqlite:///{Path(tmp) / 'doc.db'}"))
        document = create_app(ctx).openapi()
        ctx.close()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def test_the_committed_openapi_document_is_what_the_server_generates():
    assert _generated() == SNAPSHOT.read_text(), (
        "the API changed: run `andchain openapi --output docs/openapi.json` and review the difference"
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A live app on its own SQLite database, a client with an account, and a key of every role."""
    directory = tmp_path_factory.mktemp("contract")
    settings_ = Settings(
        data_dir=directory,
        api={"allowed_hosts": ["*"], "rate_limit_reads": "100000/second", "rate_limit_writes": "100000/second"},
        keystore={"passphrase": "test-only-passphrase", "scrypt_n": 1024},
    )
    ctx = Context(settings_)
    ctx.upgrade_database()
    from andchain.tokens.service import TokenService

    acme = TokenService(ctx).onboard("Acme").id
    keys = {}
    for role in ROLES:
        _, key = ctx.api_keys.create(role, client_id=acme if role == "client" else None, label=f"contract {role}")
        keys[role] = {"Authorization": f"Bearer {key}"}
    app = create_app(ctx)
    with TestClient(app, base_url="http://localhost") as http:
        for name in ("bank:usd:cash", f"clients:{acme}:usd:savings"):
            opened = http.post(
                "/v1/accounts", json={"name": name, "asset": "USD"}, headers={**keys["admin"], "Idempotency-Key": name}
            )
            assert opened.status_code in (200, 201), opened.text
        yield app, keys
    ctx.close()


CONFIG = {
    "seed": 20_261_126,
    "generation": {"mode": "positive", "deterministic": True, "database": "none", "max-examples": 3},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "checks": {"positive_data_acceptance": {"enabled": False}, "ignored_auth": {"enabled": False}},
    "operations": [{"include-path": "/v1/events/stream", "enabled": False}],
}
schema = schemathesis.openapi.from_dict(json.loads(SNAPSHOT.read_text()), config=schemathesis.Config.from_dict(CONFIG))


@pytest.mark.parametrize("role", ROLES[1:])
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_role_gets_only_documented_answers_and_never_a_5xx(case, live, role):
    app, keys = live
    case.call_and_validate(app=app, headers=keys[role])


def test_stateful_sequences_follow_the_links_and_keep_the_contract(live):
    """Calls chained by the links schemathesis finds (an account opened, then read; a transfer booked, then
    shown...), as the admin: every answer conforms, no 5xx."""
    app, keys = live
    stateful = schemathesis.openapi.from_dict(
        json.loads(SNAPSHOT.read_text()),
        config=schemathesis.Config.from_dict(
            {
                "seed": 20_261_126,
                "generation": {"deterministic": True, "database": "none"},
                "checks": {"positive_data_acceptance": {"enabled": False}, "ignored_auth": {"enabled": False}},
                "operations": [{"include-path": "/v1/events/stream", "enabled": False}],
            }
        ),
    )

    class Machine(stateful.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):
            return {"app": app, "headers": keys["admin"]}

    Machine.run(
        settings=settings(
            max_examples=8,
            stateful_step_count=5,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
