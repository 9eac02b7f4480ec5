"""Hostile input gets a 4xx problem and changes nothing; never a 500 — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import itertools
import json

import pytest

from andchain.api.limits import RequestLimits

_keys = itertools.count()
PROBLEM = "application/problem+json"


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"hostile-{next(_keys)}"}


def open_two(client) -> None:
    for name in ("bank:usd:cash", "clients:acme:usd:dda"):
        r = client.post("/v1/accounts", json={"name": name, "asset": "USD"}, headers=key())
        assert r.status_code == 201, r.text


def transfer(**overrides):
    return {"debit_account": 1, "credit_account": 2, "amount": "1.00", "asset": "USD", **overrides}


def assert_problem(r, *statuses: int, code: str | None = None) -> dict:
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert {"type", "title", "status", "code", "detail"} <= body.keys()
    assert body["status"] == r.status_code
    if code is not None:
        assert body["code"] == code, body
    return body


def nothing_booked(client) -> bool:
    return client.get("/v1/transfers").json()["data"] == []


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize("amount", ["١٢", "۱۲.۵۰", "１２", "12.٣٤", "१२", "²", "1\n", " 1", "1e3", "0x10", "1_000"])
def test_amounts_are_ascii_digits_only(client, amount):
    open_two(client)
    assert_problem(client.post("/v1/transfers", json=transfer(amount=amount), headers=key()), 422)
    batch = {"transfers": [transfer(amount=amount)]}
    assert_problem(client.post("/v1/transfers/batch", json=batch, headers=key()), 422)
    assert nothing_booked(client)


def test_a_post_with_a_non_ascii_amount_is_refused(client):
    open_two(client)
    hold = client.post("/v1/transfers", json=transfer(id="hold", amount="10", pending=True), headers=key())
    assert hold.status_code == 201, hold.text
    assert_problem(client.post("/v1/transfers/hold/post", json={"amount": "٥"}, headers=key()), 422)
    assert client.get("/v1/transfers/hold").json()["pending_status"] == "pending"


# ---------------------------------------------------------------- strict fields


@pytest.mark.parametrize(
    "overrides",
    [
        {"debit_account": True},
        {"credit_account": False},
        {"pending": "yes"},
        {"pending": 1},
        {"pending": "true"},
        {"amount": 1},
        {"amount": 1.5},
        {"timeout_s": "5"},
        {"timeout_s": True},
        {"memo": 5},
        {"asset": ["USD"]},
    ],
)
def test_money_fields_are_strict(client, overrides):
    open_two(client)
    assert_problem(client.post("/v1/transfers", json=transfer(**overrides), headers=key()), 422, code="invalid_request")
    assert nothing_booked(client)


def test_a_batch_flag_is_never_a_number(client):
    open_two(client)
    batch = {"transfers": [transfer(linked=1), transfer()]}
    body = assert_problem(client.post("/v1/transfers/batch", json=batch, headers=key()), 422)
    assert body["errors"][0]["index"] == 0
    assert nothing_booked(client)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"debit_account":1,"credit_account":2,"amount":"1","amount":"2","asset":"USD"}',
        b'{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","metadata":{"a":1,"a":2}}',
    ],
)
def test_a_duplicate_json_key_is_refused(client, raw):
    open_two(client)
    r = client.post("/v1/transfers", content=raw, headers={**key(), "content-type": "application/json"})
    assert_problem(r, 400, code="invalid_json")
    assert nothing_booked(client)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","metadata":{"x":NaN}}',
        b'{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","metadata":{"x":Infinity}}',
        b'{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","metadata":{"x":1e999}}',
        b'{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","timeout_s":' + b"9" * 5000 + b"}",
        b'{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","metadata":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        b'{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","metadata":{"x":'
        + b"[" * 100
        + b"]" * 100
        + b"}}",
        '{"debit_account":1,"credit_account":2,"amount":"1","asset":"USD","memo":"é"}'.encode("latin-1"),
        b"\xef\xbb\xbf{}",
        b"",
    ],
)
def test_json_that_cannot_be_stored_or_echoed_is_refused(client, raw):
    open_two(client)
    r = client.post("/v1/transfers", content=raw, headers={**key(), "content-type": "application/json"})
    assert_problem(r, 400, 422)
    assert nothing_booked(client)


def test_a_body_that_is_not_json_is_415(client):
    open_two(client)
    r = client.post("/v1/transfers", content=json.dumps(transfer()), headers={**key(), "content-type": "text/plain"})
    assert_problem(r, 415, code="unsupported_media_type")
    r = client.post("/v1/transfers", content=json.dumps(transfer()), headers=key())
    assert_problem(r, 415, code="unsupported_media_type")
    assert nothing_booked(client)


# ---------------------------------------------------------------- NUL, surrogates, sizes of ids


@pytest.mark.parametrize(
    "overrides",
    [
        {"memo": "a\u0000b"},
        {"code": "\u0000"},
        {"id": "t\u0000"},
        {"credit_account": "clients:\u0000"},
        {"asset": "US\u0000D"},
        {"metadata": {"k": "v\u0000"}},
        {"metadata": {"k\u0000": "v"}},
        {"memo": "\ud800"},
    ],
)
def test_nul_and_lone_surrogates_in_a_body_are_refused(client, overrides):
    open_two(client)
    raw = json.dumps(transfer(**overrides)).encode()  # json.dumps escapes both as \\u0000 / \\ud800
    r = client.post("/v1/transfers", content=raw, headers={**key(), "content-type": "application/json"})
    assert_problem(r, 422, code="invalid_request")
    assert nothing_booked(client)


def test_an_account_name_with_nul_is_refused(client):
    r = client.post("/v1/accounts", json={"name": "bank:\u0000", "asset": "USD"}, headers=key())
    assert_problem(r, 422, code="invalid_request")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/v1/accounts/a%00b"),
        ("GET", "/v1/accounts/a%00b/transfers"),
        ("GET", "/v1/transfers/a%00b"),
        ("POST", "/v1/transfers/a%00b/post"),
        ("POST", "/v1/transfers/a%00b/void"),
        ("GET", "/v1/accounts?prefix=%00"),
        ("GET", "/v1/accounts?asset=%00"),
        ("GET", "/v1/transfers?account=a%00"),
        ("GET", "/v1/transfers?cursor=%00"),
    ],
)
def test_nul_in_a_path_or_a_query_is_refused(client, method, url):
    open_two(client)
    r = client.request(method, url, json={}, headers=key())
    assert_problem(r, 400, 404)


@pytest.mark.parametrize("action", ["post", "void"])
def test_an_over_long_transfer_id_in_a_path_is_not_found(client, action):
    open_two(client)
    long_id = "x" * 10_000
    assert_problem(client.get(f"/v1/transfers/{long_id}"), 404, code="transfer_not_found")
    r = client.post(f"/v1/transfers/{long_id}/{action}", json={}, headers=key())
    assert_problem(r, 404, code="transfer_not_found")
    r = client.post(f"/v1/transfers/{'y' * 150}/{action}", json={}, headers=key())
    assert_problem(r, 404, code="transfer_not_found")


@pytest.mark.parametrize(
    "cursor",
    [
        cursor_of(f"v1:{2**63}"),
        cursor_of(f"v1:{2**64}"),
        cursor_of("v1:" + "9" * 5000),
        cursor_of("v1:²"),
        cursor_of("v1:١"),
        cursor_of("v1:-1"),
        "٣",
        "x" * 5000,
    ],
)
def test_cursors_beyond_the_range_or_not_ours_are_400(client, cursor):
    for url in ("/v1/accounts", "/v1/transfers", "/v1/accounts/id:1/transfers"):
        open_two(client) if url == "/v1/accounts" else None
        assert_problem(client.get(url, params={"cursor": cursor}), 400, code="invalid_cursor")


@pytest.mark.parametrize("limit", ["0", "1001", str(2**64), "²", "١", "1.5", "-1"])
def test_limits_out_of_range_are_422(client, limit):
    assert_problem(client.get("/v1/transfers", params={"limit": limit}), 422, code="invalid_request")


@pytest.mark.parametrize("query", ["stauts=failed", "=false", "limit=5&Limit=6", "cursor=&x"])
def test_a_query_parameter_the_route_does_not_declare_is_refused(client, query):
    open_two(client)
    body = assert_problem(client.get(f"/v1/accounts?{query}"), 422, code="invalid_request")
    assert body["errors"] and all(e["location"].startswith("query.") for e in body["errors"])
    refused = client.post(f"/v1/transfers?{query}", json=transfer(), headers=key())
    assert_problem(refused, 422, code="invalid_request")
    assert nothing_booked(client)


# ---------------------------------------------------------------- request size


def test_a_body_over_the_limit_is_413_before_it_is_read(make_client):
    client = make_client(RequestLimits(body_bytes_max=1000))
    open_two(client)
    big = transfer(memo="m" * 2000)
    assert_problem(client.post("/v1/transfers", json=big, headers=key()), 413, code="body_too_large")
    assert nothing_booked(client)


def test_a_streamed_body_without_a_length_is_counted_as_it_arrives(make_client):
    client = make_client(RequestLimits(body_bytes_max=1000))
    open_two(client)

    def chunks():
        yield b'{"memo": "'
        for _ in range(100):
            yield b"m" * 100
        yield b'"}'

    r = client.post("/v1/transfers", content=chunks(), headers={**key(), "content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, code="body_too_large")


def test_the_default_body_limit_is_one_mebibyte(client):
    open_two(client)
    r = client.post("/v1/transfers", json=transfer(memo="m" * (1024 * 1024)), headers=key())
    assert_problem(r, 413, code="body_too_large")
    r = client.post("/v1/transfers", json=transfer(metadata={"note": "n" * 500_000}), headers=key())
    assert r.status_code == 201, r.text[:300]


def test_over_long_headers_are_refused_with_a_problem(client):
    open_two(client)
    r = client.post("/v1/transfers", json=transfer(), headers={"Idempotency-Key": "k" * 100_000})
    assert_problem(r, 400, 431)
    r = client.post("/v1/transfers", json=transfer(), headers={"Idempotency-Key": "k" * 256})
    assert_problem(r, 400, code="idempotency_key_invalid")
    r = client.get("/v1/transfers", headers={f"x-filler-{i}": "f" * 4000 for i in range(5)})
    assert_problem(r, 431, code="request_header_fields_too_large")
    assert nothing_booked(client)


@pytest.mark.parametrize("value", ["a\tb", "ключ", "\u00e9"])
def test_an_idempotency_key_is_printable_ascii(client, value):
    open_two(client)
    r = client.post("/v1/transfers", json=transfer(), headers={"Idempotency-Key": value.encode("utf-8")})
    assert_problem(r, 400, code="idempotency_key_invalid")


# ---------------------------------------------------------------- batches and methods


def test_a_batch_names_each_refused_transfer_by_its_index(client):
    open_two(client)
    batch = {"transfers": [transfer(), transfer(amount="x"), transfer(), transfer(pending="yes")]}
    body = assert_problem(client.post("/v1/transfers/batch", json=batch, headers=key()), 422)
    assert sorted({e["index"] for e in body["errors"]}) == [1, 3]
    assert all(e["location"].startswith(f"body.transfers.{e['index']}.") for e in body["errors"])

    batch = {"transfers": [transfer(), transfer(), transfer(credit_account="nobody"), transfer(asset="XYZ")]}
    body = assert_problem(client.post("/v1/transfers/batch", json=batch, headers=key()), 422)
    assert body["code"] == "account_not_found"
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(2, "account_not_found"), (3, "unknown_asset")]
    assert nothing_booked(client)


def test_batch_results_carry_index_id_and_result(client):
    open_two(client)
    batch = {"transfers": [transfer(id="a"), transfer(debit_account=2, credit_account=1, amount="9"), transfer()]}
    r = client.post("/v1/transfers/batch", json=batch, headers={"Idempotency-Key": "batch-results"})
    assert r.status_code == 200, r.text
    kid = client.headers["Authorization"].split("_")[1]  # the caller's key id: defaults are scoped to it
    assert r.json()["results"] == [
        {"index": 0, "id": "a", "result": "ok"},
        {"index": 1, "id": f"{kid}:b1:batch-results", "result": "ok"},
        {"index": 2, "id": f"{kid}:b2:batch-results", "result": "ok"},
    ]


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("PUT", "/v1/accounts", {"GET", "POST"}),
        ("DELETE", "/v1/accounts/id:1", {"GET"}),
        ("PATCH", "/v1/transfers", {"GET", "POST"}),
        ("GET", "/v1/transfers/batch/post", {"POST"}),
        ("DELETE", "/v1/transfers/x", {"GET"}),
    ],
)
def test_405_names_the_allowed_methods(client, method, url, allowed):
    r = client.request(method, url)
    assert_problem(r, 405, code="method_not_allowed")
    assert {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"} == allowed
