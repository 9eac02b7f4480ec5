"""The OpenAPI document states what the server does, checked against the routes themselves."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from andchain.api import create_app
from andchain.config import Settings
from andchain.context import Context
from tests.api.test_roles import _routes

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
    routes = _routes(app)
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


# A custodian's notification carries its own event id (taken in once per id), never our header.
NOT_OUR_CALLERS = {"/v1/custody/webhooks/{custodian}"}


def test_every_post_requires_an_idempotency_key_header(app, document):
    posts = [(p, m) for p, m in operations(app) if m == "post" and p not in NOT_OUR_CALLERS]
    assert len(posts) >= 5
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
        if method != "post" or path in NOT_OUR_CALLERS:
            continue
        for status, response in document["paths"][path][method]["responses"].items():
            if status.startswith("2"):
                assert "Idempotent-Replayed" in response.get("headers", {}), (path, status)


def test_every_success_of_a_v1_route_has_a_body_model(app, document):
    schemas = document["components"]["schemas"]
    for path, method in operations(app):
        if not path.startswith("/v1/"):
            continue
        for status, response in document["paths"][path][method]["responses"].items():
            if status.startswith("2"):
                if "text/event-stream" in response.get("content", {}):
                    continue  # a stream of events, each one documented in docs/events.md
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                assert "$ref" in schema, (method, path, status)
                assert schema["$ref"].rsplit("/", 1)[1] in schemas


def test_an_accepted_request_names_the_operation_to_follow(app, document):
    accepted = [(p, m) for p, m in operations(app) if "202" in document["paths"][p][m]["responses"]]
    assert {p for p, _ in accepted} >= {"/v1/tokens/mint", "/v1/tokens/pay", "/v1/tokens/redeem", "/v1/tokens/move"}
    for path, method in accepted:
        response = document["paths"][path][method]["responses"]["202"]
        assert "Location" in response["headers"], path
        assert response["content"]["application/json"]["schema"]["$ref"].endswith("/OperationOut"), path
