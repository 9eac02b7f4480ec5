"""`andchain bench mint`: mints and payments per second end to end, with latency to finality.

End to end means what a client's request goes through: the operation is recorded
and the DDA reserved, the worker signs and sends, the receipt reaches finality, the
ledger posts, and the listener mirrors the events. The bench starts its own anvil
node (internal profile, `--prune-history`) and SQLite database in a temporary
directory. `raw_limit_per_s` is the same node fed pre-signed mint transactions in
JSON-RPC batches, measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from eth_utils import keccak

from andchain.bench import machine, throwaway_internal_chain
from andchain.chains.contracts import memo32
from andchain.chains.keys import LegacyTx
from andchain.context import Context
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService

CLIENTS = 50


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(count: int) -> dict[str, Any]:
    with throwaway_internal_chain("andchain-bench-mint-") as ctx:
        return _measure(ctx, count)


def _latencies_ms(service: TokenService, ops: list[Any]) -> list[float]:
    out = []
    for op in ops:
        done = service.ops.get(op.id)
        assert done.status == OpStatus.SUCCEEDED, (done.status, done.error_message)
        out.append((done.updated_at_us - done.created_at_us) / 1000)
    return out


def _measure(ctx: Context, count: int) -> dict[str, Any]:
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

    t0 = time.perf_counter()
    mints = [service.mint(clients[i % CLIENTS], "internal", 100 + i, f"mint-{i}") for i in range(count)]
    assert run_until_idle(worker)
    mint_s = time.perf_counter() - t0
    mint_latency = _latencies_ms(service, mints)

    t0 = time.perf_counter()
    pays = [
        service.pay(clients[i % CLIENTS], clients[(i + 1) % CLIENTS], "internal", 1 + i % 50, f"bench {i}", f"pay-{i}")
        for i in range(count)
    ]
    assert run_until_idle(worker)
    pay_s = time.perf_counter() - t0
    pay_latency = _latencies_ms(service, pays)

    # The raw node: the same mint calls, signed before the clock starts, pushed in batches.
    chain = service.chain("internal")
    token = service.token_address("internal")
    minter = chain.signer(service.bank("minter"))
    nonce = chain.nonces.reserve(minter.address, count)
    holder = service.wallet(clients[0], "internal").address
    raws = [
        minter.sign(
            LegacyTx(
                nonce + i,
                0,
                200_000,
                bytes.fromhex(token[2:]),
                0,
                TOKEN_ABI.encode_call("mint", holder, 1, memo32(f"raw-{i}")),
                chain.chain_id,
            )
        )
        for i in range(count)
    ]
    t0 = time.perf_counter()
    hashes = []
    for start in range(0, count, 200):
        chunk = raws[start : start + 200]
        chain.rpc.batch([("eth_sendRawTransaction", ["0x" + raw.hex()]) for raw in chunk])
        hashes += ["0x" + keccak(raw).hex() for raw in chunk]
    chain.wait_hashes(hashes)
    raw_s = time.perf_counter() - t0
    run_until_idle(worker)  # the listener sees the raw mints too (booked nowhere: reconcile shows them)
    report = reconcile(ctx)
    supply_break = [b for b in report.breaks if b.check == "supply"]
    return {
        "bench": "mint",
        "operations": count,
        "mints_per_s": round(count / mint_s, 1),
        "mint_latency_ms_p50": round(statistics.median(mint_latency), 1),
        "mint_latency_ms_p99": round(_percentile(mint_latency, 0.99), 1),
        "pays_per_s": round(count / pay_s, 1),
        "pay_latency_ms_p50": round(statistics.median(pay_latency), 1),
        "pay_latency_ms_p99": round(_percentile(pay_latency, 0.99), 1),
        "raw_limit_per_s": round(count / raw_s, 1),
        "mint_ratio": round((count / mint_s) / (count / raw_s), 3),
        "pay_ratio": round((count / pay_s) / (count / raw_s), 3),
        "raw_mints_outside_ledger": count,  # they bypass the ledger on purpose
        "reconcile_flags_raw_mints": bool(supply_break),
        "node": "anvil, internal profile (one block per transaction, zero gas), --prune-history",
        "database": "SQLite (WAL) in a temporary directory",
        "machine": machine(),
    }
