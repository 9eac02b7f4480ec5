"""The token worker: operations, the listener of every network with a token, and the rules."""

from __future__ import annotations

import logging

from andchain.chains.rpc import NodeUnreachable
from andchain.context import Context
from andchain.ops.chain import ChainOpsHandler
from andchain.ops.worker import Worker
from andchain.tokens.actions import all_actions
from andchain.tokens.mirror import token_listener
from andchain.tokens.rules import Rules
from andchain.tokens.service import TokenService

log = logging.getLogger(__name__)


def token_worker(ctx: Context, service: TokenService | None = None) -> Worker:
    service = service or TokenService(ctx)
    handler = ChainOpsHandler(service.ops, ctx.chain, all_actions(service))
    rules = Rules(service)
    listeners: dict[str, object] = {}

    def tick() -> None:
        for name, network in ctx.settings.networks.items():
            if not network.enabled:
                continue
            listener = listeners.get(name)
            if listener is None:
                try:
                    listener = token_listener(service, name)
                except NodeUnreachable:
                    continue
                if listener is None:
                    continue
                listeners[name] = listener
            try:
                listener.poll()  # type: ignore[attr-defined]
            except NodeUnreachable as exc:
                log.warning("listener waiting network=%s error=%s", name, exc.message)
        rules.tick()

    return Worker(service.ops, [handler], tick=tick)


def run_until_idle(worker: Worker, *, seconds: float = 120.0, rounds_max: int = 5) -> bool:
    """Work until no operation is unfinished, then one more tick for the listener and the rules.

    A tick can itself create operations (a rule fires), so this repeats, at most
    `rounds_max` times. Returns whether everything finished.
    """

    def idle() -> bool:
        counts = worker.ops.counts()
        return not any(counts.get(s, 0) for s in ("received", "submitted", "confirming"))

    for _ in range(rounds_max):
        worker.run(seconds=seconds, idle_sleep_s=0.02, until=idle)
        worker.run_once()
        if idle():
            return True
    return False
