"""Money paths under faults the other suites do not play: each test names the defect it guards."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from andchain.chains.rpc import RpcError
from andchain.ops import OpStatus
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService
from tests.tokens.conftest import anvil, ctx, tokens  # noqa: F401 - shared fixtures

RATE_LIMITED = {"code": -32005, "message": "request rate exceeded"}


def run_until(worker, condition: Callable[[], bool], *, rounds: int = 400) -> None:
    for _ in range(rounds):
        worker.run_once()
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def mint_events(service: TokenService, network: str, op_id: str) -> int:
    """How many Mint events on chain carry this operation's memo."""
    from andchain.chains.contracts import memo32

    chain = service.chain(network)
    token = service.token_address(network)
    logs = chain.get_logs([token], 0, chain.block_number())
    count = 0
    for raw in logs:
        decoded = TOKEN_ABI.decode_log([bytes.fromhex(t[2:]) for t in raw["topics"]], bytes.fromhex(raw["data"][2:]))
        if decoded and decoded.name == "Mint" and decoded.args["memo"] == memo32(op_id):
            count += 1
    return count


class ItemErrors:
    """The node answers a batch, but some of its items with an error (a provider's per-request rate limit)."""

    def __init__(self, rpc: Any, methods: set[str], times: int) -> None:
        self.rpc = rpc
        self.methods = methods
        self.left = {m: times for m in methods}
        self.original = rpc.batch

    def __call__(self, calls):
        replies = self.original(calls)
        out = []
        for (method, _), reply in zip(calls, replies, strict=True):
            if method in self.methods and self.left[method] > 0:
                self.left[method] -= 1
                out.append(RpcError(method, RATE_LIMITED))
            else:
                out.append(reply)
        return out


def test_an_error_answer_to_a_receipt_look_up_never_signs_a_mint_twice(ctx, tokens):  # noqa: F811
    """A receipt look-up answered with an error is not "no receipt": a mined mint is not re-signed."""
    client = tokens.onboard("Rate Limited").id
    tokens.deposit(client, 10_000, "fund-rl")
    op = tokens.mint(client, "internal", 2_500, "mint-rl")
    chain = tokens.chain("internal")
    worker = token_worker(ctx, tokens)
    # The mint is signed, recorded and sent (anvil mines it at once).
    run_until(worker, lambda: (tokens.ops.get(op.id).state.get("tx") or {}).get("step") == "mint")
    assert mint_events(tokens, "internal", op.id) == 1
    # Next round the provider answers the receipt and transaction look-ups of the batch with an error.
    faults = ItemErrors(chain.rpc, {"eth_getTransactionReceipt", "eth_getTransactionByHash"}, times=1)
    chain.rpc.batch = faults
    try:
        run_until(worker, lambda: faults.left["eth_getTransactionReceipt"] == 0)
    finally:
        del chain.rpc.batch
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    done = tokens.ops.get(op.id)
    assert done.status == OpStatus.SUCCEEDED, done
    assert mint_events(tokens, "internal", op.id) == 1, "the mint was signed and mined twice"
    supply = chain.read(tokens.token_address("internal"), TOKEN_ABI, "totalSupply")
    assert supply == 2_500
