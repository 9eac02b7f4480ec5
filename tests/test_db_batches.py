"""`insert_many`: a batch's rows given to the driver as they are, on both engines."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from andchain.db import check_plain_columns, insert_many, write_transaction
from andchain.ledger import schema as ledger_schema
from andchain.ops import schema as ops_schema


def test_insert_many_writes_what_the_table_insert_writes_in_order(engine):
    t = ops_schema.history
    rows = [{"op_id": f"op{i}", "status": "received", "detail": f"d'{i}\" %s ?", "at_us": 2**62 + i} for i in range(5)]
    with write_transaction(engine) as conn:
        insert_many(conn, t, rows)
        conn.execute(t.insert(), [{**row, "op_id": "by-sqlalchemy"} for row in rows[:1]])
    with engine.connect() as conn:
        found = conn.execute(select(t.c.op_id, t.c.status, t.c.detail, t.c.at_us).order_by(t.c.seq)).all()
    assert [tuple(r) for r in found[:5]] == [tuple(row.values()) for row in rows]  # quotes and marks kept as text
    assert found[5].op_id == "by-sqlalchemy" and found[5].at_us == 2**62  # the same columns, the same values


def test_insert_many_of_nothing_writes_nothing(engine):
    with write_transaction(engine) as conn:
        insert_many(conn, ops_schema.history, [])
    with engine.connect() as conn:
        assert conn.execute(select(ops_schema.history)).all() == []


def test_insert_many_refuses_a_column_whose_type_converts_its_values_before_writing_anything(engine):
    t = ledger_schema.transfers
    row = {column.name: None for column in t.columns}
    with pytest.raises(TypeError, match="amount"), write_transaction(engine) as conn:
        insert_many(conn, t, [row])
    with engine.connect() as conn:
        assert conn.execute(select(t)).all() == []


def test_a_duplicate_in_insert_many_raises_the_integrity_error_and_rolls_back_with_its_transaction(engine):
    t = ops_schema.transactions
    row = {
        "network": "internal", "hash": "0x" + "ab" * 32, "chain_id": 1, "op_id": "op", "step": "", "sender": "0x1",
        "nonce": 0, "raw": "00", "status": "signed", "block_number": None, "block_hash": None,
        "created_at_us": 1, "updated_at_us": 1,
    }  # fmt: skip
    with pytest.raises(IntegrityError), write_transaction(engine) as conn:
        insert_many(conn, t, [row, {**row, "hash": "0x" + "cd" * 32}, row])
    with engine.connect() as conn:
        assert conn.execute(select(t)).all() == []


def test_columns_whose_values_sqlalchemy_converts_or_fills_in_are_refused():
    from sqlalchemy import Column, Enum, Integer, MetaData, String, Table
    from sqlalchemy.dialects import postgresql, sqlite

    t = Table(
        "plain_or_not",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(10)),
        Column("kind", Enum("a", "b", name="kind")),  # a String whose values SQLAlchemy may convert
        Column("stamp", Integer, default=lambda: 1),  # filled in by SQLAlchemy when left out
    )
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        check_plain_columns(dialect, t, ("id", "name", "stamp"), all_given=True)
        check_plain_columns(dialect, t, ("name",))  # an UPDATE of one column
        with pytest.raises(TypeError, match="stamp"):
            check_plain_columns(dialect, t, ("id", "name"), all_given=True)
    with pytest.raises(TypeError, match="kind"):
        check_plain_columns(postgresql.dialect(), t, ("kind",))
