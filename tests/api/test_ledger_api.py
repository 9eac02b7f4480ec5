"""The ledger over HTTP: idempotency, problem+json, cursors — on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

import pytest

_keys = itertools.count()


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{next(_keys)}"}


def open_two(client) -> None:
    r1 = client.post("/v1/accounts", json={"name": "bank:usd:cash", "asset": "USD"}, headers=key())
    r2 = client.post(
        "/v1/accounts",
        json={
            "name": "clients:acme:usd:dda",
            "asset": "USD",
            "kind": "liability",
            "debits_must_not_exceed_credits": True,
        },
        headers=key(),
    )
    assert (r1.status_code, r2.status_code) == (201, 201), (r1.text, r2.text)


def test_health_reports_the_database_and_schema(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["schema_current"] is True


def test_a_transfer_is_created_read_and_listed(client):
    open_two(client)
    r = client.post(
        "/v1/transfers",
        headers={"Idempotency-Key": "dep-1"},
        json={
            "debit_account": "bank:usd:cash",
            "credit_account": "clients:acme:usd:dda",
            "amount": "125.50",
            "asset": "USD",
            "code": "deposit",
            "memo": "camt.054",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].endswith(":t:dep-1") and body["amount"] == "125.50" and body["amount_minor"] == "12550"
    assert client.get(f"/v1/transfers/{body['id']}").json()["memo"] == "camt.054"
    account = client.get("/v1/accounts/clients:acme:usd:dda").json()
    assert account["balances"]["posted"] == "125.50"
    assert account["balances"]["available"] == "125.50"


def test_the_same_key_and_body_returns_the_first_response_and_books_once(client):
    open_two(client)
    body = {"debit_account": 1, "credit_account": 2, "amount": "10.00", "asset": "USD"}
    first = client.post("/v1/transfers", json=body, headers={"Idempotency-Key": "same"})
    again = client.post("/v1/transfers", json=body, headers={"Idempotency-Key": "same"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "10.00"


def test_the_same_key_with_a_different_body_is_a_conflict(client):
    open_two(client)
    body = {"debit_account": 1, "credit_account": 2, "amount": "10.00", "asset": "USD"}
    client.post("/v1/transfers", json=body, headers={"Idempotency-Key": "k"})
    r = client.post("/v1/transfers", json={**body, "amount": "11.00"}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "idempotency_key_reused"
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "10.00"


def test_a_post_without_an_idempotency_key_is_refused(client):
    open_two(client)
    r = client.post("/v1/transfers", json={"debit_account": 1, "credit_account": 2, "amount": "1", "asset": "USD"})
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"amount": 10.5}, 422, "invalid_request"),  # a JSON number: floats are never money
        ({"amount": "1.234"}, 422, "excess_precision"),
        ({"amount": "-1"}, 422, "invalid_request"),
        ({"amount": "500.00", "debit_account": 2, "credit_account": 1}, 422, "insufficient_funds"),
        ({"asset": "EUR"}, 422, "asset_mismatch"),
        ({"asset": "XYZ"}, 422, "unknown_asset"),
        ({"credit_account": "nobody"}, 422, "account_not_found"),
        ({"credit_account": 1}, 422, "accounts_must_be_different"),
        ({"surprise": 1}, 422, "invalid_request"),
    ],
)
def test_bad_transfers_get_a_problem_with_a_stable_code_and_change_nothing(client, payload, status, code):
    open_two(client)
    body = {"debit_account": 1, "credit_account": 2, "amount": "1.00", "asset": "USD", **payload}
    r = client.post("/v1/transfers", json=body, headers=key())
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert "Traceback" not in r.text
    assert client.get("/v1/transfers").json()["data"] == []


def test_malformed_json_is_a_clear_error(client):
    r = client.post("/v1/transfers", content=b"{not json", headers={**key(), "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"


def test_two_phase_over_http(client):
    open_two(client)
    client.post(
        "/v1/transfers", json={"debit_account": 1, "credit_account": 2, "amount": "100", "asset": "USD"}, headers=key()
    )
    hold = client.post(
        "/v1/transfers",
        json={"id": "hold", "debit_account": 2, "credit_account": 1, "amount": "60", "asset": "USD", "pending": True},
        headers=key(),
    )
    assert hold.json()["pending_status"] == "pending"
    assert client.get("/v1/accounts/id:2").json()["balances"]["available"] == "40.00"
    post = client.post("/v1/transfers/hold/post", json={"amount": "25.00"}, headers=key())
    assert post.status_code == 201, post.text
    assert client.get("/v1/transfers/hold").json()["pending_status"] == "posted"
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "75.00"
    again = client.post("/v1/transfers/hold/void", json={}, headers=key())
    assert again.status_code == 422 and again.json()["code"] == "pending_transfer_already_posted"


def test_a_batch_with_a_linked_chain_over_http(client):
    open_two(client)
    r = client.post(
        "/v1/transfers/batch",
        headers={"Idempotency-Key": "b1"},
        json={
            "transfers": [
                {"debit_account": 1, "credit_account": 2, "amount": "5", "asset": "USD", "linked": True},
                {"debit_account": 2, "credit_account": 1, "amount": "6", "asset": "USD"},
                {"debit_account": 1, "credit_account": 2, "amount": "7", "asset": "USD"},
            ]
        },
    )
    assert [x["result"] for x in r.json()["results"]] == ["linked_event_failed", "insufficient_funds", "ok"]
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "7.00"


def test_lists_paginate_with_a_cursor(client):
    open_two(client)
    for i in range(5):
        client.post(
            "/v1/transfers",
            json={"debit_account": 1, "credit_account": 2, "amount": str(i + 1), "asset": "USD"},
            headers=key(),
        )
    page = client.get("/v1/transfers", params={"limit": 2}).json()
    seen = [t["amount"] for t in page["data"]]
    while page["next_cursor"]:
        page = client.get("/v1/transfers", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [t["amount"] for t in page["data"]]
    assert seen == ["1.00", "2.00", "3.00", "4.00", "5.00"]
    history = client.get("/v1/accounts/clients:acme:usd:dda/transfers").json()["data"]
    assert len(history) == 5
    assert client.get("/v1/transfers", params={"cursor": "garbage!"}).json()["code"] == "invalid_cursor"


def test_unknown_things_are_404_problems(client):
    assert client.get("/v1/transfers/nope").json()["code"] == "transfer_not_found"
    assert client.get("/v1/accounts/nobody").status_code == 404
    assert client.get("/v1/nothing").json()["code"] == "not_found"


def test_the_openapi_document_is_generated(client):
    spec = client.get("/openapi.json").json()
    assert "/v1/transfers" in spec["paths"] and "/v1/accounts/{ref}" in spec["paths"]
