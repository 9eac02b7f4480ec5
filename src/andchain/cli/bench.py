"""`andchain bench`: figures against the raw limit measured in the same run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from andchain.cli.common import (
    JsonOpt,
    clean_errors,
    emit_json,
    fail,
    out,
)

app = typer.Typer(help="Benchmarks against the raw limit measured in the same run.", no_args_is_help=True)


@app.command("ledger")
@clean_errors
def bench_ledger(
    backend: Annotated[str, typer.Option(help="sqlite or postgresql")] = "sqlite",
    seconds: Annotated[float, typer.Option(help="measuring time")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Transfers/s through the ledger (batches of 1,000, one hot account) vs plain INSERTs of the same rows."""
    from andchain.bench import ledger as bench

    if backend not in ("sqlite", "postgresql"):
        fail(f"--backend must be sqlite or postgresql, was {backend!r}", 2)
    result = bench.run(backend, seconds)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in ("backend", "engine", "transfers_per_s", "single_transfers_per_s", "raw_limit_per_s", "ratio"):
        table.add_row(key, str(result[key]))
    out.print(table)


@app.command("chain")
@clean_errors
def bench_chain(
    seconds: Annotated[float, typer.Option(help="measuring time")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Token transfers/s through the chain client vs pre-signed raw transfers, and via batchTransfer."""
    from andchain.bench import chain as bench

    result = bench.run(seconds)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in ("transfers_per_s", "raw_limit_per_s", "ratio", "batched_transfers_per_s"):
        table.add_row(key, str(result[key]))
    out.print(table)


@app.command("soak")
@clean_errors
def bench_soak(
    minutes: Annotated[float, typer.Option(min=0.5, max=24 * 60, help="how long the steady stream runs")] = 10.0,
    rate: Annotated[
        float, typer.Option(min=1, max=10_000, help="operations per second (half mints, half payments)")
    ] = 20.0,
    sample_s: Annotated[float, typer.Option(min=1, max=3600, help="seconds between two samples")] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """A steady stream for N minutes: resident memory, database bytes per operation, listener lag."""
    from andchain.bench import soak as bench

    result = bench.run(minutes, rate, sample_s)
    if as_json:
        emit_json(result)
        return
    table = Table("elapsed s", "submitted", "succeeded", "unfinished", "RSS MB", "DB MB", "listener lag")
    for s in result["samples"]:
        table.add_row(*(str(s[k]) for k in ("elapsed_s", "submitted", "succeeded", "unfinished", "rss_mb", "db_mb",
                                             "listener_lag_blocks")))  # fmt: skip
    out.print(table)
    out.print(
        f"RSS {result['rss_mb_warm']} -> {result['rss_mb_end']} MB (max {result['rss_mb_max']}); "
        f"{result['db_bytes_per_op']} database bytes per operation; listener lag at most "
        f"{result['listener_lag_blocks_max']} blocks; reconcile {'clean' if result['reconcile_clean'] else 'BROKEN'}"
    )


@app.command("mint")
@clean_errors
def bench_mint(
    count: Annotated[int, typer.Option(help="mints, then as many payments")] = 1000,
    backend: Annotated[str, typer.Option(help="sqlite or postgresql (a throwaway server)")] = "sqlite",
    workers: Annotated[int, typer.Option(min=1, max=16, help="worker processes beside the requests")] = 1,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="operations per request")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Mints and payments per second end to end (requests in batches, worker processes, ledger, chain,
    listener), p50/p99 latency to finality, against pre-signed mints sent straight to the node."""
    from andchain.bench import mint as bench

    if count < 10:
        fail("--count must be at least 10", 2)
    if backend not in ("sqlite", "postgresql"):
        fail(f"--backend must be sqlite or postgresql, was {backend!r}", 2)
    result = bench.run(count, backend=backend, workers=workers, batch=batch)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in (
        "backend",
        "workers",
        "batch",
        "mints_per_s",
        "mint_latency_ms_p50",
        "mint_latency_ms_p99",
        "pays_per_s",
        "pay_latency_ms_p50",
        "pay_latency_ms_p99",
        "raw_limit_per_s",
        "mint_ratio",
        "pay_ratio",
    ):
        table.add_row(key, str(result[key]))
    out.print(table)


@app.command("move")
@clean_errors
def bench_move(
    count: Annotated[int, typer.Option(help="moves per network pair")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Moves per second and p50/p99 latency to finality for every pair of the internal chain, Ethereum, Base
    and Tempo (their shipped profiles), beside each pair's block time x confirmations and true minimum."""
    from andchain.bench import move as bench

    if count < 1:
        fail("--count must be at least 1", 2)
    result = bench.run(count)
    if as_json:
        emit_json(result)
        return
    table = Table("pair", "moves/s", "p50 ms", "p99 ms", "minimum ms")
    for pair, f in result["pairs"].items():
        table.add_row(pair, *(str(f[k]) for k in ("moves_per_s", "latency_ms_p50", "latency_ms_p99", "minimum_ms")))
    out.print(table)


@app.command("api")
@clean_errors
def bench_api(
    seconds: Annotated[float, typer.Option(help="measuring time")] = 12.0,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="concurrent clients")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Ledger transfers/s through HTTP (single, and batches of 1,000; 8 clients) vs a bare endpoint of the server."""
    from andchain.bench import api as bench

    result = bench.run(seconds, concurrency)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in ("transfers_per_s", "batch_transfers_per_s", "bare_requests_per_s", "ratio", "transfer_latency_ms_p50"):
        table.add_row(key, str(result[key]))
    out.print(table)


@app.command("book")
@clean_errors
def bench_book(
    orders: Annotated[int, typer.Option(help="orders in the seeded mix", min=1000, max=10_000_000)] = 200_000,
    rounds: Annotated[int, typer.Option(help="runs of the mix; the best is reported", min=1, max=50)] = 5,
    seed: Annotated[int, typer.Option(help="the workload's seed")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Orders/s through the client order book (a seeded add/cancel/match mix, one core) vs a loop that
    only appends the same orders to a list."""
    from andchain.bench import book as bench

    result = bench.run(orders, rounds, seed)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key in ("orders", "fills", "orders_per_s", "median_orders_per_s", "raw_limit_per_s", "ratio"):
        table.add_row(key, str(result[key]))
    out.print(table)


@app.command("rfq")
@clean_errors
def bench_rfq(
    count: Annotated[int, typer.Option(help="RFQs, one after another", min=5, max=10_000)] = 50,
    database_url: Annotated[
        str | None, typer.Option(help="a PostgreSQL URL (default: SQLite in the bench's directory)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quote-to-settled latency of the desk's RFQ (quote, accept, settle at the reference custodian) vs an
    internal transfer sent straight to the custodian and followed until completed."""
    from andchain.bench import rfq as bench

    result = bench.run(count, database_url)
    if as_json:
        emit_json(result)
        return
    table = Table("measure", "value")
    for key, value in result.items():
        if key != "machine":
            table.add_row(key, str(value))
    out.print(table)
