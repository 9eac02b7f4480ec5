"""`andchain bench mint`: mints and payments per second end to end, with latency to finality.

End to end means what a client's request goes through: the operation is recorded
and the DDA reserved, the worker signs and sends, the receipt reaches finality, the
ledger posts, and the listener mirrors the events. The bench starts its own anvil
node (internal profile) and database in a temporary directory:
SQLite, or with `backend="postgresql"` a throwaway PostgreSQL server.

The requests are made as a client would make them at volume: `batch` operations per
request (`Requests.mint_batch` / `pay_batch`, what `POST /v1/tokens/mints/batch` and
`.../payments/batch` call), from this process, while `workers` worker processes
work beside it, as `andchain worker` would. The clock runs from the first request
to the moment every operation is final and the listener has mirrored the last block.

`raw_limit_per_s` is the same node fed pre-signed mint transactions in JSON-RPC
batches, measured in the same run: what the node alone does. anvil's pace falls as
its chain grows, so it is measured before the requests and again after them, on a
chain shorter and then longer than the one the requests met, and the limit is the
mean pace of the two runs (each reported in `raw_limit_runs_per_s`).

`cpu_ms_per_mint` and `cpu_ms_per_pay` say where the machine's CPU went, per operation:
this process's requests, the worker processes, the node and a PostgreSQL server (Linux
/proc; None elsewhere), and `cpu_of_parts_*` how much of the machine's busy CPU time
they were (the rest: the kernel's share no process is charged for, other processes).
`mint_ratio_ceiling` and `pay_ratio_ceiling` estimate the ratios the machine would reach with
every usable core busy at that cost. Parts of the cost follow the clock rather than the work
(the bench's observer, the workers' idle rounds), so the estimate is a little low at a low
pace; a goal well above it is met by costing less CPU, not by overlapping the parts better.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak
from sqlalchemy import func, select

from andchain.bench import cpu_seconds, machine, stopped_cleanly_on_sigterm, throwaway_internal_chain, usable_cpus
from andchain.chains import schema as chain_schema
from andchain.chains.client import AUTOMINE_LOOK_EVERY_S, AUTOMINE_STALL_S
from andchain.chains.contracts import memo32
from andchain.chains.keys import LegacyTx
from andchain.chains.nodes import LocalNode
from andchain.chains.rpc import RpcError
from andchain.config import Settings
from andchain.context import Context
from andchain.errors import DomainError
from andchain.money import parse_minor
from andchain.ops import Operation, OpStatus
from andchain.reconcile import Check, reconcile
from andchain.tokens.model import TOKENS
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService

CLIENTS = 50
BATCH = 100
WORKERS_MAX = 16
SETTLE_TIMEOUT_S = 1800.0


RAW_CHUNK = 200  # raw mints per JSON-RPC batch
RAW_WINDOW = 2  # batches sent and not yet mined, at most


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(count: int, *, backend: str = "sqlite", workers: int = 1, batch: int = BATCH) -> dict[str, Any]:
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"backend must be sqlite or postgresql, was {backend!r}")
    if not 1 <= workers <= WORKERS_MAX:
        raise ValueError(f"workers must be between 1 and {WORKERS_MAX}, was {workers}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(stopped_cleanly_on_sigterm())  # before the database and the node it stops
        url, database_pid = None, None
        if backend == "postgresql":
            from andchain.devtools.postgres import throwaway_postgres

            server = stack.enter_context(throwaway_postgres("bench"))
            url, database_pid = server.url, server.pid()
        ctx = stack.enter_context(throwaway_internal_chain("andchain-bench-mint-", database_url=url))
        return _measure(ctx, count, workers, batch, database_pid)


def _work(settings: Settings, stop: Any, ready: Any, signers: list[str]) -> None:
    """A worker process, as `andchain worker` runs one: every round claims what is due, until told to stop.
    The keys of `signers` are decrypted before it says it is ready, as a worker that has run a while has them."""
    bench = multiprocessing.parent_process()  # its sentinel tells when the bench is gone, however it went
    assert bench is not None, "a bench worker runs in a process the bench started"
    ctx = Context(settings)
    try:
        try:
            for address in signers:
                ctx.keys.signer(address)
            worker = token_worker(ctx)
            worker.recover()
        except Exception as exc:
            ready.put(f"{type(exc).__name__}: {exc}")  # the bench fails at once, and says why
            raise
        ready.put("ready")
        # Idle rounds as `andchain worker` has them, until told to stop, or until the bench is gone (killed
        # without a word: its worker processes would otherwise run on, against a node that is gone too).
        worker.run(seconds=SETTLE_TIMEOUT_S * 2, until=lambda: not bench.is_alive() or stop.is_set())
    finally:
        ctx.close()


@contextlib.contextmanager
def _worker_processes(ctx: Context, count: int, signers: list[str]) -> Iterator[list[int]]:
    """`count` worker processes, each ready (its keys decrypted): their pids."""
    spawn = multiprocessing.get_context("spawn")
    stop, ready = spawn.Event(), spawn.Queue()
    processes = [
        spawn.Process(target=_work, args=(ctx.settings, stop, ready, signers), daemon=True) for _ in range(count)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            try:
                said = ready.get(timeout=120)
            except queue.Empty:
                raise RuntimeError("a bench worker process did not start within 120 s") from None
            if said != "ready":
                raise RuntimeError(f"a bench worker process could not start: {said}")
        yield [process.pid for process in processes if process.pid is not None]
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()


def _final_head_mirrored(ctx: Context, service: TokenService) -> bool:
    """Whether the listener has delivered every final block the chain has now."""
    chain = service.chain("internal")
    final = chain.block_number() - chain.network.confirmations + 1
    t = chain_schema.checkpoints
    with ctx.engine.connect() as conn:
        mirrored = conn.execute(select(func.min(t.c.block_number)).where(t.c.chain_id == chain.chain_id)).scalar()
    return mirrored is not None and int(mirrored) >= final


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (Linux /proc/stat; zeros elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass
class _Cpu:
    """Where the machine's CPU goes: the CPU time used so far by each part of the bench's system."""

    requests_pid: int  # this process: the requests, as an API process makes them, and the bench's observer
    worker_pids: list[int]
    node_pid: int | None
    database_pid: int | None  # a PostgreSQL server (its backends with it); SQLite runs in each process

    def read(self) -> dict[str, float | None]:
        workers = [cpu_seconds(pid) for pid in self.worker_pids]
        return {
            "requests": cpu_seconds(self.requests_pid),
            "workers": None if None in workers else sum(w for w in workers if w is not None),
            "node": cpu_seconds(self.node_pid) if self.node_pid is not None else None,
            "database": cpu_seconds(self.database_pid, with_children=True) if self.database_pid is not None else None,
        }


@dataclass
class _Phase:
    seconds: float
    ops: list[Operation]
    cores_busy: float | None  # how busy the machine's cores were meanwhile, 0 to 1
    cpu_ms_per_op: dict[str, float | None]  # each part's CPU time per operation
    cpu_of_parts: float | None  # the parts' CPU time over the machine's busy CPU time meanwhile


def _phase(
    ctx: Context, service: TokenService, count: int, batch: int, submit: Callable[[range], list[Any]], cpu: _Cpu
) -> _Phase:
    """Submit `count` operations in batches, and wait until each is final and mirrored."""
    cpu0 = cpu.read()
    busy0, total0 = _cpu_ticks()
    t0 = time.perf_counter()
    ops: list[Operation] = []
    for start in range(0, count, batch):
        for outcome in submit(range(start, min(count, start + batch))):
            if isinstance(outcome, DomainError):
                raise outcome
            ops.append(outcome)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while service.ops.any_active() or not _final_head_mirrored(ctx, service):
        if time.monotonic() > deadline:
            raise RuntimeError(f"operations not settled after {SETTLE_TIMEOUT_S:.0f} s: {service.ops.counts()}")
        time.sleep(0.05)  # an observer that looks more often takes the cores it measures
    spent = time.perf_counter() - t0
    busy1, total1 = _cpu_ticks()
    cpu1 = cpu.read()
    used: dict[str, float | None] = {}  # each part's CPU seconds in the phase
    for part, before in cpu0.items():
        after = cpu1[part]
        used[part] = None if before is None or after is None else after - before
    per_op = {part: None if s is None else round(s * 1000 / count, 3) for part, s in used.items()}
    cores_busy = round((busy1 - busy0) / (total1 - total0), 2) if total1 > total0 else None
    busy_s = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
    of_parts = round(sum(s for s in used.values() if s is not None) / busy_s, 2) if busy_s > 0 else None
    return _Phase(spent, ops, cores_busy, per_op, of_parts)


def _ratio_ceiling(cpu_ms_per_op: dict[str, float | None], raw_limit_per_s: float, backend: str) -> float | None:
    """An estimate of the ratio this machine would reach were every core it may use busy with the same work:
    the cores' time over the CPU time one operation costs all the parts together, against the raw limit."""
    parts = [v for k, v in cpu_ms_per_op.items() if not (k == "database" and backend == "sqlite")]
    if any(v is None for v in parts) or not (total := sum(v for v in parts if v is not None)):
        return None
    return round(usable_cpus() * 1000 / total / raw_limit_per_s, 3)


def _latencies_ms(service: TokenService, ops: list[Operation]) -> list[float]:
    out = []
    for op in ops:
        done = service.ops.get(op.id)
        assert done.status == OpStatus.SUCCEEDED, (done.status, done.error_message)
        out.append((done.updated_at_us - done.created_at_us) / 1000)
    return out


def _gap(check: Check) -> int | None:
    """How far the chain is ahead of the ledger in a holder, supply or total check ("ledger 1.00 USDD"
    against "chain 1.05 USDD": 5), in the token's minor units; None when the check says more than that."""
    expected, found = check.expected.split(), check.found.split()
    if "+" in expected or len(expected) < 2 or len(found) < 2 or expected[-1] != found[-1]:
        return None  # an amount in flight, or another shape
    token = next((t for t in TOKENS.values() if t.symbol == found[-1]), None)
    if token is None:
        return None
    return parse_minor(found[-2], token.decimals, allow_negative=True) - parse_minor(
        expected[-2], token.decimals, allow_negative=True
    )


def _raw_mints(service: TokenService, client: str, count: int, tag: str) -> tuple[float, int]:
    """The node alone: `count` mint calls to `client`'s holder, signed before the clock starts and pushed in
    JSON-RPC batches; (seconds until every one is mined, the automine stalls flushed meanwhile). They bypass
    the ledger on purpose."""
    chain = service.chain("internal")
    token = service.token_address("internal")
    minter = chain.signer(service.bank("minter"))
    nonce = chain.nonces.reserve(minter.address, count)
    holder = service.wallet(client, "internal").address
    raws = [
        minter.sign(
            LegacyTx(
                nonce + i,
                0,
                200_000,
                bytes.fromhex(token[2:]),
                0,
                TOKEN_ABI.encode_call("mint", holder, 1, memo32(f"raw-{tag}-{i}")),
                chain.chain_id,
            )
        )
        for i in range(count)
    ]
    # anvil's automine can leave part of a burst in its pool (foundry-rs/foundry#10122), the more so the
    # larger the pool: the raw mints go in JSON-RPC batches of RAW_CHUNK with at most RAW_WINDOW of them
    # unmined, as the worker's own batches go, and a pool left unmined while the head stands still for
    # 20 ms is mined, so that the limit is the node's and not its stall's.
    chain.automine_stall_s, chain.automine_look_every_s, chain.automine_flushes = 0.02, 0.0, 0
    try:
        t0 = time.perf_counter()
        chunks: list[list[str]] = []
        for start in range(0, count, RAW_CHUNK):
            if len(chunks) >= RAW_WINDOW:
                chain.wait_hashes(chunks[-RAW_WINDOW])
            chunk = raws[start : start + RAW_CHUNK]
            refused = [
                r
                for r in chain.rpc.batch([("eth_sendRawTransaction", ["0x" + raw.hex()]) for raw in chunk])
                if isinstance(r, RpcError)
            ]
            if refused:
                raise RuntimeError(
                    f"the node refused {len(refused)} raw mint(s) from nonce {nonce + start}: {refused[0]}"
                )
            chunks.append(["0x" + keccak(raw).hex() for raw in chunk])
        chain.wait_hashes([h for chunk in chunks for h in chunk])
        return time.perf_counter() - t0, chain.automine_flushes
    finally:
        chain.automine_stall_s, chain.automine_look_every_s = AUTOMINE_STALL_S, AUTOMINE_LOOK_EVERY_S


def _measure(ctx: Context, count: int, workers: int, batch: int, database_pid: int | None) -> dict[str, Any]:
    service = TokenService(ctx)
    service.setup("internal")
    worker = token_worker(ctx, service)
    clients = [service.onboard(f"bench client {i}").id for i in range(CLIENTS)]
    for client in clients:
        service.deposit(client, 10**12, reference=f"bench-{client}")
    # Warm-up: every wallet allow-listed and holding tokens, caches and connections hot.
    for client in clients:
        service.mint(client, "internal", 1_000_000, f"warm-{client}")
    assert run_until_idle(worker)
    # The raw node, before the measured phases and after them (below): anvil's pace falls as its chain grows
    # (798-1,282 mints a second before, 619-974 after, in eight runs).
    raw_before_s, flushes_before = _raw_mints(service, clients[0], count, "before")
    assert run_until_idle(worker)  # the listener catches up with the raw mints before the clock starts
    requests = service.requests
    signers = [service.bank("minter")] + [service.wallet(client, "internal").address for client in clients]

    node = LocalNode("internal", ctx.settings.networks["internal"], ctx.settings.data_dir)
    with _worker_processes(ctx, workers, signers) as worker_pids:
        cpu = _Cpu(os.getpid(), worker_pids, node.pid(), database_pid)
        minting = _phase(
            ctx,
            service,
            count,
            batch,
            lambda items: requests.mint_batch(
                [(clients[i % CLIENTS], "internal", 100 + i, f"mint-{i}") for i in items]
            ),
            cpu,
        )
        paying = _phase(
            ctx,
            service,
            count,
            batch,
            lambda items: requests.pay_batch(
                [
                    (clients[i % CLIENTS], clients[(i + 1) % CLIENTS], "internal", 1 + i % 50, f"bench {i}", f"pay-{i}")
                    for i in items
                ]
            ),
            cpu,
        )
    mint_latency = _latencies_ms(service, minting.ops)
    pay_latency = _latencies_ms(service, paying.ops)

    # The raw node again, on the chain as the measured phases left it. The measured phases ran on a chain
    # between the two runs' lengths, and anvil's pace falls as its chain grows: the limit is the mean pace.
    raw_after_s, flushes_after = _raw_mints(service, clients[0], count, "after")
    raw_s = (raw_before_s + raw_after_s) / 2
    backend = ctx.engine.dialect.name
    raw_flushes = flushes_before + flushes_after
    run_until_idle(worker)  # the listener sees the raw mints too (booked nowhere: reconcile shows them)
    report = reconcile(ctx)
    supply_break = [b for b in report.breaks if b.check == "supply"]
    # The raw mints (one minor unit each) went to the first client's holder: its balance, the token's supply
    # and the total over every network are ahead of the ledger by exactly them. Any other break, or any of
    # these by another amount, would be a break of the bench's own operations.
    holder = service.wallet(clients[0], "internal").address.lower()
    gaps = [(b, _gap(b) if b.check in ("holder", "supply", "total") else None) for b in report.breaks]
    holder_gap = next((g for b, g in gaps if b.check == "holder" and holder in b.subject.lower()), 0)
    other_breaks = sorted(
        f"{b.check} {b.subject}: expected {b.expected}, found {b.found}"[:200]
        for b, gap in gaps
        if not (gap == 2 * count and (b.check != "holder" or holder in b.subject.lower()))
    )
    return {
        "bench": "mint",
        "operations": count,
        "backend": backend,
        "workers": workers,
        "batch": batch,
        "mints_per_s": round(count / minting.seconds, 1),
        "mint_latency_ms_p50": round(statistics.median(mint_latency), 1),
        "mint_latency_ms_p99": round(_percentile(mint_latency, 0.99), 1),
        "pays_per_s": round(count / paying.seconds, 1),
        "pay_latency_ms_p50": round(statistics.median(pay_latency), 1),
        "pay_latency_ms_p99": round(_percentile(pay_latency, 0.99), 1),
        "cores_busy_minting": minting.cores_busy,  # the machine's cores, 0 to 1: near 1, the machine is the limit
        "cores_busy_paying": paying.cores_busy,
        # The CPU time one operation cost each part: this process's requests (and its observer), the worker
        # processes, the node, and a PostgreSQL server (SQLite runs inside the others' processes).
        "cpu_ms_per_mint": minting.cpu_ms_per_op,
        "cpu_ms_per_pay": paying.cpu_ms_per_op,
        "cpu_of_parts_minting": minting.cpu_of_parts,  # near 1: the parts above are where the machine's CPU went
        "cpu_of_parts_paying": paying.cpu_of_parts,
        "raw_limit_per_s": round(count / raw_s, 1),
        "raw_limit_runs_per_s": [round(count / raw_before_s, 1), round(count / raw_after_s, 1)],
        "mint_ratio": round((count / minting.seconds) / (count / raw_s), 3),
        "pay_ratio": round((count / paying.seconds) / (count / raw_s), 3),
        # The ratios this machine would reach with every core busy at the measured CPU cost per operation.
        "mint_ratio_ceiling": _ratio_ceiling(minting.cpu_ms_per_op, count / raw_s, backend),
        "pay_ratio_ceiling": _ratio_ceiling(paying.cpu_ms_per_op, count / raw_s, backend),
        "raw_node_stalls_flushed": raw_flushes,
        # They bypass the ledger on purpose: what the chain holds beyond the ledger, as reconcile found it.
        "raw_mints_outside_ledger": holder_gap,
        "reconcile_flags_raw_mints": bool(supply_break),
        "reconcile_other_breaks": other_breaks,
        "node": "anvil, internal profile (one block per transaction, zero gas)",
        "database": "SQLite (WAL) in a temporary directory"
        if backend == "sqlite"
        else "a throwaway PostgreSQL (fsync off) on this machine",
        "machine": machine(),
    }
