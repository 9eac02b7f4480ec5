"""The OpenAPI document states what the server does, checked against the routes themselves."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from andchain.api import create_app
from andchain.api.routers import events, ledger
from andchain.config import Settings
from andchain.context import Context

PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(Context(Settings(data_dir=tmp_path_factory.mktemp("openapi"))))


@pytest.fixture(scope="module")
def document(app):
    return app.openapi()


def operations(app):
    """Every (path, method) the app serves, from its routers rather than from the document."""
    routes = [*app.router.routes, *ledger.router.routes, *events.router.routes]
    found = {
        (route.path, method.lower())
        for route in routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    return sorted(found)


def test_every_route_is_in_the_document(app, document):
    ops = operations(app)
    assert len(ops) >= 20
    for path, method in ops:
        assert method in document["paths"].get(path, {}), (method, path)


def test_every_post_requires_an_idempotency_key_header(app, document):
    posts = [(p, m) for p, m in operations(app) if m == "post"]
    assert len(posts) == 8
    for path, method in posts:
        params = document["paths"][path][method].get("parameters", [])
        header = [p for p in params if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        assert len(header) == 1, path
        assert header[0]["required"] is True
        assert header[0]["schema"]["maxLength"] == 255


def test_every_error_is_problem_json_with_the_problem_schema(app, document):
    for path, method in operations(app):
        responses = document["paths"][path][method]["responses"]
        errors = {s: r for s, r in responses.items() if s[0] in "45"}
        assert errors, (method, path)
        for status, response in errors.items():
            assert response["description"], (method, path, status)
            assert list(response["content"]) == [PROBLEM], (method, path, status)
            assert response["content"][PROBLEM]["schema"] == {"$ref": PROBLEM_REF}


def test_the_problem_schema_has_type_title_status_code_detail(document):
    schema = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code", "detail"} <= set(schema["required"])
    assert schema["properties"]["status"]["type"] == "integer"
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/v1/accounts", "post", {"200", "201", "400", "409", "413", "415", "422", "431", "500"}),
        ("/v1/transfers", "post", {"200", "201", "400", "409", "413", "415", "422", "431", "500"}),
        ("/v1/transfers/batch", "post", {"200", "400", "409", "413", "415", "422", "431", "500"}),
        ("/v1/transfers/{transfer_id}/post", "post", {"200", "201", "400", "404", "409", "413", "422"}),
        ("/v1/transfers/{transfer_id}/void", "post", {"200", "201", "400", "404", "409", "413", "422"}),
        ("/v1/accounts", "get", {"200", "400", "422"}),
        ("/v1/accounts/{ref}", "get", {"200", "404"}),
        ("/v1/accounts/{ref}/transfers", "get", {"200", "400", "404", "422"}),
        ("/v1/transfers", "get", {"200", "400", "404", "422"}),
        ("/v1/transfers/{transfer_id}", "get", {"200", "404"}),
        ("/health", "get", {"200", "500"}),
        ("/v1/events", "get", {"200", "422"}),
        ("/v1/events/stream", "get", {"200", "400", "422"}),
        ("/v1/webhooks", "post", {"201", "400", "403", "409", "413", "415", "422"}),
        ("/v1/webhooks", "get", {"200", "400", "422"}),
        ("/v1/webhooks/{webhook_id}", "delete", {"200", "404"}),
        ("/v1/webhooks/{webhook_id}/deliveries", "get", {"200", "400", "404", "422"}),
        ("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", "post", {"200", "400", "404", "409", "422"}),
        ("/v1/webhooks/{webhook_id}/replay", "post", {"200", "400", "404", "409", "422"}),
    ],
)
def test_each_route_declares_the_status_codes_it_returns(document, path, method, statuses):
    declared = set(document["paths"][path][method]["responses"])
    assert statuses <= declared, statuses - declared
    assert "default" not in declared


def test_success_responses_of_posts_document_the_replay_header(app, document):
    for path, method in operations(app):
        if method != "post":
            continue
        for status, response in document["paths"][path][method]["responses"].items():
            if status.startswith("2"):
                assert "Idempotent-Replayed" in response.get("headers", {}), (path, status)
