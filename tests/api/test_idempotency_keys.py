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


def test_derived_ids_always_fit_and_are_stable():
    digest = "key-sha256:" + hashlib.sha256(b"k" * 255).hexdigest()
    assert default_transfer_id("short") == "short"
    assert default_transfer_id("k" * 128) == "k" * 128
    assert default_transfer_id("k" * 255) == digest
    assert default_transfer_id("short", 7) == "short:7"
    assert default_transfer_id("k" * 123, BATCH_SIZE_MAX - 1) == "k" * 123 + f":{BATCH_SIZE_MAX - 1}"
    assert default_transfer_id("k" * 124, 0) == "key-sha256:" + hashlib.sha256(b"k" * 124).hexdigest() + ":0"
    assert default_transfer_id("k" * 255, 3) == digest + ":3"
    for length in range(1, 256):
        assert len(default_transfer_id("k" * length)) <= ID_LENGTH_MAX
        assert len(default_transfer_id("k" * length, BATCH_SIZE_MAX - 1)) <= ID_LENGTH_MAX
    assert default_transfer_id("a" * 200) != default_transfer_id("b" * 200)


@pytest.mark.parametrize("length", [128, 129, 200, 255])
def test_a_transfer_under_a_key_of_any_allowed_length_is_booked_once(client, length):
    open_two(client)
    k = long_key(length)
    first = client.post("/v1/transfers", json=transfer(), headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    assert first.json()["id"] == default_transfer_id(k)
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
    assert [x["id"] for x in results] == [default_transfer_id(k, 0), default_transfer_id(k, 1)]
    assert client.get("/v1/accounts/id:2").json()["balances"]["posted"] == "3.00"


@pytest.mark.parametrize("action", ["post", "void"])
def test_a_second_phase_under_a_255_character_key_works(client, action):
    open_two(client)
    hold = client.post("/v1/transfers", json=transfer(id="hold", pending=True), headers={"Idempotency-Key": "h"})
    assert hold.status_code == 201, hold.text
    k = long_key(255)
    r = client.post(f"/v1/transfers/hold/{action}", json={}, headers={"Idempotency-Key": k})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == default_transfer_id(k)


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
