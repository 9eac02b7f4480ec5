"""`andchain bench move`: moves per second and latency to finality, per network pair.

The bench starts an internal node (one block per transaction, zero gas) and a Base
node (EIP-1559 gas, 1-second blocks, 2 confirmations, as the shipped profile) in a
temporary directory, sets up the token on both, and gives each of its clients a
verified address of its own on Base. Then `count` moves internal -> base, and `count`
moves base -> internal (each client has approved the bank's minter beforehand), each
a full operation: rate limits, two-phase ledger, burn, wait for the burn's finality,
mint, wait for the mint's finality, post.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from andchain.bench import machine, throwaway_internal_chain
from andchain.chains.client import Call
from andchain.context import Context
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService

CLIENTS = 20


def run(count: int) -> dict[str, Any]:
    base = {
        "display_name": "bench base",
        "chain_id": 8453,
        "kind": "public",
        "confirmations": 2,
        "gas_policy": "eip1559",
        "block_time_s": 1.0,
    }
    with throwaway_internal_chain("andchain-bench-move-", {"base": base}) as ctx:
        return _measure(ctx, count)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _measure(ctx: Context, count: int) -> dict[str, Any]:
    service = TokenService(ctx)
    moves = Moves(service)
    for network in ("internal", "base"):
        service.setup(network)
    worker = token_worker(ctx, service)
    clients = []
    for i in range(CLIENTS):
        client = service.onboard(f"bench mover {i}").id
        service.deposit(client, 10**10, f"bench-{client}")
        service.mint(client, "internal", 10**8, f"warm-{client}")
        address = ctx.keys.create(f"bench:own:{client}")
        nonce, message = moves.challenge(client, "base")
        moves.register(client, "base", nonce, address, ctx.keys.signer(address).sign_personal(message))
        ctx.chain("base").rpc.call("anvil_setBalance", [address, hex(10**20)])
        clients.append((client, address))
    assert run_until_idle(worker)
    results: dict[str, Any] = {}
    for source, destination in (("internal", "base"), ("base", "internal")):
        if source == "base":
            for _client, address in clients:
                ctx.chain("base").transact(
                    address,
                    Call(
                        service.token_address("base"), TOKEN_ABI.encode_call("approve", service.bank("minter"), 10**12)
                    ),
                )
        t0 = time.perf_counter()
        ops = [
            moves.move(clients[i % CLIENTS][0], source, destination, 100 + i, f"{source}-{destination}-{i}")
            for i in range(count)
        ]
        assert run_until_idle(worker, seconds=300)
        spent = time.perf_counter() - t0
        latency = []
        for op in ops:
            done = service.ops.get(op.id)
            assert done.status == OpStatus.SUCCEEDED, (done.status, done.error_message)
            latency.append((done.updated_at_us - done.created_at_us) / 1000)
        results[f"{source}->{destination}"] = {
            "moves": count,
            "moves_per_s": round(count / spent, 1),
            "latency_ms_p50": round(statistics.median(latency)),
            "latency_ms_p99": round(_percentile(latency, 0.99)),
        }
    report = reconcile(ctx)
    return {
        "bench": "move",
        "pairs": results,
        "reconcile_breaks": len(report.breaks),
        "networks": {
            "internal": "anvil, one block per transaction, 1 confirmation",
            "base": "anvil, 1 s blocks, 2 confirmations, EIP-1559 gas",
        },
        "machine": machine(),
    }
