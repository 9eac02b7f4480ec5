"""Operations and deposit tokens on PostgreSQL: claims skip locked rows; the whole flow reconciles."""

from __future__ import annotations

import itertools

import pytest

from andchain.ops import Operations, OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TokenService
from tests.chains.conftest import make_context

_databases = itertools.count()


@pytest.fixture
def pg_ctx(postgres_server, tmp_path, anvil):
    from andchain.devtools.postgres import create_database

    url = create_database(postgres_server, f"tokens_{next(_databases)}")
    ctx = make_context(tmp_path, anvil, database_url=url)
    yield ctx
    ctx.close()


def test_two_workers_claim_disjoint_operations(engine, clock):
    ops = Operations(engine, clock=clock)
    for i in range(10):
        ops.create("noop", f"k{i}", {"i": i}, network="internal")
    first = ops.claim("host:1", limit=6)
    second = ops.claim("host:2", limit=6)
    assert len(first) == 6 and len(second) == 4
    assert not {o.id for o in first} & {o.id for o in second}
    assert ops.claim("host:3") == []  # every operation is leased
    clock.advance(31)  # leases expire: another worker may take over
    assert len(ops.claim("host:3")) == 10


def test_mint_pay_redeem_and_reconcile_on_postgresql(pg_ctx):
    assert pg_ctx.engine.dialect.name == "postgresql"
    service = TokenService(pg_ctx)
    service.setup("internal")
    acme, globex = service.onboard("Acme PG").id, service.onboard("Globex PG").id
    service.deposit(acme, 9_000, "camt-pg")
    mint = service.mint(acme, "internal", 7_000, "pg-mint")
    worker = token_worker(pg_ctx, service)
    assert run_until_idle(worker, seconds=30)
    pay = service.pay(acme, globex, "internal", 3_000, "PG-1", "pg-pay")
    assert run_until_idle(worker, seconds=30)
    redeem = service.redeem(globex, "internal", 1_000, "pg-redeem")
    assert run_until_idle(worker, seconds=30)
    assert all(service.ops.get(op.id).status == OpStatus.SUCCEEDED for op in (mint, pay, redeem))
    assert (service.dda_balance(acme), service.dda_balance(globex)) == (2_000, 1_000)
    assert reconcile(pg_ctx).breaks == []


def test_a_camt054_credit_a_freeze_a_seizure_and_a_payout_on_postgresql(pg_ctx):
    from andchain.compliance import audit
    from andchain.compliance.enforcement import Enforcement
    from andchain.compliance.payments import Payments
    from andchain.tokens.model import BANK_SEIZED
    from tests.compliance.camt import Credit, camt054

    service = TokenService(pg_ctx)
    service.setup("internal")
    worker = token_worker(pg_ctx, service)
    payments = Payments(service)
    acme, target = service.onboard("Acme PG").id, service.onboard("Target PG").id
    credits = [Credit("PG-1", "90.00", acme), Credit("PG-2", "50.00", target)]
    booked = payments.credit_notice(camt054("PG-MSG", credits), by="test")
    assert [c["status"] for c in booked["credits"]] == ["booked", "booked"]
    mints = [service.mint(acme, "internal", 9_000, "pg-mint-a"), service.mint(target, "internal", 3_000, "pg-mint-t")]
    assert run_until_idle(worker, seconds=30)
    redemption = service.redeem(acme, "internal", 2_000, "pg-redeem")
    enforcement = Enforcement(service)
    enforcement.freeze(target, reference="PG-ORDER", authority="court", by="test")
    assert run_until_idle(worker, seconds=30)
    order = enforcement.seize(target, reference="PG-ORDER", authority="court", by="test")
    assert run_until_idle(worker, seconds=30)
    done = [service.ops.get(op.id) for op in (*mints, redemption)] + [service.ops.get(order.operation_id)]
    assert all(op.status == OpStatus.SUCCEEDED for op in done), [(op.kind, op.status) for op in done]
    payout = payments.payout(redemption.id, creditor_name="Acme", creditor_account="000123",
                             creditor_agent_bic="CHASUS33", by="test")  # fmt: skip
    assert payout["tx_hash"] == service.ops.get(redemption.id).result["tx_hash"].lower()
    assert (service.dda_balance(acme), service.dda_balance(target)) == (0, 0)
    assert service.ledger.account(BANK_SEIZED).balance_posted == 5_000
    assert reconcile(pg_ctx).breaks == []
    assert audit.verify(pg_ctx.engine).ok
