"""`andchain bench chain`: token transfers/s through the chain client against the raw node.

The bench starts its own anvil node (the internal profile: zero gas, one block per
transaction) on a free port in a temporary directory, deploys a PermissionedToken
and funds two senders. Then, in alternating rounds on the same node:
- raw: transfers signed before the clock starts, pushed with JSON-RPC batches of
  eth_sendRawTransaction, timed until every receipt is in;
- client: the same transfers through ChainClient.submit (encode, reserve nonces in
  the database, sign, batch-send) and ChainClient.wait;
- batched: batchTransfer calls of BATCH_RECIPIENTS transfers each, through the client.
Every figure is the median over rounds; the ratio is the median of each round's
client/raw pair, measured back to back.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from eth_utils import keccak, to_checksum_address

from andchain.bench import machine, throwaway_internal_chain
from andchain.chains.client import Call
from andchain.chains.contracts import artifact, memo32
from andchain.chains.keys import LegacyTx
from andchain.chains.nodes import anvil_binary
from andchain.context import Context

CHUNK = 200
RECIPIENTS = 500
BATCH_RECIPIENTS = 500
ROUND_TXS = 1_000


def run(seconds: float) -> dict[str, Any]:
    with throwaway_internal_chain("andchain-bench-chain-") as ctx:
        return _measure(ctx, seconds)


def _measure(ctx: Context, seconds: float) -> dict[str, Any]:
    chain = ctx.chain("internal")
    abi = artifact("PermissionedToken").abi
    admin = ctx.keys.create("bench:admin")
    raw_sender = ctx.keys.create("bench:raw")
    client_sender = ctx.keys.create("bench:client")
    token = chain.deploy("bench_token", "PermissionedToken", ["Bench", "BNCH", 2, 10**30, admin], admin)

    def send(sender: str, fn: str, *args: Any) -> None:
        chain.transact(sender, Call(token, abi.encode_call(fn, *args)))

    recipients = [to_checksum_address(keccak(text=f"recipient-{i}")[-20:]) for i in range(RECIPIENTS)]
    send(admin, "configureMinter", admin, 10**29)
    for start in range(0, RECIPIENTS, 250):
        send(admin, "batchSetAllowlisted", recipients[start : start + 250], True)
    send(admin, "batchSetAllowlisted", [raw_sender, client_sender], True)
    send(admin, "batchMint", [raw_sender, client_sender], [10**20, 10**20], [memo32("bench")] * 2)

    raw_signer = chain.signer(raw_sender)
    raw_nonce = int(chain.rpc.call("eth_getTransactionCount", [raw_sender, "pending"]), 16)
    token_bytes = bytes.fromhex(token[2:])
    transfer_gas = 120_000
    counter = 0

    def raw_round(count: int) -> float:
        nonlocal raw_nonce, counter
        raws = []
        for _ in range(count):
            counter += 1
            data = abi.encode_call("transfer", recipients[counter % RECIPIENTS], 1)
            raws.append(raw_signer.sign(LegacyTx(raw_nonce, 0, transfer_gas, token_bytes, 0, data, chain.chain_id)))
            raw_nonce += 1
        t0 = time.perf_counter()
        hashes = []
        for start in range(0, len(raws), CHUNK):
            chunk = raws[start : start + CHUNK]
            chain.rpc.batch([("eth_sendRawTransaction", ["0x" + r.hex()]) for r in chunk])
            hashes += ["0x" + keccak(r).hex() for r in chunk]
        receipts = chain.wait_hashes(hashes)
        spent = time.perf_counter() - t0
        assert all(r.status for r in receipts.values()), "a raw transfer failed"
        return spent

    def client_round(count: int) -> float:
        nonlocal counter
        t0 = time.perf_counter()
        sent = []
        for start in range(0, count, CHUNK):
            calls = []
            for _ in range(min(CHUNK, count - start)):
                counter += 1
                calls.append(Call(token, abi.encode_call("transfer", recipients[counter % RECIPIENTS], 1)))
            sent += chain.submit(client_sender, calls)
        receipts = chain.wait(sent)
        spent = time.perf_counter() - t0
        assert all(r.status for r in receipts), "a client transfer failed"
        return spent

    def batched_round(calls: int) -> float:
        t0 = time.perf_counter()
        batch = [
            Call(token, abi.encode_call("batchTransfer", recipients[:BATCH_RECIPIENTS], [1] * BATCH_RECIPIENTS))
            for _ in range(calls)
        ]
        receipts = chain.wait(chain.submit(client_sender, batch))
        spent = time.perf_counter() - t0
        assert all(r.status for r in receipts), "a batch transfer failed"
        return spent

    raw_round(200)  # warm up: first touches of every recipient, caches, connections
    client_round(200)
    batched_round(2)
    # Rounds alternate, and each figure is the median over rounds: a pause of the node
    # (or of the shared machine) then spoils one round instead of skewing the total.
    rounds: dict[str, list[float]] = {"raw": [], "client": [], "batched": [], "ratio": []}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rounds["ratio"]) < 3:
        raw_rate = ROUND_TXS / raw_round(ROUND_TXS)
        client_rate = ROUND_TXS / client_round(ROUND_TXS)
        rounds["raw"].append(raw_rate)
        rounds["client"].append(client_rate)
        rounds["ratio"].append(client_rate / raw_rate)
        rounds["batched"].append(4 * BATCH_RECIPIENTS / batched_round(4))
    rate = {k: statistics.median(v) for k, v in rounds.items()}
    return {
        "bench": "chain",
        "node": "anvil, one block per transaction, zero gas price, --prune-history",
        "transfers_per_s": round(rate["client"]),
        "raw_limit_per_s": round(rate["raw"]),
        "ratio": round(rate["ratio"], 3),
        "rounds": len(rounds["ratio"]),
        "batched_transfers_per_s": round(rate["batched"]),
        "batch_recipients": BATCH_RECIPIENTS,
        "transfers_measured": len(rounds["ratio"]) * (2 * ROUND_TXS + 4 * BATCH_RECIPIENTS),
        "chunk": CHUNK,
        "seconds": seconds,
        "machine": {**machine(), "anvil": os.path.basename(str(anvil_binary()))},
    }
