"""Benchmarks: each measures andchain against the raw limit of the same part in the same run."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "system": platform.system()}


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux); None for a process gone or elsewhere.
    Read as bytes: a command name may be any bytes, a ")" among them."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or a CI job's share), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def cpu_seconds(pid: int, *, with_children: bool = False) -> float | None:
    """The CPU time a process has used so far, every thread of it (Linux /proc; None elsewhere or once it
    is gone). With `with_children`, its children's too: those it has reaped and those still running (a
    PostgreSQL server's backends)."""
    fields = _proc_stat(pid)
    if fields is None:
        return None
    # After the command name: state is field 0, utime 11, stime 12, cutime 13, cstime 14 (proc(5)).
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
        for child in _children_of(pid):
            child_fields = _proc_stat(child)
            if child_fields is not None:
                ticks += int(child_fields[11]) + int(child_fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def stopped_cleanly_on_sigterm() -> Iterator[None]:
    """A SIGTERM (`kill`, a CI job's timeout) ends the bench as Ctrl-C would: its `finally` blocks stop the
    nodes and worker processes it started and remove its temporary directory. By default Python dies at
    once on SIGTERM and leaves them running. Only the main thread can take a signal; elsewhere, nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = signal.signal(signal.SIGTERM, _exit_once)
    try:
        yield
    finally:
        # None: the handler was not set from Python; the default is what such a process had.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


_terminating = threading.Event()


def _exit_once(signum: int, _frame: Any) -> None:
    """The first SIGTERM ends the bench; another one while its `finally` blocks clean up would cut them
    short, and is ignored."""
    if _terminating.is_set():
        return
    _terminating.set()
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def throwaway_internal_chain(
    prefix: str,
    extra_networks: dict[str, dict[str, Any]] | None = None,
    *,
    database_url: str | None = None,
    internal: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """A Context on a temporary directory with its own anvil node (internal profile) and SQLite (or the
    database at `database_url`, empty).

    The node runs as the benches' nodes always did: with its state file, keeping every
    block's state. `--prune-history` and no state file were meant here but never reached
    anvil until the node took its options; once they did, a bench's node stopped answering
    under the test suite's load, and without its state file anvil lost transactions from its
    pool at a few thousand blocks (the worker's gap repair sent them again). Their anvil
    state cache lives in the temporary directory.
    """
    from andchain.chains.nodes import LocalNode
    from andchain.config import NetworkSettings, Settings
    from andchain.context import Context
    from andchain.devtools.postgres import free_port

    with stopped_cleanly_on_sigterm(), tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        networks = {
            "internal": NetworkSettings(
                display_name="bench internal",
                chain_id=770077,
                rpc_url=f"http://127.0.0.1:{free_port()}",
                kind="permissioned",
                confirmations=1,
                gas_policy="zero",
                gas_limit=1_000_000_000,
                **(internal or {}),
            )
        }
        for name, fields in (extra_networks or {}).items():
            networks[name] = NetworkSettings(**{"rpc_url": f"http://127.0.0.1:{free_port()}", **fields})
        nodes = [LocalNode(name, n, Path(tmp)) for name, n in networks.items()]
        try:
            for node in nodes:
                node.start()
            settings = Settings.model_validate(
                {
                    "data_dir": Path(tmp),
                    "networks": {
                        **{n: {"enabled": False} for n in ("ethereum", "base", "tempo")},
                        **{name: n.model_dump() for name, n in networks.items()},
                    },
                    "keystore": {"passphrase": "bench-only", "scrypt_n": 1024},
                    **({"database_url": database_url} if database_url else {}),
                }
            )
            ctx = Context(settings)
            ctx.upgrade_database()
            try:
                yield ctx
            finally:
                ctx.close()
        finally:
            for node in nodes:
                node.stop()
