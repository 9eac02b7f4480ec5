"""Money paths when a node answers with errors, loses its answers or reverts in a block not yet final."""

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


# ------------------------------------------------------------------------------------------------
# A revert seen in a block that is not final yet


@pytest.fixture
def deep_world(tmp_path):
    """The internal network needing 2 confirmations, blocks mined by the test (automine plus evm_mine)."""
    from tests.chains.conftest import make_context, start_node

    node = start_node(tmp_path / "node", confirmations=2)
    context = make_context(tmp_path, node)
    service = TokenService(context)
    service.setup("internal")
    yield context, service
    context.close()
    node.stop()


def run_mining(context, service: TokenService, condition: Callable[[], bool], *, rounds: int = 400) -> None:
    worker = token_worker(context, service)
    chain = service.chain("internal")
    for _ in range(rounds):
        worker.run_once()
        if condition():
            return
        chain.rpc.call("evm_mine")
        time.sleep(0.06)
    raise AssertionError("condition not reached")


def test_a_mint_reverted_in_a_block_not_yet_final_is_not_refused_before_its_confirmations(deep_world):
    """A revert is as final as the block it is in: once a reorg removes that block, the same signed bytes
    (public since they were broadcast) may be mined again and succeed. Refusing the operation (and
    voiding its hold) on an unconfirmed revert leaves tokens minted that the ledger never booked."""
    from andchain.chains.client import Call
    from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, holder_account

    context, service = deep_world
    chain = service.chain("internal")
    client = service.onboard("Reorg Buyer").id
    service.deposit(client, 10_000, "fund-reorg")
    first = service.mint(client, "internal", 100, "mint-reorg-1")  # allow-lists the holder, warms the gas cache
    run_mining(context, service, lambda: service.ops.get(first.id).terminal)
    assert service.ops.get(first.id).status == OpStatus.SUCCEEDED
    holder = service.ops.get(first.id).payload["holder"]

    snapshot = chain.rpc.call("evm_snapshot")
    token = service.token_address("internal")
    chain.transact(service.bank("pauser"), Call(token, TOKEN_ABI.encode_call("pause")))
    op = service.mint(client, "internal", 500, "mint-reorg-2")
    worker = token_worker(context, service)
    run_until(worker, lambda: (service.ops.get(op.id).state.get("tx") or {}).get("step") == "mint")
    raw = service.ops.get(op.id).state["tx"]["raw"]
    tx_hash = service.ops.get(op.id).state["tx"]["hash"]
    assert chain.receipts([tx_hash])[tx_hash].status is False  # mined, reverted (paused), 1 confirmation of 2
    time.sleep(0.06)
    for _ in range(3):  # the worker follows it while its block is not final
        worker.run_once()
        time.sleep(0.06)
    early = service.ops.get(op.id)

    # A reorg removes the pause and the reverted mint; the mint's bytes come back (a node re-injects them).
    chain.rpc.call("evm_revert", [snapshot])
    chain.rpc.call("eth_sendRawTransaction", ["0x" + raw])
    run_mining(context, service, lambda: service.ops.get(op.id).terminal)

    done = service.ops.get(op.id)
    supply = chain.read(token, TOKEN_ABI, "totalSupply")
    mirror = service.ledger.account(holder_account("internal", TOKENS[DEPOSIT_TOKEN], holder)).balance_posted
    assert supply == 600 and mirror == supply, (done.status, supply, mirror)
    assert done.status == OpStatus.SUCCEEDED
    assert not early.terminal, f"refused on a revert not yet final: {early.status} {early.error_message}"


# ------------------------------------------------------------------------------------------------
# A node's error answer to a read is not a revert


class CallErrors:
    """The node answers some calls of one method with an error that is not a revert (a node in trouble)."""

    def __init__(self, rpc: Any, method: str, times: int) -> None:
        self.rpc = rpc
        self.method = method
        self.left = times
        self.original = rpc.call

    def __call__(self, method, params=()):
        if method == self.method and self.left > 0:
            self.left -= 1
            raise RpcError(method, {"code": -32603, "message": "internal error: header not found"})
        return self.original(method, params)


def test_a_node_error_while_planning_a_mint_postpones_it_and_never_fails_it(ctx, tokens):  # noqa: F811
    """Transient is not final: an eth_call the node answers with an internal error is no revert."""
    client = tokens.onboard("Node Trouble").id
    tokens.deposit(client, 10_000, "fund-nt")
    op = tokens.mint(client, "internal", 1_200, "mint-nt")
    chain = tokens.chain("internal")
    faults = CallErrors(chain.rpc, "eth_call", times=1)
    chain.rpc.call = faults
    try:
        run_until(token_worker(ctx, tokens), lambda: faults.left == 0)
    finally:
        del chain.rpc.call
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    done = tokens.ops.get(op.id)
    assert done.status == OpStatus.SUCCEEDED, (done.status, done.error_code, done.error_message)
    assert tokens.dda_balance(client) == 10_000 - 1_200


# ------------------------------------------------------------------------------------------------
# A send whose answer was lost, retried by the transport


class LostAnswer:
    """The node takes the first batch that sends a transaction, but its answer is lost on the way back
    (a read timeout): the transport sends the same batch again."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.original = http.post
        self.lost = 0

    def __call__(self, url, *, content, **kwargs):
        response = self.original(url, content=content, **kwargs)
        if self.lost == 0 and "eth_sendRawTransaction" in content and '"0x' in content:
            import httpx

            self.lost += 1
            raise httpx.ReadTimeout("the answer was lost", request=response.request)
        return response


def test_a_send_retried_after_a_lost_answer_never_signs_the_mint_twice(ctx, tokens):  # noqa: F811
    """The second answer to the same bytes ("nonce too low", "already known") says the node has them:
    the step is not refused and signed again."""
    client = tokens.onboard("Lost Answer").id
    tokens.deposit(client, 10_000, "fund-la")
    first = tokens.mint(client, "internal", 100, "mint-la-1")  # allow-lists the holder
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    assert tokens.ops.get(first.id).status == OpStatus.SUCCEEDED
    op = tokens.mint(client, "internal", 700, "mint-la-2")
    chain = tokens.chain("internal")
    chain.rpc.retries_max = 2
    lost = LostAnswer(chain.rpc._http)
    chain.rpc._http.post = lost
    try:
        run_until(token_worker(ctx, tokens), lambda: lost.lost == 1)
    finally:
        del chain.rpc._http.post
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    done = tokens.ops.get(op.id)
    assert done.status == OpStatus.SUCCEEDED, done
    assert mint_events(tokens, "internal", op.id) == 1, "the mint was signed and mined twice"
    assert chain.read(tokens.token_address("internal"), TOKEN_ABI, "totalSupply") == 800


def test_a_resend_retried_after_a_lost_answer_never_signs_the_mint_twice(ctx, tokens):  # noqa: F811
    """The same for a transaction the node forgot and that the worker sends again."""
    client = tokens.onboard("Lost Resend").id
    tokens.deposit(client, 10_000, "fund-lr")
    first = tokens.mint(client, "internal", 100, "mint-lr-1")  # allow-lists the holder
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    chain = tokens.chain("internal")
    supply = chain.read(tokens.token_address("internal"), TOKEN_ABI, "totalSupply")
    op = tokens.mint(client, "internal", 900, "mint-lr-2")
    worker = token_worker(ctx, tokens)
    chain.rpc.call("evm_setAutomine", [False])
    try:
        run_until(worker, lambda: (tokens.ops.get(op.id).state.get("tx") or {}).get("step") == "mint")
        # The node forgets it (a restart that lost its pool).
        chain.rpc.call("anvil_dropTransaction", [tokens.ops.get(op.id).state["tx"]["hash"]])
    finally:
        chain.rpc.call("evm_setAutomine", [True])
    chain.rpc.retries_max = 2
    lost = LostAnswer(chain.rpc._http)
    chain.rpc._http.post = lost
    try:
        run_until(worker, lambda: lost.lost == 1)
    finally:
        del chain.rpc._http.post
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    done = tokens.ops.get(op.id)
    assert done.status == OpStatus.SUCCEEDED, done
    assert mint_events(tokens, "internal", op.id) == 1, "the mint was signed and mined twice"
    assert chain.read(tokens.token_address("internal"), TOKEN_ABI, "totalSupply") == supply + 900
    assert tokens.ops.get(first.id).status == OpStatus.SUCCEEDED


# ------------------------------------------------------------------------------------------------
# The listener: an error answer to a block look-up is no reorg


def test_an_error_answer_to_the_checkpoint_block_look_up_retracts_nothing(ctx, tokens):  # noqa: F811
    """A block hash the node did not give (an error answer) is not a different hash: no deep reorg is
    assumed, and nothing booked is reversed."""
    from andchain.chains.client import Call
    from andchain.tokens.booking import token_listener

    payer, payee = tokens.onboard("Reorg Payer").id, tokens.onboard("Reorg Payee").id
    tokens.deposit(payer, 10_000, "fund-rp")
    tokens.deposit(payee, 10_000, "fund-rp-2")
    tokens.mint(payer, "internal", 3_000, "mint-rp")
    tokens.mint(payee, "internal", 1, "mint-rp-2")  # allow-lists the payee's wallet
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    chain = tokens.chain("internal")
    token = tokens.token_address("internal")
    source = tokens.wallet(payer, "internal").address
    target = tokens.wallet(payee, "internal").address
    # A transfer no operation sent: the listener books it (and would reverse it on a reorg).
    chain.transact(source, Call(token, TOKEN_ABI.encode_call("transfer", target, 400)))
    assert run_until_idle(token_worker(ctx, tokens), seconds=60)
    listener = token_listener(tokens.booking, "internal")
    chain.rpc.batch = ItemErrors(chain.rpc, {"eth_getBlockByNumber"}, times=2)
    try:
        try:
            result = listener.poll()
        except RpcError:
            result = None  # the poll waits for an answer: that is fine
    finally:
        del chain.rpc.batch
    assert result is None or result.retracted == 0, f"{result.retracted} deliveries retracted on an error answer"
