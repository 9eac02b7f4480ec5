"""The event log: written in the change's transaction, monotonic ids, gap-safe cursor reads, client scoping."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from andchain.db import write_transaction
from andchain.errors import DomainError
from andchain.events import EventLog, NewEvent, append, type_filter
from andchain.events import schema as event_schema
from andchain.events.store import append_with_ids
from andchain.ops import Operations, OpStatus
from tests.conftest import _truncate
from tests.events.conftest import alert, emit


def count(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(event_schema.events)).scalar_one())


def test_ids_only_grow_and_a_cursor_reads_each_event_once(engine, clock):
    log = EventLog(engine)
    ids = []
    for i in range(25):
        ids += emit(engine, clock, alert(f"alert {i}"))
        clock.advance(1)
    assert ids == sorted(ids) and len(set(ids)) == 25
    seen, after = [], 0
    for _ in range(10):
        page = log.read(after=after, limit=7)
        seen += [e.id for e in page.events]
        after = page.position
        if not page.more:
            break
    assert seen == ids
    assert log.read(after=after).events == []
    assert log.read(after=after).position == after == ids[-1]


def test_events_collected_in_a_block_are_written_at_its_end_in_one_statement_in_order(engine, clock):
    """`collecting`: a batch that appends event by event writes them once, in order; a block that raises
    writes none; an append that wants ids writes what was collected before it first."""
    from sqlalchemy import event

    from andchain.events.store import collecting

    log = EventLog(engine)
    inserts: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with write_transaction(engine) as conn, collecting(conn):
            for i in range(5):
                append(conn, [alert(f"collected {i}")], clock())
                with collecting(conn):  # an inner block joins the outer one
                    append(conn, [alert(f"inner {i}")], clock())
            assert inserts == [] and count(engine) == 0
        assert len(inserts) == 1
        assert [e.subject for e in log.read().events] == [f"{w} {i}" for i in range(5) for w in ("collected", "inner")]

        class Boom(Exception):
            pass

        with pytest.raises(Boom), write_transaction(engine) as conn, collecting(conn):
            append(conn, [alert("never")], clock())
            raise Boom
        assert count(engine) == 10

        with write_transaction(engine) as conn, collecting(conn):
            append(conn, [alert("before the ids")], clock())
            (wanted,) = append_with_ids(conn, [alert("with its id")], clock())
            append(conn, [alert("after the ids")], clock())
        # A savepoint inside the block takes its own events with it when it is rolled back.
        with write_transaction(engine) as conn, collecting(conn):
            append(conn, [alert("kept")], clock())
            with pytest.raises(Boom), conn.begin_nested():
                append(conn, [alert("rolled back with its savepoint")], clock())
                with collecting(conn):
                    append(conn, [alert("rolled back too")], clock())
                raise Boom
            with conn.begin_nested():
                append(conn, [alert("in a savepoint kept")], clock())
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    tail = log.read(after=log.read(limit=10).position).events
    assert [e.subject for e in tail] == [
        "before the ids",
        "with its id",
        "after the ids",
        "in a savepoint kept",
        "kept",
    ]
    assert tail[1].id == wanted and tail[0].id < wanted < tail[2].id


def test_a_change_that_rolls_back_leaves_no_event(engine, clock):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), write_transaction(engine) as conn:
        append(conn, [alert("never")], clock())
        raise Boom
    assert count(engine) == 0
    ops = Operations(engine, clock=clock)
    with pytest.raises(Boom), write_transaction(engine) as conn:
        ops.create("mint", "k-1", {"client": "c1", "amount": 5}, conn=conn)
        raise Boom
    assert count(engine) == 0
    op, _ = ops.create("mint", "k-1", {"client": "c1", "amount": 5})
    with pytest.raises(Boom), write_transaction(engine) as conn:
        assert ops.update_if_current(op, status=OpStatus.SUBMITTED, conn=conn) is not None
        raise Boom
    assert [e.type for e in EventLog(engine).read().events] == ["operation.received"]


def test_a_client_reads_only_its_own_events_and_the_bank_reads_all(engine, clock):
    emit(engine, clock, alert("for acme", "acme"), alert("for globex", "globex"), alert("bank only"))
    log = EventLog(engine)
    assert [e.subject for e in log.read(client_id="acme").events] == ["for acme"]
    assert [e.subject for e in log.read(client_id="globex").events] == ["for globex"]
    assert [e.subject for e in log.read().events] == ["for acme", "for globex", "bank only"]
    # A client's position moves past what it may not see, so that it does not read it again.
    assert log.read(client_id="acme").position == log.read().position


def test_types_filter_exact_types_and_families(engine, clock):
    emit(
        engine,
        clock,
        NewEvent("operation.received", "op1", {}),
        NewEvent("operation.needs_attention", "op1", {}),
        NewEvent("mint.succeeded", "op1", {}),
        alert("a"),
        NewEvent("alert.cleared", "a", {}),
    )
    log = EventLog(engine)
    assert [e.type for e in log.read(types=type_filter(["operation.*"])).events] == [
        "operation.received",
        "operation.needs_attention",
    ]
    assert [e.type for e in log.read(types=type_filter(["alert.*", "mint.succeeded"])).events] == [
        "mint.succeeded",
        "alert",
        "alert.cleared",
    ]
    with pytest.raises(DomainError) as refused:
        type_filter(["operation.nonsense"])
    assert refused.value.code == "unknown_event_type"


@pytest.fixture
def pg_engine(request):
    """PostgreSQL alone: SQLite serialises its writers, so its ids commit in order and leave no gap."""
    engine = request.getfixturevalue("_postgres_engine")
    _truncate(engine)
    return engine


@pytest.mark.postgresql
def test_a_reader_never_passes_an_id_that_a_transaction_in_flight_still_holds(pg_engine, clock):
    engine = pg_engine
    log = EventLog(engine)
    with engine.connect() as slow:
        slow_tx = slow.begin()
        (first,) = append_with_ids(slow, [alert("taken first, committed last")], clock())
        (second,) = emit(engine, clock, alert("taken second, committed first"))
        assert second > first
        page = log.read(after=0)
        # The second event is visible, but a reader that took it would then skip the first.
        assert page.events == [] and page.position < first
        slow_tx.commit()
    page = log.read(after=0)
    assert [e.id for e in page.events] == [first, second]


@pytest.mark.postgresql
def test_a_rolled_back_id_is_a_gap_that_readers_pass(pg_engine, clock):
    engine = pg_engine
    log = EventLog(engine)
    (before,) = emit(engine, clock, alert("before"))
    with engine.connect() as conn:
        tx = conn.begin()
        (lost,) = append_with_ids(conn, [alert("rolled back")], clock())
        assert log.read(after=before).position == before  # still in flight: not passed
        tx.rollback()
    (after,) = emit(engine, clock, alert("after"))
    assert after > lost > before
    page = log.read(after=before)
    assert [e.id for e in page.events] == [after]
