"""Programmable payments and the operator's view of operations."""

from __future__ import annotations

import pytest

from andchain.errors import Conflict, DomainError, InvariantBroken
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, holder_account
from andchain.tokens.rules import RuleChanged, Rules
from andchain.tokens.runtime import token_worker
from andchain.tokens.service import TokenService
from tests.tokens.conftest import settle


class MovableClock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def held(tokens: TokenService, client: str) -> int:
    wallet = tokens.wallet(client, "internal")
    return tokens.ledger.account(holder_account("internal", TOKENS[DEPOSIT_TOKEN], wallet.address)).balance_posted


def test_a_daily_scheduled_payment_runs_once_per_day(ctx, tokens: TokenService):
    payer, payee = tokens.onboard("Payer").id, tokens.onboard("Payee").id
    tokens.deposit(payer, 10_000, "fund")
    tokens.mint(payer, "internal", 10_000, "m")
    settle(ctx, tokens)
    rules = Rules(tokens)
    clock = MovableClock(ctx.clock())
    rules.clock = clock
    rule = rules.schedule(payer, payee, "internal", 1_000, "rent", at_us=clock.now + 5_000_000, every_s=86_400)
    assert rules.tick() == 0  # not due yet
    clock.now += 5_000_000
    assert rules.tick() == 1
    assert rules.tick() == 0  # the next run is tomorrow
    clock.now += 86_400_000_000
    assert rules.tick() == 1
    settle(ctx, tokens)
    assert held(tokens, payee) == 2_000
    assert rules.get(rule.id).runs == 2
    rules.cancel(rule.id)
    clock.now += 10 * 86_400_000_000
    assert rules.tick() == 0
    with pytest.raises(DomainError) as caught:
        rules.cancel(rule.id)
    assert caught.value.code == "rule_not_active"


def test_a_rule_cancelled_while_the_worker_runs_it_pays_nothing_after_the_cancel(ctx, tokens: TokenService):
    """The worker read the rule as due; the client cancels it before the run is recorded: the run's
    claim, in the payment's own transaction, finds the rule cancelled and records nothing. And a run
    recorded first is never overwritten by the cancel, nor the cancel by the run."""
    payer, payee = tokens.onboard("Payer").id, tokens.onboard("Payee").id
    tokens.deposit(payer, 10_000, "fund")
    tokens.mint(payer, "internal", 10_000, "m")
    settle(ctx, tokens)
    rules = Rules(tokens)
    once = rules.schedule(payer, payee, "internal", 1_000, "once")
    daily = rules.schedule(payer, payee, "internal", 1_000, "daily", every_s=86_400)
    read = {r.id: r for r in rules.list()}  # what the worker's tick read, as due
    rules.cancel(once.id)
    rules.cancel(daily.id)
    for rule in read.values():
        with pytest.raises(RuleChanged):
            rules._run(rule, ctx.clock())
    assert rules.tick() == 0
    assert [op for op in tokens.ops.list() if op.kind == "pay"] == []
    assert {r.status for r in rules.list()} == {"cancelled"}

    # The other order: the run is recorded first; the cancel after it stands, and the run stays paid.
    again = rules.schedule(payer, payee, "internal", 1_000, "again")
    assert rules.tick() == 1
    assert rules.get(again.id).status == "completed"
    with pytest.raises(DomainError) as refused:
        rules.cancel(again.id)
    assert refused.value.code == "rule_not_active" and rules.get(again.id).status == "completed"


def test_a_second_worker_running_the_same_rule_run_records_nothing_more(ctx, tokens: TokenService):
    payer, payee = tokens.onboard("Payer").id, tokens.onboard("Payee").id
    tokens.deposit(payer, 10_000, "fund")
    tokens.mint(payer, "internal", 10_000, "m")
    settle(ctx, tokens)
    rules = Rules(tokens)
    daily = rules.schedule(payer, payee, "internal", 1_000, "daily", every_s=86_400)
    (seen,) = rules.list()
    assert rules.tick() == 1  # the first worker ran it
    rules._run(seen, ctx.clock())  # the second, from its older read: the same payment, not a second one
    assert len([op for op in tokens.ops.list() if op.kind == "pay"]) == 1
    assert rules.get(daily.id).runs == 1


def test_a_sweep_redeems_the_excess_above_its_threshold(ctx, tokens: TokenService):
    client = tokens.onboard("Treasury Client").id
    tokens.deposit(client, 50_000, "fund")
    tokens.mint(client, "internal", 30_000, "m")
    settle(ctx, tokens)
    Rules(tokens).sweep(client, "internal", 12_000)
    settle(ctx, tokens)  # the worker's tick runs the rule, then the redemption
    settle(ctx, tokens)
    assert held(tokens, client) == 12_000
    assert tokens.dda_balance(client) == 20_000 + 18_000
    assert reconcile(ctx).breaks == []


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda r, a, b: r.schedule(a, a, "internal", 100, "x"), "invalid_rule"),
        (lambda r, a, b: r.schedule(a, b, "internal", 0, "x"), "invalid_rule"),
        (lambda r, a, b: r.schedule(a, b, "internal", 100, "x", every_s=5), "invalid_rule"),
        (lambda r, a, b: r.schedule(a, b, "internal", 100, "m" * 33), "invalid_rule"),
        (lambda r, a, b: r.schedule(a, b, "mars", 100, "x"), "unknown_network"),
        (lambda r, a, b: r.sweep(a, "internal", -1), "invalid_rule"),
        (lambda r, a, b: r.sweep("nobody", "internal", 1), "client_not_found"),
    ],
)
def test_invalid_rules_are_refused(ctx, tokens: TokenService, call, code):
    a, b = tokens.onboard("A").id, tokens.onboard("B").id
    with pytest.raises(DomainError) as caught:
        call(Rules(tokens), a, b)
    assert caught.value.code == code
    assert Rules(tokens).list() == []


def test_an_unsent_operation_can_be_cancelled_and_releases_its_reservation(ctx, tokens: TokenService):
    client = tokens.onboard("Acme").id
    tokens.deposit(client, 5_000, "fund")
    op = tokens.mint(client, "internal", 4_000, "to-cancel")
    assert tokens.ledger.account(f"clients:{client}:usd:dda").available == 1_000
    worker = token_worker(ctx, tokens)
    cancelled = worker.cancel(op.id, "client withdrew the request")
    assert cancelled.status == OpStatus.CANCELLED
    assert tokens.ledger.account(f"clients:{client}:usd:dda").available == 5_000
    with pytest.raises(Conflict):
        tokens.ops.retry(op.id)
    with pytest.raises(InvariantBroken):
        tokens.ops.update(cancelled, status=OpStatus.SUCCEEDED)
    assert tokens.ops.get(op.id).status == OpStatus.CANCELLED


def test_an_operation_in_flight_cannot_be_cancelled(ctx, tokens: TokenService):
    client = tokens.onboard("Acme").id
    tokens.deposit(client, 5_000, "fund")
    tokens.mint(client, "internal", 1_000, "m1")
    settle(ctx, tokens)
    op = tokens.redeem(client, "internal", 500, "r1")
    token_worker(ctx, tokens).run_once()
    with pytest.raises(Conflict) as caught:
        tokens.ops.cancel(op.id)
    assert caught.value.code == "operation_in_flight"
    settle(ctx, tokens)


def test_requests_are_validated_before_anything_is_recorded(ctx, tokens: TokenService):
    a, b = tokens.onboard("A").id, tokens.onboard("B").id
    tokens.deposit(a, 1_000, "fund")
    cases = [
        (lambda: tokens.mint(a, "internal", 0, "k1"), "amount_must_be_positive"),
        (lambda: tokens.mint(a, "mars", 10, "k2"), "unknown_network"),
        (lambda: tokens.mint("nobody", "internal", 10, "k3"), "client_not_found"),
        (lambda: tokens.pay(a, a, "internal", 10, "m", "k4"), "accounts_must_be_different"),
        (lambda: tokens.pay(a, b, "internal", 10, "m" * 33, "k5"), "memo_too_long"),
        (lambda: tokens.pay(a, b, "internal", 10, "m", "k6"), "insufficient_funds"),
        (lambda: tokens.deposit(a, -5, "neg"), "amount_must_be_positive"),
    ]
    for call, code in cases:
        with pytest.raises(DomainError) as caught:
            call()
        assert caught.value.code == code
    assert tokens.ops.list() == []
