"""The token worker: operations, and beside them the listener of every network with a token, the
rules engine, each network's maintenance (nonce gaps, finality violations) and webhook deliveries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from andchain.chains.listener import LeaseLost, Listener
from andchain.context import Context
from andchain.custody.registry import custody_parts
from andchain.events.webhooks import Webhooks
from andchain.ops import leases
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
    """One network's listener: reads its final blocks under its lease, up to a bounded number of ranges a round.

    While another worker holds the listener's lease this part stands by, and counts as caught up
    only when the shared checkpoint has reached the final head; it takes over once that lease is
    given up or runs out (a dead worker's on this host is freed when a worker starts). A lease lost
    in the middle of a poll (this worker stalled past it) rolls that delivery back: not a failure.
    """

    def __init__(self, ctx: Context, booking: Booking, network: str, owner: str) -> None:
        self.ctx = ctx
        self.booking = booking
        self.network = network
        self.owner = owner
        self.name = f"listener:{network}"
        self.listener: Listener | None = None
        self.lease: leases.Lease | None = None

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
                renew_at_half=True,  # each delivery checks it in its transaction
            )
            self.lease = lease
            self.listener = token_listener(self.booking, self.network, lease=lease)
            if self.listener is None:
                return
        try:
            for _ in range(LISTENER_POLLS_PER_ROUND):
                self.listener.poll()
                if self.listener.caught_up:
                    return
        except LeaseLost as exc:
            # Another worker took over mid-poll: its batch rolled back, nothing was delivered twice.
            self.listener.holding = False
            if self.lease is not None:
                self.lease.forget()
            log.warning("listener lease lost part=%s owner=%s: %s", self.name, self.owner, exc.message)

    def idle(self) -> bool:
        if self.listener is None:
            return not self.ctx.chain(self.network).deployment(DEPOSIT_TOKEN, required=False)
        return self.listener.caught_up

    @property
    def standby(self) -> bool:
        """Another worker holds this listener's lease."""
        return self.listener is not None and not self.listener.holding

    def status(self) -> dict[str, Any]:
        return {"lag_blocks": None if self.listener is None else self.listener.lag_blocks, "standby": self.standby}

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

    def release(self) -> None:
        leases.release(self.ctx.engine, "rules", self.owner)


class MaintenancePart:
    """A network's nonce gaps and final transactions a deep reorg removed, under the network's lease."""

    def __init__(self, ctx: Context, handler: ChainOpsHandler, network: str, owner: str) -> None:
        self.ctx = ctx
        self.handler = handler
        self.network = network
        self.owner = owner
        self.name = f"maintenance:{network}"
        self.lease_name: str | None = None

    def run(self) -> None:
        chain = self.ctx.chain(self.network)
        if not chain.deployment(DEPOSIT_TOKEN, required=False):
            return
        self.lease_name = f"maintenance:{self.network}:{chain.chain_id}"
        lease_s = self.ctx.settings.ops.lease_s
        if not leases.acquire(self.ctx.engine, self.lease_name, self.owner, lease_s, self.ctx.clock):
            return
        chain.flush_stalled_automine()
        self.handler.repair_nonce_gaps(chain)
        self.handler.watch_finality(chain)

    def idle(self) -> bool:
        return True

    def release(self) -> None:
        if self.lease_name is not None:
            leases.release(self.ctx.engine, self.lease_name, self.owner)


class WebhooksPart:
    """Webhook deliveries: new events fanned out to the subscriptions, then the due deliveries sent.

    Any number of workers run it at once: each delivery is claimed with a lease (see
    andchain.events.webhooks), so two workers never send the same delivery at the same time.
    It looks for work every `events.delivery_poll_s`, and at once again while it finds some.
    """

    name = "webhooks"

    def __init__(
        self,
        ctx: Context,
        owner: str,
        webhooks: Webhooks | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.owner = owner
        self.webhooks = webhooks or Webhooks(ctx.engine, ctx.settings.events, clock=ctx.clock)
        self.monotonic = monotonic
        self.next_run_s = 0.0
        self.fanned = 0
        self.sent = 0

    def run(self) -> None:
        if self.monotonic() < self.next_run_s:
            return
        self.fanned = self.webhooks.fan_out()
        self.sent = self.webhooks.deliver_due(self.owner)
        worked = self.fanned or self.sent
        self.next_run_s = 0.0 if worked else self.monotonic() + self.ctx.settings.events.delivery_poll_s

    def idle(self) -> bool:
        """Nothing due now: a delivery waiting for its next retry does not keep a worker busy."""
        return not self.webhooks.due()

    def status(self) -> dict[str, Any]:
        return {"fanned_out": self.fanned, "attempts": self.sent}

    def release(self) -> None:
        self.webhooks.release(self.owner)


def token_worker(ctx: Context, service: TokenService | None = None, *, owner: str | None = None) -> Worker:
    service = service or TokenService(ctx)
    from andchain.custody.service import CustodyHandler, CustodyPollPart, CustodyService

    handler = service.handler()
    custody = CustodyService(ctx, tokens=service)
    handlers: list[Any] = [handler, CustodyHandler(custody)]
    worker = Worker(service.ops, handlers) if owner is None else Worker(service.ops, handlers, owner=owner)
    networks = [name for name, network in ctx.settings.networks.items() if network.enabled]
    worker.parts.extend(ListenerPart(ctx, service.booking, n, worker.owner) for n in networks)
    worker.parts.append(RulesPart(ctx, Rules(service), worker.owner))
    worker.parts.extend(MaintenancePart(ctx, handler, n, worker.owner) for n in networks)
    worker.parts.append(WebhooksPart(ctx, worker.owner))
    worker.parts.extend(custody_parts(ctx, worker.owner))
    worker.parts.extend(CustodyPollPart(custody, name) for name in custody.names())
    return worker


def idle(worker: Worker) -> bool:
    return not worker.ops.any_active() and worker.parts_idle()


def run_until_idle(worker: Worker, *, seconds: float = UNTIL_IDLE_S, **_: Any) -> bool:
    """Work until no operation is active and every listener has caught up with its final blocks (or is
    failing, and says so); returns whether that was reached within `seconds`.

    Operations that stopped in needs_attention do not keep it waiting: they wait for an operator.
    """
    deadline = time.monotonic() + seconds
    first = worker.rounds
    # At least one whole round first: what parts said about being idle may be older than the caller's work.
    # When it returns, the worker gives its leases back (Worker.run): the next one need not wait for them.
    reached = False

    def until() -> bool:
        nonlocal reached
        reached = worker.rounds > first and idle(worker)
        return reached

    worker.run(seconds=seconds, idle_sleep_s=0.02, until=until)
    # Idle once is the answer: an operation requested since then is the next round's, not a failure to settle.
    done = reached or idle(worker)
    if not done and time.monotonic() >= deadline:
        log.warning("worker not idle after %.0fs: %s", seconds, worker.ops.counts())
    return done
