"""Two token workers on one PostgreSQL database and one node: each event is delivered once."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from andchain.chains import schema as chain_schema
from andchain.chains.listener import Listener, PollResult
from andchain.ops import OpStatus
from andchain.ops.core import ACTIVE
from andchain.ops.worker import Worker
from andchain.reconcile import reconcile
from andchain.tokens.runtime import idle, token_worker
from andchain.tokens.service import TokenService
from tests.chains.conftest import make_context

_databases = itertools.count()


@pytest.fixture
def pg_url(postgres_server):
    from andchain.devtools.postgres import create_database

    return create_database(postgres_server, f"supervision_{next(_databases)}")


def test_two_workers_on_postgresql_deliver_every_event_once(pg_url, tmp_path, anvil, monkeypatch):
    ranges: list[tuple[str, int, int]] = []
    polled = Listener.poll

    def recording_poll(self: Listener) -> PollResult:
        result = polled(self)
        if result.to_block >= result.from_block:
            ranges.append((str(self.lease.owner), result.from_block, result.to_block))  # type: ignore[union-attr]
        return result

    monkeypatch.setattr(Listener, "poll", recording_poll)
    ctx_a = make_context(tmp_path / "a", anvil, database_url=pg_url)
    ctx_b = make_context(tmp_path / "a", anvil, database_url=pg_url)  # same keys, another engine and client
    tokens = TokenService(ctx_a)
    tokens.setup("internal")
    workers = [token_worker(ctx_a, owner="worker-a"), token_worker(ctx_b, TokenService(ctx_b), owner="worker-b")]
    stops = [threading.Event(), threading.Event()]
    crashed: list[BaseException] = []

    def run(worker: Worker, stop: threading.Event) -> None:
        try:
            worker._stop = stop
            worker.run(seconds=300)
        except BaseException as exc:  # what would end a worker
            crashed.append(exc)
            raise

    threads = [
        threading.Thread(target=run, args=(w, stop), daemon=True) for w, stop in zip(workers, stops, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        clients = [tokens.onboard(f"Client {i}").id for i in range(4)]
        ops = []
        for i, client in enumerate(clients):
            tokens.deposit(client, 50_000, f"camt-{i}")
            ops.append(tokens.mint(client, "internal", 20_000, f"mint-{i}"))
        wait_until_settled(tokens, workers, ops)
        for i, (payer, payee) in enumerate(itertools.permutations(clients, 2)):
            ops.append(tokens.pay(payer, payee, "internal", 100 + i, f"INV-{i}", f"pay-{i}"))
        ops.append(tokens.redeem(clients[0], "internal", 1_000, "redeem-0"))
        wait_until_settled(tokens, workers, ops)
        # The listener's holder stops; it gives its lease back and the other takes over at once.
        holder = next(i for i, w in enumerate(workers) if not w.parts[0].standby)
        stops[holder].set()
        threads[holder].join(timeout=30)
        survivor = workers[1 - holder]
        ops.append(tokens.redeem(clients[1], "internal", 2_000, "redeem-1"))
        ops.append(tokens.pay(clients[2], clients[3], "internal", 3_000, "INV-last", "pay-last"))
        wait_until_settled(tokens, [survivor], ops)
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert crashed == [] and not any(t.is_alive() for t in threads)
    assert all(tokens.ops.get(op.id).status == OpStatus.SUCCEEDED for op in ops)
    assert {w.owner for w in workers} == {"worker-a", "worker-b"}
    assert all(w.rounds > 0 for w in workers)
    for worker in workers:
        assert worker.failing_parts() == {}, (worker.owner, worker.failing_parts())

    assert {owner for owner, _, _ in ranges} == {"worker-a", "worker-b"}
    # No block range was ever read by two polls: every range of the listener, whoever ran it, is disjoint.
    blocks = sorted((start, end) for _, start, end in ranges)
    assert all(prev_end < start for (_, prev_end), (start, _) in itertools.pairwise(blocks)), ranges
    # Every event of the bank's contracts on chain is delivered exactly once.
    chain = ctx_a.chain("internal")
    contracts = tokens.booking.contracts("internal")
    logs = chain.get_logs(list(contracts), 0, blocks[-1][1])
    d = chain_schema.deliveries
    with ctx_a.engine.connect() as conn:
        delivered = conn.execute(select(func.count()).select_from(d).where(d.c.status == "delivered")).scalar_one()
    assert delivered == len(logs) > 0
    report = reconcile(ctx_a)
    assert report.breaks == [], report.breaks
    ctx_a.close()
    ctx_b.close()


def wait_until_settled(tokens: TokenService, workers: list[Worker], ops: list[Any], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        finished = all(tokens.ops.get(op.id).status not in ACTIVE for op in ops)
        rounds = [w.rounds for w in workers]
        if finished and all(idle(w) for w in workers):
            # One more round of each after that, so that the listener has seen the last blocks.
            while any(w.rounds <= r for w, r in zip(workers, rounds, strict=True)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            if all(idle(w) for w in workers):
                return
        time.sleep(0.05)
    raise AssertionError(f"not settled in {seconds}s: {tokens.ops.counts()}")
