"""The rules of a batch of transfers, pure: no database, no clock, no I/O.

The store (`andchain.ledger.core`) loads and locks the rows a batch touches into a
`Batch`, calls `apply_batch`, asserts `check_batch`, and writes what the batch
recorded. Everything in between happens here, on plain Python values, so each rule
can be tested without a database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from andchain.errors import InvariantBroken, NotFound
from andchain.ledger.model import (
    CODE_LENGTH_MAX,
    ID_LENGTH_MAX,
    MEMO_LENGTH_MAX,
    NAME_LENGTH_MAX,
    AccountFlags,
    CreateResult,
    PendingStatus,
    Result,
    TransferFlags,
    TransferSpec,
)
from andchain.money import AMOUNT_MAX_MINOR, BALANCE_MAX_MINOR

_LINKED = int(TransferFlags.LINKED)
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING)
_VOID = int(TransferFlags.VOID_PENDING)
_PHASE_FLAGS = _PENDING | _POST | _VOID
KNOWN_TRANSFER_FLAGS = _LINKED | _PHASE_FLAGS
DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
CMNED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
KNOWN_ACCOUNT_FLAGS = DMNEC | CMNED
# The one transfer code that may debit a frozen account: a seizure on a lawful order. Second phases
# (posting or voiding what was reserved before the freeze) are not new debits and pass too.
SEIZE_CODE = "seize"
_OK = Result.OK
_EXISTS = Result.EXISTS

# What a stored transfer is compared on when its id is replayed:
# debit, credit, amount, asset, flags, pending_id, timeout_s, code, memo, metadata (JSON).
StoredFields = tuple[int, int, int, str, int, str | None, int, str, str, str | None]

# A transfer the batch created, in the order of TRANSFER_COLUMNS, its amount as the batch's
# `encode` gives it (the store's encoding for its engine; the int itself by default).
NewTransfer = tuple[str, int, int, Any, str, int, str | None, int, str, str, str | None, int]


# Account ids are positive 64-bit integers (BIGINT on PostgreSQL, the rowid on SQLite).
ACCOUNT_ID_MAX = 2**63 - 1
# A name is a colon path of ASCII letters, digits and _.- (the character classes are
# spelt out: \w and str.isalnum() would let in Unicode letters and digits like "²").
_NAME = re.compile(r"[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)*")
_DIGITS = re.compile(r"[0-9]+")
_ID_PREFIX = "id:"


def valid_account_name(name: str) -> bool:
    """A colon path of ASCII letters, digits and _.-, that can never be read as an id.

    A name made only of digits is refused, and so is one starting with `id:`: a
    reference to an account is then either its name or its id, never both.
    """
    return (
        0 < len(name) <= NAME_LENGTH_MAX
        and _NAME.fullmatch(name) is not None
        and _DIGITS.fullmatch(name) is None
        and not name.lower().startswith(_ID_PREFIX)
    )


def account_ref(ref: int | str) -> int | str:
    """What an account reference names: an int is an id, `id:<digits>` is an id, any other string a name.

    An id that cannot exist (not within 1..2^63-1, or a malformed `id:`) is account_not_found.
    """
    if isinstance(ref, int) and not isinstance(ref, bool):
        if 0 < ref <= ACCOUNT_ID_MAX:
            return ref
        raise NotFound(f"no account with id {ref}: ids run from 1 to 2^63-1", code="account_not_found")
    if not isinstance(ref, str):
        raise NotFound(f"no account {ref!r}: give an id or a name", code="account_not_found")
    if not ref.startswith(_ID_PREFIX):
        return ref
    digits = ref[len(_ID_PREFIX) :]
    if _DIGITS.fullmatch(digits) is not None and 0 < int(digits) <= ACCOUNT_ID_MAX:
        return int(digits)
    raise NotFound(
        f"no account {ref!r}: an id is written id:<digits>, from id:1 to id:{ACCOUNT_ID_MAX}", code="account_not_found"
    )


def dump_metadata(metadata: dict[str, Any] | None) -> str | None:
    if not metadata:
        return None
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"))


class Balance:
    """An account's balances while a batch is being applied."""

    __slots__ = ("asset", "closed", "cp", "cpo", "dp", "dpo", "flags", "frozen", "id", "initial")

    def __init__(
        self, id: int, asset: str, flags: int, closed: bool, dp: int, dpo: int, cp: int, cpo: int, frozen: bool = False
    ) -> None:
        self.id = id
        self.asset = asset
        self.flags = flags
        self.closed = closed
        self.frozen = frozen
        self.dp = dp
        self.dpo = dpo
        self.cp = cp
        self.cpo = cpo
        self.initial = (dp, dpo, cp, cpo)

    def state(self) -> tuple[int, int, int, int]:
        return (self.dp, self.dpo, self.cp, self.cpo)

    def restore(self, state: tuple[int, int, int, int]) -> None:
        self.dp, self.dpo, self.cp, self.cpo = state

    def changed(self) -> bool:
        return self.state() != self.initial


class Pending:
    """A pending transfer's two-phase state while a batch is being applied."""

    __slots__ = ("amount", "asset", "credit", "debit", "expires_at_us", "id", "status")

    def __init__(
        self, id: str, debit: int, credit: int, amount: int, asset: str, status: str, expires_at_us: int | None
    ) -> None:
        self.id = id
        self.debit = debit
        self.credit = credit
        self.amount = amount
        self.asset = asset
        self.status = status
        self.expires_at_us = expires_at_us


@dataclass
class ChainUndo:
    """What a linked chain changed so far, to put back if one of its transfers fails."""

    balances: list[tuple[Balance, tuple[int, int, int, int]]] = field(default_factory=list)
    statuses: list[tuple[Pending, str]] = field(default_factory=list)
    pending_new: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """The in-memory work of one create_transfers call.

    The store fills the first five fields from the rows it locked: the balances of
    every account the batch may touch, the pending transfers it may resolve (None for
    a transfer that exists but is not pending), the stored fields of the ids it
    supplies, and which of those ids already failed. The rules fill the rest.
    """

    now_us: int
    balances: dict[int, Balance]
    pendings: dict[str, Pending | None]
    existing: dict[str, StoredFields]
    failed: dict[str, Result] = field(default_factory=dict)
    rows: list[NewTransfer] = field(default_factory=list)
    pending_new: dict[str, Pending] = field(default_factory=dict)
    pending_resolved: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    failed_new: dict[str, Result] = field(default_factory=dict)
    undo: ChainUndo | None = None
    # How a new row's amount is stored: the store encodes it as the row is made, not in a second pass.
    encode: Callable[[int], Any] = int


# Results that depend on the state of the book when the transfer was applied, so that
# the very same transfer could succeed later: TigerBeetle's "transient" results
# (CreateTransferResult.transient in its src/tigerbeetle.zig), under this ledger's
# names, plus overflows_balance. A transfer failing with one of these has its id
# recorded, and that id answers id_already_failed from then on. Every other refusal
# either depends only on the transfer's own fields, or on state that never comes back
# (a pending transfer posted, voided or expired; a transfer's fields; an account's
# asset): a retry is refused anyway, so its id is not recorded.
TRANSIENT_RESULTS = frozenset(
    {
        Result.DEBIT_ACCOUNT_NOT_FOUND,
        Result.CREDIT_ACCOUNT_NOT_FOUND,
        Result.DEBIT_ACCOUNT_CLOSED,
        Result.CREDIT_ACCOUNT_CLOSED,
        # A freeze is lifted when its order is.
        Result.DEBIT_ACCOUNT_FROZEN,
        Result.PENDING_TRANSFER_NOT_FOUND,
        # TigerBeetle's exceeds_credits: the debit account would owe more than it holds.
        Result.INSUFFICIENT_FUNDS,
        # TigerBeetle's exceeds_debits: the credit account would be credited beyond its debits.
        Result.EXCEEDS_CREDITS,
        # TigerBeetle counts its u128 overflows as permanent; here a balance's bound is
        # 10^40 - 1 against transfers of up to 2^128 - 1, so it can be reached, and a
        # pending balance falls again when its reserves are posted, voided or expire.
        Result.OVERFLOWS_BALANCE,
    }
)


def is_account_id(ref: object) -> TypeGuard[int]:
    """An account id is an int (bool is not one); an int first, as nearly every id is."""
    return ref.__class__ is int or (isinstance(ref, int) and not isinstance(ref, bool))


def apply_batch(batch: Batch, specs: Sequence[TransferSpec], ids: Sequence[str]) -> list[CreateResult]:
    """Apply every transfer of the batch in order; a linked chain succeeds or fails as one."""
    results: list[CreateResult] = []
    count = len(specs)
    index = 0
    while index < count:
        end = index
        while end < count - 1 and specs[end].flags & _LINKED:
            end += 1
        chain_open = bool(specs[end].flags & _LINKED)
        if end == index and not chain_open:
            code = apply_transfer(batch, specs[index], ids[index])
            _remember_failure(batch, ids[index], code)
            results.append(CreateResult(index, ids[index], code))
            index += 1
            continue
        batch.undo = ChainUndo()
        rows_mark = len(batch.rows)
        codes: list[Result] = []
        failed_at = -1
        for k in range(index, end + 1):
            code = apply_transfer(batch, specs[k], ids[k])
            codes.append(code)
            if code is not _OK and code is not _EXISTS:
                failed_at = k
                break
        if failed_at < 0 and chain_open:
            failed_at = end
            codes[-1] = Result.LINKED_EVENT_CHAIN_OPEN
        if failed_at >= 0:
            _rollback_chain(batch, rows_mark)
            batch.undo = None
            # As in TigerBeetle, the transfer that broke the chain has its id recorded
            # when its own result is transient (after the chain's rollback, so that the
            # record stays); the others answer linked_event_failed and may be retried.
            _remember_failure(batch, ids[failed_at], codes[failed_at - index])
            for k in range(index, end + 1):
                code = codes[k - index] if k == failed_at else Result.LINKED_EVENT_FAILED
                results.append(CreateResult(k, ids[k], code))
        else:
            batch.undo = None
            results.extend(CreateResult(k, ids[k], codes[k - index]) for k in range(index, end + 1))
        index = end + 1
    return results


def _remember_failure(batch: Batch, tid: str, code: Result) -> None:
    if code in TRANSIENT_RESULTS:
        batch.failed[tid] = code
        batch.failed_new[tid] = code


def _rollback_chain(batch: Batch, rows_mark: int) -> None:
    undo = batch.undo
    assert undo is not None
    del batch.rows[rows_mark:]
    # In reverse, so that what was saved first (the state before the chain) is restored last.
    for balance, state in reversed(undo.balances):
        balance.restore(state)
    for pending, status in reversed(undo.statuses):
        pending.status = status
        batch.pending_resolved.pop(pending.id, None)
    for tid in undo.pending_new:
        batch.pending_new.pop(tid, None)
        batch.pendings.pop(tid, None)
    for tid in undo.existing:
        batch.existing.pop(tid, None)


def _remember(batch: Batch, *balances: Balance) -> None:
    if batch.undo is not None:
        for balance in balances:
            batch.undo.balances.append((balance, balance.state()))


def apply_transfer(batch: Batch, spec: TransferSpec, tid: str) -> Result:
    """Apply one transfer to the batch's balances; its result, in TigerBeetle's order of precedence."""
    if not tid:
        return Result.ID_MUST_NOT_BE_EMPTY
    if len(tid) > ID_LENGTH_MAX:
        return Result.ID_TOO_LONG
    # One unpacking instead of a field lookup at each check: a batch applies thousands.
    debit_id, credit_id, amount, _, flags, pending_id, timeout_s, code, memo, _, asset = spec
    if flags and (flags & ~KNOWN_TRANSFER_FLAGS or bin(flags & _PHASE_FLAGS).count("1") > 1):
        return Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    prior = batch.existing.get(tid)
    if prior is not None:
        return _EXISTS if same_fields(spec, prior) else Result.EXISTS_WITH_DIFFERENT_FIELDS
    if tid in batch.failed:
        return Result.ID_ALREADY_FAILED
    if len(code) > CODE_LENGTH_MAX:
        return Result.CODE_TOO_LONG
    if len(memo) > MEMO_LENGTH_MAX:
        return Result.MEMO_TOO_LONG
    if flags & (_POST | _VOID):
        return _apply_second_phase(batch, spec, tid)
    if pending_id:
        return Result.PENDING_ID_MUST_BE_EMPTY
    if (timeout_s and not flags & _PENDING) or timeout_s < 0:
        return Result.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if debit_id is None:
        return Result.DEBIT_ACCOUNT_ID_MUST_NOT_BE_EMPTY
    if credit_id is None:
        return Result.CREDIT_ACCOUNT_ID_MUST_NOT_BE_EMPTY
    if debit_id == credit_id:
        return Result.ACCOUNTS_MUST_BE_DIFFERENT
    if amount is None or isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return Result.AMOUNT_MUST_BE_POSITIVE
    if amount > AMOUNT_MAX_MINOR:
        return Result.AMOUNT_EXCEEDS_MAXIMUM
    balances = batch.balances
    # An id that is not an int names no account, though True or 1.0 would find account 1 in the dict.
    dr = balances.get(debit_id) if debit_id.__class__ is int or is_account_id(debit_id) else None
    if dr is None:
        return Result.DEBIT_ACCOUNT_NOT_FOUND
    cr = balances.get(credit_id) if credit_id.__class__ is int or is_account_id(credit_id) else None
    if cr is None:
        return Result.CREDIT_ACCOUNT_NOT_FOUND
    if dr.closed:
        return Result.DEBIT_ACCOUNT_CLOSED
    if cr.closed:
        return Result.CREDIT_ACCOUNT_CLOSED
    if dr.frozen and code != SEIZE_CODE:
        return Result.DEBIT_ACCOUNT_FROZEN
    if dr.asset != cr.asset or (asset is not None and asset.upper() != dr.asset):
        return Result.ASSET_MISMATCH
    if dr.flags & DMNEC and dr.dp + dr.dpo + amount > dr.cpo:
        return Result.INSUFFICIENT_FUNDS
    if cr.flags & CMNED and cr.cp + cr.cpo + amount > cr.dpo:
        return Result.EXCEEDS_CREDITS
    if flags & _PENDING:
        if dr.dp + amount > BALANCE_MAX_MINOR or cr.cp + amount > BALANCE_MAX_MINOR:
            return Result.OVERFLOWS_BALANCE
        _remember(batch, dr, cr)
        dr.dp += amount
        cr.cp += amount
        expires = batch.now_us + timeout_s * 1_000_000 if timeout_s else None
        pending = Pending(tid, dr.id, cr.id, amount, dr.asset, PendingStatus.PENDING, expires)
        batch.pendings[tid] = pending
        batch.pending_new[tid] = pending
        if batch.undo is not None:
            batch.undo.pending_new.append(tid)
    else:
        if dr.dpo + amount > BALANCE_MAX_MINOR or cr.cpo + amount > BALANCE_MAX_MINOR:
            return Result.OVERFLOWS_BALANCE
        _remember(batch, dr, cr)
        dr.dpo += amount
        cr.cpo += amount
    _record(batch, spec, tid, dr.id, cr.id, amount, dr.asset)
    return _OK


def _apply_second_phase(batch: Batch, spec: TransferSpec, tid: str) -> Result:
    pid = spec.pending_id
    if not pid:
        return Result.PENDING_ID_MUST_NOT_BE_EMPTY
    if spec.timeout_s:
        return Result.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if pid not in batch.pendings:
        return Result.PENDING_TRANSFER_NOT_FOUND
    pending = batch.pendings[pid]
    if pending is None:
        return Result.PENDING_TRANSFER_NOT_PENDING
    if (
        (spec.debit_account_id is not None and spec.debit_account_id != pending.debit)
        or (spec.credit_account_id is not None and spec.credit_account_id != pending.credit)
        or (spec.asset is not None and spec.asset.upper() != pending.asset)
    ):
        return Result.PENDING_TRANSFER_HAS_DIFFERENT_FIELDS
    status = pending.status
    if status == PendingStatus.POSTED:
        return Result.PENDING_TRANSFER_ALREADY_POSTED
    if status == PendingStatus.VOIDED:
        return Result.PENDING_TRANSFER_ALREADY_VOIDED
    if status == PendingStatus.EXPIRED:
        return Result.PENDING_TRANSFER_EXPIRED
    post = bool(spec.flags & _POST)
    amount = spec.amount
    if post:
        if amount is None:
            amount = pending.amount
        elif isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return Result.AMOUNT_MUST_BE_POSITIVE
        elif amount > pending.amount:
            return Result.EXCEEDS_PENDING_TRANSFER_AMOUNT
    else:
        if amount is not None and amount != pending.amount:
            return Result.PENDING_TRANSFER_HAS_DIFFERENT_FIELDS
        amount = pending.amount
    dr = batch.balances[pending.debit]
    cr = batch.balances[pending.credit]
    if post and (dr.dpo + amount > BALANCE_MAX_MINOR or cr.cpo + amount > BALANCE_MAX_MINOR):
        return Result.OVERFLOWS_BALANCE
    _remember(batch, dr, cr)
    dr.dp -= pending.amount
    cr.cp -= pending.amount
    if post:
        dr.dpo += amount
        cr.cpo += amount
    if batch.undo is not None:
        batch.undo.statuses.append((pending, pending.status))
    pending.status = PendingStatus.POSTED if post else PendingStatus.VOIDED
    batch.pending_resolved[pid] = (str(pending.status), tid)
    _record(batch, spec, tid, dr.id, cr.id, amount, pending.asset)
    return _OK


def expire(batch: Batch, pending: Pending) -> None:
    """Release a pending transfer past its timeout."""
    dr = batch.balances[pending.debit]
    cr = batch.balances[pending.credit]
    dr.dp -= pending.amount
    cr.cp -= pending.amount
    pending.status = PendingStatus.EXPIRED
    batch.pending_resolved[pending.id] = (PendingStatus.EXPIRED.value, None)


def _record(batch: Batch, spec: TransferSpec, tid: str, debit: int, credit: int, amount: int, asset: str) -> None:
    _, _, _, _, flags, pending_id, timeout_s, code, memo, metadata, _ = spec
    meta = dump_metadata(metadata) if metadata else None
    batch.rows.append(
        (tid, debit, credit, batch.encode(amount), asset, flags, pending_id, timeout_s, code, memo, meta, batch.now_us)
    )
    batch.existing[tid] = (debit, credit, amount, asset, flags, pending_id, timeout_s, code, memo, meta)
    if batch.undo is not None:
        batch.undo.existing.append(tid)


def check_batch(batch: Batch) -> None:
    """Assert the batch is balanced per asset and every flagged account within its bound."""
    deltas: dict[str, list[int]] = {}
    for b in batch.balances.values():
        d = deltas.setdefault(b.asset, [0, 0, 0, 0])
        d[0] += b.dp - b.initial[0]
        d[1] += b.dpo - b.initial[1]
        d[2] += b.cp - b.initial[2]
        d[3] += b.cpo - b.initial[3]
        if b.flags & DMNEC and b.dp + b.dpo > b.cpo and (b.dp, b.dpo) != b.initial[:2]:
            raise InvariantBroken(f"account {b.id} would have debits {b.dp + b.dpo} above credits {b.cpo}")
        if b.flags & CMNED and b.cp + b.cpo > b.dpo and (b.cp, b.cpo) != b.initial[2:]:
            raise InvariantBroken(f"account {b.id} would have credits {b.cp + b.cpo} above debits {b.dpo}")
        if min(b.dp, b.dpo, b.cp, b.cpo) < 0:
            raise InvariantBroken(f"account {b.id} would have a negative balance field: {b.state()}")
    for asset, (dp, dpo, cp, cpo) in deltas.items():
        if dp != cp or dpo != cpo:
            raise InvariantBroken(
                f"batch unbalanced in {asset}: pending debits {dp} != credits {cp} or "
                f"posted debits {dpo} != credits {cpo}"
            )
    overlap = batch.failed_new.keys() & {row[0] for row in batch.rows}
    if overlap:
        raise InvariantBroken(f"ids both created and recorded as failed in one batch: {sorted(overlap)[:3]}")


def same_fields(spec: TransferSpec, prior: StoredFields) -> bool:
    debit, credit, amount, asset, flags, pending_id, timeout_s, code, memo, meta = prior
    return (
        (spec.debit_account_id is None or spec.debit_account_id == debit)
        and (spec.credit_account_id is None or spec.credit_account_id == credit)
        and (spec.amount is None or spec.amount == amount)
        and (spec.asset is None or spec.asset.upper() == asset)
        and spec.flags == flags
        and spec.pending_id == pending_id
        and spec.timeout_s == timeout_s
        and spec.code == code
        and spec.memo == memo
        and dump_metadata(spec.metadata) == meta
    )
