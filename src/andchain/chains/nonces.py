"""Nonces per signer and chain, persisted so that a restarted process carries on where it was.

A range of nonces is reserved in the database before any transaction using them is
signed, so two processes (or a restart) never hand out the same nonce twice. If a
process dies between reserving and sending, the node's pending count stays below
the reserved counter: a gap that would hold every later transaction in the node's
queue. `gaps()` finds them, and the chain client fills them with no-op transactions
once the owners of unfinished transactions have re-broadcast theirs.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from andchain.chains import schema
from andchain.chains.rpc import Rpc
from andchain.db import write_transaction
from andchain.ledger.model import Clock

log = logging.getLogger(__name__)

RESERVE_MAX = 10_000


class NonceManager:
    def __init__(self, engine: Engine, chain_id: int, rpc: Rpc, clock: Clock) -> None:
        self.engine = engine
        self.chain_id = chain_id
        self.rpc = rpc
        self.clock = clock
        self._synced: set[str] = set()
        self._lock = threading.Lock()

    def node_pending(self, address: str) -> int:
        return int(self.rpc.call("eth_getTransactionCount", [address, "pending"]), 16)

    def peek(self, address: str) -> int | None:
        table = schema.nonces
        with self.engine.connect() as conn:
            value = conn.execute(
                select(table.c.next_nonce).where(table.c.chain_id == self.chain_id, table.c.address == address)
            ).scalar()
        return None if value is None else int(value)

    def reserve(self, address: str, count: int = 1) -> int:
        """Reserve `count` consecutive nonces for `address`; returns the first."""
        if not 1 <= count <= RESERVE_MAX:
            raise ValueError(f"reserve between 1 and {RESERVE_MAX} nonces, was {count}")
        with self._lock:
            node = self.node_pending(address) if address not in self._synced else None
            try:
                first = self._reserve(address, count, node)
            except IntegrityError:
                # Another process recorded this sender's first nonce at the same moment: its row
                # exists now, and is locked and advanced like any other.
                first = self._reserve(address, count, node)
            self._synced.add(address)
            return first

    def _reserve(self, address: str, count: int, node: int | None) -> int:
        table = schema.nonces
        where = (table.c.chain_id == self.chain_id, table.c.address == address)
        with write_transaction(self.engine) as conn:
            query = select(table.c.next_nonce).where(*where)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()
            stored = conn.execute(query).scalar()
            if stored is None:
                first = node if node is not None else self.node_pending(address)
                conn.execute(
                    insert(table).values(
                        chain_id=self.chain_id,
                        address=address,
                        next_nonce=first + count,
                        updated_at_us=self.clock(),
                    )
                )
            else:
                first = int(stored)
                if node is not None and node > first:
                    # The key was used elsewhere (or the database was restored): the node is right.
                    log.warning(
                        "nonce behind node chain_id=%d address=%s db=%d node=%d",
                        self.chain_id,
                        address,
                        first,
                        node,
                    )
                    first = node
                conn.execute(update(table).where(*where).values(next_nonce=first + count, updated_at_us=self.clock()))
        return first

    def gaps(self, address: str) -> range:
        """Nonces reserved here that the node has never seen (empty when there is no gap)."""
        stored = self.peek(address)
        node = self.node_pending(address)
        return range(node, stored) if stored is not None and stored > node else range(0)
