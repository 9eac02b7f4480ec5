"""The token worker on a real anvil node: what fails stays where it fails, and the rest goes on."""

from __future__ import annotations

import logging
from pathlib import Path

from andchain.config import Settings
from andchain.context import Context
from andchain.ledger import TransferFlags
from andchain.ops import OpStatus
from andchain.ops.chain import ChainOpsHandler
from andchain.reconcile import reconcile
from andchain.tokens.actions import MintAction
from andchain.tokens.booking import TokenMirror
from andchain.tokens.rules import Rules
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TokenService
from tests.chains.conftest import start_node
from tests.ledger.helpers import transfers_per_call
from tests.tokens.conftest import sent_and_mined, settle


def funded(tokens: TokenService, name: str, cents: int) -> str:
    client = tokens.onboard(name).id
    if cents:
        tokens.deposit(client, cents, f"camt054-{name}")
    return client


def test_a_failing_listener_booking_and_rule_are_reported_while_operations_complete(ctx, tokens, monkeypatch):
    acme, globex = funded(tokens, "Acme", 10_000), funded(tokens, "Globex", 0)

    def booking_fails(self, event, conn):
        raise RuntimeError(f"cannot book {event.name}")

    def batch_fails(self, events, conn):
        booking_fails(self, events[0], conn)

    def rules_fail(self):
        raise ValueError("rule engine broke")

    monkeypatch.setattr(TokenMirror, "deliver", booking_fails)
    monkeypatch.setattr(TokenMirror, "deliver_many", batch_fails)
    monkeypatch.setattr(Rules, "tick", rules_fail)
    mint = tokens.mint(acme, "internal", 6_000, "mint-1")
    worker = token_worker(ctx, tokens)
    assert run_until_idle(worker, seconds=60)
    pay = tokens.pay(acme, globex, "internal", 2_500, "INV-1", "pay-1")
    assert run_until_idle(worker, seconds=60)
    assert [tokens.ops.get(op.id).status for op in (mint, pay)] == [OpStatus.SUCCEEDED] * 2
    failing = worker.failing_parts()
    assert "cannot book" in failing["listener:internal"] and "rule engine broke" in failing["rules"]
    alerts = "\n".join(reconcile(ctx).alerts)
    assert "listener:internal failing: RuntimeError: cannot book" in alerts
    assert "rules failing: ValueError: rule engine broke" in alerts

    monkeypatch.undo()  # the fault is repaired: the listener books what it could not, once
    settle(ctx, tokens)
    report = reconcile(ctx)
    assert report.breaks == [], report.breaks
    assert not [a for a in report.alerts if "failing" in a], report.alerts


def test_an_operation_whose_processing_raises_stops_in_needs_attention_while_the_others_complete(
    ctx, tokens, monkeypatch
):
    acme = funded(tokens, "Acme", 10_000)
    planned = MintAction.next_call

    def next_call(self, op):
        if op.idempotency_key == "mint-2":
            raise ZeroDivisionError("a bug in planning this one mint")
        return planned(self, op)

    monkeypatch.setattr(MintAction, "next_call", next_call)
    mints = [tokens.mint(acme, "internal", 1_000, f"mint-{i}") for i in range(1, 5)]
    settle(ctx, tokens)
    states = [tokens.ops.get(op.id) for op in mints]
    assert [s.status for s in states] == [
        OpStatus.SUCCEEDED,
        OpStatus.NEEDS_ATTENTION,
        OpStatus.SUCCEEDED,
        OpStatus.SUCCEEDED,
    ]
    assert states[1].error_code == "internal_error" and "ZeroDivisionError" in (states[1].error_message or "")
    dda = tokens.ledger.account(f"clients:{acme}:usd:dda")
    assert (dda.balance_posted, dda.available) == (7_000, 6_000)  # its reservation is kept for an operator
    # The books agree with the chain; the one break is the operation that waits for an operator.
    assert [(b.check, b.subject) for b in reconcile(ctx).breaks] == [("operation", f"mint {mints[1].id}")]


def test_a_mint_whose_node_never_answers_stops_in_needs_attention_after_its_attempts(tmp_path: Path):
    node = start_node(tmp_path / "node")
    try:
        settings = Settings(
            data_dir=tmp_path,
            networks={"internal": node.network.model_dump()},
            keystore={"passphrase": "test-only-passphrase", "scrypt_n": 1024},
            ops={"attempts_max": 3, "backoff_base_s": 0.05, "backoff_max_s": 0.2},
        )
        ctx = Context(settings)
        ctx.upgrade_database()
        tokens = TokenService(ctx)
        tokens.setup("internal")
        acme = funded(tokens, "Acme", 10_000)
        mint = tokens.mint(acme, "internal", 1_000, "mint-1")
    finally:
        node.stop()  # the node never answers again
    try:
        worker = token_worker(ctx, tokens)
        assert run_until_idle(worker, seconds=120)  # it ends: nothing loops forever
        stopped = tokens.ops.get(mint.id)
        assert stopped.status == OpStatus.NEEDS_ATTENTION and stopped.attempts <= settings.ops.attempts_max
        assert stopped.error_code == "node_unreachable"
        assert "listener:internal" in worker.failing_parts()  # the listener's failure is reported, not fatal
        assert tokens.ledger.account(f"clients:{acme}:usd:dda").available == 9_000  # reservation kept
    finally:
        ctx.close()


def test_a_batch_whose_final_step_fails_for_one_operation_completes_the_others(ctx, tokens, monkeypatch):
    """One operation's final step that raises stops that operation alone (it waits for an operator); the
    others of its batch complete."""
    acme = funded(tokens, "Acme", 10_000)
    finish = MintAction.finish

    def finish_fails_once_for_one(self, op, conn):
        if op.idempotency_key == "mint-3":
            raise ZeroDivisionError("a bug in booking this one mint")
        return finish(self, op, conn)

    monkeypatch.setattr(MintAction, "finish", finish_fails_once_for_one)
    mints = [tokens.mint(acme, "internal", 1_000, f"mint-{i}") for i in range(1, 6)]
    settle(ctx, tokens)
    states = [tokens.ops.get(op.id).status for op in mints]
    assert states == [OpStatus.SUCCEEDED] * 2 + [OpStatus.NEEDS_ATTENTION] + [OpStatus.SUCCEEDED] * 2
    dda = tokens.ledger.account(f"clients:{acme}:usd:dda")
    assert (dda.balance_posted, dda.available) == (6_000, 5_000)  # four posted once, one still reserved


def test_the_final_steps_of_a_batch_are_booked_in_one_ledger_call(ctx, tokens, monkeypatch):
    acme = funded(tokens, "Acme", 10_000)
    tokens.mint(acme, "internal", 100, "allow-list-first")
    settle(ctx, tokens)
    calls = transfers_per_call(monkeypatch, lambda spec: spec.flags & TransferFlags.POST_PENDING)
    mints = [tokens.mint(acme, "internal", 1_000, f"mint-{i}") for i in range(1, 6)]
    sent_and_mined(ctx, tokens, mints)
    settle(ctx, tokens)
    assert [tokens.ops.get(op.id).status for op in mints] == [OpStatus.SUCCEEDED] * 5
    assert calls == [5]  # the five holds posted together, with the five operations' completions
    dda = tokens.ledger.account(f"clients:{acme}:usd:dda")
    assert (dda.balance_posted, dda.available) == (4_900, 4_900)
    assert not reconcile(ctx).breaks


def test_a_batch_of_finals_with_an_operation_changed_meanwhile_is_written_one_by_one(ctx, tokens, monkeypatch, caplog):
    """An operation changed between its read and the write of its final step (an operator's note, say):
    the batch written together is rolled back whole and written one by one, the changed one alone is
    left out, and it is finished on the next round from its fresh copy; every hold is posted once."""
    acme = funded(tokens, "Acme", 10_000)
    tokens.mint(acme, "internal", 100, "allow-list-first")
    settle(ctx, tokens)
    calls = transfers_per_call(monkeypatch, lambda spec: spec.flags & TransferFlags.POST_PENDING)
    commit = ChainOpsHandler._commit_finals
    touched: list[str] = []

    def touched_first(self, finals):
        if not touched and len(finals) > 1:
            touched.append(finals[1].op.id)
            assert self.ops.update_if_current(finals[1].op, detail="an operator's note") is not None
        return commit(self, finals)

    monkeypatch.setattr(ChainOpsHandler, "_commit_finals", touched_first)
    mints = [tokens.mint(acme, "internal", 1_000, f"mint-{i}") for i in range(1, 6)]
    sent_and_mined(ctx, tokens, mints)
    with caplog.at_level(logging.INFO, logger="andchain.ops.chain"):
        settle(ctx, tokens)
    assert touched and "finals written one by one after _Stale" in caplog.text
    assert [tokens.ops.get(op.id).status for op in mints] == [OpStatus.SUCCEEDED] * 5
    # Together (rolled back when the changed one is found), one by one (the changed one's post rolled back
    # with its savepoint), then the changed one on its next round.
    assert calls == [5] + [1] * 6
    history = [h.detail for h in tokens.ops.history(touched[0])]
    assert "an operator's note" in history and sum("succeeded" in d for d in history) == 1
    dda = tokens.ledger.account(f"clients:{acme}:usd:dda")
    assert (dda.balance_posted, dda.available) == (4_900, 4_900)
    assert not reconcile(ctx).breaks
