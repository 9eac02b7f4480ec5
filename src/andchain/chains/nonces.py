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
from collections.abc import Mapping

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from andchain.chains import schema
from andchain.chains.rpc import Rpc, RpcError
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
        return self.reserve_many({address: count})[address]

    def reserve_many(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Reserve consecutive nonces for each of several addresses (address -> how many), in one write
        transaction: a round of payments from many payers takes the writer once, not once per payer.
        Returns each address's first nonce. The node is asked, in one JSON-RPC batch, for the pending
        count of each address this process has not reserved for yet."""
        for address, count in counts.items():
            if not 1 <= count <= RESERVE_MAX:
                raise ValueError(f"reserve between 1 and {RESERVE_MAX} nonces, was {count} for {address}")
        if not counts:
            return {}
        with self._lock:
            node = self._nodes_pending([a for a in counts if a not in self._synced])
            try:
                firsts = self._reserve(counts, node)
            except IntegrityError:
                # Another process recorded one of these senders' first nonce at the same moment: its row
                # exists now, and is locked and advanced like any other.
                firsts = self._reserve(counts, node)
            self._synced.update(counts)
            return firsts

    def _nodes_pending(self, addresses: list[str]) -> dict[str, int]:
        if not addresses:
            return {}
        if len(addresses) == 1:
            return {addresses[0]: self.node_pending(addresses[0])}
        replies = self.rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in addresses])
        for reply in replies:
            if isinstance(reply, RpcError):
                raise reply
        return {a: int(r, 16) for a, r in zip(addresses, replies, strict=True)}

    def _reserve(self, counts: Mapping[str, int], node: Mapping[str, int]) -> dict[str, int]:
        table = schema.nonces
        addresses = sorted(counts)  # rows locked in one order: two processes never wait on each other in a circle
        now = self.clock()
        firsts: dict[str, int] = {}
        with write_transaction(self.engine) as conn:
            query = (
                select(table.c.address, table.c.next_nonce)
                .where(table.c.chain_id == self.chain_id, table.c.address.in_(addresses))
                .order_by(table.c.address)
            )
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()
            stored = {row.address: int(row.next_nonce) for row in conn.execute(query)}
            new, advanced = [], []
            for address in addresses:
                known = node.get(address)
                if address not in stored:
                    first = known if known is not None else self.node_pending(address)
                    new.append({"chain_id": self.chain_id, "address": address, "next_nonce": first + counts[address]})
                else:
                    first = stored[address]
                    if known is not None and known > first:
                        # The key was used elsewhere (or the database was restored): the node is right.
                        log.warning(
                            "nonce behind node chain_id=%d address=%s db=%d node=%d",
                            self.chain_id,
                            address,
                            first,
                            known,
                        )
                        first = known
                    advanced.append({"b_address": address, "b_next": first + counts[address]})
                firsts[address] = first
            if new:
                conn.execute(insert(table).values(updated_at_us=now), new)
            if advanced:
                conn.execute(
                    update(table)
                    .where(table.c.chain_id == self.chain_id, table.c.address == bindparam("b_address"))
                    .values(next_nonce=bindparam("b_next"), updated_at_us=now),
                    advanced,
                )
        return firsts

    def gaps(self, address: str) -> range:
        """Nonces reserved here that the node has never seen (empty when there is no gap)."""
        stored = self.peek(address)
        node = self.node_pending(address)
        return range(node, stored) if stored is not None and stored > node else range(0)
