"""The book of record's store: exact, double-entry, idempotent, batched (after TigerBeetle).

`create_transfers` loads and locks the rows a batch touches (the accounts, the
pending transfers it resolves or that are due to expire, the ids it supplies), lets
the pure rules of `andchain.ledger.rules` apply the whole batch in memory, asserts
that the batch is balanced, then writes it with one statement per table. A
transfer's id is its idempotency key: replaying it returns `exists` and changes
nothing, and an id that failed for a transient reason answers `id_already_failed`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from andchain.db import (
    amount_encoder,
    decode_amount,
    exact_sum,
    in_chunks,
    lock_conflict,
    placeholder,
    write_transaction,
)
from andchain.errors import DomainError, NotFound
from andchain.ledger import schema
from andchain.ledger.assets import BookAssets, conflict
from andchain.ledger.model import (
    BATCH_SIZE_MAX,
    Account,
    AccountKind,
    AccountSpec,
    Clock,
    CreateResult,
    IdSource,
    PendingStatus,
    Result,
    Transfer,
    TransferFlags,
    TransferSpec,
    system_clock_us,
)
from andchain.ledger.rules import (
    CMNED,
    DMNEC,
    KNOWN_ACCOUNT_FLAGS,
    Balance,
    Batch,
    Pending,
    StoredFields,
    account_ref,
    apply_batch,
    check_batch,
    dump_metadata,
    expire,
    is_account_id,
    valid_account_name,
)
from andchain.money import DEFAULT_ASSETS, Asset, AssetRegistry, MoneyError

log = logging.getLogger(__name__)

RETRIES_MAX = 5
SELECT_IN_CHUNK = 8190  # a whole batch's ids in one statement
SELECT_IN_CHUNK_OLD = 900
_PENDING = int(TransferFlags.PENDING)
_VOID = int(TransferFlags.VOID_PENDING)
_POST_OR_VOID = int(TransferFlags.POST_PENDING) | _VOID


class BatchTooLarge(DomainError):
    code = "batch_too_large"
    http_status = 413


def account_not_found(ref: int | str) -> NotFound:
    """The refusal for an account that is not there, worded from the reference alone: an account
    a caller may not see is refused in the same words, so nothing tells the two apart."""
    hint = f"; an account id is written id:{ref}" if isinstance(ref, str) and ref.isascii() and ref.isdigit() else ""
    return NotFound(f"no account {ref!r}{hint}", code="account_not_found")


def _load_metadata(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


class Ledger:
    """The double-entry book of record on one database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        engine: Engine,
        assets: AssetRegistry | None = None,
        *,
        clock: Clock = system_clock_us,
        ids: IdSource | None = None,
        expire_batch_max: int = 1000,
    ) -> None:
        self.engine = engine
        # The registry knows the assets recorded in this database too. A plain registry
        # given here is copied: the context passes its BookAssets, shared with the CLI and API.
        self.assets = assets if isinstance(assets, BookAssets) else BookAssets(engine, assets or DEFAULT_ASSETS)
        self.clock = clock
        self.ids = ids or IdSource(clock_us=clock)
        self.expire_batch_max = expire_batch_max
        self._dialect = engine.dialect.name
        self._encode = amount_encoder(self._dialect)
        self._ph = placeholder(engine)
        self._pg = self._dialect == "postgresql"
        self._for_update = " FOR UPDATE" if self._pg else ""
        # SQLite before 3.32 takes at most 999 parameters in one statement, later ones 32,766.
        self._in_chunk = SELECT_IN_CHUNK if sqlite3.sqlite_version_info >= (3, 32) else SELECT_IN_CHUNK_OLD

    # ------------------------------------------------------------------ accounts

    def create_accounts(self, specs: Sequence[AccountSpec], *, conn: Connection | None = None) -> list[CreateResult]:
        """Open accounts (idempotent by name). With `conn`, inside the caller's write transaction."""
        if len(specs) > BATCH_SIZE_MAX:
            raise BatchTooLarge(f"a batch holds at most {BATCH_SIZE_MAX} accounts, was {len(specs)}")
        now = self.clock()
        if conn is not None:
            return self._create_accounts(conn, specs, now)
        with write_transaction(self.engine) as own:
            return self._create_accounts(own, specs, now)

    def _create_accounts(self, conn: Connection, specs: Sequence[AccountSpec], now: int) -> list[CreateResult]:
        results = [self._create_account(conn, index, spec, now) for index, spec in enumerate(specs)]
        # The book records the asset of every account it holds, so that another process
        # (one that never added the asset to its memory) still knows its scale.
        # (An account found existing had its asset recorded when it was opened.)
        opened = {self.assets.get(specs[r.index].asset) for r in results if r.result == Result.OK}
        if opened:
            self._record_assets(conn, opened, now)
        return results

    def register_assets(self, assets: Iterable[Asset]) -> list[Asset]:
        """Record assets in the book so that every process on this database knows them (idempotent).

        An asset whose code is already known with another scale (built in, configured,
        or recorded by anyone) is refused with `asset_scale_conflict`, and nothing is recorded.
        """
        wanted: dict[str, Asset] = {}
        for asset in assets:
            if not isinstance(asset, Asset):
                raise MoneyError(f"register_assets takes Asset values, was {type(asset).__name__}")
            prior = wanted.setdefault(asset.code, asset)
            if prior != asset:
                raise conflict(prior, asset, "given twice, once")
            if asset.code in self.assets and self.assets.get(asset.code) != asset:
                raise conflict(self.assets.get(asset.code), asset, "known")
        if wanted:
            with write_transaction(self.engine) as conn:
                self._record_assets(conn, wanted.values(), self.clock())
            for asset in wanted.values():
                self.assets.add(asset)
        return list(wanted.values())

    def _record_assets(self, conn: Connection, assets: Iterable[Asset], now: int) -> None:
        rows = sorted((asset.code, asset.scale, now) for asset in assets)
        ph = self._ph
        # Another process may record the same code at the same time: the first one wins,
        # and the read below refuses a scale that differs from the one recorded.
        conn.exec_driver_sql(
            f"INSERT INTO ledger_assets (code, scale, created_at_us) VALUES ({ph}, {ph}, {ph}) "
            "ON CONFLICT (code) DO NOTHING",
            rows,
        )
        table = schema.assets
        found = conn.execute(select(table.c.code, table.c.scale).where(table.c.code.in_([row[0] for row in rows])))
        stored = {str(row[0]): int(row[1]) for row in found}
        for code, scale, _ in rows:
            if stored[code] != scale:
                raise conflict(Asset(code, stored[code]), Asset(code, scale), "recorded in the ledger's database")

    def _create_account(self, conn: Connection, index: int, spec: AccountSpec, now: int) -> CreateResult:
        name = spec.name.strip() if isinstance(spec.name, str) else ""
        if not valid_account_name(name):
            return CreateResult(index, name, Result.NAME_INVALID)
        if spec.asset not in self.assets:
            return CreateResult(index, name, Result.UNKNOWN_ASSET)
        asset = self.assets.get(spec.asset).code
        try:
            kind = AccountKind(spec.kind).value
        except ValueError:
            return CreateResult(index, name, Result.KIND_INVALID)
        if spec.flags & ~KNOWN_ACCOUNT_FLAGS or (spec.flags & DMNEC and spec.flags & CMNED):
            return CreateResult(index, name, Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE)
        meta = dump_metadata(spec.metadata)
        found = conn.execute(
            select(
                schema.accounts.c.id,
                schema.accounts.c.asset,
                schema.accounts.c.kind,
                schema.accounts.c.flags,
                schema.accounts.c.metadata,
            ).where(schema.accounts.c.name == name)
        ).first()
        if found is not None:
            same = (found.asset, found.kind, found.flags, found.metadata) == (asset, kind, spec.flags, meta)
            result = Result.EXISTS if same else Result.EXISTS_WITH_DIFFERENT_FIELDS
            return CreateResult(index, name, result, account_id=int(found.id))
        insert = (
            schema.accounts.insert()
            .values(
                name=name,
                asset=asset,
                kind=kind,
                flags=spec.flags,
                metadata=meta,
                closed=False,
                frozen=False,
                created_at_us=now,
                debits_pending=0,
                debits_posted=0,
                credits_pending=0,
                credits_posted=0,
            )
            .returning(schema.accounts.c.id)
        )
        if not self._pg:  # SQLite's single writer: nobody can insert the same name in between
            return CreateResult(index, name, Result.OK, account_id=int(conn.execute(insert).scalar_one()))
        try:
            with conn.begin_nested():
                account_id = int(conn.execute(insert).scalar_one())
        except IntegrityError:
            # Another transaction opened the same account since we looked (two workers booking the
            # first transfer of a new address): it is there now, compare with it.
            return self._create_account(conn, index, spec, now)
        return CreateResult(index, name, Result.OK, account_id=account_id)

    def account(self, ref: int | str, *, conn: Connection | None = None) -> Account:
        """An account by reference: an int or `id:42` is an id, any other string a name.
        With `conn`, read inside the caller's transaction (it sees what that transaction wrote)."""
        key = account_ref(ref)
        table = schema.accounts
        where = table.c.id == key if isinstance(key, int) else table.c.name == key
        if conn is not None:
            row = conn.execute(select(table).where(where)).first()
        else:
            with self.engine.connect() as own:
                row = own.execute(select(table).where(where)).first()
        if row is None:
            raise account_not_found(ref)
        return _account_of(row)

    def accounts_named(self, names: Sequence[str], *, conn: Connection | None = None) -> dict[str, Account]:
        """The accounts of these names that exist, read at once (a batch of requests reads its balances).
        With `conn`, read inside the caller's transaction."""
        if conn is None:
            with self.engine.connect() as own:
                return self.accounts_named(names, conn=own)
        table = schema.accounts
        return {
            row.name: _account_of(row)
            for chunk in in_chunks(sorted(set(names)))
            for row in conn.execute(select(table).where(table.c.name.in_(chunk)))
        }

    def account_id(self, ref: int | str) -> int:
        """The id an account reference names; an id is returned as given, a name is looked up."""
        key = account_ref(ref)
        return key if isinstance(key, int) else self.account(key).id

    def list_accounts(
        self, *, after_id: int = 0, limit: int = 100, asset: str | None = None, prefix: str | None = None
    ) -> list[Account]:
        table = schema.accounts
        query = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
        if asset:
            query = query.where(table.c.asset == asset.upper())
        if prefix:
            query = query.where(table.c.name.startswith(prefix, autoescape=True))
        with self.engine.connect() as conn:
            return [_account_of(row) for row in conn.execute(query)]

    def close_account(self, ref: int | str) -> Account:
        account = self.account(ref)
        if account.debits_pending or account.credits_pending:
            raise DomainError(
                f"account {account.name} has pending amounts; post or void them first",
                code="account_has_pending_transfers",
            )
        with write_transaction(self.engine) as conn:
            conn.execute(update(schema.accounts).where(schema.accounts.c.id == account.id).values(closed=True))
        return self.account(account.id)

    def set_frozen(self, names: Sequence[str], frozen: bool, *, conn: Connection) -> int:
        """Freeze (or unfreeze) accounts on a lawful order, in the caller's transaction: from its commit,
        no new transfer debits them but a seizure (code "seize"); what was reserved before still posts
        or voids. Returns how many accounts changed."""
        if not names:
            return 0
        table = schema.accounts
        result = conn.execute(
            update(table).where(table.c.name.in_(sorted(set(names))), table.c.frozen != frozen).values(frozen=frozen)
        )
        return int(result.rowcount or 0)

    # ----------------------------------------------------------------- transfers

    def create_transfers(self, specs: Sequence[TransferSpec], *, conn: Connection | None = None) -> list[CreateResult]:
        """Create up to 8,190 transfers atomically per linked chain; one result per transfer.

        With `conn`, the batch joins the caller's write transaction (and commits or rolls
        back with it), for callers such as the listener whose own record must commit together
        with the ledger's.
        """
        if len(specs) > BATCH_SIZE_MAX:
            raise BatchTooLarge(f"a batch holds at most {BATCH_SIZE_MAX} transfers, was {len(specs)}")
        if not specs:
            return []
        ids = [spec.id if spec.id is not None else self.ids.new_id() for spec in specs]
        if conn is not None:
            return self._in_callers_transaction(conn, specs, ids)
        for attempt in range(RETRIES_MAX):
            try:
                with write_transaction(self.engine) as conn:
                    return self._create_transfers(conn, specs, ids)
            except (IntegrityError, DBAPIError) as exc:
                # Another process wrote the same id, or PostgreSQL broke a deadlock
                # between two batches: the batch is retried whole, and the existence
                # check then sees what the other one wrote.
                if attempt == RETRIES_MAX - 1 or not _is_retryable(exc):
                    raise
                log.info("ledger batch retry attempt=%d reason=%s", attempt + 1, type(exc.orig).__name__)
        raise AssertionError("unreachable")  # pragma: no cover

    def _in_callers_transaction(
        self, conn: Connection, specs: Sequence[TransferSpec], ids: list[str]
    ) -> list[CreateResult]:
        """The batch inside a savepoint of the caller's transaction: when another process committed a
        transfer with one of these ids in between (the listener of another worker booking the same event),
        the savepoint is rolled back and the batch applied again, and then sees it (`exists`)."""
        for attempt in range(RETRIES_MAX):
            try:
                with conn.begin_nested():
                    return self._create_transfers(conn, specs, ids)
            except IntegrityError:
                if attempt == RETRIES_MAX - 1:
                    raise
                log.info("ledger batch retry in the caller's transaction attempt=%d", attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def create_transfer(self, spec: TransferSpec, *, conn: Connection | None = None) -> CreateResult:
        return self.create_transfers([spec], conn=conn)[0]

    def _create_transfers(self, conn: Connection, specs: Sequence[TransferSpec], ids: list[str]) -> list[CreateResult]:
        now = self.clock()
        due = self._lock_due_pendings(conn, now)
        referenced = {s.pending_id for s in specs if s.pending_id and s.flags & _POST_OR_VOID}
        pendings: dict[str, Pending | None] = {p.id: p for p in due}
        pendings.update(self._lock_pendings(conn, referenced - pendings.keys()))
        # Pendings already past their timeout are expired before anything else, so
        # a post or void that names one sees `pending_transfer_expired`.
        for p in pendings.values():
            if (
                p is not None
                and p.status == PendingStatus.PENDING
                and p.expires_at_us is not None
                and p.expires_at_us <= now
                and p not in due
            ):
                due.append(p)
        # Only ints go in: in a set, True or 1.0 would stand for account 1 and could push it out.
        account_ids = {
            ref
            for spec in specs
            for ref in (spec.debit_account_id, spec.credit_account_id)
            if ref.__class__ is int or is_account_id(ref)
        }
        for p in pendings.values():
            if p is not None:
                account_ids.add(p.debit)
                account_ids.add(p.credit)
        balances = self._lock_accounts(conn, account_ids)
        # The ids are read once the accounts are locked: a concurrent batch that booked
        # the same transfer on the same accounts has committed by now, so this one sees
        # `exists` instead of failing the transfer against the balances it left.
        supplied = [ids[i] for i, spec in enumerate(specs) if spec.id is not None]
        existing, failed = self._known_ids(conn, supplied)
        batch = Batch(
            now_us=now, balances=balances, pendings=pendings, existing=existing, failed=failed, encode=self._encode
        )
        for p in due:
            expire(batch, p)
        results = apply_batch(batch, specs, ids)
        check_batch(batch)
        self._write(conn, batch)
        return results

    # -------------------------------------------------------------- persistence

    def _select_in(self, conn: Connection, sql: str, values: Sequence[Any], suffix: str = "") -> list[Any]:
        """Rows whose key is in `values`: one array parameter on PostgreSQL, chunked IN lists on SQLite."""
        if self._pg:
            return list(conn.exec_driver_sql(f"{sql} = ANY(%s){suffix}", (list(values),)).fetchall())
        rows: list[Any] = []
        for start in range(0, len(values), self._in_chunk):
            chunk = values[start : start + self._in_chunk]
            marks = ",".join([self._ph] * len(chunk))
            rows.extend(conn.exec_driver_sql(f"{sql} IN ({marks}){suffix}", tuple(chunk)).fetchall())
        return rows

    def _lock_due_pendings(self, conn: Connection, now: int) -> list[Pending]:
        ph = self._ph
        lock = " FOR UPDATE OF p" if self._dialect == "postgresql" else ""
        rows = conn.exec_driver_sql(
            "SELECT p.id, t.debit_account_id, t.credit_account_id, t.amount, t.asset, p.status, p.expires_at_us "
            "FROM ledger_pending p JOIN ledger_transfers t ON t.id = p.id "
            f"WHERE p.status = 'pending' AND p.expires_at_us IS NOT NULL AND p.expires_at_us <= {ph} "
            f"ORDER BY p.expires_at_us, p.id LIMIT {int(self.expire_batch_max)}{lock}",
            (now,),
        ).fetchall()
        return [_pending_of(row) for row in rows]

    def _lock_pendings(self, conn: Connection, ids: set[str]) -> dict[str, Pending | None]:
        if not ids:
            return {}
        lock = " FOR UPDATE OF t" if self._dialect == "postgresql" else ""
        rows = self._select_in(
            conn,
            "SELECT t.id, t.debit_account_id, t.credit_account_id, t.amount, t.asset, p.status, p.expires_at_us "
            "FROM ledger_transfers t LEFT JOIN ledger_pending p ON p.id = t.id WHERE t.id",
            sorted(ids),
            f" ORDER BY t.id{lock}",
        )
        return {row[0]: (_pending_of(row) if row[5] is not None else None) for row in rows}

    def _known_ids(self, conn: Connection, ids: list[str]) -> tuple[dict[str, StoredFields], dict[str, Result]]:
        """The supplied ids already used: the fields of those recorded, the results of those that failed.
        One statement (a UNION of both tables) per chunk of ids: each round trip counts in a batch."""
        existing: dict[str, StoredFields] = {}
        failed: dict[str, Result] = {}
        if not ids:
            return existing, failed
        columns = (
            "debit_account_id, credit_account_id, amount, asset, flags, pending_id, timeout_s, code, memo, metadata"
        )
        nulls = ", ".join(["NULL"] * 10)
        if self._pg:
            rows = conn.exec_driver_sql(
                f"SELECT id, {columns}, NULL AS result FROM ledger_transfers WHERE id = ANY(%(ids)s) "
                f"UNION ALL SELECT id, {nulls}, result FROM ledger_failed_transfers WHERE id = ANY(%(ids)s)",
                {"ids": ids},
            ).fetchall()
        else:
            rows = []
            chunk_max = self._in_chunk // 2
            for start in range(0, len(ids), chunk_max):
                chunk = tuple(ids[start : start + chunk_max])
                marks = ",".join("?" * len(chunk))
                rows.extend(
                    conn.exec_driver_sql(
                        f"SELECT id, {columns}, NULL FROM ledger_transfers WHERE id IN ({marks}) "
                        f"UNION ALL SELECT id, {nulls}, result FROM ledger_failed_transfers WHERE id IN ({marks})",
                        chunk + chunk,
                    ).fetchall()
                )
        for row in rows:
            if row[11] is not None:
                failed[row[0]] = Result(row[11])
                continue
            existing[row[0]] = (
                int(row[1]),
                int(row[2]),
                decode_amount(row[3]),
                row[4],
                int(row[5]),
                row[6],
                int(row[7]),
                row[8],
                row[9],
                row[10],
            )
        return existing, failed

    def _lock_accounts(self, conn: Connection, ids: set[int]) -> dict[int, Balance]:
        if not ids:
            return {}
        clean = sorted(i for i in ids if 0 < i < 2**63)  # ints only, as every caller collects them
        rows = self._select_in(
            conn,
            "SELECT id, asset, flags, closed, debits_pending, debits_posted, credits_pending, credits_posted, frozen "
            "FROM ledger_accounts WHERE id",
            clean,
            f" ORDER BY id{self._for_update}",
        )
        return {int(row[0]): _balance_of(row) for row in rows}

    def _write(self, conn: Connection, batch: Batch) -> None:
        ph = self._ph
        enc = self._encode
        if batch.rows:  # their amounts already encoded for this engine (Batch.encode)
            insert_rows(conn, "ledger_transfers", TRANSFER_COLUMNS, batch.rows)
        if batch.failed_new:
            failed = [(tid, result.value, batch.now_us) for tid, result in batch.failed_new.items()]
            insert_rows(conn, "ledger_failed_transfers", FAILED_COLUMNS, failed)
        if batch.pending_new:
            # A pending created and resolved in the same batch is inserted in its final state.
            pending_rows = []
            for p in batch.pending_new.values():
                status, by = batch.pending_resolved.get(p.id, (PendingStatus.PENDING.value, None))
                pending_rows.append((p.id, str(status), by, p.expires_at_us))
            insert_rows(conn, "ledger_pending", PENDING_COLUMNS, pending_rows)
        updates = [
            (str(status), resolved_by, pid)
            for pid, (status, resolved_by) in batch.pending_resolved.items()
            if pid not in batch.pending_new
        ]
        if updates:
            conn.exec_driver_sql(
                f"UPDATE ledger_pending SET status = {ph}, resolved_by = {ph} WHERE id = {ph}", updates
            )
        # Accounts grouped by the balance fields that changed: a statement sets only those, so
        # that the common case (a client's posted credits, the bank's posted debits) sends and
        # writes a quarter of the values. At most 15 groups, in practice one to three.
        groups: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        for b in batch.balances.values():
            dp, dpo, cp, cpo = initial = b.initial
            if b.dp == dp and b.dpo == dpo and b.cp == cp and b.cpo == cpo:
                continue
            if b.dp == dp and b.cp == cp and (b.dpo == dpo or b.cpo == cpo):  # posted on one side only
                if b.dpo == dpo:
                    groups.setdefault(_CPO, []).append((enc(b.cpo), b.id))
                else:
                    groups.setdefault(_DPO, []).append((enc(b.dpo), b.id))
                continue
            state = (b.dp, b.dpo, b.cp, b.cpo)
            fields = tuple(i for i in range(4) if state[i] != initial[i])
            groups.setdefault(fields, []).append((*(enc(state[i]) for i in fields), b.id))
        for fields, values in sorted(groups.items()):
            names = [_BALANCE_COLUMNS[i] for i in fields]
            if self._pg:
                # One statement for the group instead of a round trip per account.
                sets = ", ".join(f"{name} = v.{name}" for name in names)
                arrays = ", ".join(["%s::numeric[]"] * len(names))
                conn.exec_driver_sql(
                    f"UPDATE ledger_accounts AS a SET {sets} FROM unnest({arrays}, %s::bigint[]) "
                    f"AS v({', '.join(names)}, id) WHERE a.id = v.id",
                    tuple(list(column) for column in zip(*values, strict=True)),
                )
            else:
                sets = ", ".join(f"{name} = ?" for name in names)
                conn.exec_driver_sql(f"UPDATE ledger_accounts SET {sets} WHERE id = ?", values)

    def expire_pending(self) -> int:
        """Expire every pending transfer past its timeout (in bounded batches); returns how many."""
        total = 0
        for _ in range(1_000_000):
            with write_transaction(self.engine) as conn:
                now = self.clock()
                due = self._lock_due_pendings(conn, now)
                if not due:
                    return total
                ids = {p.debit for p in due} | {p.credit for p in due}
                batch = Batch(
                    now_us=now, balances=self._lock_accounts(conn, ids), pendings={}, existing={}, encode=self._encode
                )
                for p in due:
                    expire(batch, p)
                check_batch(batch)
                self._write(conn, batch)
                total += len(due)
        return total

    # ------------------------------------------------------------------- reads

    def transfer(self, transfer_id: str, *, conn: Connection | None = None) -> Transfer:
        found = self.lookup_transfers([transfer_id], conn=conn)
        if not found:
            raise NotFound(f"no transfer {transfer_id!r}", code="transfer_not_found")
        return found[0]

    def lookup_transfers(self, ids: Iterable[str], *, conn: Connection | None = None) -> list[Transfer]:
        wanted = list(ids)
        if not wanted:
            return []
        t, p = schema.transfers, schema.pending
        query = (
            select(t, p.c.status, p.c.expires_at_us.label("pending_expires_at_us"))
            .outerjoin(p, p.c.id == t.c.id)
            .where(t.c.id.in_(wanted))
            .order_by(t.c.seq)
        )
        if conn is not None:
            return [_transfer_of(row) for row in conn.execute(query)]
        with self.engine.connect() as own:
            return [_transfer_of(row) for row in own.execute(query)]

    def list_transfers(
        self, *, after_seq: int = 0, limit: int = 100, account_id: int | None = None, newest_first: bool = False
    ) -> list[Transfer]:
        """Transfers in creation order; with account_id, that account's history."""
        t, p = schema.transfers, schema.pending
        query = select(t, p.c.status, p.c.expires_at_us.label("pending_expires_at_us")).outerjoin(p, p.c.id == t.c.id)
        if account_id is not None:
            query = query.where(or_(t.c.debit_account_id == account_id, t.c.credit_account_id == account_id))
        if newest_first:
            if after_seq:
                query = query.where(t.c.seq < after_seq)
            query = query.order_by(t.c.seq.desc())
        else:
            query = query.where(t.c.seq > after_seq).order_by(t.c.seq)
        with self.engine.connect() as conn:
            return [_transfer_of(row) for row in conn.execute(query.limit(limit))]

    def totals(self) -> dict[str, dict[str, int]]:
        """Per asset: the sums of every account's balances. Debits must equal credits."""
        a = schema.accounts
        query = (
            select(
                a.c.asset,
                exact_sum(a.c.debits_pending),
                exact_sum(a.c.debits_posted),
                exact_sum(a.c.credits_pending),
                exact_sum(a.c.credits_posted),
            )
            .group_by(a.c.asset)
            .order_by(a.c.asset)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {
            row[0]: {
                "debits_pending": decode_amount(row[1]),
                "debits_posted": decode_amount(row[2]),
                "credits_pending": decode_amount(row[3]),
                "credits_posted": decode_amount(row[4]),
            }
            for row in rows
        }

    def verify(self) -> list[str]:
        """Recompute every balance from the transfers and compare; also debits == credits per asset.

        Returns a list of breaks (empty when the book is sound).
        """
        breaks: list[str] = []
        for asset, sums in self.totals().items():
            if sums["debits_posted"] != sums["credits_posted"]:
                breaks.append(f"{asset}: posted debits {sums['debits_posted']} != credits {sums['credits_posted']}")
            if sums["debits_pending"] != sums["credits_pending"]:
                breaks.append(f"{asset}: pending debits {sums['debits_pending']} != credits {sums['credits_pending']}")
        t, p, a = schema.transfers, schema.pending, schema.accounts
        not_pending = t.c.flags.op("&")(_PENDING) == 0
        derived: dict[int, list[int]] = {}
        with self.engine.connect() as conn:
            for column, slot in ((t.c.debit_account_id, 1), (t.c.credit_account_id, 3)):
                posted = conn.execute(
                    select(column, exact_sum(t.c.amount))
                    .where(and_(not_pending, t.c.flags.op("&")(_VOID) == 0))
                    .group_by(column)
                )
                for row in posted:
                    derived.setdefault(int(row[0]), [0, 0, 0, 0])[slot] = decode_amount(row[1])
                held = conn.execute(
                    select(column, exact_sum(t.c.amount))
                    .join(p, p.c.id == t.c.id)
                    .where(p.c.status == PendingStatus.PENDING.value)
                    .group_by(column)
                )
                for row in held:
                    derived.setdefault(int(row[0]), [0, 0, 0, 0])[slot - 1] = decode_amount(row[1])
            for row in conn.execute(select(a)):
                account = _account_of(row)
                want = derived.get(account.id, [0, 0, 0, 0])
                have = [account.debits_pending, account.debits_posted, account.credits_pending, account.credits_posted]
                if want != have:
                    breaks.append(f"account {account.name}: cached balances {have} != derived from transfers {want}")
                if account.flags & DMNEC and account.debits_pending + account.debits_posted > account.credits_posted:
                    breaks.append(f"account {account.name}: debits exceed credits despite its flag")
                if account.flags & CMNED and account.credits_pending + account.credits_posted > account.debits_posted:
                    breaks.append(f"account {account.name}: credits exceed debits despite its flag")
        return breaks

    def failed_result(self, transfer_id: str) -> Result | None:
        """The transient result a transfer id failed with, or None: such an id answers id_already_failed."""
        table = schema.failed_transfers
        with self.engine.connect() as conn:
            found = conn.execute(select(table.c.result).where(table.c.id == transfer_id)).scalar_one_or_none()
        return None if found is None else Result(found)

    def count_transfers(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.transfers)).scalar_one())


TRANSFER_COLUMNS = (
    ("id", "text"),
    ("debit_account_id", "bigint"),
    ("credit_account_id", "bigint"),
    ("amount", "numeric"),
    ("asset", "text"),
    ("flags", "int"),
    ("pending_id", "text"),
    ("timeout_s", "int"),
    ("code", "text"),
    ("memo", "text"),
    ("metadata", "text"),
    ("created_at_us", "bigint"),
)
PENDING_COLUMNS = (("id", "text"), ("status", "text"), ("resolved_by", "text"), ("expires_at_us", "bigint"))
FAILED_COLUMNS = (("id", "text"), ("result", "text"), ("created_at_us", "bigint"))
_BALANCE_COLUMNS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
_DPO, _CPO = (1,), (3,)


def insert_rows(
    conn: Connection, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Batched INSERT of rows already encoded for the engine.

    On PostgreSQL the rows travel as one array per column (INSERT ... SELECT FROM
    unnest), one statement and one round trip for the whole batch; on SQLite,
    executemany of one prepared INSERT. The benchmark's raw limit uses this same
    function, so both sides of its ratio insert the same way.
    """
    names = ", ".join(name for name, _ in columns)
    if conn.dialect.name == "postgresql":
        arrays = ", ".join(f"%s::{sql_type}[]" for _, sql_type in columns)
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})",
            tuple(list(column) for column in zip(*rows, strict=True)),
        )
    else:
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)


def _is_retryable(exc: DBAPIError) -> bool:
    return isinstance(exc, IntegrityError) or lock_conflict(exc)


def _pending_of(row: Sequence[Any]) -> Pending:
    return Pending(row[0], int(row[1]), int(row[2]), decode_amount(row[3]), row[4], row[5], row[6])


def _balance_of(row: Sequence[Any]) -> Balance:
    # The four balances are NOT NULL with no fraction on either engine (text digits on SQLite,
    # NUMERIC(40, 0) on PostgreSQL): int() is exact, and the hot path skips decode_amount's checks.
    return Balance(
        int(row[0]),
        row[1],
        int(row[2]),
        bool(row[3]),
        int(row[4]),
        int(row[5]),
        int(row[6]),
        int(row[7]),
        bool(row[8]),
    )


def _account_of(row: Any) -> Account:
    m = row._mapping
    return Account(
        id=int(m["id"]),
        name=m["name"],
        asset=m["asset"],
        kind=m["kind"],
        flags=int(m["flags"]),
        metadata=_load_metadata(m["metadata"]),
        closed=bool(m["closed"]),
        frozen=bool(m["frozen"]),
        created_at_us=int(m["created_at_us"]),
        debits_pending=m["debits_pending"],
        debits_posted=m["debits_posted"],
        credits_pending=m["credits_pending"],
        credits_posted=m["credits_posted"],
    )


def _transfer_of(row: Any) -> Transfer:
    m = row._mapping
    return Transfer(
        id=m["id"],
        seq=int(m["seq"]),
        debit_account_id=int(m["debit_account_id"]),
        credit_account_id=int(m["credit_account_id"]),
        amount=m["amount"],
        asset=m["asset"],
        flags=int(m["flags"]),
        pending_id=m["pending_id"],
        timeout_s=int(m["timeout_s"]),
        code=m["code"],
        memo=m["memo"],
        metadata=_load_metadata(m["metadata"]),
        created_at_us=int(m["created_at_us"]),
        pending_status=m["status"],
        expires_at_us=m["pending_expires_at_us"],
    )
