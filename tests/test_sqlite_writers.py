"""SQLite writers of every process queue for the write lock: the next goes when the last commits, instead of
sleeping in SQLite's busy handler; the queue never decides alone who writes (SQLite's lock does)."""

from __future__ import annotations

import fcntl
import logging
import os
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
