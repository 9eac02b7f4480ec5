"""Two-phase ledger holds for operations: reserve when the request is taken, post or void at the end.

Every flow that moves value through an operation (mint, redeem, move, and each later
one) reserves with a pending transfer named after the operation, and finishes it by
posting or voiding under ids derived from it, so that a replay after a crash is the
same transfer and books nothing twice. Every ledger answer is checked: anything but
success (or the same transfer already done) raises, never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from andchain.errors import DomainError, InvariantBroken
from andchain.ledger import CreateResult, Ledger, PendingStatus, Result, TransferFlags, TransferSpec

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
    bad = [r for r in results if r.result not in _DONE]
    if bad:
        first = bad[0]
        raise LedgerRefused(
            f"{what} refused by the ledger: transfer {first.id} {first.result.value}", code=first.result.value
        )
    return results


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
    """Reserve `amount_minor` from debit to credit; a refusal (e.g. insufficient_funds) raises LedgerRefused."""
    book(
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
        conn=conn,
        what=f"reservation {hold.id}",
    )


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
    (result,) = ledger.create_transfers([spec], conn=conn)
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
