"""SQLite writers of every process queue for the write lock: the next goes when the last commits, instead of
sleeping in SQLite's busy handler; the queue never decides alone who writes (SQLite's lock does)."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from andchain.db import _writers, make_engine, write_transaction

HOLDER = """
import sys, time
from sqlalchemy import text
from andchain.db import _writers, make_engine, write_transaction
engine = make_engine(sys.argv[1])
with write_transaction(engine) as conn:
    conn.execute(text("INSERT INTO t VALUES ('child')"))
    print("in", flush=True)
    sys.stdin.readline()  # holds the write transaction until told
print("out", flush=True)
"""


def _table(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (who TEXT)"))
    engine.dispose()


def test_a_writer_of_another_process_waits_its_turn_and_then_writes(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'andchain.db'}"
    _table(url)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "in"
        queue = tmp_path / "andchain.db-writers"
        assert stat.S_IMODE(queue.stat().st_mode) == 0o600  # private, as the database is
        engine = make_engine(url)
        done = threading.Event()

        def write() -> None:
            with write_transaction(engine) as conn:
                conn.execute(text("INSERT INTO t VALUES ('parent')"))
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.5)  # the child holds the lock: the parent waits in the queue
        child.stdin.write("go\n")
        child.stdin.flush()
        assert done.wait(20)
        writer.join()
        with engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT who FROM t ORDER BY rowid"))] == ["child", "parent"]
        engine.dispose()
    finally:
        child.kill()
        child.wait()


def test_a_write_transaction_nested_in_one_thread_never_waits_on_its_own_place(tmp_path: Path):
    """SQLite has one writer: a write nested in another on the same thread is refused by SQLite's lock after
    the busy timeout ("database is locked", as before the queue), never left waiting on its own place."""
    url = f"sqlite:///{tmp_path / 'andchain.db'}?timeout=0.3"
    _table(url)
    engine, other = make_engine(url), make_engine(url)
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO t VALUES ('outer')"))
        with pytest.raises(OperationalError, match="database is locked"), write_transaction(other) as inner:
            inner.execute(text("INSERT INTO t VALUES ('inner')"))
    with write_transaction(other) as conn:  # the place was given back with the outer transaction
        conn.execute(text("INSERT INTO t VALUES ('after')"))
    with engine.connect() as conn:
        assert [r[0] for r in conn.execute(text("SELECT who FROM t ORDER BY rowid"))] == ["outer", "after"]
    engine.dispose()
    other.dispose()


def test_a_queue_held_past_the_busy_timeout_leaves_the_decision_to_sqlites_lock(tmp_path: Path, caplog):
    """A process that holds its place without writing (stuck, or not andchain at all): past the busy timeout
    the writer goes to SQLite's lock, which is free, and writes; once the place is given back, the next
    writer takes its turn at once."""
    url = f"sqlite:///{tmp_path / 'andchain.db'}?timeout=0.5"
    _table(url)
    queue = tmp_path / "andchain.db-writers"
    queue.touch(mode=0o600)
    squatter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.readline()",
            str(queue),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert squatter.stdout is not None and squatter.stdin is not None
        assert squatter.stdout.readline().strip() == "held"
        engine = make_engine(url)
        with caplog.at_level(logging.WARNING, logger="andchain.db"), write_transaction(engine) as conn:
            conn.execute(text("INSERT INTO t VALUES ('past the queue')"))
        assert "no turn within 0s; waiting on SQLite's lock" in caplog.text
        squatter.stdin.write("go\n")
        squatter.stdin.flush()
        squatter.wait(10)
        # The abandoned wait got its turn when the squatter left, and gave it back at once.
        fd = os.open(queue, os.O_RDWR)
        for _ in range(200):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.01)
        else:
            raise AssertionError("the abandoned wait kept the queue")
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="andchain.db"), write_transaction(engine) as conn:
            conn.execute(text("INSERT INTO t VALUES ('in turn')"))
        assert "no turn" not in caplog.text
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
        engine.dispose()
    finally:
        squatter.kill()
        squatter.wait()


def test_a_child_forked_during_a_write_starts_with_no_place_and_leaves_the_parents_alone(tmp_path: Path):
    """A child forked while the parent writes inherits a copy of the parent's place in the queue: the child
    drops its copy at once, so the place is free when the parent's transaction ends (the child living on),
    and the child's writers take turns of their own. (SQLite itself must not be used across a fork made
    during a transaction; the child here only takes its turn in the queue.)"""
    url = f"sqlite:///{tmp_path / 'andchain.db'}?timeout=5"
    _table(url)
    engine = make_engine(url)
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO t VALUES ('parent')"))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.write(from_child, b"r")  # running: the fork hook has run
                os.read(to_child, 1)  # the parent has left its transaction and checked the queue
                writers = _writers(make_engine(url))
                assert writers is not None
                with writers.turn():
                    code = 0 if writers.depth == 1 and writers._fd is not None else 2
            finally:
                os._exit(code)
        assert os.read(to_parent, 1) == b"r"
    try:
        queue = os.open(tmp_path / "andchain.db-writers", os.O_RDONLY)
        fcntl.flock(queue, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free, though the child that copied it lives
        fcntl.flock(queue, fcntl.LOCK_UN)
        os.close(queue)
    finally:
        os.write(from_parent, b"x")
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for fd in (to_child, from_parent, to_parent, from_child):
        os.close(fd)
    engine.dispose()


def _rows_in_the_database_file(path: Path) -> int:
    """The rows of t in the database file itself, the write-ahead log left out (what a checkpoint copied)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        conn.close()


def _queue_held(tmp_path: Path) -> bool:
    """Whether a writer holds its turn in the queue of tmp_path/andchain.db (a probe of our own on the flock)."""
    fd = os.open(tmp_path / "andchain.db-writers", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_the_log_is_copied_into_the_database_after_the_turn_and_not_during_it(tmp_path: Path, monkeypatch):
    """SQLite's own checkpoint runs inside a commit, while the writers queue is held: every other writer would
    wait for pages copied and synced. A writer runs it itself once its turn is over, when the log holds
    CHECKPOINT_PAGES pages, some not yet copied; SQLite's own checkpoint stays as a bound."""
    import andchain.db as db

    path = tmp_path / "andchain.db"
    url = f"sqlite:///{path}"
    _table(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == db.WAL_AUTOCHECKPOINT_PAGES
    writers = _writers(engine)
    assert writers is not None
    queue_free: list[bool] = []
    checkpoint = db._Writers.checkpoint_if_due

    def checking(self: db._Writers, conn: object) -> None:
        queue_free.append(not _queue_held(tmp_path))
        checkpoint(self, conn)  # type: ignore[arg-type]

    monkeypatch.setattr(db._Writers, "checkpoint_if_due", checking)
    with write_transaction(engine) as conn:  # a page or two: left in the log
        conn.execute(text("INSERT INTO t VALUES ('first')"))
        assert queue_free == []
    assert queue_free == [True]
    frames = writers.log_frames()
    assert frames is not None and 0 < frames[0] < db.CHECKPOINT_PAGES and frames[1] == 0
    assert _rows_in_the_database_file(path) == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1  # read from the log

    monkeypatch.setattr(db, "CHECKPOINT_PAGES", frames[0] + 1)
    with write_transaction(engine) as conn:  # the log now holds CHECKPOINT_PAGES pages: copied
        conn.execute(text("INSERT INTO t VALUES ('second')"))
    assert queue_free == [True, True]
    after = writers.log_frames()
    assert after is not None and after[0] == after[1]
    assert _rows_in_the_database_file(path) == 2
    with write_transaction(engine) as conn:  # all copied: the log starts again, and is not copied yet
        conn.execute(text("INSERT INTO t VALUES ('third')"))
    again = writers.log_frames()
    assert again is not None and again[0] < frames[0] + 1 and again[1] == 0
    assert _rows_in_the_database_file(path) == 2
    engine.dispose()


def test_a_log_nearly_all_copied_is_finished_in_the_turn_so_that_the_write_starts_it_again(tmp_path: Path, monkeypatch):
    import andchain.db as db

    path = tmp_path / "andchain.db"
    url = f"sqlite:///{path}"
    _table(url)
    engine = make_engine(url)
    writers = _writers(engine)
    assert writers is not None
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO t VALUES ('first')"))
    frames = writers.log_frames()
    assert frames is not None and frames[1] == 0
    held: list[bool] = []
    before_the_write: list[tuple[int, int] | None] = []
    restart = db._Writers.restart_log_if_due

    def checking(self: db._Writers, conn: object) -> None:
        held.append(_queue_held(tmp_path))
        restart(self, conn)  # type: ignore[arg-type]
        before_the_write.append(self.log_frames())

    monkeypatch.setattr(db._Writers, "restart_log_if_due", checking)
    monkeypatch.setattr(db, "CHECKPOINT_PAGES", frames[0])  # the log is that long: ...
    monkeypatch.setattr(db, "RESTART_PAGES_MAX", frames[0])  # ... and few enough pages are left to copy
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO t VALUES ('second')"))
    assert held == [True]  # in the turn, before the write began
    assert before_the_write == [(frames[0], frames[0])]  # every page copied before the write began
    after = writers.log_frames()
    assert after is not None and after[0] <= frames[0]  # the log started again: no longer than before
    engine.dispose()


def test_writers_of_one_database_at_once_keep_its_log_short(tmp_path: Path, monkeypatch):
    """Writers in turn: each one's checkpoint runs while the next one writes, so a write seldom begins with the
    whole log copied, which is when SQLite starts the log again. Without the copy in the turn, the log grows
    with the writes up to SQLite's own checkpoint (thousands of pages here, 1,800 writes of a page or two);
    with it, it stays within a few hundred pages, on a quiet machine as under load."""
    import andchain.db as db

    monkeypatch.setattr(db, "CHECKPOINT_PAGES", 40)
    monkeypatch.setattr(db, "RESTART_PAGES_MAX", 20)
    url = f"sqlite:///{tmp_path / 'andchain.db'}"
    _table(url)
    engine = make_engine(url)
    writers = _writers(engine)
    assert writers is not None
    longest = 0
    errors: list[BaseException] = []

    def write(who: str) -> None:
        nonlocal longest
        try:
            for i in range(600):
                with write_transaction(engine) as conn:
                    conn.execute(text("INSERT INTO t VALUES (:who)"), {"who": f"{who}{i}" + "x" * 3000})
                frames = writers.log_frames()
                longest = max(longest, frames[0] if frames else 0)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert 0 < longest < 1_200 < db.WAL_AUTOCHECKPOINT_PAGES
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1800
    engine.dispose()


def test_a_checkpoint_that_fails_is_not_the_writes_failure(tmp_path: Path, monkeypatch, caplog):
    import andchain.db as db

    url = f"sqlite:///{tmp_path / 'andchain.db'}"
    _table(url)
    engine = make_engine(url)
    writers = _writers(engine)
    assert writers is not None
    monkeypatch.setattr(db._Writers, "log_frames", lambda self: (db.CHECKPOINT_PAGES, 0))

    class Refusing:
        def execute(self, sql: str) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    class Conn:
        class connection:  # the shape of a SQLAlchemy Connection's pooled connection
            driver_connection = Refusing()

    with caplog.at_level(logging.DEBUG, logger="andchain.db"):
        writers.checkpoint_if_due(Conn())  # type: ignore[arg-type]
    assert "sqlite checkpoint skipped: disk I/O error" in caplog.text
    with write_transaction(engine) as conn:  # and a real one, due at every write now, runs out of turn
        conn.execute(text("INSERT INTO t VALUES ('written')"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
    engine.dispose()


def test_reading_the_logs_index_never_drops_sqlites_locks(tmp_path: Path):
    """SQLite's locks are POSIX locks on the log's index (-shm): closing any descriptor of that file in this
    process would drop them, and let another process write at the same time. The index is read only through
    SQLite's own descriptor: while this process writes, another still finds the database locked."""
    url = f"sqlite:///{tmp_path / 'andchain.db'}"
    _table(url)
    engine = make_engine(url)
    writers = _writers(engine)
    assert writers is not None
    assert writers.log_frames() is None  # no connection open here yet: SQLite holds no descriptor of it
    other = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "try:\n"
        "    c.execute('BEGIN IMMEDIATE')\n"
        "    print('wrote')\n"
        "except sqlite3.OperationalError as exc:\n"
        "    print(exc)\n"
    )
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO t VALUES ('held')"))
        for _ in range(3):
            assert writers.log_frames() is not None
        answer = subprocess.run(
            [sys.executable, "-c", other, str(tmp_path / "andchain.db")], capture_output=True, text=True, timeout=60
        )
        assert answer.stdout.strip() == "database is locked", answer
    engine.dispose()
