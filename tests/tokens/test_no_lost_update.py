"""No lost update: every change to an operation is conditional on the version its writer read."""

from __future__ import annotations

import threading

import pytest

from andchain.db import write_transaction
from andchain.errors import Conflict
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, TransferSpec
from andchain.ops import Operations, OpStatus, holds
from andchain.ops.core import StaleOperation


def test_two_writers_racing_on_one_operation_never_overwrite_each_other(engine, clock):
    ops = Operations(engine, clock=clock)
    op, _ = ops.create("mint", "race-1", {"amount": 1})
    worker_copy, request_copy = ops.get(op.id), ops.get(op.id)
    # The worker records its signed transaction first.
    recorded = ops.update(worker_copy, state={"tx": {"hash": "0xabc"}}, detail="signed 0xabc")
    # A request that read the operation before writes its old copy: refused, nothing changes.
    with pytest.raises(StaleOperation):
        ops.update(request_copy, state={"reserved": True})
    assert ops.update_if_current(request_copy, status=OpStatus.CANCELLED) is None
    current = ops.get(op.id)
    assert current.state == {"tx": {"hash": "0xabc"}} and current.status == OpStatus.RECEIVED
    assert current.version == recorded.version == op.version + 1


def test_many_threads_updating_one_operation_apply_each_change_once(engine, clock):
    ops = Operations(engine, clock=clock)
    op, _ = ops.create("pay", "race-2", {"amount": 1})
    applied: list[int] = []
    lock = threading.Lock()

    def bump(n: int) -> None:
        for _ in range(20):
            current = ops.get(op.id)
            done = ops.update_if_current(current, state={**current.state, f"w{n}": current.state.get(f"w{n}", 0) + 1})
            if done is not None:
                with lock:
                    applied.append(n)

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = ops.get(op.id)
    # Each successful write saw the one before it: the counters add up to the writes that won.
    assert sum(v for k, v in final.state.items() if k.startswith("w")) == len(applied)
    assert final.version == 1 + len(applied)


def test_cancel_is_atomic_with_the_check_that_nothing_was_sent_and_releases_the_hold(engine, clock, ledger):
    ops = Operations(engine, clock=clock)
    ledger.create_accounts(
        [
            AccountSpec("bank:usd:cash", "USD"),
            AccountSpec(
                "clients:a:usd:dda",
                "USD",
                kind=AccountKind.LIABILITY,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            ),
            AccountSpec("tokens:internal:usdd:0xa", "USD", kind=AccountKind.LIABILITY),
        ]
    )
    cash, dda, mirror = (
        ledger.account(n).id for n in ("bank:usd:cash", "clients:a:usd:dda", "tokens:internal:usdd:0xa")
    )
    ledger.create_transfer(TransferSpec(cash, dda, 1_000, id="fund"))

    def released(op, conn):
        holds.void(ledger, holds.Hold(f"mint:{op.id}", "mint"), conn=conn)

    first, _ = ops.create("mint", "c-1", {"amount": 400})
    holds.reserve(ledger, holds.Hold(f"mint:{first.id}", "mint"), dda, mirror, 400, "USD")
    assert ledger.account(dda).available == 600
    cancelled = ops.cancel(first.id, release=released)
    assert cancelled.status == OpStatus.CANCELLED
    assert ledger.account(dda).available == 1_000
    assert ledger.transfer(f"mint:{first.id}").pending_status == "voided"

    # A worker recorded a signed transaction: the operation can no longer be cancelled, its hold stays.
    second, _ = ops.create("mint", "c-2", {"amount": 300})
    holds.reserve(ledger, holds.Hold(f"mint:{second.id}", "mint"), dda, mirror, 300, "USD")
    ops.update(second, state={"tx": {"hash": "0xdef"}})
    with pytest.raises(Conflict) as caught:
        ops.cancel(second.id, release=released)
    assert caught.value.code == "operation_in_flight"
    assert ledger.account(dda).available == 700 and ops.get(second.id).status == OpStatus.RECEIVED

    # A release that fails rolls the cancellation back with it.
    third, _ = ops.create("mint", "c-3", {"amount": 100})

    def broken(op, conn):
        raise RuntimeError("ledger away")

    with pytest.raises(RuntimeError):
        ops.cancel(third.id, release=broken)
    assert ops.get(third.id).status == OpStatus.RECEIVED


def test_an_idempotency_key_names_the_request_the_caller_sent_not_what_was_derived_from_it(engine, clock):
    ops = Operations(engine, clock=clock)
    request = {"buyer": "b", "seller": "s", "cash": 10, "ttl_s": 3600}
    first, created = ops.create("dvp", "trade-1", {**request, "deadline": 1}, request=request)
    again, created_again = ops.create("dvp", "trade-1", {**request, "deadline": 2}, request=request)
    assert created and not created_again and again.id == first.id
    with pytest.raises(Conflict) as caught:
        ops.create("dvp", "trade-1", {**request, "cash": 11}, request={**request, "cash": 11})
    assert caught.value.code == "idempotency_key_reused"


def test_needs_attention_is_kept_out_of_claims_until_an_operator_resumes_it(engine, clock):
    ops = Operations(engine, clock=clock)
    op, _ = ops.create("move", "stuck-1", {"amount": 5})
    stopped = ops.attention(op, "tx_reverted", "the re-mint was refused")
    assert stopped is not None and stopped.status == OpStatus.NEEDS_ATTENTION
    assert ops.claim("w1") == []
    assert [o.id for o in ops.unfinished()] == [op.id]
    resumed = ops.retry(op.id)
    assert resumed.status == OpStatus.RECEIVED and resumed.attempts == 0
    assert [o.id for o in ops.claim("w1")] == [op.id]


def _trail(engine, ops: Operations, op_id: str) -> tuple[list[tuple[str, str]], list[str]]:
    from andchain.events import EventLog

    history = [(h.status, h.detail) for h in ops.history(op_id)]
    return history, [e.type for e in EventLog(engine).read().events if e.subject == op_id]


def test_many_operations_changed_together_are_changed_as_one_by_one(engine, clock, monkeypatch):
    """`update_many_if_current` writes what `update_if_current` would for each: the same rows, versions,
    history and events, in one statement per set of columns."""
    ops = Operations(engine, clock=clock)
    made = [ops.create("mint", f"many-{i}", {"client": "acme", "amount": i}, network="internal")[0] for i in range(8)]
    twins = [ops.create("mint", f"twin-{i}", {"client": "acme", "amount": i}, network="internal")[0] for i in range(8)]

    def change(i: int) -> dict:
        if i % 3 == 0:
            return {"status": OpStatus.SUBMITTED, "retry_in_us": 5, "detail": f"sent 0x{i}"}
        if i % 3 == 1:
            return {"state": {"tx": {"hash": f"0x{i}"}}, "detail": f"signed 0x{i}"}
        return {"retry_in_us": 7}

    one_by_one = ops.update_if_current
    monkeypatch.setattr(ops, "update_if_current", lambda *a, **k: pytest.fail("a statement per set of columns"))
    with write_transaction(engine) as conn:
        together = ops.update_many_if_current(conn, [(op, change(i)) for i, op in enumerate(made) if i != 5])
    monkeypatch.setattr(ops, "update_if_current", one_by_one)
    with write_transaction(engine) as conn:
        lone = ops.update_many_if_current(conn, [(made[5], change(5))])  # alone in its set: one by one
    together.insert(5, *lone)
    alone = [ops.update_if_current(op, **change(i)) for i, op in enumerate(twins)]
    for many, one in zip(together, alone, strict=True):
        assert many is not None and one is not None
        stored, stored_twin = ops.get(many.id), ops.get(one.id)
        assert many == stored  # what it answers is what it wrote
        fields = ("status", "state", "version", "attempts", "next_attempt_at_us", "result", "error_code")
        assert [getattr(stored, f) for f in fields] == [getattr(stored_twin, f) for f in fields]
        assert _trail(engine, ops, many.id)[1] == _trail(engine, ops, one.id)[1]
        assert [h for h, _ in _trail(engine, ops, many.id)[0]] == [h for h, _ in _trail(engine, ops, one.id)[0]]


def test_a_stale_copy_among_many_changes_nothing_of_its_own_and_the_others_are_changed(engine, clock):
    ops = Operations(engine, clock=clock)
    made = [ops.create("mint", f"stale-{i}", {"client": "acme", "amount": i}, network="internal")[0] for i in range(5)]
    moved_on = ops.update(made[2], status=OpStatus.SUBMITTED, detail="another worker")  # made[2] is now stale
    ops.update(moved_on, status=OpStatus.FAILED, error=("x", "y"))
    with write_transaction(engine) as conn:
        done = ops.update_many_if_current(conn, [(op, {"status": OpStatus.SUBMITTED, "detail": "sent"}) for op in made])
    assert [d is None for d in done] == [False, False, True, False, False]
    assert ops.get(made[2].id).status == OpStatus.FAILED
    for i in (0, 1, 3, 4):
        assert ops.get(made[i].id).status == OpStatus.SUBMITTED and ops.get(made[i].id).version == 2
        history, events = _trail(engine, ops, made[i].id)
        assert history == [("received", "mint received"), ("submitted", "sent")]  # logged once, not twice
        assert events == ["operation.received", "operation.submitted"]
    history, events = _trail(engine, ops, made[2].id)
    assert [h for h, _ in history] == ["received", "submitted", "failed"]  # nothing of the stale write
    assert events == ["operation.received", "operation.submitted", "operation.failed", "mint.failed"]


def test_one_operation_changed_twice_in_one_call_is_changed_in_order(engine, clock):
    ops = Operations(engine, clock=clock)
    op, _ = ops.create("mint", "twice", {"client": "acme", "amount": 1}, network="internal")
    with write_transaction(engine) as conn:
        first, second = ops.update_many_if_current(
            conn, [(op, {"status": OpStatus.SUBMITTED}), (op, {"status": OpStatus.CONFIRMING})]
        )
    assert first is not None and second is None  # the second copy was stale once the first was written
    assert ops.get(op.id).status == OpStatus.SUBMITTED
