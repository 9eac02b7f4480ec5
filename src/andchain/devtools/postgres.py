"""A throwaway PostgreSQL cluster on a temporary directory, for tests and benchmarks.

initdb refuses to run as root, so when we are root the cluster is created and run
as the unprivileged `postgres` system user. The server listens on a free loopback
port and on a Unix socket inside the cluster directory, with fsync off: it is
disposable by design and never holds anything that matters.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl: $ANDCHAIN_PG_BINDIR, Debian's layout, or PATH."""
    candidates = []
    if os.environ.get("ANDCHAIN_PG_BINDIR"):
        candidates.append(os.environ["ANDCHAIN_PG_BINDIR"])
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install them "
        "(Debian: apt-get install postgresql) or set ANDCHAIN_PG_BINDIR"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningPostgres:
    url: str
    port: int
    datadir: Path

    def database_url(self, dbname: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{dbname}"

    def pid(self) -> int | None:
        """The server's process (the postmaster; its backends are its children), from its postmaster.pid."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def _as_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def throwaway_postgres(dbname: str = "andchain") -> Iterator[RunningPostgres]:
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="andchain-pg-"))
    datadir = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    port = free_port()
    log = root / "server.log"
    try:
        subprocess.run(
            _as_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(datadir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        subprocess.run(
            _as_user(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S + 10,
        )
        subprocess.run(
            _as_user([str(bindir / "createdb"), "-h", str(root), "-p", str(port), "-U", "postgres", dbname])
            if (bindir / "createdb").exists()
            else _as_user(["createdb", "-h", str(root), "-p", str(port), "-U", "postgres", dbname]),
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield RunningPostgres(f"postgresql+psycopg://postgres@127.0.0.1:{port}/{dbname}", port, datadir)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip()
        if log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        raise PostgresUnavailable(f"throwaway PostgreSQL failed: {' '.join(exc.cmd)}\n{detail}") from exc
    finally:
        subprocess.run(
            _as_user([str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        # Give the postmaster a moment to release files before they are removed.
        time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: RunningPostgres, dbname: str) -> str:
    bindir = find_bindir()
    socket_dir = server.datadir.parent
    subprocess.run(
        _as_user([str(bindir / "createdb"), "-h", str(socket_dir), "-p", str(server.port), "-U", "postgres", dbname]),
        check=True,
        capture_output=True,
        timeout=60,
    )
    return server.database_url(dbname)
