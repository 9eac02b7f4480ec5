"""The command line, run as a user would: on a fresh data directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from andchain.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_data_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDCHAIN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)


def run(*args: str):
    return runner.invoke(app, list(args))


def test_a_newcomer_can_migrate_open_accounts_and_book_a_transfer():
    assert run("db", "upgrade").exit_code == 0
    assert run("ledger", "accounts", "create", "bank:usd:cash", "--asset", "USD").exit_code == 0
    created = run(
        "ledger",
        "accounts",
        "create",
        "clients:acme:usd:dda",
        "--asset",
        "usd",
        "--kind",
        "liability",
        "--no-overdraft",
        "--json",
    )
    assert json.loads(created.stdout)["account"]["flags"] == 1
    moved = run(
        "ledger",
        "transfer",
        "--from",
        "bank:usd:cash",
        "--to",
        "clients:acme:usd:dda",
        "--amount",
        "12.34 USD",
        "--id",
        "t1",
        "--json",
    )
    assert json.loads(moved.stdout) == {"id": "t1", "result": "ok"}
    replay = run(
        "ledger",
        "transfer",
        "--from",
        "bank:usd:cash",
        "--to",
        "clients:acme:usd:dda",
        "--amount",
        "12.34 USD",
        "--id",
        "t1",
        "--json",
    )
    assert json.loads(replay.stdout)["result"] == "exists"
    shown = json.loads(run("ledger", "accounts", "show", "clients:acme:usd:dda", "--json").stdout)
    assert shown["account"]["posted"] == "12.34" and len(shown["history"]) == 1
    balances = json.loads(run("ledger", "balances", "--json").stdout)
    assert balances == [
        {
            "asset": "USD",
            "debits_pending": "0.00",
            "debits_posted": "12.34",
            "credits_pending": "0.00",
            "credits_posted": "12.34",
            "balanced": True,
        }
    ]
    assert run("ledger", "verify").exit_code == 0


def test_refusals_exit_non_zero_with_a_clear_message():
    run("db", "upgrade")
    run("ledger", "accounts", "create", "bank:usd:cash", "--asset", "USD")
    run("ledger", "accounts", "create", "clients:acme:usd:dda", "--asset", "USD", "--no-overdraft")
    overdraw = run(
        "ledger", "transfer", "--from", "clients:acme:usd:dda", "--to", "bank:usd:cash", "--amount", "1.00 USD"
    )
    assert overdraw.exit_code == 1 and "insufficient_funds" in overdraw.stdout
    precise = run(
        "ledger", "transfer", "--from", "bank:usd:cash", "--to", "clients:acme:usd:dda", "--amount", "0.001 USD"
    )
    assert precise.exit_code == 1 and "excess_precision" in precise.stderr
    missing = run("ledger", "accounts", "show", "nobody")
    assert missing.exit_code == 1 and "account_not_found" in missing.stderr
    assert "Traceback" not in precise.output + missing.output


def test_serve_refuses_a_port_that_is_taken():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run("serve", "--port", str(port))
    assert result.exit_code == 1
    assert "already in use" in result.stderr


def test_bench_ledger_prints_one_json_object_with_the_ratio():
    result = run("bench", "ledger", "--backend", "sqlite", "--seconds", "0.3", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["backend"] == "sqlite"
    assert figures["transfers_per_s"] > 0 and figures["raw_limit_per_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["transfers_per_s"] / figures["raw_limit_per_s"], rel=0.01)
    assert figures["balances_verified"] is True


def test_bench_chain_and_mint_print_their_figures_as_json():
    chain = run("bench", "chain", "--seconds", "0.2", "--json")
    assert chain.exit_code == 0, chain.output
    figures = json.loads(chain.stdout)
    assert figures["transfers_per_s"] > 0 and figures["raw_limit_per_s"] > 0 and figures["batched_transfers_per_s"] > 0
    mint = run("bench", "mint", "--count", "10", "--json")
    assert mint.exit_code == 0, mint.output
    figures = json.loads(mint.stdout)
    assert figures["mints_per_s"] > 0 and figures["mint_latency_ms_p99"] >= figures["mint_latency_ms_p50"]
    assert figures["reconcile_flags_raw_mints"] is True  # raw mints bypass the ledger, and reconcile sees it
    assert figures["reconcile_other_breaks"] == [] and figures["workers"] == 1
    # The node alone, before and after the measured phases: the limit is their mean pace (the harmonic mean
    # of the two rates), and every raw mint is outside the ledger.
    before, after = figures["raw_limit_runs_per_s"]
    assert figures["raw_limit_per_s"] == pytest.approx(2 / (1 / before + 1 / after), rel=0.01)
    assert figures["raw_mints_outside_ledger"] == 20
    # Where the machine's CPU went, per operation: every part that ran is measured (SQLite runs inside them),
    # and the ceiling is the ratio the machine's cores would give at that cost.
    if Path("/proc/self/stat").exists():
        for phase in ("mint", "pay"):
            per_op = figures[f"cpu_ms_per_{phase}"]
            assert per_op["database"] is None  # SQLite: inside the other processes
            assert all(per_op[part] >= 0 for part in ("requests", "workers", "node"))
            total = per_op["requests"] + per_op["workers"] + per_op["node"]
            ceiling = len(os.sched_getaffinity(0)) * 1000 / total / figures["raw_limit_per_s"] if total else None
            assert figures[f"{phase}_ratio_ceiling"] == (pytest.approx(ceiling, rel=0.01) if ceiling else None)


@pytest.mark.postgresql
def test_bench_mint_on_postgresql_with_two_worker_processes_settles_every_batched_request():
    """Batched requests while two worker processes share the work on PostgreSQL (one signer, nonces
    reserved in the database): every operation succeeds once, and the books agree with the chain."""
    mint = run("bench", "mint", "--count", "24", "--batch", "5", "--workers", "2", "--backend", "postgresql", "--json")
    assert mint.exit_code == 0, mint.output
    figures = json.loads(mint.stdout)
    assert (figures["backend"], figures["workers"], figures["batch"]) == ("postgresql", 2, 5)
    assert figures["mints_per_s"] > 0 and figures["pays_per_s"] > 0
    assert figures["reconcile_other_breaks"] == []
    if Path("/proc/self/stat").exists():  # the PostgreSQL server's CPU is counted, its backends with it
        assert figures["cpu_ms_per_mint"]["database"] >= 0 and figures["cpu_ms_per_pay"]["database"] >= 0
    bad = run("bench", "mint", "--backend", "oracle")
    assert bad.exit_code == 2 and "sqlite or postgresql" in bad.output


def test_bench_move_covers_every_pair_of_networks_with_its_floors():
    """Between two public networks and the internal chain: each ordered pair, from the internal chain out,
    between the public ones, and back in; every move succeeds and the books agree with every chain."""
    from andchain.bench import move

    assert move.pairs(("internal", "ethereum", "base", "tempo"))[:3] == [
        ("internal", "ethereum"), ("internal", "base"), ("internal", "tempo")
    ]  # fmt: skip
    assert len(move.pairs(("internal", "ethereum", "base", "tempo"))) == 12
    figures = move.run(1, ("base", "tempo"))
    assert list(figures["pairs"]) == [
        "internal->base", "internal->tempo", "base->tempo", "tempo->base", "base->internal", "tempo->internal"
    ]  # fmt: skip
    base_tempo = figures["pairs"]["base->tempo"]
    assert (base_tempo["blocks_ms"], base_tempo["minimum_ms"]) == (3000, 1000)  # base 1 s x 2, tempo 1 s x 1
    assert all(f["latency_ms_p50"] >= f["minimum_ms"] for f in figures["pairs"].values())
    assert figures["reconcile_breaks"] == 0


def _children(pid: int) -> dict[int, str]:
    """The live child processes of `pid` (Linux /proc): their pids and command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(parent) == pid and state != "Z":
            found[int(entry.name)] = _cmdline(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_bench_killed_mid_run_leaves_no_worker_process_behind(signum, tmp_path):
    """`kill` (SIGTERM) ends `bench mint` as Ctrl-C would: its worker processes and its node stop and its
    temporary directory goes. Killed with no chance to clean up (SIGKILL), its worker processes see their
    parent gone and stop by themselves (only its node is left, which the test stops)."""
    started: dict[int, str] = {}  # the bench's workers and node, as the test saw them
    bench = None
    try:
        # The bench runs the node alone before it starts its workers. anvil's pool can stall under the
        # suite's load and leave raw mints unmined (foundry-rs/foundry#10122): the bench then ends with
        # tx_timeout before any worker exists, which is not what this test is about, and it starts again,
        # in a directory of its own. Requests in batches of 10 keep the workers busy for longer than
        # the test waits, without more raw mints.
        for attempt in range(3):
            tmp = tmp_path / f"attempt{attempt}"
            tmp.mkdir()
            log = tmp / "bench.log"
            with open(log, "wb") as err:
                bench = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "andchain.cli",
                        "bench",
                        "mint",
                        "--count",
                        "1000",
                        "--batch",
                        "10",
                        "--json",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env={**os.environ, "TMPDIR": str(tmp)},
                )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and bench.poll() is None:
                started = _children(bench.pid)
                if any("multiprocessing.spawn" in cmd for cmd in started.values()):
                    break
                time.sleep(0.1)
            if bench.poll() is None or "[tx_timeout]" not in log.read_text():
                break
        assert bench is not None
        workers = [pid for pid, cmd in started.items() if "multiprocessing.spawn" in cmd]
        nodes = [pid for pid, cmd in started.items() if "anvil" in cmd]
        assert workers and nodes, f"the bench's worker processes never started: {log.read_text()[-2000:]}"
        time.sleep(3.0)  # the workers starting or at work: either way, they must go with the bench
        assert bench.poll() is None, f"the bench ended before it was killed: {log.read_text()[-2000:]}"
        bench.send_signal(signum)
        bench.wait(timeout=120)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], log.read_text()[-2000:]
        if signum == signal.SIGTERM:
            assert bench.returncode == 128 + signal.SIGTERM, log.read_text()[-2000:]
            assert not [pid for pid in nodes if _alive(pid)]
            assert not list(tmp_path.glob("attempt*/andchain-bench-mint-*"))  # nor from an attempt that failed
    finally:
        if bench is not None and bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid, cmd in started.items():  # only what is still the process the test saw
            if _alive(pid) and _cmdline(pid) == cmd:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_bench_api_prints_http_figures_against_its_bare_endpoint():
    result = run("bench", "api", "--seconds", "3", "--concurrency", "2", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["concurrency"] == 2
    assert figures["transfers_per_s"] > 0 and figures["batch_transfers_per_s"] > figures["transfers_per_s"]
    assert figures["bare_requests_per_s"] > 0 and figures["ratio"] > 0


@pytest.fixture
def logging_restored():
    """`serve` configures the process's logging (JSON lines): put back what the test run had."""
    root, alembic = logging.getLogger(), logging.getLogger("alembic")
    saved = (list(root.handlers), root.level, alembic.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    alembic.setLevel(saved[2])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_beyond_this_machine_without_tls_in_front_warns(monkeypatch, logging_restored):
    import uvicorn

    served: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append({"app": app, **options}))
    exposed = run("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert exposed.exit_code == 0, exposed.output
    assert "warning:" in exposed.stderr and "must sit behind a proxy that terminates TLS" in exposed.stderr
    assert served[-1]["host"] == "0.0.0.0" and served[-1]["log_config"] is None and served[-1]["access_log"] is False

    local = run("serve", "--host", "127.0.0.1", "--port", str(free_port()))
    assert local.exit_code == 0 and "warning:" not in local.stderr
    monkeypatch.setenv("ANDCHAIN_API__BEHIND_TLS_PROXY", "true")
    declared = run("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert declared.exit_code == 0 and "warning:" not in declared.stderr


def test_serve_answers_to_the_address_it_listens_on(monkeypatch, logging_restored):
    import uvicorn
    from fastapi.testclient import TestClient

    served: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append({"app": app, **options}))
    assert run("serve", "--host", "127.0.0.2", "--port", str(free_port())).exit_code == 0
    client = TestClient(served[-1]["app"], base_url="http://127.0.0.2:8000")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "elsewhere.example"}).json()["code"] == "invalid_host"


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("localhost", False),
        ("::1", False),
        ("[::1]", False),
        ("0.0.0.0", True),
        ("::", True),
        ("10.1.2.3", True),
        ("api.bank.example", True),
    ],
)
def test_only_a_loopback_address_needs_no_tls_in_front(host, warned):
    from andchain.cli.serve import exposure_warning

    assert (exposure_warning(host, behind_tls_proxy=False) is not None) is warned
    assert exposure_warning(host, behind_tls_proxy=True) is None


def test_reconcile_writes_its_breaks_for_prometheus_when_asked(monkeypatch, tmp_path):
    for network in ("internal", "ethereum", "base", "tempo"):
        monkeypatch.setenv(f"ANDCHAIN_NETWORKS__{network.upper()}__ENABLED", "false")
    assert run("db", "upgrade").exit_code == 0
    path = tmp_path / "andchain_reconcile.prom"
    result = run("reconcile", "--metrics-file", str(path))
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert 'andchain_reconcile_breaks{check="ledger"} 0.0' in text
    assert "andchain_reconcile_last_run_timestamp_seconds" in text
