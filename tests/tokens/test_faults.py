"""Transient is not final; after an irreversible step an operation never ends silently.

A node that does not answer makes an operation wait and try again; when the retry
budget is spent, a move whose burn is final mints back on its source, and anything
else stops in needs_attention with its holds kept, named by reconcile, until an
operator resumes it. A compensation that is itself refused stops the same way.
"""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from andchain.chains.client import Call
from andchain.errors import DomainError
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, holder_account
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService
from tests.chains.conftest import make_context, start_node, start_public_node

DEPOSIT = TOKENS[DEPOSIT_TOKEN]


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base-faults"))
    yield node
    node.stop()


def _budget(ctx, attempts: int = 3) -> None:
    ctx.settings.ops = ctx.settings.ops.model_copy(
        update={"attempts_max": attempts, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
    )


@pytest.fixture
def world(tmp_path, anvil, base_node):
    ctx = make_context(tmp_path, anvil)
    ctx.settings.networks["base"] = base_node.network
    for name in ("ethereum", "tempo"):
        ctx.settings.networks[name] = ctx.settings.networks[name].model_copy(update={"enabled": False})
    _budget(ctx)
    service = TokenService(ctx)
    service.setup("internal")
    service.setup("base")
    yield ctx, service, Moves(service)
    ctx.close()


def funded_mover(ctx, service: TokenService, moves: Moves, name: str, tokens: int) -> tuple[str, str]:
    client = service.onboard(name).id
    service.deposit(client, tokens, f"fund-{name}")
    service.mint(client, "internal", tokens, f"mint-{name}")
    account = Account.create()
    nonce, message = moves.challenge(client, "base")
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
    address = moves.register(client, "base", nonce, account.address, signature)
    # The test plays the client's own wallet: its key signs the client's transactions, and it pays gas.
    ctx.keys.import_key(f"test:{address.lower()}", bytes(account.key))
    service.chain("base").rpc.call("anvil_setBalance", [address, hex(10**19)])
    assert run_until_idle(token_worker(ctx, service), seconds=60)
    return client, address


def run_until(worker, condition, *, rounds: int = 400, pause_s: float = 0.02) -> None:
    for _ in range(rounds):
        worker.run_once()
        if condition():
            return
        time.sleep(pause_s)
    raise AssertionError("condition not reached")


def balance(service: TokenService, network: str, address: str) -> int:
    return service.chain(network).read(service.token_address(network), TOKEN_ABI, "balanceOf", address)


def mirror(service: TokenService, network: str, address: str) -> int:
    return service.ledger.account(holder_account(network, DEPOSIT, address)).balance_posted


def set_paused(service: TokenService, network: str, paused: bool) -> None:
    token = service.token_address(network)
    service.chain(network).transact(
        service.bank("pauser"), Call(token, TOKEN_ABI.encode_call("pause" if paused else "unpause"))
    )


def test_a_destination_down_beyond_the_retry_budget_is_compensated_on_the_source(world, base_node):
    ctx, service, moves = world
    client, _ = funded_mover(ctx, service, moves, "Stranded", 4_000)
    wallet = service.wallet(client, "internal").address
    op = moves.move(client, "internal", "base", 1_500, "stranded-move")
    worker = token_worker(ctx, service)
    run_until(worker, lambda: "burn" in {d["step"] for d in service.ops.get(op.id).state.get("done", [])})
    base_node.stop()
    try:
        service.chain("base").rpc.retries_max = 0
        run_until(worker, lambda: service.ops.get(op.id).terminal)
    finally:
        base_node.start()
        service.chain("base").rpc.retries_max = 4
    done = service.ops.get(op.id)
    assert done.status == OpStatus.FAILED and done.error_code == "destination_failed", done
    assert done.result["compensated"] is True
    assert balance(service, "internal", wallet) == mirror(service, "internal", wallet) == 4_000
    assert service.ledger.transfer(f"move:{op.id}").pending_status == "voided"
    history = " | ".join(h.detail for h in service.ops.history(op.id))
    assert "retry budget spent" in history and "compensating" in history
    assert run_until_idle(worker, seconds=60)
    report = reconcile(ctx)
    assert report.breaks == [], report.breaks


def test_a_refused_compensation_stops_in_needs_attention_keeping_its_hold_until_resumed(world):
    ctx, service, moves = world
    client, address = funded_mover(ctx, service, moves, "Double refusal", 3_000)
    wallet = service.wallet(client, "internal").address
    op = moves.move(client, "internal", "base", 1_000, "refused-twice")
    worker = token_worker(ctx, service)
    run_until(worker, lambda: "burn" in {d["step"] for d in service.ops.get(op.id).state.get("done", [])})
    set_paused(service, "base", True)  # the destination refuses the mint
    set_paused(service, "internal", True)  # and the source refuses the re-mint
    try:
        run_until(worker, lambda: service.ops.get(op.id).status == OpStatus.NEEDS_ATTENTION)
        stopped = service.ops.get(op.id)
        assert stopped.state.get("compensate") and "paused" in (stopped.error_message or "")
        assert service.ledger.transfer(f"move:{op.id}").pending_status == "pending"  # the hold is kept
        assert worker.ops.claim("someone") == []  # nobody picks it up by itself
        report = reconcile(ctx)
        named = [b for b in report.breaks if b.check == "operation"]
        assert [b.subject for b in named] == [f"move {op.id}"] and "needs attention" in named[0].found
        assert [b for b in report.breaks if b.check != "operation"] == []  # the burn is counted in flight
        set_paused(service, "internal", False)  # the operator fixes the cause, then resumes
        service.ops.retry(op.id)
        assert run_until_idle(worker, seconds=60)
    finally:
        set_paused(service, "base", False)
        if service.chain("internal").read(service.token_address("internal"), TOKEN_ABI, "paused"):
            set_paused(service, "internal", False)
    done = service.ops.get(op.id)
    assert done.status == OpStatus.FAILED and done.result["compensated"] is True
    assert balance(service, "internal", wallet) == mirror(service, "internal", wallet) == 3_000
    assert balance(service, "base", address) == 0
    assert reconcile(ctx).breaks == []


def test_a_mint_while_its_node_is_away_waits_then_needs_attention_and_never_fails(tmp_path):
    node = start_node(tmp_path / "node")
    try:
        ctx = make_context(tmp_path, node)
        _budget(ctx, attempts=4)
        service = TokenService(ctx)
        service.setup("internal")
        client = service.onboard("Patient minter").id
        service.deposit(client, 5_000, "fund")
        op = service.mint(client, "internal", 2_000, "mint-while-down")
        node.stop()
        service.chain("internal").rpc.retries_max = 0
        worker = token_worker(ctx, service)
        run_until(worker, lambda: service.ops.get(op.id).status == OpStatus.NEEDS_ATTENTION)
        waiting = service.ops.get(op.id)
        assert waiting.error_code == "node_unreachable"
        assert not any(h.status == "failed" for h in service.ops.history(op.id))
        assert service.ledger.account(f"clients:{client}:usd:dda").available == 3_000  # the hold is kept
        node.start()
        service.chain("internal").rpc.retries_max = 4
        service.ops.retry(op.id)
        assert run_until_idle(worker, seconds=60)
        assert service.ops.get(op.id).status == OpStatus.SUCCEEDED
        assert service.dda_balance(client) == 3_000
        assert reconcile(ctx).breaks == []
        ctx.close()
    finally:
        node.stop()


def test_a_nonce_gap_is_repaired_while_the_worker_runs(ctx):
    ctx.settings.ops = ctx.settings.ops.model_copy(update={"nonce_gap_grace_s": 0.1})
    service = TokenService(ctx)
    service.setup("internal")
    client = service.onboard("Gap").id
    service.deposit(client, 9_000, "fund")
    worker = token_worker(ctx, service)
    first = service.mint(client, "internal", 1_000, "before-gap")
    assert run_until_idle(worker, seconds=30)
    # A nonce reserved and never sent (a process died between reserving and recording): every
    # later transaction of the minter waits behind it in the node's queue.
    chain = service.chain("internal")
    minter = service.bank("minter")
    orphan = chain.nonces.reserve(minter, 1)
    op = service.mint(client, "internal", 2_000, "behind-gap")
    assert run_until_idle(worker, seconds=60)
    assert service.ops.get(op.id).status == OpStatus.SUCCEEDED
    assert service.ops.get(first.id).status == OpStatus.SUCCEEDED
    assert int(chain.rpc.call("eth_getTransactionCount", [minter, "latest"]), 16) > orphan + 1
    assert reconcile(ctx).breaks == []


def test_a_redeem_on_a_public_network_acts_for_the_clients_registered_address_or_refuses(world):
    ctx, service, moves = world
    client, address = funded_mover(ctx, service, moves, "Public redeemer", 2_000)
    service.deposit(client, 1_500, "fund-base")
    mint = service.mint(client, "base", 1_500, "mint-for-redeem")
    assert run_until_idle(token_worker(ctx, service), seconds=60)
    assert service.ops.get(mint.id).status == OpStatus.SUCCEEDED
    before = service.dda_balance(client)
    # The bank holds no key for the client's own address: it burns only within the client's approval.
    with pytest.raises(DomainError) as caught:
        service.redeem(client, "base", 600, "redeem-unapproved")
    assert caught.value.code == "approval_required" and address in caught.value.message
    assert service.ops.find_by_key("redeem-unapproved") is None
    token = service.token_address("base")
    service.chain("base").transact(address, Call(token, TOKEN_ABI.encode_call("approve", service.bank("minter"), 600)))
    op = service.redeem(client, "base", 600, "redeem-approved")
    assert run_until_idle(token_worker(ctx, service), seconds=60)
    assert service.ops.get(op.id).status == OpStatus.SUCCEEDED
    assert service.dda_balance(client) == before + 600
    assert balance(service, "base", address) == mirror(service, "base", address) == 900
    assert reconcile(ctx).breaks == []
