"""The operator's switches for moving tokens between networks (the CCIP pattern).

Each network has a pause switch and two token buckets, for what may leave it and what
may arrive, in minor units of the deposit token. A move that would exceed a bucket or
touch a paused network is refused with a clear code, never queued silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from andchain.config import Settings
from andchain.db import write_transaction
from andchain.errors import DomainError
from andchain.ledger.model import Clock
from andchain.tokens import schema


@dataclass(frozen=True)
class Controls:
    network: str
    paused: bool
    reason: str | None
    outbound_available: int
    inbound_available: int


class NetworkControls:
    """Per network: the pause switch for moves, and token buckets for what may leave and arrive."""

    def __init__(self, engine: Engine, settings: Settings, clock: Clock) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock

    def _row(self, conn: Connection, network: str) -> Any:
        t = schema.network_controls
        query = select(t).where(t.c.network == network)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            n = self.settings.network(network)
            now = self.clock()
            conn.execute(
                t.insert().values(
                    network=network,
                    paused=False,
                    reason=None,
                    outbound_level=str(n.move_outbound_capacity),
                    inbound_level=str(n.move_inbound_capacity),
                    levels_at_us=now,
                    updated_at_us=now,
                )
            )
            row = conn.execute(query).first()
        return row

    def _levels(self, row: Any, now: int) -> tuple[int, int]:
        n = self.settings.network(row.network)
        elapsed_us = max(0, now - int(row.levels_at_us))
        outbound = min(
            n.move_outbound_capacity, int(row.outbound_level) + n.move_outbound_refill_per_s * elapsed_us // 1_000_000
        )
        inbound = min(
            n.move_inbound_capacity, int(row.inbound_level) + n.move_inbound_refill_per_s * elapsed_us // 1_000_000
        )
        return outbound, inbound

    def controls(self, network: str) -> Controls:
        with write_transaction(self.engine) as conn:
            row = self._row(conn, network)
        outbound, inbound = self._levels(row, self.clock())
        return Controls(network, bool(row.paused), row.reason, outbound, inbound)

    def pause(self, network: str, reason: str) -> Controls:
        return self._set_paused(network, True, reason)

    def resume(self, network: str) -> Controls:
        return self._set_paused(network, False, None)

    def _set_paused(self, network: str, paused: bool, reason: str | None) -> Controls:
        with write_transaction(self.engine) as conn:
            self._row(conn, network)
            t = schema.network_controls
            conn.execute(
                update(t).where(t.c.network == network).values(paused=paused, reason=reason, updated_at_us=self.clock())
            )
        return self.controls(network)

    def lock(self, conn: Connection, networks: list[str]) -> None:
        """Take the rows of several networks in one order (on PostgreSQL), before a batch of moves consumes
        from them: a batch and another move never wait on each other in a circle."""
        for name in sorted(set(networks)):
            self._row(conn, name)

    def consume(self, conn: Connection, source: str, destination: str, amount: int) -> None:
        now = self.clock()
        t = schema.network_controls
        rows = {name: self._row(conn, name) for name in sorted({source, destination})}
        for name, row in rows.items():
            if row.paused:
                raise DomainError(
                    f"network {name} is paused for moves: {row.reason or 'no reason given'}", code="network_paused"
                )
        out_src, in_src = self._levels(rows[source], now)
        out_dst, in_dst = self._levels(rows[destination], now)
        if amount > out_src:
            raise DomainError(
                f"moving {amount} cents out of {source} exceeds its outbound limit ({out_src} cents available now)",
                code="rate_limited",
            )
        if amount > in_dst:
            raise DomainError(
                f"moving {amount} cents into {destination} exceeds its inbound limit ({in_dst} cents available now)",
                code="rate_limited",
            )
        conn.execute(
            update(t)
            .where(t.c.network == source)
            .values(outbound_level=str(out_src - amount), inbound_level=str(in_src), levels_at_us=now)
        )
        conn.execute(
            update(t)
            .where(t.c.network == destination)
            .values(outbound_level=str(out_dst), inbound_level=str(in_dst - amount), levels_at_us=now)
        )
