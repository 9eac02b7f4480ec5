"""The event listener: every contract event delivered exactly once, and only once final.

A listener reads its contracts' logs in block ranges from a persisted checkpoint.
An event is delivered when its block has the network's confirmations. Events are
delivered in batches of at most DELIVER_BATCH, each one database transaction: the
delivery records (keyed by chain id, tx hash, log index) and whatever the handler
writes through the connection it is given commit together, so a crash or a failing
handler delivers the whole batch or none of it, and a replay is skipped. A
handler that writes elsewhere must be idempotent on `event.uid`.

Should a reorg deeper than the confirmations remove a block the listener already
finalised, the checkpoint's hash no longer matches the node's: the listener walks
back to the last block whose hash still matches and retracts, through the handler,
every event it delivered above it, newest first. Then it reads forward again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError

from andchain.chains import schema
from andchain.chains.client import ChainClient
from andchain.chains.contracts import ContractAbi, DecodedEvent
from andchain.chains.rpc import NodeUnreachable, RpcError
from andchain.db import write_transaction
from andchain.errors import InvariantBroken

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
    log_index: int

    @property
    def uid(self) -> str:
        return f"{self.chain_id}:{self.tx_hash}:{self.log_index}"


class EventHandler(Protocol):
    def deliver(self, event: ChainEvent, conn: Connection) -> None: ...

    def retract(self, event: ChainEvent, conn: Connection) -> None: ...


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
    ) -> None:
        self.name = name
        self.client = client
        self.contracts = {addr.lower(): abi for addr, abi in contracts.items()}
        self.handler = handler
        self.start_block = start_block
        self.range_max = range_max
        self.clock = clock or client.clock
        self.engine = client.engine
        self.chain_id = client.chain_id

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
        replies = self.client.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return {
            n: (r["hash"] if r and not isinstance(r, RpcError) else None) for n, r in zip(numbers, replies, strict=True)
        }

    def poll(self) -> PollResult:
        """One bounded step: detect a deep reorg, then deliver the next final range."""
        head = self.client.block_number()
        final = head - self.client.network.confirmations + 1
        retracted = 0
        cp = self.checkpoint()
        if cp is not None and self._hashes([cp[0]])[cp[0]] != cp[1]:
            retracted = self._unwind(cp[0])
            cp = self.checkpoint()
        start = cp[0] + 1 if cp is not None else self.start_block
        end = min(final, start + self.range_max - 1)
        if end < start:
            return PollResult(start, start - 1, 0, 0, retracted)
        before = self._hashes([end])[end]
        logs = self.client.get_logs(list(self.contracts), start, end) if self.contracts else []
        after = self._hashes([end])[end]
        if before is None or before != after:
            # The range changed under us (a reorg while reading): read it again next poll.
            log.warning("listener range moved name=%s end=%d", self.name, end)
            return PollResult(start, start - 1, 0, 0, retracted)
        delivered = skipped = 0
        events = []
        for raw in sorted(logs, key=lambda x: (int(x["blockNumber"], 16), int(x["logIndex"], 16))):
            event = self._event(raw)
            if event is not None:
                events.append((event, raw))
        for start in range(0, len(events), DELIVER_BATCH):
            done, seen = self._deliver_batch(events[start : start + DELIVER_BATCH])
            delivered += done
            skipped += seen
        with write_transaction(self.engine) as conn:
            self._save_checkpoint(conn, end, after)
        return PollResult(start, end, delivered, skipped, retracted)

    def _event(self, raw: dict[str, Any]) -> ChainEvent | None:
        abi = self.contracts.get(raw["address"].lower())
        if abi is None:
            return None
        decoded: DecodedEvent | None = abi.decode_log(
            [bytes.fromhex(t[2:]) for t in raw["topics"]], bytes.fromhex(raw["data"][2:])
        )
        if decoded is None:
            return None
        return ChainEvent(
            network=self.client.name,
            chain_id=self.chain_id,
            address=raw["address"],
            name=decoded.name,
            args=decoded.args,
            block_number=int(raw["blockNumber"], 16),
            block_hash=raw["blockHash"],
            tx_hash=raw["transactionHash"],
            log_index=int(raw["logIndex"], 16),
        )

    def _deliver_batch(self, batch: list[tuple[ChainEvent, dict[str, Any]]]) -> tuple[int, int]:
        """Deliver events in one transaction: their records and the handler's writes commit together."""
        d = schema.deliveries
        delivered = skipped = 0
        with write_transaction(self.engine) as conn:
            hashes = sorted({event.tx_hash for event, _ in batch})
            known = {
                (r.tx_hash, int(r.log_index)): r.status
                for r in conn.execute(
                    select(d.c.tx_hash, d.c.log_index, d.c.status).where(
                        d.c.listener == self.name, d.c.chain_id == self.chain_id, d.c.tx_hash.in_(hashes)
                    )
                )
            }
            for event, raw in batch:
                status = known.get((event.tx_hash, event.log_index))
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
                    try:
                        with conn.begin_nested():
                            conn.execute(
                                d.insert().values(
                                    listener=self.name,
                                    chain_id=self.chain_id,
                                    tx_hash=event.tx_hash,
                                    log_index=event.log_index,
                                    **values,
                                )
                            )
                    except IntegrityError:  # another process of the same listener got there first
                        raise InvariantBroken(f"listener {self.name} runs twice on chain {self.chain_id}") from None
                else:
                    conn.execute(
                        update(d)
                        .where(
                            d.c.listener == self.name,
                            d.c.chain_id == self.chain_id,
                            d.c.tx_hash == event.tx_hash,
                            d.c.log_index == event.log_index,
                        )
                        .values(**values)
                    )
                self.handler.deliver(event, conn)
                delivered += 1
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
            event = self._event(raw)
            with write_transaction(self.engine) as conn:
                conn.execute(
                    update(d)
                    .where(
                        d.c.listener == self.name,
                        d.c.chain_id == self.chain_id,
                        d.c.tx_hash == row.tx_hash,
                        d.c.log_index == row.log_index,
                    )
                    .values(status="retracted", updated_at_us=self.clock())
                )
                if event is not None:
                    self.handler.retract(event, conn)
        with write_transaction(self.engine) as conn:
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
        backoff = poll_interval_s
        for _ in range(POLLS_MAX):
            if stop() or time.monotonic() >= deadline:
                break
            try:
                result = self.poll()
                delivered += result.delivered
                backoff = poll_interval_s
                if result.to_block >= result.from_block and result.delivered:
                    continue  # more may be waiting: read on without sleeping
            except NodeUnreachable as exc:
                log.warning("listener waiting for node name=%s error=%s", self.name, exc.message)
                backoff = min(backoff * 2, 10.0)
            sleep(backoff)
        return delivered
