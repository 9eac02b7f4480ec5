"""The token worker: operations, and beside them the listener of every network with a token, the
rules engine, and each network's maintenance (nonce gaps, finality violations)."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from sqlalchemy import select

from andchain.chains.listener import Listener
from andchain.context import Context
from andchain.devtools.processes import pid_alive
from andchain.ops import leases
from andchain.ops import schema as ops_schema
from andchain.ops.chain import ChainOpsHandler
from andchain.ops.worker import Worker
from andchain.tokens.booking import Booking, token_listener
from andchain.tokens.model import DEPOSIT_TOKEN
from andchain.tokens.rules import Rules
from andchain.tokens.service import TokenService

log = logging.getLogger(__name__)

LISTENER_POLLS_PER_ROUND = 10
UNTIL_IDLE_S = 3600.0


class ListenerPart:
    """One network's listener: reads its final blocks under its lease, up to a bounded number of ranges a round."""

    def __init__(self, ctx: Context, booking: Booking, network: str, owner: str) -> None:
        self.ctx = ctx
        self.booking = booking
        self.network = network
        self.owner = owner
        self.name = f"listener:{network}"
        self.listener: Listener | None = None

    def run(self) -> None:
        if self.listener is None:
            if not self.ctx.chain(self.network).deployment(DEPOSIT_TOKEN, required=False):
                return  # no token on this network (yet): nothing to listen to
            chain = self.ctx.chain(self.network)
            lease = leases.Lease(
                self.ctx.engine,
                f"listener:tokens:{self.network}:{chain.chain_id}",
                self.owner,
                self.ctx.settings.ops.lease_s,
                self.ctx.clock,
            )
            self.listener = token_listener(self.booking, self.network, lease=lease)
            if self.listener is None:
                return
            self._free_lease_of_dead_worker(lease.name)
        for _ in range(LISTENER_POLLS_PER_ROUND):
            self.listener.poll()
            if self.listener.caught_up:
                return

    def _free_lease_of_dead_worker(self, name: str) -> None:
        """A worker restarted after a crash takes over at once from its dead predecessor on this host, as
        operations' leases are freed (the lease of a holder elsewhere, or alive, runs out by itself)."""
        t = ops_schema.leases
        with self.ctx.engine.connect() as conn:
            holder = conn.execute(select(t.c.owner).where(t.c.name == name)).scalar()
        if holder is None or holder == self.owner:
            return
        host, _, pid = str(holder).rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
            log.warning("listener lease of a dead worker freed name=%s owner=%s", name, holder)
            leases.release(self.ctx.engine, name, str(holder))

    def idle(self) -> bool:
        if self.listener is None:
            return not self.ctx.chain(self.network).deployment(DEPOSIT_TOKEN, required=False)
        return self.listener.caught_up

    def status(self) -> dict[str, Any]:
        return {"lag_blocks": None if self.listener is None else self.listener.lag_blocks}

    def release(self) -> None:
        if self.listener is not None:
            self.listener.release()


class RulesPart:
    """The programmable payments: one worker at a time runs the due rules."""

    name = "rules"

    def __init__(self, ctx: Context, rules: Rules, owner: str) -> None:
        self.ctx = ctx
        self.rules = rules
        self.owner = owner
        self.created = 1

    def run(self) -> None:
        if not leases.acquire(self.ctx.engine, "rules", self.owner, self.ctx.settings.ops.lease_s, self.ctx.clock):
            self.created = 0
            return
        self.created = self.rules.tick()

    def idle(self) -> bool:
        return self.created == 0


class MaintenancePart:
    """A network's nonce gaps and final transactions a deep reorg removed, under the network's lease."""

    def __init__(self, ctx: Context, handler: ChainOpsHandler, network: str, owner: str) -> None:
        self.ctx = ctx
        self.handler = handler
        self.network = network
        self.owner = owner
        self.name = f"maintenance:{network}"

    def run(self) -> None:
        chain = self.ctx.chain(self.network)
        if not chain.deployment(DEPOSIT_TOKEN, required=False):
            return
        name = f"maintenance:{self.network}:{chain.chain_id}"
        if not leases.acquire(self.ctx.engine, name, self.owner, self.ctx.settings.ops.lease_s, self.ctx.clock):
            return
        self.handler.repair_nonce_gaps(chain)
        self.handler.watch_finality(chain)

    def idle(self) -> bool:
        return True


def token_worker(ctx: Context, service: TokenService | None = None, *, owner: str | None = None) -> Worker:
    service = service or TokenService(ctx)
    handler = service.handler()
    worker = Worker(service.ops, [handler]) if owner is None else Worker(service.ops, [handler], owner=owner)
    networks = [name for name, network in ctx.settings.networks.items() if network.enabled]
    worker.parts.extend(ListenerPart(ctx, service.booking, n, worker.owner) for n in networks)
    worker.parts.append(RulesPart(ctx, Rules(service), worker.owner))
    worker.parts.extend(MaintenancePart(ctx, handler, n, worker.owner) for n in networks)
    return worker


def idle(worker: Worker) -> bool:
    return worker.ops.active_count() == 0 and worker.parts_idle()


def run_until_idle(worker: Worker, *, seconds: float = UNTIL_IDLE_S, **_: Any) -> bool:
    """Work until no operation is active and every listener has caught up with its final blocks (or is
    failing, and says so); returns whether that was reached within `seconds`.

    Operations that stopped in needs_attention do not keep it waiting: they wait for an operator.
    """
    deadline = time.monotonic() + seconds
    first = worker.rounds
    try:
        # At least one whole round first: what parts said about being idle may be older than the caller's work.
        worker.run(seconds=seconds, idle_sleep_s=0.02, until=lambda: worker.rounds > first and idle(worker))
        done = idle(worker)
    finally:
        # This worker stops reading: the next one (another `--until-idle`, a server) need not wait for its
        # listener leases to run out.
        for part in worker.parts:
            if isinstance(part, ListenerPart):
                try:
                    part.release()
                except Exception as exc:  # the lease then simply runs out
                    log.warning("listener lease not released part=%s error=%s", part.name, exc)
    if not done and time.monotonic() >= deadline:
        log.warning("worker not idle after %.0fs: %s", seconds, worker.ops.counts())
    return done
