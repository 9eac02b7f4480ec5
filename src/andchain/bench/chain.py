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

Then the client's two hand-written hot paths against the libraries they replace, in
alternating half-second slices: signing the bench's transfers with `Signer` against
eth-account's `Account.sign_transaction` (legacy and EIP-1559), and encoding them with
the one-word fast path against `eth_abi.encode`. Each side's outputs are first checked
byte for byte against the other's, so the speed-up compares the same work.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import eth_abi
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from andchain.bench import machine, throwaway_internal_chain
from andchain.chains.client import Call
from andchain.chains.contracts import artifact, memo32
from andchain.chains.keys import DynamicFeeTx, LegacyTx, Signer
from andchain.chains.nodes import anvil_binary
from andchain.context import Context

CHUNK = 200
RECIPIENTS = 500
BATCH_RECIPIENTS = 500
ROUND_TXS = 1_000
SLICE_S_MAX = 0.5
SLICES_MIN = 3
# Local work (signing, encoding) gets this share of --seconds per comparison, at most the max.
LOCAL_SHARE = 0.25
LOCAL_SECONDS_MAX = 10.0


def run(seconds: float) -> dict[str, Any]:
    with throwaway_internal_chain("andchain-bench-chain-", internal={"rpc_batch_max": CHUNK}) as ctx:
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
        calls = []
        for _ in range(count):
            counter += 1
            calls.append(Call(token, abi.encode_call("transfer", recipients[counter % RECIPIENTS], 1)))
        # The round in one submit, as a worker's batch goes: the nonces reserved once, every transaction
        # signed, then sent in JSON-RPC batches of the network's rpc_batch_max (CHUNK here, as the raw side).
        sent = chain.submit(client_sender, calls)
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
    local = compare_local_work(token, recipients, chain.chain_id, min(LOCAL_SECONDS_MAX, seconds * LOCAL_SHARE))
    return {
        "bench": "chain",
        "node": "anvil, one block per transaction, zero gas price",
        "transfers_per_s": round(rate["client"]),
        "raw_limit_per_s": round(rate["raw"]),
        "ratio": round(rate["ratio"], 3),
        "rounds": len(rounds["ratio"]),
        "batched_transfers_per_s": round(rate["batched"]),
        "batch_recipients": BATCH_RECIPIENTS,
        "transfers_measured": len(rounds["ratio"]) * (2 * ROUND_TXS + 4 * BATCH_RECIPIENTS),
        "chunk": CHUNK,
        "seconds": seconds,
        **local,
        "machine": {**machine(), "anvil": os.path.basename(str(anvil_binary()))},
    }


def _alternate(fast: Callable[[int], Any], library: Callable[[int], Any], seconds: float) -> dict[str, float]:
    """Operations per second of two implementations of the same work, in alternating slices.

    Each side runs for one slice (half a second, shorter when `seconds` would not hold
    SLICES_MIN pairs of them), then the other; rates and the speed-up are medians over
    slices (the speed-up of each back-to-back pair), so a pause of the shared machine
    spoils one slice instead of favouring one side.
    """
    slice_s = min(SLICE_S_MAX, seconds / (2 * SLICES_MIN))
    rates: dict[str, list[float]] = {"fast": [], "library": [], "speedup": []}
    counter = 0

    def one_slice(work: Callable[[int], Any]) -> float:
        nonlocal counter
        done = 0
        t0 = time.perf_counter()
        while (spent := time.perf_counter() - t0) < slice_s:
            for _ in range(10):
                work(counter)
                counter += 1
            done += 10
        return done / spent

    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates["speedup"]) < SLICES_MIN:
        fast_rate, library_rate = one_slice(fast), one_slice(library)
        rates["fast"].append(fast_rate)
        rates["library"].append(library_rate)
        rates["speedup"].append(fast_rate / library_rate)
    return {k: statistics.median(v) for k, v in rates.items()} | {"slices": len(rates["speedup"])}


def compare_local_work(token: str, recipients: Sequence[str], chain_id: int, seconds: float) -> dict[str, Any]:
    """The hand-written signer and ABI encoder against eth-account and eth_abi, on the bench's transfers."""
    abi = artifact("PermissionedToken").abi
    transfer = abi.function("transfer")
    private_key = keccak(text="andchain bench signer")
    signer = Signer(private_key)
    token_bytes = bytes.fromhex(token[2:])

    calls = [abi.encode_call("transfer", to, 1) for to in recipients]

    def call(i: int) -> bytes:
        return calls[i % len(calls)]

    def legacy(i: int) -> bytes:
        return signer.sign(LegacyTx(i, 0, 120_000, token_bytes, 0, call(i), chain_id))

    def legacy_library(i: int) -> bytes:
        tx = {"nonce": i, "gasPrice": 0, "gas": 120_000, "to": token, "value": 0, "data": call(i), "chainId": chain_id}
        return bytes(Account.sign_transaction(tx, private_key).raw_transaction)

    def dynamic(i: int) -> bytes:
        return signer.sign(DynamicFeeTx(i, 10**9, 3 * 10**10, 120_000, token_bytes, 0, call(i), chain_id))

    def dynamic_library(i: int) -> bytes:
        tx = {
            "type": 2,
            "nonce": i,
            "maxPriorityFeePerGas": 10**9,
            "maxFeePerGas": 3 * 10**10,
            "gas": 120_000,
            "to": token,
            "value": 0,
            "data": call(i),
            "chainId": chain_id,
        }
        return bytes(Account.sign_transaction(tx, private_key).raw_transaction)

    def encode(i: int) -> bytes:
        # What the chain client calls: the one-word fast path behind encode_call.
        return abi.encode_call("transfer", recipients[i % len(recipients)], i + 1)

    def encode_library(i: int) -> bytes:
        return transfer.selector + eth_abi.encode(transfer.inputs, (recipients[i % len(recipients)], i + 1))

    pairs = {
        "sign_legacy": (legacy, legacy_library, "eth_account.Account.sign_transaction"),
        "sign_eip1559": (dynamic, dynamic_library, "eth_account.Account.sign_transaction"),
        "encode_transfer": (encode, encode_library, "eth_abi.encode"),
    }
    out: dict[str, Any] = {
        "library_versions": {d: version(d) for d in ("eth-account", "eth-abi", "coincurve")},
    }
    for name, (fast, library, library_name) in pairs.items():
        for i in range(0, 1_000, 7):
            if fast(i) != library(i):
                raise AssertionError(f"{name}: the hand-written path and {library_name} differ at example {i}")
        rate = _alternate(fast, library, seconds)
        out[name] = {
            "andchain_per_s": round(rate["fast"]),
            "library": library_name,
            "library_per_s": round(rate["library"]),
            "speedup": round(rate["speedup"], 2),
            "slices": int(rate["slices"]),
        }
    return out
