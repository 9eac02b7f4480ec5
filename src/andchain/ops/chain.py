"""Operations that send transactions: sign, persist, broadcast, confirm — crash-safe.

For each step of an operation the handler asks the domain action for the call to
make, reserves a nonce and signs it, and **persists the signed transaction in the
operation (and in the journal) before broadcasting it**. So after a crash at any
point the operation knows its transaction: it is re-broadcast (the same bytes, the
same hash) or looked up by hash, never signed twice for the same step. Once the
receipt has the network's confirmations the action books the step, in the database
transaction that records it; when no step is left the action finishes (posts the
ledger) and the operation succeeds, again in one transaction.

What goes wrong is sorted in two:
- transient (a node that does not answer, an RPC error, a timeout, a refused nonce
  or fee): the operation waits with backoff and tries again; once the retry budget
  is spent it compensates if its action can (a move whose destination never answers
  mints back on the source) or stops in needs_attention with its holds kept;
- a refusal (a revert with a reason, a ledger refusal): before value has left the
  operation fails and its holds are released in one transaction; after, the action
  compensates, or the operation stops in needs_attention. A compensation is a step
  like any other, retried the same way.

Every write is conditional on the operation's version (see ops/core.py): a copy that
went stale is dropped, and a transaction it signed is never broadcast.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError

from andchain.chains import schema as chain_schema
from andchain.chains.client import Call, ChainClient, Receipt, SentTx, TxReverted
from andchain.chains.rpc import RpcError
from andchain.db import lock_conflict, write_transaction
from andchain.errors import DomainError, is_transient
from andchain.events import store as events
from andchain.ops import failpoints, holds, journal
from andchain.ops.core import Operation, Operations, OpStatus
from andchain.ops.journal import TxRecord

log = logging.getLogger(__name__)

POLL_US = 50_000
SIGN_SENDERS_MAX = 64  # senders of one network signed together, their nonces reserved in one transaction
NONCE_CHECK_EVERY_S = 1.0
NONCE_SENDERS_RECENT_S = 3600.0
NONCE_FILL_MAX = 256
WATCH_WINDOW_BLOCKS = 512
WATCH_ROWS_MAX = 5000


@dataclass(frozen=True)
class PlannedCall:
    sender: str
    call: Call
    step: str = ""  # the step's name, kept with its transaction and in the operation's history
    network: str | None = None  # where the step runs when not the operation's own network (a move)


@dataclass
class _Final:
    """A step found final, ready to be written with the others of its batch."""

    op: Operation
    state: dict[str, Any]
    detail: str
    book: Callable[[Connection], dict[str, Any]]  # what the action books for the step (ChainAction.step_done)
    finished: bool
    network: str
    receipt: Receipt
    at_us: int

    @property
    def mark(self) -> journal.FinalMark:
        tx_hash = self.op.state["tx"]["hash"]
        return journal.FinalMark(self.network, tx_hash, self.receipt.block_number, self.receipt.block_hash)


class OperationFailed(DomainError):
    """Raised by ChainAction.finish when every step is final but the operation did not do what was asked
    (e.g. a move whose destination failed and whose source was restored): it ends failed, with a result."""

    def __init__(self, code: str, message: str, result: dict[str, Any]) -> None:
        super().__init__(message, code=code)
        self.result = result


class NotYet(DomainError):
    """The next step cannot be taken before a known time (e.g. a refund after a deadline): wait, uncounted."""

    code = "not_yet"
    transient = True

    def __init__(self, message: str, *, retry_in_s: float) -> None:
        super().__init__(message)
        self.retry_in_s = max(0.0, retry_in_s)


class ChainAction(Protocol):
    """An operation kind's steps on chain. Optionally, `before_finals(conn, [(network, receipt)])` reads
    ahead, in the transaction that writes a batch's final steps together, what their `step_done` calls
    will look up."""

    kinds: tuple[str, ...]

    def next_call(self, op: Operation) -> PlannedCall | None:
        """The next transaction of this operation (the steps in state["done"] are final), or None when done.
        Raises a DomainError that is not transient to refuse the operation."""

    def step_done(self, op: Operation, receipt: Receipt, conn: Connection) -> dict[str, Any]:
        """A step's transaction is final: book what it did through `conn`; returns state to keep."""

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        """Every step is final: book the result through `conn`; returns the operation's result."""

    def release(self, op: Operation, conn: Connection) -> None:
        """The operation ends without having moved value: release what it reserved, through `conn`."""

    def irreversible(self, op: Operation) -> bool:
        """Whether value has left (a burn is final): the operation may then never end failed silently."""

    def reverted(self, op: Operation, step: str, reason: str) -> dict[str, Any] | None:
        """A step was refused for good: state that starts a compensating path, or None."""

    def exhausted(self, op: Operation) -> dict[str, Any] | None:
        """Transient failures outlasted the retry budget: state that starts a compensating path, or None."""


def _tx_state(tx: SentTx, step: str = "", network: str | None = None) -> dict[str, Any]:
    return {
        "step": step,
        "network": network,
        "hash": tx.hash,
        "sender": tx.sender,
        "nonce": tx.nonce,
        "raw": tx.raw.hex(),
        "gas": tx.gas,
        "fee": list(tx.fee),
        "to": tx.call.to,
        "data": tx.call.data.hex(),
        "value": tx.call.value,
    }


def _tx_of(state: dict[str, Any]) -> SentTx:
    call = Call(state["to"], bytes.fromhex(state["data"]), state["value"], state["gas"])
    return SentTx(
        state["hash"],
        state["sender"],
        state["nonce"],
        call,
        state["gas"],
        tuple(state["fee"]),
        bytes.fromhex(state["raw"]),
    )


def _nonce_consumed(error: RpcError) -> bool:
    message = error.rpc_message.lower()
    return "nonce too low" in message or "nonce is too low" in message or "already used" in message


class _Stale(Exception):
    """The operation changed under us: roll the whole write back."""


@dataclass
class _Signed:
    """One sender's calls of a round, signed; then recorded (those whose operation was still current) and
    sent (what the node refused, by hash)."""

    network: str
    chain: ChainClient
    items: list[tuple[Operation, PlannedCall]]
    signed: list[SentTx]
    recorded: list[tuple[Operation, SentTx]] = field(default_factory=list)
    refused: dict[str, RpcError] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.items[0][0].kind

    @property
    def step(self) -> str:
        return self.items[0][1].step


class ChainOpsHandler:
    def __init__(self, ops: Operations, chains: Callable[[str], ChainClient], actions: list[Any]) -> None:
        self.ops = ops
        self.chains = chains
        self.actions: dict[str, Any] = {kind: action for action in actions for kind in action.kinds}
        self.kinds = tuple(self.actions)
        self._gaps: dict[tuple[int, str], tuple[int, float]] = {}
        self._nonce_checked: dict[str, float] = {}
        self._watch_anchor: dict[str, tuple[int, str]] = {}

    # --------------------------------------------------------------- writing

    def _write(self, op: Operation, book: Callable[[Connection], Any] | None = None, **changes: Any) -> Any:
        """Book (through `book`) and change the operation in one transaction; nothing if it went stale."""
        try:
            with write_transaction(self.ops.engine) as conn:
                booked = book(conn) if book is not None else None
                updated = self.ops.update_if_current(op, conn=conn, **changes)
                if updated is None:
                    raise _Stale
        except _Stale:
            return None
        return booked if booked is not None else updated

    def _postpone(self, op: Operation, exc: BaseException, *, detail: str = "") -> None:
        """A transient failure: wait with backoff; once the budget is spent, compensate or stop for an operator."""
        code = getattr(exc, "code", type(exc).__name__)
        message = getattr(exc, "message", str(exc))
        if isinstance(exc, NotYet):
            self.ops.update_if_current(op, retry_in_us=int(exc.retry_in_s * 1_000_000), error=(code, message))
            return
        if op.attempts + 1 >= self.ops.settings.attempts_max:
            self._exhausted(op, code, f"{detail or 'waiting'}: {message}")
            return
        self.ops.update_if_current(
            op,
            retry_in_us=self.ops.backoff_us(op.attempts + 1),
            count_attempt=True,
            error=(code, message),
            detail=f"{detail or 'will retry'}: {message}" if detail else "",
        )

    def _exhausted(self, op: Operation, code: str, reason: str) -> None:
        action = self.actions[op.kind]
        changes = action.exhausted(op)
        if changes is not None:
            self.ops.update_if_current(
                op,
                state={**op.state, **changes, "tx": None},
                retry_in_us=0,
                reset_attempts=True,
                error=(code, reason),
                detail=f"retry budget spent ({reason}); compensating",
            )
            return
        self.ops.attention(op, code, f"retry budget spent: {reason}")

    def _refuse(self, op: Operation, step: str, code: str, reason: str, *, reverted_hash: str | None = None) -> None:
        """A step (or the operation's plan) was refused for good."""
        action = self.actions[op.kind]
        changes = action.reverted(op, step, reason)
        detail = f"{step or 'step'} refused: {reason}" + (f" ({reverted_hash})" if reverted_hash else "")
        state = {**op.state, "tx": None, **({"reverted": reverted_hash} if reverted_hash else {})}
        if changes is not None:
            self.ops.update_if_current(
                op, state={**state, **changes}, retry_in_us=0, reset_attempts=True, detail=f"{detail}; compensating"
            )
        elif action.irreversible(op):
            self.ops.attention(op, code, f"{detail} after value had left; holds kept", state=state)
        else:
            self._write(
                op,
                lambda conn: action.release(op, conn),
                status=OpStatus.FAILED,
                error=(code, reason),
                state=state,
                detail=detail,
            )

    def _complete(
        self,
        op: Operation,
        state: dict[str, Any],
        detail: str,
        step_book: Callable[[Connection], dict[str, Any]] | None = None,
    ) -> None:
        """Every step is final: book the last step (if given) and the result, and record the outcome, in one write."""
        try:
            with write_transaction(self.ops.engine) as conn:
                self._complete_in(conn, op, state, detail, step_book)
        except _Stale:
            return

    def _complete_in(
        self,
        conn: Connection,
        op: Operation,
        state: dict[str, Any],
        detail: str,
        step_book: Callable[[Connection], dict[str, Any]] | None = None,
    ) -> None:
        """`_complete` in the caller's transaction; raises _Stale when the operation changed meanwhile."""
        if step_book is not None:
            state.update(step_book(conn))
        if self.ops.update_if_current(op, conn=conn, **self._outcome(conn, op, state, detail)) is None:
            raise _Stale

    def _outcome(self, conn: Connection, op: Operation, state: dict[str, Any], detail: str) -> dict[str, Any]:
        """The action finishes the operation (books its result) in `conn`: the change that records the outcome."""
        try:
            result = self.actions[op.kind].finish(replace(op, state=state), conn)
            return dict(state=state, status=OpStatus.SUCCEEDED, result=result, detail=f"{detail}; succeeded")
        except OperationFailed as failed:
            return dict(
                state=state,
                status=OpStatus.FAILED,
                result=failed.result,
                error=(failed.code, failed.message),
                detail=f"{detail}; failed: {failed.message}",
            )

    # ---------------------------------------------------------------- advance

    def advance(self, batch: list[Operation]) -> None:
        by_network: dict[str, list[Operation]] = {}
        fresh = []
        for op in batch:
            if op.state.get("tx"):
                by_network.setdefault(op.state["tx"].get("network") or op.network or "", []).append(op)
            else:
                fresh.append(op)
        for network, ops in by_network.items():
            try:
                self._follow(self.chains(network), ops)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                for op in ops:
                    self._postpone(self.ops.get(op.id), exc, detail=f"{network} unavailable")
        if fresh:
            self._send(fresh)

    def _follow(self, chain: ChainClient, ops: list[Operation]) -> None:
        hashes = [op.state["tx"]["hash"] for op in ops]
        receipts = chain.receipts(hashes)
        head = chain.block_number() if receipts else 0
        unknown = [op for op in ops if op.state["tx"]["hash"] not in receipts]
        known = chain.known([op.state["tx"]["hash"] for op in unknown]) if unknown else set()
        # Updates that only move an operation along are written together in one transaction.
        simple: list[tuple[Operation, dict[str, Any]]] = []
        finals: list[_Final] = []
        for op in ops:
            tx = op.state["tx"]
            receipt = receipts.get(tx["hash"])
            if receipt is None:
                if tx["hash"] not in known:
                    self._resend(chain, op)
                elif op.status == OpStatus.RECEIVED:
                    simple.append(
                        (op, {"status": OpStatus.SUBMITTED, "retry_in_us": POLL_US, "detail": f"sent {tx['hash']}"})
                    )
                else:
                    simple.append((op, {"retry_in_us": POLL_US}))
                continue
            step = tx.get("step", "")
            # A revert is no more final than the block it is in: a reorg may mine the same bytes
            # again, and succeed. It waits for its confirmations like any receipt.
            if head - receipt.block_number + 1 < chain.network.confirmations:
                if op.status != OpStatus.CONFIRMING:
                    simple.append(
                        (
                            op,
                            {
                                "status": OpStatus.CONFIRMING,
                                "retry_in_us": POLL_US,
                                "detail": f"mined in block {receipt.block_number}, waiting for "
                                f"{chain.network.confirmations} confirmations",
                            },
                        )
                    )
                else:
                    simple.append((op, {"retry_in_us": POLL_US}))
                continue
            if not receipt.status:
                reason = chain.why_reverted(_tx_of(tx), receipt)
                with write_transaction(self.ops.engine) as conn:
                    journal.mark(conn, chain.name, tx["hash"], TxRecord.REVERTED, self.ops.clock())
                self._refuse(op, step, "tx_reverted", reason, reverted_hash=tx["hash"])
                continue
            failpoints.hit(f"{op.kind}:after_receipt")
            failpoints.hit(f"{op.kind}:{step}:after_receipt")
            finals.append(self._final_of(op, receipt, chain.name))
        if simple:
            with write_transaction(self.ops.engine) as conn:
                self.ops.update_many_if_current(conn, simple)
        if finals:
            self._commit_finals(finals)

    def _commit_finals(self, finals: list[_Final]) -> None:
        """The final steps of a batch, written together in one transaction (`_write_finals_together`); when
        that fails (an operation changed meanwhile, a ledger refusal, a lock conflict), it is rolled back
        whole and the finals are written one by one, which tells which one it was: on SQLite in one
        transaction, each in a savepoint that a stale operation rolls back alone; on PostgreSQL each in a
        transaction of its own.

        Together, every ledger row of the batch is locked in one ledger call, in one order (accounts by id).
        A batch written together with one ledger call per final locked its accounts one final at a time, and
        on PostgreSQL a request reserving its client's rows, the listener and another worker met it in a
        deadlock (tests/tokens/test_requests_while_workers_run.py found it); the listener books a block
        range's events in one ledger call for the same reason."""
        if len(finals) > 1:
            try:
                with write_transaction(self.ops.engine) as conn:
                    self._write_finals_together(conn, finals)
                return
            except (_Stale, DomainError, DBAPIError) as exc:
                # An operation changed meanwhile, a refusal, a lock conflict: one by one tells which. A broken
                # invariant (an AssertionError, not caught here), a bug or a database away is raised as it
                # would be one by one.
                if isinstance(exc, DBAPIError) and not lock_conflict(exc):
                    raise
                level = logging.INFO if isinstance(exc, _Stale) else logging.WARNING
                log.log(level, "finals written one by one after %s: %s", type(exc).__name__, str(exc)[:300])
        if self.ops.engine.dialect.name == "sqlite":
            # One writer at a time on SQLite (a write transaction takes the lock when it begins): no other
            # transaction can wait on this one's rows while holding rows it needs.
            with write_transaction(self.ops.engine) as conn:
                for final in finals:
                    try:
                        with conn.begin_nested():
                            self._write_final(conn, final)
                    except _Stale:
                        continue
            return
        for final in finals:
            try:
                with write_transaction(self.ops.engine) as conn:
                    self._write_final(conn, final)
            except _Stale:
                continue  # its operation changed meanwhile: nothing of this final was written

    def _write_finals_together(self, conn: Connection, finals: list[_Final]) -> None:
        """Every final of a batch at a constant number of statements, in the order one final is written: the
        journal rows marked final in one, the actions' bookings collected and created in one ledger call,
        the operations changed in one statement per set of columns (`update_many_if_current`). Raises
        (the caller rolls back) when any operation changed meanwhile or any booking is refused."""
        with events.collecting(conn):  # the events of every final's bookings in one statement
            changes: list[tuple[Operation, dict[str, Any]]] = []
            bookings: list[holds.Deferred] = []
            by_action: dict[int, tuple[Any, list[tuple[str, Receipt]]]] = {}
            for final in finals:
                action = self.actions[final.op.kind]
                by_action.setdefault(id(action), (action, []))[1].append((final.network, final.receipt))
            for action, receipts in by_action.values():
                before = getattr(action, "before_finals", None)  # optional: an action may read ahead for its batch
                if before is not None:
                    before(conn, receipts)
            for final in finals:
                state = dict(final.state)  # the caller may write the same finals again after a rollback
                with holds.deferring() as collected:
                    state.update(final.book(conn))
                    if final.finished:
                        change = self._outcome(conn, final.op, state, final.detail)
                    else:
                        change = dict(state=state, retry_in_us=0, reset_attempts=True, detail=final.detail)
                changes.append((final.op, change))
                bookings.extend(collected)
            journal.mark_final_many(conn, [final.mark for final in finals], self.ops.clock())
            holds.flush(conn, bookings)
            if any(updated is None for updated in self.ops.update_many_if_current(conn, changes)):
                raise _Stale

    def _write_final(self, conn: Connection, final: _Final) -> None:
        """One final step; raises _Stale (the caller rolls back) when its operation changed meanwhile."""
        journal.mark_final_many(conn, [final.mark], final.at_us)
        if final.finished:
            self._complete_in(conn, final.op, final.state, final.detail, final.book)
            return
        final.state.update(final.book(conn))
        updated = self.ops.update_if_current(
            final.op, conn=conn, state=final.state, retry_in_us=0, reset_attempts=True, detail=final.detail
        )
        if updated is None:
            raise _Stale

    def _final_of(self, op: Operation, receipt: Receipt, network: str) -> _Final:
        """What a final step writes (planned before any write: planning may read the chain)."""
        action = self.actions[op.kind]
        tx = op.state["tx"]
        step = tx.get("step", "")
        done = [*op.state.get("done", []), {"step": step, "hash": tx["hash"], "block": receipt.block_number}]
        state = {**op.state, "tx": None, "steps_done": int(op.state.get("steps_done", 0)) + 1, "done": done}
        detail = f"{step or 'step'} final in block {receipt.block_number} ({tx['hash']})"
        try:
            finished = action.next_call(replace(op, state=state)) is None
        except Exception:
            finished = False  # the next step is planned (and refused, or retried) on the next round

        def book(conn: Connection) -> dict[str, Any]:
            kept: dict[str, Any] = action.step_done(op, receipt, conn)
            return kept

        return _Final(op, state, detail, book, finished, network, receipt, self.ops.clock())

    def _resend(self, chain: ChainClient, op: Operation) -> None:
        tx = _tx_of(op.state["tx"])
        refused = chain.rebroadcast([tx])
        if refused and _nonce_consumed(refused[0][1]) and chain.known([tx.hash]):
            # Its own bytes took the nonce (the transport sent them twice, an answer lost): no refusal.
            refused = []
        if not refused:
            self.ops.update_if_current(
                op,
                status=OpStatus.SUBMITTED if op.status == OpStatus.RECEIVED else op.status,
                retry_in_us=POLL_US,
                detail=f"sent {tx.hash}",
            )
            return
        error = refused[0][1]
        if not _nonce_consumed(error):
            # Underpriced, no gas money, a node in trouble: the same bytes may go through later.
            self._postpone(op, error, detail=f"{tx.hash} not accepted by the node")
            return
        # The nonce went to another transaction (a gap filler after a crash): this one will
        # never be mined. Sign the step again with a new nonce.
        log.warning("transaction replaced op=%s hash=%s error=%s", op.id, tx.hash, error.rpc_message)
        now = self.ops.clock()
        self._write(
            op,
            lambda conn: journal.mark(conn, chain.name, tx.hash, TxRecord.REPLACED, now),
            state={**op.state, "tx": None, "replaced": [*op.state.get("replaced", []), tx.hash]},
            retry_in_us=0,
            detail=f"{tx.hash} cannot be sent ({error.rpc_message}); signing again",
        )

    def _send(self, ops: list[Operation]) -> None:
        planned: dict[tuple[str, str], list[tuple[Operation, PlannedCall]]] = {}
        for op in ops:
            action = self.actions[op.kind]
            try:
                call = action.next_call(op)
            except Exception as exc:
                if is_transient(exc):
                    self._postpone(op, exc, detail="planning the next step")
                elif isinstance(exc, DomainError):
                    self._refuse(op, "plan", exc.code, exc.message)
                else:
                    raise
                continue
            if call is None:
                self._complete(op, op.state, "no step left")
                continue
            planned.setdefault((call.network or op.network or "", call.sender), []).append((op, call))
        # Every sender's calls are signed, then all of them recorded in one transaction before any leaves,
        # then sent in JSON-RPC batches, then the sent ones marked in one transaction: a batch of payments
        # from many payers costs a constant number of write transactions, not some per payer. The senders of
        # a network are signed together (`SIGN_SENDERS_MAX` at a time: their nonces reserved in one
        # transaction); a sender that cannot be signed for with them (a call that would revert, a key
        # missing, a node's error on its estimate) is signed again alone, and fails or waits by itself.
        # Signing stops to record and send what it has once a quarter of the nonce gap grace has passed since
        # its first nonce was reserved: another worker's gap repair never finds a reserved nonce unrecorded
        # for long.
        window_s = self.ops.settings.nonce_gap_grace_s / 4
        by_network: dict[str, list[tuple[str, list[tuple[Operation, PlannedCall]]]]] = {}
        for (network, sender), items in planned.items():
            by_network.setdefault(network, []).append((sender, items))
        units = deque(
            (network, senders[start : start + SIGN_SENDERS_MAX], False)
            for network, senders in by_network.items()
            for start in range(0, len(senders), SIGN_SENDERS_MAX)
        )
        groups: list[_Signed] = []
        first_signed = 0.0
        failed: BaseException | None = None
        while units:
            network, senders, alone = units.popleft()
            if groups and time.monotonic() - first_signed > window_s:
                self._record_and_send(groups)
                groups = []
            signed: list[_Signed] = []
            try:
                if alone:
                    group = self._sign(network, *senders[0])
                    signed = [group] if group is not None else []
                else:
                    chain = self.chains(network)
                    results = chain.sign_calls_many([(sender, [c.call for _, c in items]) for sender, items in senders])
                    for (sender, items), result in zip(senders, results, strict=True):
                        if isinstance(result, Exception):  # signed alone, as before: it fails by itself
                            units.append((network, [(sender, items)], True))
                        else:
                            signed.append(_Signed(network, chain, items, result))
            except Exception as exc:
                if not is_transient(exc):
                    failed = exc  # what is signed already is recorded and sent first
                    break
                self._postpone_all(network, [op for _, items in senders for op, _ in items], exc)
                continue
            if signed and not groups:
                first_signed = time.monotonic()
            groups += signed
        if groups:
            self._record_and_send(groups)
        if failed is not None:
            raise failed

    def _record_and_send(self, groups: list[_Signed]) -> None:
        try:
            self._record_signed(groups)
        except Exception as exc:
            for group in groups:
                self._postpone_all(group.network, [op for op, _ in group.items], exc)
            return
        sent: list[_Signed] = []
        by_network: dict[str, list[_Signed]] = {}
        for group in groups:
            if group.recorded:
                by_network.setdefault(group.network, []).append(group)
        for network, recorded in by_network.items():
            try:
                self._broadcast(recorded)
            except Exception as exc:
                self._postpone_all(network, [op for group in recorded for op, _ in group.recorded], exc)
                continue
            sent += recorded
        if not sent:
            return
        try:
            with write_transaction(self.ops.engine) as conn:
                self.ops.update_many_if_current(
                    conn,
                    [
                        (current, {"status": OpStatus.SUBMITTED, "retry_in_us": POLL_US, "detail": f"sent {tx.hash}"})
                        for group in sent
                        for current, tx in group.recorded
                        if tx.hash not in group.refused
                    ],
                )
        except Exception as exc:  # each knows its transaction: the next round finds it sent
            for group in sent:
                self._postpone_all(group.network, [op for op, _ in group.recorded], exc)
            return
        for group in sent:
            for current, tx in group.recorded:
                if tx.hash in group.refused:
                    self._refused(group.chain, current, tx, group.refused[tx.hash])
            failpoints.hit(f"{group.kind}:after_submit")
            failpoints.hit(f"{group.kind}:{group.step}:after_submit")

    def _postpone_all(self, network: str, ops: list[Operation], exc: BaseException) -> None:
        """Operations that met a transient failure (a node, a busy database): each waits, as it stands now."""
        if not is_transient(exc):
            raise exc
        for op in ops:
            current = self.ops.get(op.id)
            if not current.terminal and current.status != OpStatus.NEEDS_ATTENTION:
                self._postpone(current, exc, detail=f"{network} unavailable")

    def _sign(self, network: str, sender: str, items: list[tuple[Operation, PlannedCall]]) -> _Signed | None:
        """One sender's calls, signed in order (nothing recorded yet); None when every one would revert."""
        chain = self.chains(network)
        try:
            signed = chain.sign_calls(sender, [c.call for _, c in items])
        except TxReverted:
            # The node's gas estimate says one of them would revert: find which, one by one.
            items, signed = self._sign_one_by_one(chain, sender, items)
            if not items:
                return None
        return _Signed(network, chain, items, signed)

    def _record_signed(self, groups: list[_Signed]) -> None:
        """Every signed transaction recorded with its operation, in one transaction, before any leaves the
        process; a copy that went stale is not recorded, and its transaction is never sent."""
        now = self.ops.clock()
        with write_transaction(self.ops.engine) as conn:
            changes: list[tuple[Operation, dict[str, Any]]] = [
                (
                    op,
                    {
                        "state": {**op.state, "tx": _tx_state(tx, call.step, group.network)},
                        "detail": f"{call.step or 'step'}: signed {tx.hash} nonce {tx.nonce}",
                    },
                )
                for group in groups
                for (op, call), tx in zip(group.items, group.signed, strict=True)
            ]
            updates = self.ops.update_many_if_current(conn, changes)
            at = 0
            for group in groups:
                mine, at = updates[at : at + len(group.items)], at + len(group.items)
                kept = [
                    (op, call, tx, updated)
                    for ((op, call), tx), updated in zip(zip(group.items, group.signed, strict=True), mine, strict=True)
                    if updated is not None
                ]
                journal.record_many(
                    conn, group.network, group.chain.chain_id, [(op.id, c.step, tx) for op, c, tx, _ in kept], now
                )
                group.recorded = [(updated, tx) for _, _, tx, updated in kept]

    def _broadcast(self, groups: list[_Signed]) -> None:
        """The recorded transactions of one network's senders, sent in JSON-RPC batches of the network's size
        (each sender's in nonce order): a crash between two leaves part of them sent and part not, each
        operation knowing its transaction (the next round sends or finds each one). What the node refuses
        is kept in each group's `refused`."""
        chain = groups[0].chain
        for group in groups:
            failpoints.hit(f"{group.kind}:before_submit")
            failpoints.hit(f"{group.kind}:{group.step}:before_submit")
        txs = [(group, tx) for group in groups for _, tx in group.recorded]
        refused: dict[str, RpcError] = {}
        size = chain.network.rpc_batch_max
        for start in range(0, len(txs), size):
            if start:
                failpoints.hit(f"{txs[start][0].kind}:mid_broadcast")
            refused.update((tx.hash, err) for tx, err in chain.broadcast([tx for _, tx in txs[start : start + size]]))
        if refused:
            # A refusal of bytes the node has (mined, or in its pool) is no refusal: the transport
            # may have sent them twice (an answer lost, the batch sent again: "nonce too low").
            for tx_hash in chain.known(list(refused)):
                refused.pop(tx_hash, None)
        for group in groups:
            group.refused = {tx.hash: refused[tx.hash] for _, tx in group.recorded if tx.hash in refused}

    def _refused(self, chain: ChainClient, op: Operation, tx: SentTx, error: RpcError) -> None:
        """The node refused a freshly signed transaction: it never entered the pool, so it is signed again later."""
        now = self.ops.clock()
        if op.attempts + 1 >= self.ops.settings.attempts_max:
            self._exhausted(op, "tx_refused", f"the node refuses {tx.hash}: {error.rpc_message}")
            return
        self._write(
            op,
            lambda conn: journal.mark(conn, chain.name, tx.hash, TxRecord.REPLACED, now),
            state={**op.state, "tx": None, "replaced": [*op.state.get("replaced", []), tx.hash]},
            retry_in_us=self.ops.backoff_us(op.attempts + 1),
            count_attempt=True,
            error=("tx_refused", error.rpc_message),
            detail=f"refused by the node, will retry: {error.rpc_message}",
        )

    def _sign_one_by_one(
        self, chain: ChainClient, sender: str, items: list[tuple[Operation, PlannedCall]]
    ) -> tuple[list[tuple[Operation, PlannedCall]], list[SentTx]]:
        kept, signed = [], []
        for op, call in items:
            try:
                signed += chain.sign_calls(sender, [call.call])
                kept.append((op, call))
            except TxReverted as exc:
                self._refuse(op, call.step, "tx_reverted", f"{call.step or 'step'} would revert: {exc.reason}")
        return kept, signed

    # ----------------------------------------------------------- supervision

    def recover(self) -> None:
        """After a crash nothing is needed beyond what advance() and maintain() do on every round."""

    def release(self, op: Operation, conn: Connection) -> None:
        """An operator cancelled an operation that sent nothing: release its holds (same transaction)."""
        self.actions[op.kind].release(op, conn)

    def quarantine(self, op: Operation, exc: BaseException) -> None:
        """An operation whose processing hit a bug stops where an operator sees it; the others go on."""
        current = self.ops.get(op.id)
        if current.terminal or current.status == OpStatus.NEEDS_ATTENTION:
            return
        self.ops.attention(current, "internal_error", f"{type(exc).__name__}: {exc}")

    def maintain(self, networks: list[str]) -> None:
        """Periodic care of every network: nonce gaps, and final transactions a deep reorg removed."""
        for network in networks:
            chain = self.chains(network)
            self.repair_nonce_gaps(chain)
            self.watch_finality(chain)

    # ---------------------------------------------------------------- nonces

    def repair_nonce_gaps(self, chain: ChainClient, *, force: bool = False) -> list[int]:
        """Fill every nonce gap that has lasted the grace period: with the transaction that owns the
        nonce (sent again, byte for byte), or a no-op when no recorded transaction does.

        A gap is a nonce the database reserved but the node has not seen, below ones it waits
        for: after a crash between reserving and recording, a dropped transaction, or a node
        that lost its last seconds of state. Every later transaction of that sender waits.
        """
        now_s = time.monotonic()
        if not force and now_s - self._nonce_checked.get(chain.name, 0.0) < NONCE_CHECK_EVERY_S:
            return []
        self._nonce_checked[chain.name] = now_s
        n = chain_schema.nonces
        since = self.ops.clock() - int(NONCE_SENDERS_RECENT_S * 1_000_000)
        with self.ops.engine.connect() as conn:
            rows = conn.execute(
                select(n.c.address, n.c.next_nonce).where(n.c.chain_id == chain.chain_id, n.c.updated_at_us >= since)
            ).all()
        if not rows:
            return []
        replies = chain.rpc.batch([("eth_getTransactionCount", [r.address, "pending"]) for r in rows])
        filled: list[int] = []
        grace = self.ops.settings.nonce_gap_grace_s
        for row, reply in zip(rows, replies, strict=True):
            if isinstance(reply, RpcError):
                continue
            node, stored, key = int(reply, 16), int(row.next_nonce), (chain.chain_id, row.address)
            if stored <= node:
                self._gaps.pop(key, None)
                continue
            seen = self._gaps.get(key)
            if not force and (seen is None or seen[0] != node):
                self._gaps[key] = (node, now_s)
                continue
            if not force and seen is not None and now_s - seen[1] < grace:
                continue
            self._gaps.pop(key, None)
            filled += self._fill_gap(chain, row.address, range(node, min(stored, node + NONCE_FILL_MAX)))
        return filled

    def _fill_gap(self, chain: ChainClient, sender: str, gap: range) -> list[int]:
        owners = journal.at_nonces(self.ops.engine, chain.chain_id, sender, list(gap))
        resend = [entry for nonce in gap for entry in owners.get(nonce, [])[:1]]
        held = [e.nonce for e in resend]
        # Orphans above the highest owned nonce may belong to a transaction another worker is
        # recording right now; they are left for the next round unless nothing at all is owned.
        limit = max(held) if held else gap.stop
        orphans = [nonce for nonce in gap if nonce not in owners and nonce < limit]
        if resend:
            sent = [SentTx(e.hash, e.sender, e.nonce, Call(None, b""), 0, (0, 0), e.raw) for e in resend]
            chain.resend_gap(sender, sent, gap.start)
        if orphans:
            chain.fill_nonces(sender, orphans)
        log.warning("nonce gap repaired network=%s sender=%s resent=%s filled=%s", chain.name, sender, held, orphans)
        return [*held, *orphans]

    # ------------------------------------------------------------- finality

    def watch_finality(self, chain: ChainClient) -> list[str]:
        """Find final transactions of operations that a reorg deeper than the confirmations removed
        (a finality violation), raise an alert, and send their recorded bytes again until they are
        final again. Returns the hashes found dropped this time."""
        head = chain.block_number()
        since = max(0, head - WATCH_WINDOW_BLOCKS)
        top, dropped = journal.watch_head(self.ops.engine, chain.name, since, WATCH_ROWS_MAX)
        if top is None and not dropped:
            return []
        suspect = []
        if top is not None:
            # A reorg that replaced any watched block also replaced every block above it:
            # checking the newest one is enough to know whether to look closer (and to read the others).
            anchor = (top.block_number or 0, top.block_hash or "")
            if self._watch_anchor.get(chain.name) != anchor:
                block = chain.rpc.call("eth_getBlockByNumber", [hex(anchor[0]), False])
                if block is not None and block.get("hash") == anchor[1]:
                    self._watch_anchor[chain.name] = anchor
                else:
                    rows = journal.watched(self.ops.engine, chain.name, since, WATCH_ROWS_MAX)
                    suspect = [r for r in rows if r.status == TxRecord.FINAL]
        found: list[str] = []
        now = self.ops.clock()
        if suspect:
            receipts = chain.receipts([r.hash for r in suspect])
            with write_transaction(self.ops.engine) as conn:
                for r in suspect:
                    receipt = receipts.get(r.hash)
                    if receipt is None:
                        journal.mark(conn, chain.name, r.hash, TxRecord.DROPPED, now)
                        found.append(r.hash)
                        log.error(
                            "finality violation network=%s op=%s step=%s tx=%s block=%s: the final transaction "
                            "left the chain; sending it again",
                            chain.name,
                            r.op_id,
                            r.step,
                            r.hash,
                            r.block_number,
                        )
                    elif receipt.block_hash != r.block_hash:
                        journal.mark(
                            conn,
                            chain.name,
                            r.hash,
                            TxRecord.FINAL,
                            now,
                            block_number=receipt.block_number,
                            block_hash=receipt.block_hash,
                        )
            dropped += [r for r in suspect if r.hash in found]
        if dropped:
            self._restore(chain, dropped, head)
        return found

    def _restore(self, chain: ChainClient, dropped: list[journal.JournalEntry], head: int) -> None:
        receipts = chain.receipts([r.hash for r in dropped])
        now = self.ops.clock()
        again = []
        with write_transaction(self.ops.engine) as conn:
            for r in dropped:
                receipt = receipts.get(r.hash)
                if receipt is None:
                    again.append(r)
                elif head - receipt.block_number + 1 >= chain.network.confirmations:
                    status = TxRecord.FINAL if receipt.status else TxRecord.REVERTED
                    journal.mark(
                        conn,
                        chain.name,
                        r.hash,
                        status,
                        now,
                        block_number=receipt.block_number,
                        block_hash=receipt.block_hash,
                    )
                    if not receipt.status:
                        log.error("re-sent transaction reverted network=%s op=%s tx=%s", chain.name, r.op_id, r.hash)
        if again:
            # In the order they were first mined, one original block at a time: a step that depended
            # on an earlier one (an allow-listing before a mint) comes back after it, not before.
            first = min(r.block_number or 0 for r in again)
            batch = sorted((r for r in again if (r.block_number or 0) == first), key=lambda r: (r.sender, r.nonce))
            sent = [SentTx(e.hash, e.sender, e.nonce, Call(None, b""), 0, (0, 0), e.raw) for e in batch]
            chain.rebroadcast(sent)
