"""The event listener: every contract event delivered exactly once, and only once final.

A listener reads its contracts' logs in block ranges from a persisted checkpoint (a
range the node refuses to answer, as public providers cap their answers, is halved).
An event is delivered when its block has the network's confirmations. Events are
delivered in batches of at most DELIVER_BATCH, each one database transaction: the
delivery records (keyed by chain id, tx hash, log index) and whatever the handler
writes through the connection it is given commit together, so a crash or a failing
handler delivers the whole batch or none of it, and a replay is skipped. A
handler that writes elsewhere must be idempotent on `event.uid`.

An event is known by its transaction and its ordinal: its position among the logs
of the listened contracts in that transaction. Unlike the block-wide log index, the
ordinal does not change when the same transaction is mined again in another block
(after a reorg), so what was booked from it is recognised.

Should a reorg deeper than the confirmations remove a block the listener already
finalised, the checkpoint's hash no longer matches the node's: the listener walks
back to the last block whose hash still matches and offers every event it delivered
above it to the handler to retract, newest first. An event the handler retracts is
delivered again, as a new generation, if its transaction comes back; one the handler
keeps (an operation's own transaction, which the operation sends again) is not.
Then it reads forward again.

Several workers may run the same listener: with a lease, a poll runs only while it
holds it, and each delivery batch checks the lease in its own transaction, so no
range is ever delivered twice. A worker that does not hold the lease is caught up only
when the shared checkpoint has reached the final head (the holder may have stopped, or
died with its lease still running); a worker that stops gives its lease up.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError

from andchain.chains import schema
from andchain.chains.client import ChainClient
from andchain.chains.contracts import ContractAbi
from andchain.chains.rpc import NodeUnreachable, RpcError
from andchain.db import insert_many, write_transaction
from andchain.errors import DomainError
from andchain.retry import Backoff

log = logging.getLogger(__name__)

RANGE_MAX = 2_000
REORG_WINDOW = 512
DELIVER_BATCH = 500
POLLS_MAX = 1_000_000


@dataclass(frozen=True)
class ChainEvent:
    network: str
    chain_id: int
    address: str
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int  # block-wide, as the node numbers it
    ordinal: int = 0  # position among the listened contracts' logs of its transaction
    generation: int = 0  # how many times a reorg retracted it before this delivery

    @property
    def uid(self) -> str:
        return f"{self.chain_id}:{self.tx_hash.lower()}:{self.ordinal}"


class EventHandler(Protocol):
    def deliver(self, event: ChainEvent, conn: Connection) -> None: ...

    # Optional: `deliver_many(events, conn)`, the events of a batch in their order, in one call.

    def retract(self, event: ChainEvent, conn: Connection) -> bool | None:
        """Undo what the event booked; return False to keep it (it will not be delivered again)."""


class ListenerLease(Protocol):
    """The right to run this listener now, held by one worker at a time (see ops/leases.py)."""

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live worker holds it."""

    def held(self, conn: Connection) -> bool:
        """Inside the transaction that commits a delivery: whether the lease is still ours."""

    def release(self) -> None:
        """Give the lease up now."""


class LeaseLost(DomainError):
    """Another worker holds this listener now: this one stops delivering."""

    code = "listener_lease_lost"
    transient = True


def decode_logs(
    network: str, chain_id: int, contracts: Mapping[str, ContractAbi], logs: Sequence[dict[str, Any]]
) -> list[ChainEvent]:
    """The events of `contracts` (lower-case address -> ABI) among raw logs (of eth_getLogs or a receipt),
    in chain order, each with its ordinal in its transaction."""
    ours = [raw for raw in logs if raw["address"].lower() in contracts]
    positions = ordinals(ours)
    events = []
    for raw in sorted(ours, key=lambda x: (int(x["blockNumber"], 16), int(x["logIndex"], 16))):
        decoded = contracts[raw["address"].lower()].decode_log(
            [bytes.fromhex(t[2:]) for t in raw["topics"]], bytes.fromhex(raw["data"][2:])
        )
        if decoded is None:
            continue
        log_index = int(raw["logIndex"], 16)
        events.append(
            ChainEvent(
                network=network,
                chain_id=chain_id,
                address=raw["address"],
                name=decoded.name,
                args=decoded.args,
                block_number=int(raw["blockNumber"], 16),
                block_hash=raw["blockHash"],
                tx_hash=raw["transactionHash"],
                log_index=log_index,
                ordinal=positions[(raw["transactionHash"].lower(), log_index)],
            )
        )
    return events


def ordinals(logs: Sequence[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """(tx hash, block log index) -> position among these logs in its transaction."""
    out: dict[tuple[str, int], int] = {}
    counts: dict[str, int] = {}
    for raw in sorted(logs, key=lambda x: (int(x["blockNumber"], 16), int(x["logIndex"], 16))):
        tx = raw["transactionHash"].lower()
        out[(tx, int(raw["logIndex"], 16))] = counts.get(tx, 0)
        counts[tx] = counts.get(tx, 0) + 1
    return out


@dataclass(frozen=True)
class PollResult:
    from_block: int
    to_block: int
    delivered: int
    skipped: int
    retracted: int


class Listener:
    def __init__(
        self,
        name: str,
        client: ChainClient,
        contracts: Mapping[str, ContractAbi],
        handler: EventHandler,
        *,
        start_block: int = 0,
        range_max: int = RANGE_MAX,
        clock: Callable[[], int] | None = None,
        lease: ListenerLease | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.contracts = {addr.lower(): abi for addr, abi in contracts.items()}
        self.handler = handler
        self.start_block = start_block
        self.range_max = range_max
        self.span = range_max  # blocks read at once: less while the node refuses a range of range_max
        self.clock = clock or client.clock
        self.engine = client.engine
        self.chain_id = client.chain_id
        self.lease = lease
        self.holding = lease is None  # whether this listener held its lease at its last poll
        self.caught_up = False
        self.lag_blocks: int | None = None

    # ------------------------------------------------------------ checkpoint

    def checkpoint(self) -> tuple[int, str] | None:
        t = schema.checkpoints
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.c.block_number, t.c.block_hash).where(t.c.listener == self.name, t.c.chain_id == self.chain_id)
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def _save_checkpoint(self, conn: Connection, number: int, block_hash: str) -> None:
        t = schema.checkpoints
        where = (t.c.listener == self.name, t.c.chain_id == self.chain_id)
        done = conn.execute(
            update(t).where(*where).values(block_number=number, block_hash=block_hash, updated_at_us=self.clock())
        )
        if done.rowcount == 0:
            conn.execute(
                t.insert().values(
                    listener=self.name,
                    chain_id=self.chain_id,
                    block_number=number,
                    block_hash=block_hash,
                    updated_at_us=self.clock(),
                )
            )
        b = schema.listener_blocks
        conn.execute(
            delete(b).where(b.c.listener == self.name, b.c.chain_id == self.chain_id, b.c.block_number >= number)
        )
        conn.execute(
            b.insert().values(listener=self.name, chain_id=self.chain_id, block_number=number, block_hash=block_hash)
        )
        conn.execute(
            delete(b).where(
                b.c.listener == self.name, b.c.chain_id == self.chain_id, b.c.block_number < number - REORG_WINDOW
            )
        )

    # ------------------------------------------------------------------ poll

    def _hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        """Each block's hash, None for a block the node does not have. An error answer is raised
        (transient): a hash not given is not another hash, and must not pass for a reorg."""
        replies = self.client.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        for reply in replies:
            if isinstance(reply, RpcError):
                raise reply
        return {n: (r["hash"] if r else None) for n, r in zip(numbers, replies, strict=True)}

    def poll(self) -> PollResult:
        """One bounded step: detect a deep reorg, then deliver the next final range."""
        if self.lease is not None:
            self.holding = self.lease.acquire()
        if not self.holding:
            # Another worker holds the lease: it may be reading, or it may have stopped or died with its
            # lease still running. Caught up is what the shared checkpoint says, never an assumption.
            self._follow_checkpoint()
            return PollResult(0, -1, 0, 0, 0)
        head = self.client.block_number()
        final = head - self.client.network.confirmations + 1
        retracted = 0
        cp = self.checkpoint()
        if cp is not None and self._hashes([cp[0]])[cp[0]] != cp[1]:
            retracted = self._unwind(cp[0])
            cp = self.checkpoint()
        start = cp[0] + 1 if cp is not None else self.start_block
        end = min(final, start + self.span - 1)
        self.lag_blocks = max(0, final - (start - 1))
        if end < start:
            self.caught_up = True
            return PollResult(start, start - 1, 0, 0, retracted)
        end, before, logs = self._read_logs(start, end)
        after = self._hashes([end])[end]
        if before is None or before != after:
            # The range changed under us (a reorg while reading): read it again next poll.
            log.warning("listener range moved name=%s end=%d", self.name, end)
            self.caught_up = False
            return PollResult(start, start - 1, 0, 0, retracted)
        raws = {(raw["transactionHash"].lower(), int(raw["logIndex"], 16)): raw for raw in logs}
        events = [
            (event, raws[(event.tx_hash.lower(), event.log_index)])
            for event in decode_logs(self.client.name, self.chain_id, self.contracts, logs)
        ]
        delivered = skipped = 0
        batches = list(_batches(events, DELIVER_BATCH))
        for at, batch in enumerate(batches):
            # The range's last batch moves the checkpoint in its own transaction.
            done, seen = self._deliver_batch(batch, (end, after) if at == len(batches) - 1 else None)
            delivered += done
            skipped += seen
        if not batches:
            with write_transaction(self.engine) as conn:
                self._check_lease(conn)
                self._save_checkpoint(conn, end, after)
        self.caught_up = end >= final
        self.lag_blocks = max(0, final - end)
        return PollResult(start, end, delivered, skipped, retracted)

    def _read_logs(self, start: int, end: int) -> tuple[int, str | None, list[dict[str, Any]]]:
        """The logs of blocks start..end, or of fewer blocks from `start` when the node refuses so many.

        Public providers cap what one eth_getLogs answers (Infura: 10,000 logs; others a block range), and
        anyone can fill blocks with events of our contracts (zero-amount transfers cost only gas): a refused
        range is halved until it is answered, and the next ranges grow back. Returns (last block read, its
        hash before reading, logs)."""
        for _ in range(self.range_max.bit_length() + 1):
            before = self._hashes([end])[end]
            try:
                logs = self.client.get_logs(list(self.contracts), start, end) if self.contracts else []
            except RpcError as exc:
                if end <= start:
                    raise  # not even one block is answered: the part fails, and says why
                end = start + (end - start) // 2
                self.span = end - start + 1
                log.warning("listener range refused name=%s error=%s; reading %d blocks", self.name, exc, self.span)
                continue
            if end - start + 1 >= self.span:
                self.span = min(self.range_max, self.span * 2)
            return end, before, logs
        raise AssertionError(f"a range of {self.range_max} blocks halves to one block within its bit length")

    def _follow_checkpoint(self) -> None:
        final = self.client.block_number() - self.client.network.confirmations + 1
        cp = self.checkpoint()
        done = cp[0] if cp is not None else self.start_block - 1
        self.lag_blocks = max(0, final - done)
        self.caught_up = done >= final

    def release(self) -> None:
        """Give the lease up (a worker that stops), so another worker reads on at once rather than after it runs out."""
        if self.lease is not None:
            self.lease.release()

    def _check_lease(self, conn: Connection) -> None:
        if self.lease is not None and not self.lease.held(conn):
            raise LeaseLost(f"listener {self.name} on chain {self.chain_id} is now run by another worker")

    def _deliver_batch(
        self, batch: list[tuple[ChainEvent, dict[str, Any]]], checkpoint: tuple[int, str] | None = None
    ) -> tuple[int, int]:
        """Deliver events in one transaction: their records and the handler's writes commit together, and with
        them the checkpoint given (the block and hash a range ends with).

        The `log_index` column of a delivery holds the event's ordinal in its transaction.
        """
        d = schema.deliveries
        delivered = skipped = 0
        with write_transaction(self.engine) as conn:
            self._check_lease(conn)
            hashes = sorted({event.tx_hash for event, _ in batch})
            known = {
                (r.tx_hash, int(r.log_index)): (r.status, int(r.generation))
                for r in conn.execute(
                    select(d.c.tx_hash, d.c.log_index, d.c.status, d.c.generation).where(
                        d.c.listener == self.name, d.c.chain_id == self.chain_id, d.c.tx_hash.in_(hashes)
                    )
                )
            }
            inserts: list[dict[str, Any]] = []
            due: list[ChainEvent] = []
            for event, raw in batch:
                status, generation = known.get((event.tx_hash, event.ordinal), (None, 0))
                if status == "delivered":
                    skipped += 1
                    continue
                values = dict(
                    block_number=event.block_number,
                    block_hash=event.block_hash,
                    address=event.address,
                    event=event.name,
                    topics=json.dumps(raw["topics"]),
                    data=raw["data"],
                    status="delivered",
                    updated_at_us=self.clock(),
                )
                if status is None:
                    inserts.append(
                        dict(
                            listener=self.name,
                            chain_id=self.chain_id,
                            tx_hash=event.tx_hash,
                            log_index=event.ordinal,
                            generation=0,
                            **values,
                        )
                    )
                else:  # delivered once, retracted by a reorg, and back
                    conn.execute(
                        update(d)
                        .where(
                            d.c.listener == self.name,
                            d.c.chain_id == self.chain_id,
                            d.c.tx_hash == event.tx_hash,
                            d.c.log_index == event.ordinal,
                        )
                        .values(**values)
                    )
                due.append(replace(event, generation=generation))
            if inserts:
                try:
                    insert_many(conn, d, inserts)  # one statement for the batch's new deliveries
                except IntegrityError:  # another process of the same listener got there first
                    raise LeaseLost(f"listener {self.name} on chain {self.chain_id} runs elsewhere too") from None
            many = getattr(self.handler, "deliver_many", None)
            if many is not None:
                many(due, conn)
            else:
                for event in due:
                    self.handler.deliver(event, conn)
            delivered += len(due)
            if checkpoint is not None:
                self._save_checkpoint(conn, *checkpoint)
        return delivered, skipped

    def _unwind(self, checkpoint_block: int) -> int:
        """Retract everything delivered above the last block whose hash still matches."""
        b = schema.listener_blocks
        with self.engine.connect() as conn:
            known = conn.execute(
                select(b.c.block_number, b.c.block_hash)
                .where(b.c.listener == self.name, b.c.chain_id == self.chain_id)
                .order_by(b.c.block_number.desc())
            ).all()
        canonical = self._hashes([int(str(n)) for n, _ in known]) if known else {}
        ancestor = next((int(str(n)) for n, h in known if canonical.get(int(str(n))) == h), self.start_block - 1)
        log.warning(
            "reorg below confirmations name=%s checkpoint=%d ancestor=%d", self.name, checkpoint_block, ancestor
        )
        d = schema.deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d)
                .where(
                    d.c.listener == self.name,
                    d.c.chain_id == self.chain_id,
                    d.c.block_number > ancestor,
                    d.c.status == "delivered",
                )
                .order_by(d.c.block_number.desc(), d.c.log_index.desc())
            ).all()
        for row in rows:
            raw = {
                "address": row.address,
                "topics": json.loads(row.topics),
                "data": row.data,
                "blockNumber": hex(row.block_number),
                "blockHash": row.block_hash,
                "transactionHash": row.tx_hash,
                "logIndex": hex(row.log_index),
            }
            decoded = decode_logs(self.client.name, self.chain_id, self.contracts, [raw])
            event = replace(decoded[0], ordinal=int(row.log_index)) if decoded else None
            where = (
                d.c.listener == self.name,
                d.c.chain_id == self.chain_id,
                d.c.tx_hash == row.tx_hash,
                d.c.log_index == row.log_index,
            )
            with write_transaction(self.engine) as conn:
                self._check_lease(conn)
                kept = False
                if event is not None:
                    kept = self.handler.retract(replace(event, generation=int(row.generation)), conn) is False
                if not kept:
                    conn.execute(
                        update(d)
                        .where(*where)
                        .values(status="retracted", generation=int(row.generation) + 1, updated_at_us=self.clock())
                    )
        with write_transaction(self.engine) as conn:
            self._check_lease(conn)
            c = schema.checkpoints
            conn.execute(
                delete(b).where(b.c.listener == self.name, b.c.chain_id == self.chain_id, b.c.block_number > ancestor)
            )
            if ancestor >= self.start_block and ancestor in canonical:
                conn.execute(
                    update(c)
                    .where(c.c.listener == self.name, c.c.chain_id == self.chain_id)
                    .values(block_number=ancestor, block_hash=canonical[ancestor], updated_at_us=self.clock())
                )
            else:
                conn.execute(delete(c).where(c.c.listener == self.name, c.c.chain_id == self.chain_id))
        return len(rows)

    # ------------------------------------------------------------------- run

    def run(
        self,
        *,
        seconds: float,
        poll_interval_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Poll for `seconds`, riding out a node that goes away; returns events delivered."""
        deadline = time.monotonic() + seconds
        delivered = 0
        waits = 0
        for _ in range(POLLS_MAX):
            if stop() or time.monotonic() >= deadline:
                break
            try:
                result = self.poll()
                delivered += result.delivered
                waits = 0
                if result.to_block >= result.from_block and not self.caught_up:
                    continue  # more is final already: read on without sleeping
                sleep(poll_interval_s)
            except NodeUnreachable as exc:
                waits += 1
                log.warning("listener waiting for node name=%s error=%s", self.name, exc.message)
                sleep(Backoff(poll_interval_s, 10.0).delay_s(waits))
        return delivered


def _batches(
    events: list[tuple[ChainEvent, dict[str, Any]]], size: int
) -> list[list[tuple[ChainEvent, dict[str, Any]]]]:
    """Batches of about `size` events that never split one transaction's events."""
    out: list[list[tuple[ChainEvent, dict[str, Any]]]] = []
    current: list[tuple[ChainEvent, dict[str, Any]]] = []
    for item in events:
        if len(current) >= size and current[-1][0].tx_hash != item[0].tx_hash:
            out.append(current)
            current = []
        current.append(item)
    if current:
        out.append(current)
    return out
