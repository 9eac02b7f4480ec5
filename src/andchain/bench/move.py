"""`andchain bench move`: moves per second and latency to finality, for every pair of networks.

The bench starts a node for each EVM network enabled by default (the bank's internal
chain: one block per transaction, zero gas; Ethereum, Base and Tempo: EIP-1559 gas,
their shipped block times and confirmations) in a temporary directory, sets up the
token on each, and gives each of its clients a verified address of its own on every
public network, with gas and an approval for the bank's minter. Then, for each ordered
pair of networks, `count` moves from the first to the second, each a full operation:
rate limits, two-phase ledger, burn, wait for the burn's finality, mint, wait for the
mint's finality, post. The pairs run in an order that funds each source first (from
the internal chain out, between public networks, back in).

Beside each pair's latency stand its floors: `blocks_ms`, the source's block time times
its confirmations plus the destination's; and `minimum_ms`, the true lower bound, one
block fewer on each side (a transaction is in its first confirmation the moment its
block is mined; sent at a random moment it waits half a block for it on average). A
chain that mines a block per transaction counts zero.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from andchain.bench import machine, throwaway_internal_chain
from andchain.chains.client import Call
from andchain.config import DEFAULT_NETWORKS
from andchain.context import Context
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService

CLIENTS = 20
PUBLIC = ("ethereum", "base", "tempo")
PROFILE_FIELDS = ("display_name", "chain_id", "kind", "confirmations", "gas_policy", "block_time_s")


def pairs(networks: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every ordered pair, in an order where each source holds tokens before it is moved from."""
    public = [n for n in networks if n != "internal"]
    out = [("internal", n) for n in public]
    out += [(a, b) for a in public for b in public if a != b]
    out += [(n, "internal") for n in public]
    return out


def run(count: int, networks: tuple[str, ...] = PUBLIC) -> dict[str, Any]:
    extra = {
        name: {k: DEFAULT_NETWORKS[name][k] for k in PROFILE_FIELDS if k in DEFAULT_NETWORKS[name]} for name in networks
    }
    with throwaway_internal_chain("andchain-bench-move-", extra) as ctx:
        return _measure(ctx, count, ("internal", *networks))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _blocks_ms(ctx: Context, network: str, confirmations_less: int = 0) -> float:
    settings = ctx.settings.network(network)
    return (settings.block_time_s or 0.0) * (settings.confirmations - confirmations_less) * 1000


def _measure(ctx: Context, count: int, networks: tuple[str, ...]) -> dict[str, Any]:
    service = TokenService(ctx)
    moves = Moves(service)
    for network in networks:
        service.setup(network)
    public = [n for n in networks if ctx.settings.network(n).kind == "public"]
    worker = token_worker(ctx, service)
    clients = []
    for i in range(CLIENTS):
        client = service.onboard(f"bench mover {i}").id
        service.deposit(client, 10**10, f"bench-{client}")
        service.mint(client, "internal", 10**8, f"warm-{client}")
        address = ctx.keys.create(f"bench:own:{client}")
        for network in public:
            nonce, message = moves.challenge(client, network)
            moves.register(client, network, nonce, address, ctx.keys.signer(address).sign_personal(message))
            chain = ctx.chain(network)
            chain.rpc.call("anvil_setBalance", [address, hex(10**20)])
            # The bank's minter burns on a public network only what the holder approved.
            chain.transact(
                address,
                Call(service.token_address(network), TOKEN_ABI.encode_call("approve", service.bank("minter"), 10**15)),
            )
        clients.append(client)
    assert run_until_idle(worker)
    results: dict[str, Any] = {}
    for source, destination in pairs(networks):
        amount = 100 if source == "internal" else 10  # what goes out of the internal chain funds the rest
        t0 = time.perf_counter()
        ops = [
            moves.move(clients[i % CLIENTS], source, destination, amount + i % 7, f"{source}-{destination}-{i}")
            for i in range(count)
        ]
        assert run_until_idle(worker, seconds=600), service.ops.counts()
        spent = time.perf_counter() - t0
        latency = []
        for op in ops:
            done = service.ops.get(op.id)
            assert done.status == OpStatus.SUCCEEDED, (source, destination, done.status, done.error_message)
            latency.append((done.updated_at_us - done.created_at_us) / 1000)
        results[f"{source}->{destination}"] = {
            "moves": count,
            "moves_per_s": round(count / spent, 1),
            "latency_ms_p50": round(statistics.median(latency)),
            "latency_ms_p99": round(_percentile(latency, 0.99)),
            "blocks_ms": round(_blocks_ms(ctx, source) + _blocks_ms(ctx, destination)),
            "minimum_ms": round(_blocks_ms(ctx, source, 1) + _blocks_ms(ctx, destination, 1)),
        }
    report = reconcile(ctx)
    profiles = {}
    for network in networks:
        s = ctx.settings.network(network)
        blocks = f"{s.block_time_s:g} s blocks" if s.block_time_s else "one block per transaction"
        profiles[network] = f"anvil, {blocks}, {s.confirmations} confirmations, {s.gas_policy} gas"
    return {
        "bench": "move",
        "pairs": results,
        "reconcile_breaks": len(report.breaks),
        "networks": profiles,
        "machine": machine(),
    }
