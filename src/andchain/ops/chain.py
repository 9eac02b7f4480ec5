"""Operations that send transactions: sign, persist, broadcast, confirm — crash-safe.

For each step of an operation the handler asks the domain action for the call to
make, reserves a nonce and signs it, and **persists the signed transaction in the
operation before broadcasting it**. So after a crash at any point the operation
knows its transaction: it is re-broadcast (the same bytes, the same hash) or looked
up by hash, never signed twice for the same step. Once the receipt has the
network's confirmations the action books the step; when no step is left the action
finishes (posts the ledger) and the operation succeeds. A revert fails it and the
action releases what it reserved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import select

from andchain.chains import schema as chain_schema
from andchain.chains.client import Call, ChainClient, Receipt, SentTx, TxReverted
from andchain.db import write_transaction
from andchain.errors import DomainError
from andchain.ops import failpoints
from andchain.ops.core import ATTEMPTS_MAX, Operation, Operations, OpStatus, backoff_us

log = logging.getLogger(__name__)

POLL_US = 50_000


@dataclass(frozen=True)
class PlannedCall:
    sender: str
    call: Call
    step: str = ""  # the step's name, kept with its transaction and in the operation's history
    network: str | None = None  # where the step runs when not the operation's own network (a move)


class OperationFailed(DomainError):
    """Raised by ChainAction.finish when every step is final but the operation did not do what was asked
    (e.g. a move whose destination failed and whose source was restored): it ends failed, with a result."""

    def __init__(self, code: str, message: str, result: dict[str, Any]) -> None:
        super().__init__(message, code=code)
        self.result = result


class ChainAction(Protocol):
    kinds: tuple[str, ...]

    def next_call(self, op: Operation) -> PlannedCall | None:
        """The next transaction of this operation (state["steps_done"] were confirmed), or None when done.
        Raises DomainError to refuse the operation."""

    def step_done(self, op: Operation, receipt: Receipt) -> dict[str, Any]:
        """A step's transaction is final: book what it did; returns state to keep."""

    def finish(self, op: Operation) -> dict[str, Any]:
        """Every step is final: book the result (idempotent); returns the operation's result."""

    def failed(self, op: Operation, code: str, reason: str) -> None:
        """The operation failed for good: release what it reserved (idempotent)."""


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


class ChainOpsHandler:
    def __init__(self, ops: Operations, chains: Callable[[str], ChainClient], actions: list[ChainAction]) -> None:
        self.ops = ops
        self.chains = chains
        self.actions = {kind: action for action in actions for kind in action.kinds}
        self.kinds = tuple(self.actions)

    # ---------------------------------------------------------------- advance

    def advance(self, batch: list[Operation]) -> None:
        if any(op.network is None for op in batch):
            raise DomainError(f"operation {batch[0].id} names no network")
        by_network: dict[str, list[Operation]] = {}
        for op in batch:
            if op.state.get("tx"):
                by_network.setdefault(op.state["tx"].get("network") or op.network or "", []).append(op)
        for network, ops in by_network.items():
            self._follow(self.chains(network), ops)
        fresh = [op for op in batch if not op.state.get("tx")]
        if fresh:
            self._send(fresh)

    def _complete(self, action: ChainAction, op: Operation, state: dict[str, Any], detail: str) -> None:
        """Every step is final: book the result and record success (or a failure with its result) in one write."""
        provisional = replace(op, state=state)
        try:
            result = action.finish(provisional)
        except OperationFailed as failed:
            self.ops.update(
                op,
                state=state,
                status=OpStatus.FAILED,
                result=failed.result,
                error=(failed.code, failed.message),
                detail=f"{detail}; failed: {failed.message}",
            )
            return
        self.ops.update(op, state=state, status=OpStatus.SUCCEEDED, result=result, detail=f"{detail}; succeeded")

    def _follow(self, chain: ChainClient, ops: list[Operation]) -> None:
        receipts = chain.receipts([op.state["tx"]["hash"] for op in ops])
        head = chain.block_number() if receipts else 0
        unknown = [op for op in ops if op.state["tx"]["hash"] not in receipts]
        known = chain.known([op.state["tx"]["hash"] for op in unknown]) if unknown else set()
        # Updates that only move an operation along are written together in one transaction.
        simple: list[tuple[Operation, dict[str, Any]]] = []
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
            action = self.actions[op.kind]
            if not receipt.status:
                reason = chain.why_reverted(_tx_of(tx), receipt)
                self._reverted(
                    op,
                    tx.get("step", ""),
                    reason,
                    f"{tx.get('step') or 'step'} reverted: {reason} ({tx['hash']})",
                    reverted_hash=tx["hash"],
                )
                continue
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
            failpoints.hit(f"{op.kind}:after_receipt")
            failpoints.hit(f"{op.kind}:{tx.get('step', '')}:after_receipt")
            kept = action.step_done(op, receipt)
            done = [
                *op.state.get("done", []),
                {"step": tx.get("step", ""), "hash": tx["hash"], "block": receipt.block_number},
            ]
            state = {**op.state, **kept, "tx": None, "steps_done": int(op.state.get("steps_done", 0)) + 1, "done": done}
            detail = f"{tx.get('step') or 'step'} final in block {receipt.block_number} ({tx['hash']})"
            if action.next_call(replace(op, state=state)) is None:
                self._complete(action, op, state, detail)
            else:
                self.ops.update(op, state=state, retry_in_us=0, detail=detail)
        if simple:
            with write_transaction(self.ops.engine) as conn:
                for op, change in simple:
                    self.ops.update(op, conn=conn, **change)

    def _resend(self, chain: ChainClient, op: Operation) -> None:
        tx = _tx_of(op.state["tx"])
        refused = chain.rebroadcast([tx])
        if not refused:
            self.ops.update(
                op,
                status=OpStatus.SUBMITTED if op.status == OpStatus.RECEIVED else op.status,
                retry_in_us=POLL_US,
                detail=f"sent {tx.hash}",
            )
            return
        message = refused[0][1].rpc_message
        # The nonce went to another transaction (a gap filler after a crash): this one will
        # never be mined. Sign the step again with a new nonce.
        log.warning("transaction replaced op=%s hash=%s error=%s", op.id, tx.hash, message)
        self.ops.update(
            op,
            state={**op.state, "tx": None, "replaced": [*op.state.get("replaced", []), tx.hash]},
            retry_in_us=0,
            detail=f"{tx.hash} cannot be sent ({message}); signing again",
        )

    def _send(self, ops: list[Operation]) -> None:
        planned: dict[tuple[str, str], list[tuple[Operation, PlannedCall]]] = {}
        for op in ops:
            action = self.actions[op.kind]
            try:
                call = action.next_call(op)
            except DomainError as exc:
                action.failed(op, exc.code, exc.message)
                self.ops.update(
                    op, status=OpStatus.FAILED, error=(exc.code, exc.message), detail=f"refused: {exc.message}"
                )
                continue
            if call is None:
                self._complete(action, op, op.state, "no step left")
                continue
            planned.setdefault((call.network or op.network or "", call.sender), []).append((op, call))
        for (network, sender), items in planned.items():
            chain = self.chains(network)
            try:
                signed = chain.sign_calls(sender, [c.call for _, c in items])
            except TxReverted:
                # The node's gas estimate says one of them would revert: find which, one by one.
                items, signed = self._sign_one_by_one(chain, sender, items)
                if not items:
                    continue
            # Persisted before anything leaves the process.
            recorded = []
            with write_transaction(self.ops.engine) as conn:
                for (op, call), tx in zip(items, signed, strict=True):
                    recorded.append(
                        self.ops.update(
                            op,
                            state={**op.state, "tx": _tx_state(tx, call.step, network)},
                            conn=conn,
                            detail=f"{call.step or 'step'}: signed {tx.hash} nonce {tx.nonce}",
                        )
                    )
            failpoints.hit(f"{items[0][0].kind}:before_submit")
            failpoints.hit(f"{items[0][0].kind}:{items[0][1].step}:before_submit")
            refused = {tx.hash: err for tx, err in chain.broadcast(signed)}
            with write_transaction(self.ops.engine) as conn:
                for (_, _), tx, current in zip(items, signed, recorded, strict=True):
                    if tx.hash in refused:
                        self._refused(current, refused[tx.hash].rpc_message, conn)
                    else:
                        status = OpStatus.SUBMITTED
                        self.ops.update(
                            current, status=status, retry_in_us=POLL_US, conn=conn, detail=f"sent {tx.hash}"
                        )
            failpoints.hit(f"{items[0][0].kind}:after_submit")
            failpoints.hit(f"{items[0][0].kind}:{items[0][1].step}:after_submit")

    def _reverted(self, op: Operation, step: str, reason: str, detail: str, reverted_hash: str | None = None) -> None:
        """A step reverted (or its gas estimate says it would): compensate if the action can, else fail."""
        action = self.actions[op.kind]
        on_revert = getattr(action, "reverted", None)
        changes = on_revert(op, step, reason) if on_revert else None
        if changes is not None:
            # The action has a way on (a compensating step): the operation continues.
            self.ops.update(
                op, state={**op.state, **changes, "tx": None}, retry_in_us=0, detail=f"{detail}; compensating"
            )
            return
        action.failed(op, "tx_reverted", reason)
        state = {**op.state, "tx": None, **({"reverted": reverted_hash} if reverted_hash else {})}
        self.ops.update(op, status=OpStatus.FAILED, error=("tx_reverted", reason), state=state, detail=detail)

    def _sign_one_by_one(
        self, chain: ChainClient, sender: str, items: list[tuple[Operation, PlannedCall]]
    ) -> tuple[list[tuple[Operation, PlannedCall]], list[SentTx]]:
        kept, signed = [], []
        for op, call in items:
            try:
                signed += chain.sign_calls(sender, [call.call])
                kept.append((op, call))
            except TxReverted as exc:
                self._reverted(op, call.step, exc.reason, f"{call.step or 'step'} would revert: {exc.reason}")
        return kept, signed

    def _refused(self, op: Operation, message: str, conn: Any) -> None:
        if op.attempts + 1 >= ATTEMPTS_MAX:
            self.actions[op.kind].failed(op, "tx_refused", message)
            self.ops.update(
                op,
                status=OpStatus.FAILED,
                error=("tx_refused", message),
                conn=conn,
                state={**op.state, "tx": None},
                detail=f"refused by the node: {message}",
            )
        else:
            self.ops.update(
                op,
                state={**op.state, "tx": None},
                retry_in_us=backoff_us(op.attempts + 1),
                count_attempt=True,
                error=("tx_refused", message),
                conn=conn,
                detail=f"refused by the node, will retry: {message}",
            )

    # --------------------------------------------------------------- recovery

    def recover(self) -> None:
        """Re-send every signed transaction of an unfinished operation, then fill nonce gaps."""
        networks: dict[str, list[Operation]] = {}
        for status in (OpStatus.RECEIVED, OpStatus.SUBMITTED, OpStatus.CONFIRMING):
            for op in self.ops.list(status=status.value, limit=100_000):
                if op.kind in self.actions and op.network:
                    tx_network = (op.state.get("tx") or {}).get("network") or op.network
                    networks.setdefault(tx_network, []).append(op)
        for network, ops in networks.items():
            chain = self.chains(network)
            pending = [_tx_of(op.state["tx"]) for op in ops if op.state.get("tx")]
            if pending:
                mined = chain.receipts([tx.hash for tx in pending])
                chain.rebroadcast([tx for tx in pending if tx.hash not in mined])
            with self.ops.engine.connect() as conn:
                senders = [
                    r[0]
                    for r in conn.execute(
                        select(chain_schema.nonces.c.address).where(chain_schema.nonces.c.chain_id == chain.chain_id)
                    )
                ]
            for sender in senders:
                try:
                    chain.repair_nonce_gaps(sender)
                except DomainError as exc:
                    log.warning("nonce repair skipped sender=%s error=%s", sender, exc)

    def cancelled(self, op: Operation) -> None:
        self.actions[op.kind].failed(op, "cancelled", "cancelled by operator")
