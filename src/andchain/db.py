"""Database engines for the embedded default (SQLite, WAL) and PostgreSQL, and exact amounts.

Amounts reach 2^128 while SQLite's INTEGER is 64-bit, so an amount column is stored
as NUMERIC(40, 0) on PostgreSQL and as a 40-digit zero-padded decimal string on
SQLite: exact on both, and the fixed width keeps SQLite's text ordering equal to
numeric ordering. Sums go through `exact_sum`, which is PostgreSQL's SUM over
NUMERIC and, on SQLite, an aggregate registered on every connection that adds the
values as Python ints.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import stat
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Connection, Engine, Integer, MetaData, Numeric, String, Table, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator, TypeEngine

from andchain.money import BALANCE_MAX_MINOR

log = logging.getLogger(__name__)

AMOUNT_DIGITS = 40
IN_LIST_MAX = 500  # values in one statement's IN list: within any SQLite's parameter limit

_T = TypeVar("_T")


def in_chunks(values: Sequence[_T], size: int = IN_LIST_MAX) -> list[Sequence[_T]]:
    """Values in lists short enough for one statement's parameters on any SQLite."""
    return [values[start : start + size] for start in range(0, len(values), size)]


assert BALANCE_MAX_MINOR == 10**AMOUNT_DIGITS - 1

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def lock_conflict(exc: DBAPIError) -> bool:
    """PostgreSQL refused the transaction to break a deadlock, or for a serialization failure: nothing of it
    was written, and the same transaction may simply run again."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")  # deadlock_detected, serialization_failure


def encode_amount_sqlite(value: int) -> str:
    if not 0 <= value <= BALANCE_MAX_MINOR:
        raise ValueError(f"stored amounts must be within 0..10^40-1, was {value}")
    if value.__class__ is int:
        # The hot path (each row and balance a ledger batch writes): zfill takes a third of the
        # time of the format spec below, with the same digits for a non-negative int.
        return str(value).zfill(AMOUNT_DIGITS)
    return f"{value:040d}"


def encode_amount_postgresql(value: int) -> int:
    if not 0 <= value <= BALANCE_MAX_MINOR:
        raise ValueError(f"stored amounts must be within 0..10^40-1, was {value}")
    return value


def amount_encoder(dialect_name: str) -> Callable[[int], Any]:
    """The per-engine encoder, for hot paths that bypass SQLAlchemy's type processing."""
    return encode_amount_sqlite if dialect_name == "sqlite" else encode_amount_postgresql


def decode_amount(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        integral = int(value)
        if integral != value:
            raise ValueError(f"stored amount is not integral: {value}")
        return integral
    return int(value)


class AmountType(TypeDecorator[int]):
    """A non-negative integer of minor units, exact up to 10^40 - 1 on both engines."""

    impl = Numeric(AMOUNT_DIGITS, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(AMOUNT_DIGITS))
        return dialect.type_descriptor(Numeric(AMOUNT_DIGITS, 0, asdecimal=True))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return amount_encoder(dialect.name)(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else decode_amount(value)


class exact_sum(GenericFunction[int]):
    """SUM over an amount column that stays exact beyond 64 bits on SQLite too."""

    type = AmountType()
    inherit_cache = True
    name = "exact_sum"


@compiles(exact_sum, "sqlite")
def _exact_sum_sqlite(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"andchain_exact_sum({compiler.process(element.clauses, **kw)})"


@compiles(exact_sum)
def _exact_sum_default(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"COALESCE(SUM({compiler.process(element.clauses, **kw)}), 0)"


class _SqliteExactSum:
    def __init__(self) -> None:
        self.total = 0

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += int(value)

    def finalize(self) -> str:
        return f"{self.total:040d}" if self.total >= 0 else str(self.total)


SQLITE_FILE_MODE = 0o600


def _private_file(path: Path, *, create: bool) -> None:
    """Create `path` readable and writable by its owner only, or tighten it to that, whatever the umask.

    An existing file is never opened here, only changed by path: SQLite's locks are POSIX
    locks, and closing any descriptor of a file drops every lock this process holds on it,
    those of open connections too (another engine, or a pooled connection, on the same file),
    which lets another process write at the same time and corrupts the database.
    """
    if create:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE))
            return
        except FileExistsError:
            pass
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return  # a -wal or -shm file removed by the last connection's close: nothing to protect
    if mode != SQLITE_FILE_MODE:
        try:
            os.chmod(path, SQLITE_FILE_MODE)
        except PermissionError:
            log.warning("sqlite file=%s is not ours to chmod; it stays readable by others", path)


BUSY_TIMEOUT_S = 30.0
# SQLite copies the write-ahead log back into the database file (a checkpoint) at the end of the commit that
# finds the log 1,000 pages long, while the writers queue (see _Writers) is held: every other writer waits for
# pages copied and synced to disk. Where the log's index can be read (Linux), a writer does that copy itself
# once its turn is over, when CHECKPOINT_PAGES pages are not yet copied. The log starts again from its first
# page only when a write begins with every page copied (and no reader holds an older part), which other
# writers seldom leave time for: a writer that finds the log CHECKPOINT_PAGES long with at most
# RESTART_PAGES_MAX pages left to copy copies those in its turn, so that its write can start the log again.
# SQLite's own checkpoint, at WAL_AUTOCHECKPOINT_PAGES, stays as the bound of the log (and of what a power
# loss can take back) for writes made otherwise (migrations) and while a reader holds the log.
CHECKPOINT_PAGES = 1_000
RESTART_PAGES_MAX = 100
WAL_AUTOCHECKPOINT_PAGES = 10_000
# In the wal-index (the -shm file, https://www.sqlite.org/walformat.html), in the host's byte order: the
# last valid frame of the log (mxFrame, in the header) and the last one copied into the database (nBackfill).
_WAL_INDEX_MX_FRAME = 16
_WAL_INDEX_N_BACKFILL = 96
_FD_DIR = "/proc/self/fd"
_WAL_INDEX_READABLE = os.path.isdir(_FD_DIR)


def _sqlite_descriptor(path: str) -> int | None:
    """The descriptor SQLite itself holds open on `path` in this process (listed in /proc/self/fd), or None.

    It is only ever read with pread, never closed, and no descriptor of ours is opened on the file: closing
    any descriptor of a file drops every POSIX lock this process holds on it, SQLite's locks of the log's
    index among them, and another process could then write at the same time (see _private_file)."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return None
    for name in names:
        try:
            if os.readlink(f"{_FD_DIR}/{name}") == path:
                return int(name)
        except (OSError, ValueError):
            continue
    return None


def busy_timeout_s(url: str) -> float:
    """How long a SQLite writer waits for another's lock: the URL's `timeout` (seconds, as the
    driver reads it: `sqlite:///var/andchain.db?timeout=5`), else BUSY_TIMEOUT_S.

    Past it the write fails with "database is locked": the worker waits and goes on, the
    CLI and the API say the database is busy and that nothing was taken.
    """
    query = parse_qs(urlsplit(url).query)
    if "timeout" not in query:
        return BUSY_TIMEOUT_S
    value = float(query["timeout"][-1])
    if not 0 <= value <= 3600:
        raise ValueError(f"the SQLite busy timeout must be within 0..3600 s, was {value}")
    return value


def _configure_sqlite(engine: Engine, path: Path | None, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy's "begin" event below decides how
        # each transaction starts, so writers can take the lock up front.
        dbapi_connection.isolation_level = None
        dbapi_connection.create_aggregate("andchain_exact_sum", 1, _SqliteExactSum)  # type: ignore[arg-type]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if path is not None and _WAL_INDEX_READABLE:  # else SQLite's own checkpoint, in the commit, as ever
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()
        if path is not None:
            # SQLite gives -wal and -shm the database file's mode when it creates them; files
            # left by an older version (created under the umask) are tightened here.
            for suffix in ("-wal", "-shm"):
                _private_file(path.with_name(path.name + suffix), create=False)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes SQLite's write lock when it begins (IMMEDIATE), so two
        # writers never both read a balance and then both try to write it.
        if conn.get_execution_options().get("andchain_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    # A statement's parameters are never part of an error's text: they hold webhook secrets, key
    # hashes and stored answers, and an unexpected error is logged.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        file = None
        if path and path != ":memory:" and not path.startswith("file:"):
            file = Path(path.split("?", 1)[0])
            file.parent.mkdir(parents=True, exist_ok=True)
            # Created before SQLite opens it, so that it is never readable by others, not even briefly.
            _private_file(file, create=True)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, file, int(busy_timeout_s(url) * 1000))
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True, **kwargs)


class _Writers:
    """The writers of one SQLite database file in this process, and their place in the queue of every process.

    In this process they queue on a lock, and the next one goes the moment the last commits. Between
    processes (the API, each worker, the CLI) they queue on an advisory lock (flock) of a file beside the
    database: the kernel wakes the next writer when the last one's transaction ends, where SQLite's busy
    handler would have it sleep 1, 2, 5 ... 100 ms at a time and find the lock long free (two processes
    writing in turn spent close to half their time so). SQLite's own lock still decides who writes: the
    queue only saves the sleeps. A writer that waited the busy timeout in the queue goes to SQLite's lock
    anyway, and the kernel frees the place of a process that dies.
    """

    def __init__(self, database: str, timeout_s: float) -> None:
        self.lock = threading.RLock()
        self.depth = 0  # the writer holding `lock` may nest write_transaction: the queue is entered once
        self.queue_path: Path | None = None
        if database and database != ":memory:" and not database.startswith("file:"):
            self.queue_path = Path(database).with_name(Path(database).name + "-writers")
        self.timeout_s = timeout_s
        self._fd: int | None = None
        self._created = False
        self.wal_index_path: str | None = None  # the log's index, as /proc/self/fd names it
        if self.queue_path is not None:
            self.wal_index_path = os.path.realpath(database) + "-shm"
        self._wal_index_fd: int | None = None  # SQLite's own descriptor of it, as last found
        self._wal_index_missed: os.stat_result | None = None  # the file as it was when none was found

    def log_frames(self) -> tuple[int, int] | None:
        """(pages in the write-ahead log, pages of them copied into the database file), as the log's index
        says, read through SQLite's own descriptor of it; None when this process has none open."""
        if self.wal_index_path is None:
            return None
        try:
            on_disk = os.stat(self.wal_index_path)
            fd = self._wal_index_fd
            if fd is None or not os.path.samestat(os.fstat(fd), on_disk):
                missed = self._wal_index_missed
                if missed is not None and missed == on_disk:
                    return None  # looked for already, and the file has not changed since
                fd = self._wal_index_fd = _sqlite_descriptor(self.wal_index_path)
                if fd is None:
                    self._wal_index_missed = on_disk
                    return None
            head = os.pread(fd, _WAL_INDEX_N_BACKFILL + 4, 0)
        except OSError:
            self._wal_index_fd = None
            return None
        if len(head) < _WAL_INDEX_N_BACKFILL + 4:
            return None
        (frames,) = struct.unpack_from("=I", head, _WAL_INDEX_MX_FRAME)
        (copied,) = struct.unpack_from("=I", head, _WAL_INDEX_N_BACKFILL)
        return int(frames), int(copied)

    def checkpoint_if_due(self, conn: Connection) -> None:
        """Once a writer's turn is over: a passive checkpoint (it waits for no one, and no writer waits for
        it) when CHECKPOINT_PAGES pages of the log are not yet copied, or when the log is that long and more
        than RESTART_PAGES_MAX are (so that a writer soon finds few enough left to start it again). On
        `conn`, out of any transaction."""
        frames = self.log_frames()
        if frames is None:
            return
        left = frames[0] - frames[1]
        if left >= CHECKPOINT_PAGES or (frames[0] >= CHECKPOINT_PAGES and left > RESTART_PAGES_MAX):
            self._checkpoint(conn)

    def restart_log_if_due(self, conn: Connection) -> None:
        """In a writer's turn, before its write begins: when the log is CHECKPOINT_PAGES long and at most
        RESTART_PAGES_MAX of its pages are left to copy, those are copied, so that the write starts the log
        again from its first page instead of making it longer."""
        frames = self.log_frames()
        if frames is not None and frames[0] >= CHECKPOINT_PAGES and 0 < frames[0] - frames[1] <= RESTART_PAGES_MAX:
            self._checkpoint(conn)

    @staticmethod
    def _checkpoint(conn: Connection) -> None:
        """A passive checkpoint on `conn`, out of any transaction. One that fails is tried again after the
        next write, and SQLite's own bounds the log meanwhile."""
        try:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # nothing written depends on it
            log.debug("sqlite checkpoint skipped: %s", exc)

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self.lock:
            self.depth += 1
            try:
                if self.depth == 1:
                    self._fd = self._enter_queue()
                yield
            finally:
                self.depth -= 1
                if self.depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    os.close(fd)  # leaves the queue: the kernel wakes the next process's writer

    def forget_inherited(self) -> None:
        """In a forked child: the parent's place is the parent's (closing this copy leaves it held by the
        parent's descriptor), and the child's writers start with no place and no lock held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.depth = 0
        self.lock = threading.RLock()

    def _open(self) -> int | None:
        assert self.queue_path is not None
        try:
            if not self._created:
                _private_file(self.queue_path, create=True)
                self._created = True
            # Read-only is enough for flock, and works on a file another user created.
            return os.open(self.queue_path, os.O_RDONLY)
        except OSError as exc:  # a read-only directory: SQLite's busy handler alone, as before
            log.debug("sqlite writers queue unavailable path=%s: %s", self.queue_path, exc)
            return None

    def _enter_queue(self) -> int | None:
        if self.queue_path is None:
            return None
        fd = self._open()
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        except OSError:
            os.close(fd)
            return None
        # Another process writes. A blocking flock cannot be given a timeout, so a thread waits in it;
        # past the busy timeout (or when this wait is interrupted) the writer goes on to SQLite's lock and
        # leaves the descriptor to that thread, which closes it (and so leaves the queue at once)
        # whenever its turn comes.
        granted = threading.Event()  # the thread's wait ended: the place is the writer's, unless `failed`
        failed = threading.Event()  # the thread could not wait (and closed the descriptor)
        guard = threading.Lock()
        abandoned = False  # the writer went on without its place: the thread closes the descriptor

        def wait_in_queue() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                with guard:
                    failed.set()
                    granted.set()
                os.close(fd)
                return
            with guard:
                if abandoned:
                    os.close(fd)
                    return
                granted.set()

        try:
            threading.Thread(target=wait_in_queue, name="sqlite-writers-queue", daemon=True).start()
        except BaseException:
            os.close(fd)
            raise
        try:
            granted.wait(self.timeout_s)
        except BaseException:  # interrupted: whoever holds the descriptor closes it
            with guard:
                if granted.is_set() and not failed.is_set():
                    os.close(fd)
                abandoned = True
            raise
        with guard:
            if granted.is_set():
                return None if failed.is_set() else fd
            abandoned = True
        log.warning("sqlite writers queue: no turn within %.0fs; waiting on SQLite's lock", self.timeout_s)
        return None


_WRITERS: dict[str, _Writers] = {}
_WRITERS_GUARD = threading.Lock()


def _writers(engine: Engine) -> _Writers | None:
    """On SQLite, the writers of the engine's database file (one queue per file in this process)."""
    if engine.dialect.name != "sqlite":
        return None
    database = str(engine.url.database or "")
    if database and database != ":memory:" and not database.startswith("file:"):
        database = os.path.realpath(database)  # one queue whatever the spelling of the path
    with _WRITERS_GUARD:
        writers = _WRITERS.get(database)
        if writers is None:
            writers = _WRITERS[database] = _Writers(database, busy_timeout_s(str(engine.url)))
    return writers


def _forget_inherited_writers() -> None:
    global _WRITERS_GUARD
    _WRITERS_GUARD = threading.Lock()
    for writers in _WRITERS.values():
        writers.forget_inherited()


os.register_at_fork(after_in_child=_forget_inherited_writers)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: on SQLite it holds the write lock from its first statement, and its
    writers (of every process) queue for it (see _Writers)."""
    writers = _writers(engine)
    if writers is None:
        with engine.connect() as conn:
            conn = conn.execution_options(andchain_write=True)
            with conn.begin():
                yield conn
        return
    with ExitStack() as turn:
        turn.enter_context(writers.turn())
        outermost = writers.depth == 1  # read while this thread holds the turn
        with engine.connect() as conn:
            if outermost:
                writers.restart_log_if_due(conn)
            conn = conn.execution_options(andchain_write=True)
            with conn.begin():
                yield conn
            turn.close()  # committed: the next writer goes now
            if outermost:
                writers.checkpoint_if_due(conn)


def placeholder(engine_or_dialect: Engine | Dialect) -> str:
    dialect = engine_or_dialect.dialect if isinstance(engine_or_dialect, Engine) else engine_or_dialect
    return "?" if dialect.paramstyle == "qmark" else "%s"


# The (dialect, table, columns) check_plain_columns has passed.
_PLAIN_COLUMNS: set[tuple[str, str, tuple[str, ...]]] = set()


def check_plain_columns(dialect: Dialect, table: Table, names: Sequence[str], *, all_given: bool = False) -> None:
    """Raise TypeError unless the driver can take these columns' values as they are: text or integer columns
    whose type converts nothing on its way in (no bind processor on this dialect: an Enum writes its
    members' names, a TypeDecorator its own form), and, with `all_given` (an INSERT), no column left out
    that SQLAlchemy would fill in Python (`default=`; a server default the database applies itself)."""
    key = (dialect.name, table.name, tuple(names))
    if key in _PLAIN_COLUMNS:
        return
    for name in names:
        column_type = table.c[name].type
        if not isinstance(column_type, String | Integer) or column_type.dialect_impl(dialect).bind_processor(dialect):
            raise TypeError(
                f"{table.name}.{name} is {column_type!r}: its values are not given to the driver as they are"
            )
    if all_given:
        for column in table.columns:
            if column.name not in names and (column.default is not None or column.onupdate is not None):
                raise TypeError(f"{table.name}.{column.name} is filled in by SQLAlchemy: give it in every row")
    _PLAIN_COLUMNS.add(key)


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows (each with the same keys) inserted by one prepared statement the driver runs over all of them:
    what `conn.execute(table.insert(), rows)` writes, without SQLAlchemy's processing of each row's
    parameters, the larger part of a batch's cost there. Only for columns whose values go to the driver as
    they are (`check_plain_columns`); any other raises before anything is written."""
    if not rows:
        return
    names = tuple(rows[0])
    check_plain_columns(conn.dialect, table, names, all_given=True)
    mark = placeholder(conn.dialect)
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})",
        [tuple(row[name] for name in names) for row in rows],
    )
