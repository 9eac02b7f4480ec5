"""Two-phase ledger holds for operations: reserve when the request is taken, post or void at the end.

Every flow that moves value through an operation (mint, redeem, move, and each later
one) reserves with a pending transfer named after the operation, and finishes it by
posting or voiding under ids derived from it, so that a replay after a crash is the
same transfer and books nothing twice. Every ledger answer is checked: anything but
success (or the same transfer already done) raises, never passes silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Connection

from andchain.errors import DomainError, InvariantBroken
from andchain.ledger import BATCH_SIZE_MAX, CreateResult, Ledger, PendingStatus, Result, TransferFlags, TransferSpec

_DONE = (Result.OK, Result.EXISTS)


class LedgerRefused(DomainError):
    """The ledger refused a transfer: a deterministic refusal (insufficient funds, an unknown account...)."""

    code = "ledger_refused"


@dataclass(frozen=True)
class Hold:
    """One two-phase reservation, named `id` (e.g. "mint:<operation id>")."""

    id: str
    code: str

    @property
    def post_id(self) -> str:
        return f"{self.id}:post"

    @property
    def void_id(self) -> str:
        return f"{self.id}:void"


def book(
    ledger: Ledger, specs: list[TransferSpec], *, conn: Connection | None = None, what: str = "booking"
) -> list[CreateResult]:
    """Create transfers and insist that each was booked (or had been, identically); the ledger's results
    (`ok` for each booked now, `exists` for each booked before)."""
    if not specs:
        return []
    results = ledger.create_transfers(specs, conn=conn)
    _check(results, what)
    return results


def _check(results: list[CreateResult], what: str) -> None:
    bad = [r for r in results if r.result not in _DONE]
    if bad:
        first = bad[0]
        raise LedgerRefused(
            f"{what} refused by the ledger: transfer {first.id} {first.result.value}", code=first.result.value
        )


@dataclass(frozen=True)
class Deferred:
    """Transfers put off to be created with others in one ledger call, and what checks their results."""

    ledger: Ledger
    specs: tuple[TransferSpec, ...]
    then: Callable[[list[CreateResult]], None]


_deferring: ContextVar[list[Deferred] | None] = ContextVar("andchain_deferred_bookings", default=None)


@contextmanager
def deferring() -> Iterator[list[Deferred]]:
    """Within this block, `book_later` (and so `post` and `void`) in a caller's transaction only collects its
    transfers into the list given; `flush` creates them later, together, in that same transaction. What
    a final step books does not depend on another final's booking, so a batch of them costs one ledger
    call instead of one each."""
    collected: list[Deferred] = []
    token = _deferring.set(collected)
    try:
        yield collected
    finally:
        _deferring.reset(token)


def flush(conn: Connection, deferred: Sequence[Deferred]) -> None:
    """Create the deferred transfers in as few ledger calls as fit (a booking's transfers stay together, in
    order), and hand each booking its own results."""
    start = 0
    while start < len(deferred):
        ledger, end, size = deferred[start].ledger, start, 0
        while end < len(deferred) and deferred[end].ledger is ledger:
            if size and size + len(deferred[end].specs) > BATCH_SIZE_MAX:
                break
            size += len(deferred[end].specs)
            end += 1
        part = deferred[start:end]
        results = ledger.create_transfers([spec for item in part for spec in item.specs], conn=conn)
        at = 0
        for item in part:
            item.then(results[at : at + len(item.specs)])
            at += len(item.specs)
        start = end


def book_later(
    ledger: Ledger,
    specs: Sequence[TransferSpec],
    then: Callable[[list[CreateResult]], None],
    *,
    conn: Connection | None,
    what: str = "booking",
) -> None:
    """`book`, its checked results handed to `then`: at once, or, within `deferring` and in the caller's
    transaction, when the deferred bookings are flushed."""

    def checked(results: list[CreateResult]) -> None:
        _check(results, what)
        then(results)

    collected = _deferring.get() if conn is not None else None
    if collected is not None:
        collected.append(Deferred(ledger, tuple(specs), checked))
        return
    checked(ledger.create_transfers(list(specs), conn=conn) if specs else [])


def reserve(
    ledger: Ledger,
    hold: Hold,
    debit_account_id: int,
    credit_account_id: int,
    amount_minor: int,
    asset: str,
    *,
    memo: str = "",
    conn: Connection | None = None,
) -> None:
    """Reserve `amount_minor` from debit to credit; a refusal (e.g. insufficient_funds) raises LedgerRefused
    (within `deferring`, when the bookings are flushed)."""
    book_later(
        ledger,
        [
            TransferSpec(
                debit_account_id,
                credit_account_id,
                amount_minor,
                id=hold.id,
                asset=asset,
                flags=TransferFlags.PENDING,
                code=hold.code,
                memo=memo,
            )
        ],
        _nothing,
        conn=conn,
        what=f"reservation {hold.id}",
    )


def _nothing(results: list[CreateResult]) -> None:
    return None


def post(ledger: Ledger, hold: Hold, *, conn: Connection | None = None) -> None:
    """Post the reservation in full; posting it again is a no-op. Posting a voided one is a broken invariant."""
    _finish(ledger, hold, TransferFlags.POST_PENDING, hold.post_id, conn)


def void(ledger: Ledger, hold: Hold, *, conn: Connection | None = None) -> None:
    """Release the reservation; voiding it again is a no-op. Voiding a posted one is a broken invariant."""
    _finish(ledger, hold, TransferFlags.VOID_PENDING, hold.void_id, conn)


def status(ledger: Ledger, hold: Hold) -> str | None:
    """pending / posted / voided / expired, or None when no such reservation exists."""
    found = ledger.lookup_transfers([hold.id])
    return found[0].pending_status if found else None


def _finish(ledger: Ledger, hold: Hold, flag: TransferFlags, transfer_id: str, conn: Connection | None) -> None:
    code = hold.code if flag == TransferFlags.POST_PENDING else f"{hold.code}_void"
    spec = TransferSpec(id=transfer_id, pending_id=hold.id, flags=flag, code=code)
    collected = _deferring.get() if conn is not None else None
    if collected is not None:
        collected.append(Deferred(ledger, (spec,), lambda results: _finished(hold, flag, results[0])))
        return
    (result,) = ledger.create_transfers([spec], conn=conn)
    _finished(hold, flag, result)


def _finished(hold: Hold, flag: TransferFlags, result: CreateResult) -> None:
    if result.result in _DONE:
        return
    wanted = PendingStatus.POSTED if flag == TransferFlags.POST_PENDING else PendingStatus.VOIDED
    already = {
        Result.PENDING_TRANSFER_ALREADY_POSTED: PendingStatus.POSTED,
        Result.PENDING_TRANSFER_ALREADY_VOIDED: PendingStatus.VOIDED,
    }.get(result.result)
    if already == wanted:
        return  # finished before under another id: nothing to do
    if already is not None:
        raise InvariantBroken(f"hold {hold.id} is already {already.value}; it cannot also be {wanted.value}")
    raise LedgerRefused(
        f"finishing hold {hold.id} refused by the ledger: {result.result.value}", code=result.result.value
    )
