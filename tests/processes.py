"""`andchain` commands run by the tests in processes of their own, forked from a server that has imported andchain.

A fresh interpreter spends about 3 s of CPU importing andchain before a command starts, and the crash tests
start hundreds of workers. A process forked from a server that imported it once is as much a process of its
own: it runs the command as `andchain ...` does, a failpoint's SIGKILL kills it and nothing else, its exit
status is the command's, and nothing of the test's process (its connections, threads, fixtures) is in it.
The server is started (and imports andchain) the first time a test asks, once per test process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

_SERVER = multiprocessing.get_context("forkserver")
# What the commands import besides the CLI: the tables (a migration's environment), the API's and the
# custodian's apps and their server.
_SERVER.set_forkserver_preload(
    ["andchain.cli", "andchain.tables", "andchain.api", "andchain.custody.reference.app", "uvicorn"]
)


def _command(
    args: Sequence[str], env: Mapping[str, str], stdout: str, stderr: str, cwd: str | None = None, append: bool = False
) -> None:
    """In the forked process: the command's environment, folder and output files, then `andchain <args>`."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    for fd, path in ((1, stdout), (2, stderr)):
        opened = os.open(path, os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 (the process's own streams)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
    from andchain.cli import app, common

    # The consoles were made when the server imported andchain: their colours and width are found again for
    # this process's files and environment.
    common.out.__init__(emoji=False, highlight=False)  # type: ignore[misc]
    common.err.__init__(stderr=True, emoji=False, highlight=False)  # type: ignore[misc]

    code: int = 0
    try:
        app(args=list(args), prog_name="andchain")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    # What the interpreter does at its end: wait for the threads that are not daemons, close the logs.
    import logging
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_andchain(
    args: Sequence[str], env: Mapping[str, str], *, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`andchain <args>` with exactly the environment `env`, to its end (or killed past `timeout_s`, which
    raises subprocess.TimeoutExpired as subprocess.run does): its exit status (negative: the signal that
    ended it), its standard output and its standard error."""
    with tempfile.TemporaryDirectory(prefix="andchain-command-") as folder:
        stdout, stderr = Path(folder, "stdout"), Path(folder, "stderr")
        stdout.touch()
        stderr.touch()
        process = _SERVER.Process(target=_command, args=(list(args), dict(env), str(stdout), str(stderr)), daemon=True)
        process.start()
        process.join(timeout_s)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["andchain", *args], timeout_s, stdout.read_text(), stderr.read_text())
        assert process.exitcode is not None
        return subprocess.CompletedProcess(
            ["andchain", *args], process.exitcode, stdout.read_text(), stderr.read_text()
        )


class Started:
    """A command started by `start_andchain`, with what the tests use of subprocess.Popen."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def poll(self) -> int | None:
        """Its exit status (negative: the signal that ended it), or None while it runs."""
        return None if self._process.is_alive() else self._process.exitcode

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self._process.is_alive():
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.is_alive():
            raise subprocess.TimeoutExpired(f"andchain process {self.pid}", timeout or 0)
        assert self._process.exitcode is not None
        return self._process.exitcode


def start_andchain(args: Sequence[str], env: Mapping[str, str], *, output: Path, cwd: Path | None = None) -> Started:
    """`andchain <args>` started with exactly the environment `env`, its standard output and error appended to
    `output`: a server or a worker that runs until the test stops it."""
    output.touch()
    process = _SERVER.Process(
        target=_command,
        args=(list(args), dict(env), str(output), str(output), str(cwd) if cwd else None, True),
        daemon=True,  # one a test leaves running is ended with the test process, which does not wait for it
    )
    process.start()
    return Started(process)
