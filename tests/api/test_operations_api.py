"""/v1/operations over HTTP: list, show, retry, cancel."""

from __future__ import annotations

from andchain.tokens.runtime import token_worker
from tests.api.conftest import Bank


def funded(bank: Bank, name: str, cents: int) -> str:
    client = bank.tokens.onboard(name).id
    bank.tokens.deposit(client, cents, f"fund-{name}")
    return client


def test_an_unsent_operation_is_cancelled_and_what_it_reserved_is_released(bank: Bank):
    operator = bank.key("operator")
    acme = funded(bank, "Acme", 5_000)
    minted = bank.post("/v1/tokens/mint", {"client": acme, "amount": "40.00"}, operator)
    op_id = minted.json()["id"]
    assert bank.tokens.ledger.account(f"clients:{acme}:usd:dda").available == 1_000
    cancelled = bank.post(f"/v1/operations/{op_id}/cancel", {"reason": "the client withdrew it"}, operator, key="c1")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"] == {"code": "cancelled", "message": "the client withdrew it"}
    assert bank.tokens.ledger.account(f"clients:{acme}:usd:dda").available == 5_000
    replayed = bank.post(f"/v1/operations/{op_id}/cancel", {"reason": "the client withdrew it"}, operator, key="c1")
    assert replayed.json() == cancelled.json() and replayed.headers["Idempotent-Replayed"] == "true"
    for action in ("cancel", "retry"):
        again = bank.post(f"/v1/operations/{op_id}/{action}", None, operator)
        assert again.status_code == 409 and again.json()["code"] == "operation_terminal", (action, again.text)
    shown = bank.get(f"/v1/operations/{op_id}", bank.key("auditor")).json()
    assert [h["status"] for h in shown["history"]] == ["received", "cancelled"]


def test_an_operation_that_sent_its_transaction_cannot_be_cancelled_and_a_retry_asks_for_it_now(bank: Bank):
    admin = bank.key("admin")
    acme = funded(bank, "Acme", 5_000)
    op_id = bank.post("/v1/tokens/mint", {"client": acme, "amount": "10.00"}, admin).json()["id"]
    retried = bank.post(f"/v1/operations/{op_id}/retry", None, admin)
    assert retried.status_code == 200 and retried.json()["status"] == "received" and retried.json()["attempts"] == 0
    token_worker(bank.ctx, bank.tokens).run_once()  # the mint is signed and sent
    in_flight = bank.post(f"/v1/operations/{op_id}/cancel", None, admin)
    assert in_flight.status_code == 409 and in_flight.json()["code"] == "operation_in_flight"
    bank.settle()
    assert bank.get(f"/v1/operations/{op_id}", admin).json()["status"] == "succeeded"
    assert bank.post(f"/v1/operations/{op_id}/retry", None, admin).json()["code"] == "operation_terminal"


def test_operations_are_listed_by_status_and_kind_a_page_at_a_time(bank: Bank):
    operator, auditor = bank.key("operator"), bank.key("auditor")
    acme, globex = funded(bank, "Acme", 5_000), funded(bank, "Globex", 5_000)
    ids = [
        bank.post("/v1/tokens/mint", {"client": client, "amount": "1.00"}, operator).json()["id"]
        for client in (acme, globex, acme)
    ]
    bank.post(f"/v1/operations/{ids[1]}/cancel", None, operator)
    first = bank.get("/v1/operations", auditor, limit=2).json()
    assert [o["id"] for o in first["data"]] == ids[:2] and first["next_cursor"]
    rest = bank.get("/v1/operations", auditor, limit=2, cursor=first["next_cursor"]).json()
    assert [o["id"] for o in rest["data"]] == ids[2:] and rest["next_cursor"] is None
    assert [o["id"] for o in bank.get("/v1/operations", auditor, status="cancelled").json()["data"]] == [ids[1]]
    assert [o["id"] for o in bank.get("/v1/operations", auditor, unfinished="true").json()["data"]] == [ids[0], ids[2]]
    assert bank.get("/v1/operations", auditor, unfinished="true", status="cancelled").json()["data"] == []
    assert bank.get("/v1/operations", auditor, kind="pay").json()["data"] == []
    # A client's list holds its own operations only, a page at a time as well.
    mine = bank.key("client", acme)
    page = bank.get("/v1/operations", mine, limit=1).json()
    assert [o["id"] for o in page["data"]] == [ids[0]]
    page = bank.get("/v1/operations", mine, limit=1, cursor=page["next_cursor"]).json()
    assert [o["id"] for o in page["data"]] == [ids[2]]
    assert bank.get("/v1/operations", mine, limit=1, cursor=page["next_cursor"]).json()["data"] == []


def test_bad_operation_requests_are_refused(bank: Bank):
    operator = bank.key("operator")
    for params, status, code in (
        ({"status": "done"}, 422, "invalid_request"),
        ({"limit": 0}, 422, "invalid_request"),
        ({"cursor": "nope"}, 400, "invalid_cursor"),
    ):
        r = bank.get("/v1/operations", operator, **params)
        assert (r.status_code, r.json()["code"]) == (status, code), params
    for action in ("retry", "cancel"):
        missing = bank.post(f"/v1/operations/NOPE/{action}", None, operator)
        assert missing.status_code == 404 and missing.json()["code"] == "operation_not_found"
    assert bank.get("/v1/operations/" + "x" * 300, operator).status_code == 404
    assert bank.post("/v1/operations/x/cancel", {"reason": ""}, operator).status_code == 422
