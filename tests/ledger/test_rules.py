"""The batch rules on plain values: no database, no fixtures."""

from __future__ import annotations

import pytest

from andchain.errors import InvariantBroken
from andchain.ledger import AccountFlags, PendingStatus, Result, TransferFlags, TransferSpec
from andchain.ledger.rules import Balance, Batch, Pending, apply_batch, apply_transfer, check_batch, expire

NOW_US = 1_800_000_000_000_000
NO_OVERDRAFT = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
LINKED = int(TransferFlags.LINKED)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING)


def book(*, client_credits: int = 100) -> Batch:
    """Account 1 is the bank's cash, 2 a client that may not overdraw, 3 a euro account."""
    return Batch(
        now_us=NOW_US,
        balances={
            1: Balance(1, "USD", 0, False, 0, client_credits, 0, 0),
            2: Balance(2, "USD", NO_OVERDRAFT, False, 0, 0, 0, client_credits),
            3: Balance(3, "EUR", 0, False, 0, 0, 0, 0),
        },
        pendings={},
        existing={},
    )


def codes(results) -> list[str]:
    return [r.result.value for r in results]


def test_a_transfer_moves_the_amount_between_the_two_balances():
    batch = book()
    assert apply_transfer(batch, TransferSpec(2, 1, 30), "t") == Result.OK
    assert batch.balances[2].state() == (0, 30, 0, 100)
    assert batch.balances[1].state() == (0, 100, 0, 30)
    assert [row[0] for row in batch.rows] == ["t"]
    check_batch(batch)


def test_a_client_cannot_spend_more_than_it_holds_and_nothing_moves():
    batch = book()
    assert apply_transfer(batch, TransferSpec(2, 1, 101), "t") == Result.INSUFFICIENT_FUNDS
    assert not batch.balances[2].changed() and batch.rows == []


def test_an_account_missing_from_the_batch_is_not_found():
    batch = book()
    assert apply_transfer(batch, TransferSpec(1, 9, 1), "t") == Result.CREDIT_ACCOUNT_NOT_FOUND
    assert apply_transfer(batch, TransferSpec(1, 3, 1), "t") == Result.ASSET_MISMATCH


def test_a_failed_chain_puts_back_every_balance_and_pending_it_touched():
    batch = book()
    results = apply_batch(
        batch,
        [
            TransferSpec(2, 1, 60, flags=LINKED | PENDING),
            TransferSpec(flags=LINKED | POST, pending_id="h", amount=10),
            TransferSpec(2, 1, 91),  # 10 posted + 91 > 100
        ],
        ["h", "p", "x"],
    )
    assert codes(results) == ["linked_event_failed", "linked_event_failed", "insufficient_funds"]
    assert not any(b.changed() for b in batch.balances.values())
    assert batch.rows == [] and batch.pendings == {} and batch.pending_new == {} and batch.existing == {}


def test_a_pending_transfer_past_its_timeout_is_released():
    batch = book()
    assert apply_transfer(batch, TransferSpec(2, 1, 40, flags=PENDING, timeout_s=5), "h") == Result.OK
    pending = batch.pendings["h"]
    assert isinstance(pending, Pending) and pending.expires_at_us == NOW_US + 5_000_000
    expire(batch, pending)
    assert pending.status == PendingStatus.EXPIRED
    assert batch.balances[2].dp == 0
    assert apply_transfer(batch, TransferSpec(flags=POST, pending_id="h"), "p") == Result.PENDING_TRANSFER_EXPIRED


def test_a_replayed_id_is_compared_on_its_fields():
    batch = book()
    spec = TransferSpec(1, 2, 5, memo="m")
    assert codes(apply_batch(batch, [spec, spec, TransferSpec(1, 2, 6, memo="m")], ["t", "t", "t"])) == [
        "ok",
        "exists",
        "exists_with_different_fields",
    ]


def test_an_unbalanced_batch_is_a_broken_invariant_not_a_refusal():
    batch = book()
    batch.balances[1].cpo += 1
    with pytest.raises(InvariantBroken, match="unbalanced in USD"):
        check_batch(batch)


def test_only_a_refusal_that_depends_on_the_book_is_recorded_as_failed():
    batch = book()
    results = apply_batch(
        batch,
        [
            TransferSpec(2, 1, 101),  # insufficient_funds: depends on the balances
            TransferSpec(2, 1, 0),  # amount_must_be_positive: depends on the transfer alone
            TransferSpec(flags=POST, pending_id="later"),  # pending_transfer_not_found
            TransferSpec(2, 1, 1),  # the first id again
        ],
        ["a", "b", "c", "a"],
    )
    assert codes(results) == [
        "insufficient_funds",
        "amount_must_be_positive",
        "pending_transfer_not_found",
        "id_already_failed",
    ]
    assert batch.failed_new == {"a": Result.INSUFFICIENT_FUNDS, "c": Result.PENDING_TRANSFER_NOT_FOUND}
