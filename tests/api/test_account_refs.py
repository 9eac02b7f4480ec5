"""An account reference is an id or a name, never both — on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

import pytest

_keys = itertools.count()


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"ref-{next(_keys)}"}


def open_account(client, name: str, **extra) -> int:
    r = client.post("/v1/accounts", json={"name": name, "asset": "USD", **extra}, headers=key())
    assert r.status_code == 201, r.text
    return r.json()["id"]


def pay(client, debit, credit, amount: str = "1.00"):
    body = {"debit_account": debit, "credit_account": credit, "amount": amount, "asset": "USD"}
    return client.post("/v1/transfers", json=body, headers=key())


def posted(client, account_id: int) -> str:
    return client.get(f"/v1/accounts/id:{account_id}").json()["balances"]["posted"]


def test_an_account_named_2_never_receives_money_meant_for_account_id_2(client):
    cash = open_account(client, "bank:usd:cash")
    acme = open_account(client, "clients:acme:usd:dda")
    assert acme == 2
    opened = client.post("/v1/accounts", json={"name": "2", "asset": "USD"}, headers=key())
    # The ledger may refuse all-digit names; either way "2" must never mean id 2.
    assert opened.status_code in (201, 422), opened.text

    r = pay(client, cash, "2", "5.00")
    if opened.status_code == 201:
        named_two = opened.json()["id"]
        assert named_two != 2
        assert r.status_code == 201, r.text
        assert r.json()["credit_account_id"] == named_two
        assert posted(client, named_two) == "5.00"
        assert client.get("/v1/accounts/2").json()["id"] == named_two
    else:
        assert r.status_code == 422 and r.json()["code"] == "account_not_found"
        assert client.get("/v1/accounts/2").status_code == 404
    assert posted(client, acme) == "0.00"

    # The integer 2 and the explicit "id:2" both mean id 2.
    assert pay(client, cash, 2, "1.00").json()["credit_account_id"] == 2
    assert pay(client, cash, "id:2", "1.00").json()["credit_account_id"] == 2
    assert posted(client, acme) == "2.00"


def test_paths_and_queries_take_a_name_or_the_id_form(client):
    cash = open_account(client, "bank:usd:cash")
    acme = open_account(client, "clients:acme:usd:dda")
    assert pay(client, cash, acme).status_code == 201

    assert client.get(f"/v1/accounts/id:{acme}").json()["name"] == "clients:acme:usd:dda"
    assert client.get("/v1/accounts/clients:acme:usd:dda").json()["id"] == acme
    assert client.get(f"/v1/accounts/{acme}").status_code == 404  # a bare number is a name
    assert len(client.get(f"/v1/accounts/id:{acme}/transfers").json()["data"]) == 1
    assert len(client.get("/v1/transfers", params={"account": f"id:{acme}"}).json()["data"]) == 1
    assert len(client.get("/v1/transfers", params={"account": "clients:acme:usd:dda"}).json()["data"]) == 1
    r = client.get("/v1/transfers", params={"account": str(acme)})
    assert r.status_code == 404 and r.json()["code"] == "account_not_found"


@pytest.mark.parametrize(
    "ref",
    [
        "id:9223372036854775808",  # 2^63: one past the largest id
        "id:" + "9" * 5000,  # past Python's 4,300-digit int() limit
        "id:0",
        "id:",
        "id:-1",
        "id:²",  # "²".isdigit() is True and int("²") raises
        "id:١٢",  # Arabic-Indic digits are not ASCII digits
        "²",
        "9" * 30,
        "x" * 10_000,
    ],
)
def test_references_that_cannot_exist_are_404_problems_on_every_route(client, ref):
    open_account(client, "bank:usd:cash")
    for url, params in (
        (f"/v1/accounts/{ref}", None),
        (f"/v1/accounts/{ref}/transfers", None),
        ("/v1/transfers", {"account": ref}),
    ):
        r = client.get(url, params=params)
        assert r.status_code == 404, (url, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "account_not_found"


@pytest.mark.parametrize(
    "ref",
    [2**63, 2**64, 10**30, 0, -1, "id:9223372036854775808", "id:" + "9" * 5000, "id:0", "id:²", "nobody"],
)
def test_body_references_that_cannot_exist_are_422_account_not_found(client, ref):
    cash = open_account(client, "bank:usd:cash")
    r = pay(client, cash, ref)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["code"] == "account_not_found"
    assert client.get("/v1/transfers").json()["data"] == []


@pytest.mark.parametrize("ref", [True, False, 1.0, None, [2], {"id": 2}])
def test_an_account_is_never_a_boolean_a_float_or_a_structure(client, ref):
    open_account(client, "bank:usd:cash")
    open_account(client, "clients:acme:usd:dda")
    r = pay(client, ref, 2)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request", r.text
    assert client.get("/v1/transfers").json()["data"] == []


def test_an_account_cannot_be_opened_under_a_name_that_reads_as_an_id(client):
    r = client.post("/v1/accounts", json={"name": "id:7", "asset": "USD"}, headers=key())
    assert r.status_code == 422 and r.json()["code"] == "name_invalid"
