"""Rate limits: per caller (its API key, else its address), reads and writes apart, 429 with Retry-After."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import Depends, Request

PROBLEM = "application/problem+json"


def open_account(client, name: str, key: str | None = None):
    return client.post("/v1/accounts", json={"name": name, "asset": "USD"}, headers={"Idempotency-Key": key or name})


def assert_rate_limited(response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def fake_authentication(request: Request) -> None:
    """What authentication does for the limiter: a principal with a key id on request.state."""
    key = request.headers.get("X-Test-Key")
    if key is not None:
        request.state.principal = SimpleNamespace(key_id=key, role="client", client_id=None)


def test_reads_over_their_limit_are_refused_with_429_and_retry_after(make_client):
    client = make_client(rate_limit_reads="3/minute")
    for _ in range(3):
        assert client.get("/v1/accounts").status_code == 200
    assert_rate_limited(client.get("/v1/accounts"))
    # /health needs no key: without one the caller is its address, a budget of its own.
    assert client.get("/health").status_code == 200


def test_writes_have_their_own_limit_apart_from_reads(make_client):
    client = make_client(rate_limit_reads="2/minute", rate_limit_writes="2/minute")
    for _ in range(2):
        assert client.get("/v1/accounts").status_code == 200
    assert_rate_limited(client.get("/v1/accounts"))
    assert open_account(client, "bank:usd:cash").status_code == 201  # reads spent, writes not
    assert open_account(client, "bank:usd:fees").status_code == 201
    assert_rate_limited(open_account(client, "bank:usd:other"))


def test_a_refused_write_stored_nothing_and_goes_through_once_the_limit_allows_it(make_client):
    client = make_client(rate_limit_writes="1/minute")
    assert open_account(client, "bank:usd:cash").status_code == 201
    assert_rate_limited(open_account(client, "clients:acme:usd:dda", key="k-acme"))
    client.app.state.rate_limiter.storage.reset()  # the window has passed
    again = open_account(client, "clients:acme:usd:dda", key="k-acme")
    assert again.status_code == 201, again.text  # booked now: not a replay of a remembered 429
    assert "Idempotent-Replayed" not in again.headers
    assert client.get("/v1/accounts/clients:acme:usd:dda").status_code == 200


def test_each_api_key_has_its_own_budget_once_authentication_has_named_the_caller(make_client):
    client = make_client(rate_limit_reads="2/minute")

    # Authentication as a dependency of the route itself, the latest a principal can be known.
    @client.app.get("/test/whoami")
    def whoami(_: None = Depends(fake_authentication)) -> dict[str, str]:
        return {"ok": "yes"}

    for _ in range(2):
        assert client.get("/test/whoami", headers={"X-Test-Key": "key-a"}).status_code == 200
    assert_rate_limited(client.get("/test/whoami", headers={"X-Test-Key": "key-a"}))
    # Another key from the same address still has its budget, and so has the address itself.
    assert client.get("/test/whoami", headers={"X-Test-Key": "key-b"}).status_code == 200
    assert client.get("/test/whoami").status_code == 200


def test_several_limits_apply_together(make_client):
    """The second limit refuses what the first still allows. Neither is per second: three requests of a loaded
    machine can straddle a second's boundary, and a window per second would then start again between them."""
    client = make_client(rate_limit_reads="10/minute;2/hour")
    assert [client.get("/v1/accounts").status_code for _ in range(2)] == [200, 200]
    refused = client.get("/v1/accounts")
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert 60 < int(refused.headers["Retry-After"]) <= 3600  # the hour's limit refused it


def test_metrics_and_documentation_are_not_rate_limited(make_client):
    client = make_client(rate_limit_reads="1/minute")
    assert client.get("/v1/accounts").status_code == 200
    assert_rate_limited(client.get("/v1/accounts"))
    for path in ("/metrics", "/metrics", "/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_a_storage_that_fails_lets_requests_through(make_client, monkeypatch):
    client = make_client(rate_limit_reads="1/minute")

    def broken(*_: object, **__: object) -> bool:
        raise ConnectionError("the shared store does not answer")

    monkeypatch.setattr(client.app.state.rate_limiter.strategy, "hit", broken)
    assert [client.get("/v1/accounts").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.parametrize("value", ["600", "many/minute", "", "10/fortnight"])
def test_a_rate_limit_that_cannot_be_read_is_refused_at_start(value):
    from pydantic import ValidationError

    from andchain.config import ApiSettings

    with pytest.raises(ValidationError, match="rate limit must read like"):
        ApiSettings(rate_limit_reads=value)


def test_the_body_maximum_comes_from_the_configuration(make_client):
    client = make_client(body_bytes_max=100)
    response = client.post(
        "/v1/accounts",
        json={"name": "bank:usd:" + "x" * 120, "asset": "USD"},
        headers={"Idempotency-Key": "big"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert "at most 100 bytes" in response.json()["detail"]
