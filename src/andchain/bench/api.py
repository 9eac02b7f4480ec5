"""`andchain bench api`: ledger transfers through HTTP against a bare endpoint of the same server.

The bench starts `andchain serve` in a process of its own, on a free port, with a
SQLite database in a temporary directory, and an operator key. Eight concurrent
clients (asyncio, keep-alive connections) then alternate, in time slices so that both
sides share the machine's state:

- `transfers_per_s`: single `POST /v1/transfers`, each with its Idempotency-Key and a
  caller-supplied transfer id, authenticated, booked one by one;
- `batch_transfers_per_s`: `POST /v1/transfers/batch` of 1,000 transfers;
- `bare_requests_per_s`: `GET /health/live`, the same server, the same middlewares and
  authentication-free path, no database: what HTTP itself costs here.

`ratio` = transfers_per_s / bare_requests_per_s.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from andchain.bench import machine, stopped_cleanly_on_sigterm
from andchain.devtools.postgres import free_port

CONCURRENCY = 8
BATCH = 1000
SLICE_S = 1.0
START_TIMEOUT_S = 60.0


async def _hammer(
    client: httpx.AsyncClient, make: Any, seconds: float, concurrency: int = CONCURRENCY
) -> tuple[int, list[float]]:
    """Send requests built by `make(n)` from `concurrency` tasks for `seconds`; count the 2xx answers."""
    deadline = time.perf_counter() + seconds
    done = 0
    latencies: list[float] = []
    counter = iter(range(10**12))

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            method, url, kwargs = make(next(counter))
            t0 = time.perf_counter()
            response = await client.request(method, url, **kwargs)
            latencies.append(time.perf_counter() - t0)
            if response.status_code >= 300:
                raise RuntimeError(f"{method} {url} answered {response.status_code}: {response.text[:300]}")
            done += 1

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return done, latencies


def _server(directory: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ANDCHAIN_DATA_DIR": str(directory),
        "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
        # The limits still count every request (their cost is measured), but never refuse one here.
        "ANDCHAIN_API__RATE_LIMIT_READS": "1000000/second",
        "ANDCHAIN_API__RATE_LIMIT_WRITES": "1000000/second",
        **{f"ANDCHAIN_NETWORKS__{n}__ENABLED": "false" for n in ("INTERNAL", "ETHEREUM", "BASE", "TEMPO", "SWIFT")},
    }
    env.pop("ANDCHAIN_DATABASE_URL", None)
    command = [sys.executable, "-m", "andchain.cli", "serve", "--port", str(port)]
    # The server logs a line per request: to a file, never to a pipe nobody reads (it would fill and stall it).
    log = open(directory / "serve.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _prepare(directory: Path) -> str:
    """Migrate, open the bench's accounts and make an operator key, in this process, before the server starts."""
    os.environ["ANDCHAIN_DATA_DIR"] = str(directory)
    from andchain.config import Settings
    from andchain.context import Context
    from andchain.ledger import AccountFlags, AccountKind, AccountSpec

    ctx = Context(Settings(data_dir=directory))
    ctx.upgrade_database()
    specs = [AccountSpec("bank:usd:cash", "USD", kind=AccountKind.ASSET)] + [
        AccountSpec(
            f"clients:c{i}:usd:dda",
            "USD",
            kind=AccountKind.LIABILITY,
            flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        )
        for i in range(100)
    ]
    assert all(r.ok for r in ctx.ledger.create_accounts(specs))
    _, key = ctx.api_keys.create("operator", label="bench")
    ctx.close()
    return key


def run(seconds: float, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    with stopped_cleanly_on_sigterm(), tempfile.TemporaryDirectory(prefix="andchain-bench-api-") as tmp:
        directory = Path(tmp)
        key = _prepare(directory)
        port = free_port()
        server = _server(directory, port)
        try:
            return asyncio.run(_measure(f"http://127.0.0.1:{port}", key, seconds, server, concurrency))
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


async def _wait_up(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"the server exited: {(server.stderr.read() if server.stderr else b'').decode()[-2000:]}"
            )
        try:
            if (await client.get("/health/live")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not answer within 60 s")


async def _measure(
    base_url: str, key: str, seconds: float, server: subprocess.Popen[bytes], concurrency: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0, headers=auth) as client:
        await _wait_up(client, server)
        run_id = time.time_ns()

        def transfer(n: int) -> tuple[str, str, dict[str, Any]]:
            body = {
                "id": f"s{run_id}-{n}",
                "debit_account": "bank:usd:cash",
                "credit_account": f"clients:c{n % 100}:usd:dda",
                "amount": "1.00",
                "asset": "USD",
            }
            return "POST", "/v1/transfers", {"json": body, "headers": {"Idempotency-Key": body["id"]}}

        def batch(n: int) -> tuple[str, str, dict[str, Any]]:
            items = [
                {
                    "id": f"b{run_id}-{n}-{i}",
                    "debit_account": "bank:usd:cash",
                    "credit_account": f"clients:c{i % 100}:usd:dda",
                    "amount": "1.00",
                    "asset": "USD",
                }
                for i in range(BATCH)
            ]
            return (
                "POST",
                "/v1/transfers/batch",
                {"json": {"transfers": items}, "headers": {"Idempotency-Key": f"b{run_id}-{n}"}},
            )

        def bare(n: int) -> tuple[str, str, dict[str, Any]]:
            return "GET", "/health/live", {}

        # Warm-up: connections open, caches and the database hot.
        await _hammer(client, transfer, 0.5, concurrency)
        await _hammer(client, bare, 0.3, concurrency)
        totals = {"single": [0, 0.0], "batch": [0, 0.0], "bare": [0, 0.0]}
        latency: dict[str, list[float]] = {"single": [], "batch": [], "bare": []}
        slices = max(1, int(seconds / (3 * SLICE_S)))
        for _ in range(slices):
            for name, make, per in (("single", transfer, 1), ("bare", bare, 1), ("batch", batch, BATCH)):
                t0 = time.perf_counter()
                done, lat = await _hammer(client, make, SLICE_S, concurrency)
                totals[name][0] += done * per
                totals[name][1] += time.perf_counter() - t0
                latency[name] += lat
    rate = {name: count / elapsed for name, (count, elapsed) in totals.items()}
    return {
        "bench": "api",
        "concurrency": concurrency,
        "transfers_per_s": round(rate["single"], 1),
        "batch_transfers_per_s": round(rate["batch"], 1),
        "bare_requests_per_s": round(rate["bare"], 1),
        "ratio": round(rate["single"] / rate["bare"], 3),
        "transfer_latency_ms_p50": round(statistics.median(latency["single"]) * 1000, 2),
        "bare_latency_ms_p50": round(statistics.median(latency["bare"]) * 1000, 2),
        "slices": slices,
        "server": "andchain serve (uvicorn, one process), SQLite (WAL) in a temporary directory",
        "machine": machine(),
    }
