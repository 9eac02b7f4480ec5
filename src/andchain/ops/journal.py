"""The journal of every transaction an operation signed (table ops_transactions).

A row is written in the same database transaction that records the signed
transaction in its operation, before it is broadcast; it follows the transaction:
signed -> final (with its block), or replaced (its nonce went to another) or
reverted; a final one that a reorg deeper than the confirmations removed becomes
dropped, and final again once its same bytes are mined again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Connection, Engine, and_, select, update

from andchain.chains.client import SentTx
from andchain.db import check_plain_columns, insert_many, placeholder
from andchain.ops import schema

T = schema.transactions


class TxRecord(enum.StrEnum):
    SIGNED = "signed"
    FINAL = "final"
    DROPPED = "dropped"
    REPLACED = "replaced"
    REVERTED = "reverted"


# Rows whose bytes may still be (or be again) the transaction at their nonce.
LIVE = (TxRecord.SIGNED, TxRecord.FINAL, TxRecord.DROPPED)


@dataclass(frozen=True)
class JournalEntry:
    network: str
    hash: str
    chain_id: int
    op_id: str
    step: str
    sender: str
    nonce: int
    raw: bytes
    status: TxRecord
    block_number: int | None
    block_hash: str | None


def entry_of(row: object) -> JournalEntry:
    m = row._mapping  # type: ignore[attr-defined]
    return JournalEntry(
        m["network"],
        m["hash"],
        int(m["chain_id"]),
        m["op_id"],
        m["step"],
        m["sender"],
        int(m["nonce"]),
        bytes.fromhex(m["raw"]),
        TxRecord(m["status"]),
        None if m["block_number"] is None else int(m["block_number"]),
        m["block_hash"],
    )


def record_many(
    conn: Connection, network: str, chain_id: int, signed: Sequence[tuple[str, str, SentTx]], now_us: int
) -> None:
    """Signed transactions (operation, step, transaction) recorded in one statement, before any leaves."""
    if not signed:
        return
    insert_many(
        conn,
        T,
        [
            {
                "network": network,
                "hash": tx.hash,
                "chain_id": chain_id,
                "op_id": op_id,
                "step": step[:200],
                "sender": tx.sender,
                "nonce": tx.nonce,
                "raw": tx.raw.hex(),
                "status": TxRecord.SIGNED.value,
                "block_number": None,
                "block_hash": None,
                "created_at_us": now_us,
                "updated_at_us": now_us,
            }
            for op_id, step, tx in signed
        ],
    )


def mark(
    conn: Connection,
    network: str,
    tx_hash: str,
    status: TxRecord,
    now_us: int,
    *,
    block_number: int | None = None,
    block_hash: str | None = None,
) -> None:
    values: dict[str, object] = {"status": status.value, "updated_at_us": now_us}
    if block_number is not None:
        values["block_number"] = block_number
        values["block_hash"] = block_hash
    conn.execute(update(T).where(T.c.network == network, T.c.hash == tx_hash).values(**values))


class FinalMark(NamedTuple):
    """A transaction found final: in which block."""

    network: str
    hash: str
    block_number: int
    block_hash: str


def mark_final_many(conn: Connection, marks: Sequence[FinalMark], now_us: int) -> None:
    """Rows marked final, each with its block, in one statement."""
    if not marks:
        return
    check_plain_columns(conn.dialect, T, ("status", "updated_at_us", "block_number", "block_hash", "network", "hash"))
    ph = placeholder(conn.dialect)
    conn.exec_driver_sql(
        f"UPDATE {T.name} SET status = {ph}, updated_at_us = {ph}, block_number = {ph}, block_hash = {ph} "
        f"WHERE network = {ph} AND hash = {ph}",
        [(TxRecord.FINAL.value, now_us, m.block_number, m.block_hash, m.network, m.hash) for m in marks],
    )


def get(engine: Engine, network: str, tx_hash: str) -> JournalEntry | None:
    with engine.connect() as conn:
        row = conn.execute(select(T).where(T.c.network == network, T.c.hash == tx_hash)).first()
    return None if row is None else entry_of(row)


def owned(conn: Connection, network: str, hashes: Iterable[str]) -> set[str]:
    """Which of these transaction hashes an operation signed."""
    wanted = sorted({h.lower() for h in hashes})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(
            r[0].lower() for r in conn.execute(select(T.c.hash).where(T.c.network == network, T.c.hash.in_(chunk)))
        )
    return found


def at_nonces(engine: Engine, chain_id: int, sender: str, nonces: Sequence[int]) -> dict[int, list[JournalEntry]]:
    """Live journal rows of `sender` at each of `nonces`."""
    if not nonces:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(T).where(
                T.c.chain_id == chain_id,
                T.c.sender == sender,
                T.c.nonce >= min(nonces),
                T.c.nonce <= max(nonces),
                T.c.status.in_([s.value for s in LIVE]),
            )
        ).all()
    out: dict[int, list[JournalEntry]] = {}
    for row in rows:
        entry = entry_of(row)
        out.setdefault(entry.nonce, []).append(entry)
    return out


def watched(engine: Engine, network: str, since_block: int, limit: int) -> list[JournalEntry]:
    """Final transactions mined at or above `since_block`, and every dropped one, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(T)
            .where(
                T.c.network == network,
                (T.c.status == TxRecord.DROPPED.value)
                | and_(T.c.status == TxRecord.FINAL.value, T.c.block_number >= since_block),
            )
            .order_by(T.c.block_number.desc())
            .limit(limit)
        ).all()
    return [entry_of(r) for r in rows]


def watch_head(
    engine: Engine, network: str, since_block: int, limit: int
) -> tuple[JournalEntry | None, list[JournalEntry]]:
    """The newest final transaction mined at or above `since_block` (None if none), and the dropped ones
    (at most `limit`): what a finality watch reads each time; the other final ones only when the newest
    one's block has changed (`watched`). Two look-ups of the (network, status, block) index."""
    with engine.connect() as conn:
        top = conn.execute(
            select(T)
            .where(T.c.network == network, T.c.status == TxRecord.FINAL.value, T.c.block_number >= since_block)
            .order_by(T.c.block_number.desc())
            .limit(1)
        ).first()
        gone = conn.execute(
            select(T)
            .where(T.c.network == network, T.c.status == TxRecord.DROPPED.value)
            .order_by(T.c.block_number.desc())
            .limit(limit)
        ).all()
    return (entry_of(top) if top is not None else None), [entry_of(r) for r in gone]


def dropped(engine: Engine, network: str | None = None) -> list[JournalEntry]:
    query = select(T).where(T.c.status == TxRecord.DROPPED.value)
    if network is not None:
        query = query.where(T.c.network == network)
    with engine.connect() as conn:
        return [entry_of(r) for r in conn.execute(query.order_by(T.c.network, T.c.nonce))]
