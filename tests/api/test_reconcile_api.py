"""/v1/reconcile over HTTP: run it, record it, read the last result; and the store behind it."""

from __future__ import annotations

from sqlalchemy import func, select

from andchain import reconcile_store
from andchain.ledger import TransferSpec
from andchain.tokens.model import BANK_CASH, DEPOSIT_TOKEN, TOKENS, holder_account
from tests.api.conftest import Bank


def test_a_run_is_recorded_and_the_last_result_read_without_running_again(bank: Bank):
    auditor = bank.key("auditor")
    never = bank.get("/v1/reconcile/last", auditor)
    assert never.status_code == 404 and never.json()["code"] == "reconcile_not_run"
    assert reconcile_store.last_result(bank.ctx.engine) is None

    clean = bank.post("/v1/reconcile", None, auditor, key="run-1")
    assert clean.status_code == 201, clean.text
    assert clean.json()["ok"] is True and clean.json()["breaks"] == []
    assert {c["check"] for c in clean.json()["checks"]} >= {"ledger", "supply", "total"}
    replayed = bank.post("/v1/reconcile", None, auditor, key="run-1")
    assert replayed.json() == clean.json() and replayed.headers["Idempotent-Replayed"] == "true"

    # The ledger says a holder has tokens the chain never minted: a break, named.
    client = bank.tokens.onboard("Acme").id
    wallet = bank.tokens.wallet(client, "internal").address
    ledger = bank.tokens.ledger
    mirror = holder_account("internal", TOKENS[DEPOSIT_TOKEN], wallet)
    booked = ledger.create_transfer(
        TransferSpec(ledger.account(BANK_CASH).id, ledger.account(mirror).id, 100, id="phantom", asset="USD")
    )
    assert booked.ok
    broken = bank.post("/v1/reconcile", None, bank.key("compliance"))
    assert broken.status_code == 201 and broken.json()["ok"] is False
    assert {b["check"] for b in broken.json()["breaks"]} == {"supply", "holder", "total"}
    last = bank.get("/v1/reconcile/last", bank.key("operator")).json()
    assert last["id"] == broken.json()["id"] and last["ok"] is False
    recorded = reconcile_store.last_result(bank.ctx.engine)
    assert recorded is not None and recorded.id == last["id"] and recorded.breaks == 3 and not recorded.ok
    assert bank.post("/v1/reconcile", None, bank.key("client", client)).status_code == 403


def test_only_the_newest_runs_are_kept(ctx):
    report = {"ok": True, "breaks": [], "checks": [], "in_flight": [], "alerts": []}
    for i in range(reconcile_store.RUNS_KEPT + 5):
        reconcile_store.record(
            ctx.engine, report, started_at_us=i, finished_at_us=i + 1, requested_by="test", ids=ctx.ledger.ids
        )
    with ctx.engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(reconcile_store.runs)).scalar()
        oldest = conn.execute(select(func.min(reconcile_store.runs.c.started_at_us))).scalar()
    assert kept == reconcile_store.RUNS_KEPT and oldest == 5
    last = reconcile_store.last_result(ctx.engine)
    assert last is not None and last.started_at_us == reconcile_store.RUNS_KEPT + 4
