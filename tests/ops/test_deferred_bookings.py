"""Bookings deferred within a transaction (ops/holds.py): made together in one ledger call, each checked."""

from __future__ import annotations

import pytest

from andchain.db import write_transaction
from andchain.ledger import Ledger, TransferSpec
from andchain.ops import holds
from tests.ledger.helpers import funded_client, open_accounts


def _accounts(ledger: Ledger) -> tuple[int, int, int]:
    """The bank's cash, a client's account holding 1,000 and its token mirror."""
    cash, dda = funded_client(ledger, 1_000)
    (mirror,) = open_accounts(ledger, ("tokens:internal:usdd:0xa", "USD", 0))
    return cash, dda, mirror


def _calls(ledger: Ledger, monkeypatch) -> list[int]:
    sizes: list[int] = []
    create = ledger.create_transfers

    def counted(specs, *, conn=None):
        sizes.append(len(specs))
        return create(specs, conn=conn)

    monkeypatch.setattr(ledger, "create_transfers", counted)
    return sizes


def test_deferred_posts_voids_and_bookings_are_made_in_one_ledger_call_each_checked(engine, ledger, monkeypatch):
    cash, dda, mirror = _accounts(ledger)
    first, second, third = (holds.Hold(f"mint:{n}", "mint") for n in ("1", "2", "3"))
    for hold, amount in ((first, 100), (second, 200), (third, 300)):
        holds.reserve(ledger, hold, dda, mirror, amount, "USD")
    calls, seen = _calls(ledger, monkeypatch), []
    with write_transaction(engine) as conn:
        with holds.deferring() as collected:
            holds.post(ledger, first, conn=conn)
            holds.void(ledger, second, conn=conn)
            holds.book_later(
                ledger, [TransferSpec(cash, dda, 50, id="fee")], lambda results: seen.append(results), conn=conn
            )
        holds.post(ledger, third, conn=conn)  # outside the block: at once
        assert calls == [1] and len(collected) == 3
        assert ledger.transfer(first.id, conn=conn).pending_status == "pending"  # nothing made before the flush
        holds.flush(conn, collected)
    assert calls == [1, 3]
    assert [r.id for r in seen[0]] == ["fee"]
    assert [ledger.transfer(h.id).pending_status for h in (first, second, third)] == ["posted", "voided", "posted"]
    assert ledger.account(dda).balance_posted == 1_000 - 100 - 300 + 50

    # Flushed again (a replay after a crash): the same transfers, found made, refused by nothing.
    with write_transaction(engine) as conn, holds.deferring() as again:
        holds.post(ledger, first, conn=conn)
        holds.void(ledger, second, conn=conn)
        holds.flush(conn, again)
    assert ledger.account(dda).balance_posted == 650


def test_a_deferred_booking_refused_at_the_flush_raises_and_rolls_back_with_the_transaction(engine, ledger):
    cash, dda, mirror = _accounts(ledger)
    posted, voided = holds.Hold("mint:1", "mint"), holds.Hold("mint:2", "mint")
    holds.reserve(ledger, posted, dda, mirror, 100, "USD")
    holds.reserve(ledger, voided, dda, mirror, 200, "USD")
    holds.void(ledger, voided)
    with pytest.raises(holds.LedgerRefused) as refused, write_transaction(engine) as conn:
        with holds.deferring() as collected:
            holds.post(ledger, posted, conn=conn)
            holds.book_later(ledger, [TransferSpec(dda, cash, 5_000, id="too-much")], lambda _: None, conn=conn)
        holds.flush(conn, collected)
    assert refused.value.code == "insufficient_funds"
    assert ledger.transfer(posted.id).pending_status == "pending"  # the post rolled back with the refusal
    with pytest.raises(Exception, match="already voided"), write_transaction(engine) as conn:
        with holds.deferring() as collected:
            holds.post(ledger, voided, conn=conn)
        holds.flush(conn, collected)  # posting a voided hold is a broken invariant, deferred or not


def test_a_flush_larger_than_one_ledger_call_splits_between_bookings_never_inside_one(engine, ledger, monkeypatch):
    cash, dda, _ = _accounts(ledger)
    monkeypatch.setattr(holds, "BATCH_SIZE_MAX", 3)
    calls, seen = _calls(ledger, monkeypatch), []
    with write_transaction(engine) as conn:
        with holds.deferring() as collected:
            for n, size in enumerate((2, 2, 1, 3)):
                specs = [TransferSpec(cash, dda, 1, id=f"b{n}-{i}") for i in range(size)]
                holds.book_later(ledger, specs, lambda results: seen.append([r.id for r in results]), conn=conn)
        holds.flush(conn, collected)
    assert calls == [2, 3, 3]
    assert seen == [["b0-0", "b0-1"], ["b1-0", "b1-1"], ["b2-0"], ["b3-0", "b3-1", "b3-2"]]
