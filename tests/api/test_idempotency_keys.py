"""Idempotency-Keys of every allowed length, and the transfer ids derived from them."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from andchain.api.idempotency import default_transfer_id
from andchain.ledger.model import BATCH_SIZE_MAX, ID_LENGTH_MAX

_keys = itertools.count()


def open_two(client) -> None:
    for i, name in enumerate(("bank:usd:cash", "clients:acme:usd:dda")):
        r = client.post("/v1/accounts", json={"name": name, "asset": "USD"}, headers={"Idempotency-Key": f"open-{i}"})
        assert r.status_code == 201, r.text


def transfer(**overrides):
    return {"debit_account": 1, "credit_account": 2, "amount": "1.00", "asset": "USD", **overrides}


def long_key(length: int) -> str:
    prefix = f"k{next(_keys)}-"
    return prefix + "x" * (length - len(prefix))


def key_id_of(client) -> str:
    """The id of the API key the test client authenticates with."""
    return client.headers["Authorization"].split("_")[1]


def test_derived_ids_always_fit_and_are_stable():
    kid = "0123456789abcdef"
    digest = "key-sha256:" + hashlib.sha256(b"k" * 255).hexdigest()
    assert default_transfer_id(kid, "t", "short") == f"{kid}:t:short"
    assert default_transfer_id(kid, "t", "k" * 109) == f"{kid}:t:" + "k" * 109
    assert default_transfer_id(kid, "t", "k" * 110) == f"{kid}:t:key-sha256:" + hashlib.sha256(b"k" * 110).hexdigest()
    assert default_transfer_id(kid, "t", "k" * 255) == f"{kid}:t:{digest}"
    assert default_transfer_id(kid, "b", "short", 7) == f"{kid}:b7:short"
    assert default_transfer_id(kid, "b", "k" * 255, 3) == f"{kid}:b3:{digest}"
    for length in range(1, 256):
        for kind in ("t", "post", "void"):
            assert len(default_transfer_id(kid, kind, "k" * length)) <= ID_LENGTH_MAX
        assert len(default_transfer_id(kid, "b", "k" * length, BATCH_SIZE_MAX - 1)) <= ID_LENGTH_MAX
    assert default_transfer_id(kid, "t", "a" * 200) != default_transfer_id(kid, "t", "b" * 200)


def test_derived_ids_never_meet_across_callers_kinds_or_indexes():
    ids = {
        default_transfer_id("a" * 16, "t", "x:0"),
        default_transfer_id("a" * 16, "b", "x", 0),
        default_transfer_id("a" * 16, "post", "x"),
        default_transfer_id("a" * 16, "void", "x"),
        default_transfer_id("b" * 16, "t", "x:0"),
        default_transfer_id("a" * 16, "b", "x:0", 0),
    }
    assert len(ids) == 6


def test_two_callers_with_the_same_key_each_book_their_own_transfer(make_client):
    first, second = make_client(role="operator"), make_client(role="operator")
    open_two(first)
    for http in (first, second):
        r = http.post("/v1/transfers", json=transfer(), headers={"Idempotency-Key": "same"})
        assert r.status_code == 201, r.text
        assert "Idempotent-Replayed" not in r.headers
        assert r.json()["id"] == default_transfer_id(key_id_of(http), "t", "same")
    assert first.get("/v1/accounts/id:2").json()["balances"]["posted"] == "2.00"


def test_a_pending_transfer_and_its_posting_may_share_a_key(client):
    open_two(client)
    hold = client.post("/v1/transfers", json=transfer(pending=True), headers={"Idempotency-Key": "k"})
    assert hold.status_code == 201, hold.text
    posted = client.post(f"/v1/transfers/{hold.json()['id']}/post", json={}, headers={"Idempotency-Key": "k"})
    assert posted.status_code == 201, posted.text
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "1.00"


@pytest.mark.parametrize("length", [128, 129, 200, 255])
def test_a_transfer_under_a_key_of_any_allowed_length_is_booked_once(client, length):
    open_two(client)
    k = long_key(length)
    first = client.post("/v1/transfers", json=transfer(), headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    assert first.json()["id"] == default_transfer_id(key_id_of(client), "t", k)
    again = client.post("/v1/transfers", json=transfer(), headers={"Idempotency-Key": k})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "1.00"


@pytest.mark.parametrize("length", [123, 124, 128, 200, 255])
def test_a_batch_under_a_key_of_any_allowed_length_is_booked(client, length):
    open_two(client)
    k = long_key(length)
    batch = {"transfers": [transfer(), transfer(amount="2.00")]}
    r = client.post("/v1/transfers/batch", json=batch, headers={"Idempotency-Key": k})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["result"] for x in results] == ["ok", "ok"]
    assert [x["id"] for x in results] == [default_transfer_id(key_id_of(client), "b", k, i) for i in (0, 1)]
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "3.00"


@pytest.mark.parametrize("action", ["post", "void"])
def test_a_second_phase_under_a_255_character_key_works(client, action):
    open_two(client)
    hold = client.post("/v1/transfers", json=transfer(id="hold", pending=True), headers={"Idempotency-Key": "h"})
    assert hold.status_code == 201, hold.text
    k = long_key(255)
    r = client.post(f"/v1/transfers/hold/{action}", json={}, headers={"Idempotency-Key": k})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == default_transfer_id(key_id_of(client), action, k)


def test_the_same_key_for_another_pending_transfer_is_a_conflict(client):
    open_two(client)
    for tid in ("h1", "h2"):
        r = client.post("/v1/transfers", json=transfer(id=tid, pending=True), headers={"Idempotency-Key": tid})
        assert r.status_code == 201, r.text
    assert client.post("/v1/transfers/h1/void", json={}, headers={"Idempotency-Key": "v"}).status_code == 201
    r = client.post("/v1/transfers/h2/void", json={}, headers={"Idempotency-Key": "v"})
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_reused"
    assert client.get("/v1/transfers/h2").json()["pending_status"] == "pending"


def test_a_transient_failure_is_not_remembered_and_the_same_request_runs_again(engine, clock):
    from andchain.api.idempotency import IdempotencyStore
    from andchain.errors import DomainError, Unavailable

    store = IdempotencyStore(engine, clock, stale_after_s=60)
    calls: list[str] = []

    def node_away_once() -> tuple[int, dict]:
        calls.append("run")
        if len(calls) == 1:
            raise Unavailable("the node did not answer")
        return 202, {"id": "op-1"}

    with pytest.raises(Unavailable):
        store.run("POST /v1/tokens/mint", "k-1", {"amount": "1.00"}, node_away_once)
    ran = store.run("POST /v1/tokens/mint", "k-1", {"amount": "1.00"}, node_away_once)
    assert ran.status_code == 202 and "Idempotent-Replayed" not in ran.headers and calls == ["run", "run"]

    def refused() -> tuple[int, dict]:
        calls.append("refused")
        raise DomainError("not enough", code="insufficient_funds")

    first = store.run("POST /v1/tokens/mint", "k-2", {"amount": "9.00"}, refused)
    again = store.run("POST /v1/tokens/mint", "k-2", {"amount": "9.00"}, refused)
    assert first.status_code == again.status_code == 422 and again.headers["Idempotent-Replayed"] == "true"
    assert calls.count("refused") == 1  # a refusal is a result: remembered


@pytest.mark.parametrize("atomic", [False, True])
def test_an_operation_that_changed_meanwhile_is_not_the_requests_answer(engine, clock, atomic):
    """`operation_changed` (409: a worker moved it meanwhile, try again) depends on a moment, not on the
    request: the same request under the same key runs again instead of replaying the 409 for ever."""
    from andchain.api.idempotency import IdempotencyStore
    from andchain.ops.core import StaleOperation

    store = IdempotencyStore(engine, clock, stale_after_s=60)
    calls: list[str] = []

    def changed_once(*_: object) -> tuple[int, dict]:
        calls.append("run")
        if len(calls) == 1:
            raise StaleOperation("the operation changed meanwhile")
        return 200, {"id": "op-1", "status": "cancelled"}

    run = store.run_atomic if atomic else store.run
    with pytest.raises(StaleOperation):
        run("POST /v1/operations/{operation_id}/cancel", "k-1", {"id": "op-1"}, changed_once)
    ran = run("POST /v1/operations/{operation_id}/cancel", "k-1", {"id": "op-1"}, changed_once)
    assert ran.status_code == 200 and "Idempotent-Replayed" not in ran.headers and calls == ["run", "run"]
