"""Two processes hammer one hot account on PostgreSQL: it is never overdrawn."""

from __future__ import annotations

import multiprocessing

import pytest

from andchain import migrate
from andchain.db import make_engine
from andchain.ledger import AccountFlags, AccountSpec, Ledger, Result, TransferSpec

FUNDED = 1_000
PER_PROCESS_ATTEMPTS = 800  # two processes try 1,600 units against 1,000 available


def _spend(url: str, worker: int, queue: multiprocessing.Queue) -> None:
    engine = make_engine(url)
    ledger = Ledger(engine)
    ok = 0
    for batch in range(PER_PROCESS_ATTEMPTS // 20):
        specs = [TransferSpec(2, 3, 1, id=f"w{worker}-{batch}-{i}") for i in range(20)]
        ok += sum(r.result == Result.OK for r in ledger.create_transfers(specs))
    queue.put(ok)
    engine.dispose()


@pytest.mark.postgresql
def test_two_processes_never_overdraw_a_hot_account(postgres_server):
    url = postgres_server.database_url("concurrency")
    from andchain.devtools.postgres import create_database

    create_database(postgres_server, "concurrency")
    engine = make_engine(url)
    migrate.upgrade(engine)
    ledger = Ledger(engine)
    ledger.create_accounts(
        [
            AccountSpec("bank:usd:cash", "USD"),
            AccountSpec("clients:hot:usd", "USD", flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
            AccountSpec("merchants:sink:usd", "USD"),
        ]
    )
    assert ledger.create_transfer(TransferSpec(1, 2, FUNDED, id="fund")).result == Result.OK

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_spend, args=(url, n, queue)) for n in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    booked = [queue.get(timeout=10) for _ in workers]

    hot = ledger.account(2)
    assert sum(booked) == FUNDED
    assert all(count > 0 for count in booked), booked
    assert hot.debits_posted == hot.credits_posted == FUNDED
    assert ledger.account(3).credits_posted == FUNDED
    assert ledger.verify() == []
    engine.dispose()


def test_two_transactions_booking_the_same_event_book_it_once_and_neither_fails(engine):
    """A worker's operation and another worker's listener book the same chain event, each inside its own
    transaction, both opening the mirror account of an address seen for the first time: the second
    waits for the first, then finds the account and the transfer (`exists`) instead of failing."""
    import threading

    from andchain.db import write_transaction

    ledger = Ledger(engine)
    ledger.create_accounts([AccountSpec("tokens:a", "USD")])
    results: list[tuple[Result, Result]] = []
    errors: list[BaseException] = []
    inside = threading.Barrier(2, timeout=10)

    def book() -> None:
        try:
            with write_transaction(engine) as conn:
                if engine.dialect.name == "postgresql":
                    inside.wait()  # both transactions open before either writes
                (opened,) = ledger.create_accounts([AccountSpec("tokens:new", "USD")], conn=conn)
                (booked,) = ledger.create_transfers(
                    [TransferSpec(1, opened.account_id, 5, id="chain:1:0xabc:0")], conn=conn
                )
                results.append((opened.result, booked.result))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=book) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and sorted(results) == [(Result.EXISTS, Result.EXISTS), (Result.OK, Result.OK)]
    assert ledger.account("tokens:new").credits_posted == 5
