"""Moves between the bank's chain and a public chain: burn, then mint, with the ledger in two phases."""

from __future__ import annotations

import os
import signal
import time

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from andchain.api import create_app
from andchain.chains.client import Call
from andchain.errors import Conflict, DomainError, NotFound
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, holder_account
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService
from tests.api.conftest import Bank
from tests.chains.conftest import make_context, start_public_node
from tests.compliance.sdn import Listed, write_list
from tests.processes import run_andchain

DEPOSIT = TOKENS[DEPOSIT_TOKEN]


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


@pytest.fixture
def world(tmp_path, anvil, base_node):
    ctx = make_context(tmp_path, anvil)
    ctx.settings.networks["base"] = base_node.network
    service = TokenService(ctx)
    service.setup("internal")
    service.setup("base")
    yield ctx, service, Moves(service)
    ctx.close()


def settle(ctx, service):
    assert run_until_idle(token_worker(ctx, service), seconds=30, rounds_max=2), service.ops.counts()


def own_address(ctx, moves: Moves, client: str, network: str = "base") -> tuple[str, bytes]:
    """The client registers an address it owns, proving it with an EIP-191 signature."""
    account = Account.create()
    nonce, message = moves.challenge(client, network)
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
    address = moves.register(client, network, nonce, account.address, signature)
    # The test plays the client's own wallet: its key signs the client's transactions, and it pays gas.
    ctx.keys.import_key(f"test:{address.lower()}", bytes(account.key))
    ctx.chain(network).rpc.call("anvil_setBalance", [address, hex(10**19)])
    return address, bytes(account.key)


def funded(service: TokenService, name: str, tokens: int) -> str:
    client = service.onboard(name).id
    service.deposit(client, tokens, f"fund-{name}")
    service.mint(client, "internal", tokens, f"mint-{name}")
    return client


def chain_balance(service: TokenService, network: str, address: str) -> int:
    return service.chain(network).read(service.token_address(network), TOKEN_ABI, "balanceOf", address)


def mirror(service: TokenService, network: str, address: str) -> int:
    return service.ledger.account(holder_account(network, DEPOSIT, address)).balance_posted


def test_an_address_is_registered_only_with_its_owners_signature_and_after_screening(world):
    _ctx, service, moves = world
    client = service.onboard("Owner").id
    account, other = Account.create(), Account.create()
    nonce, message = moves.challenge(client, "base")
    forged = Account.sign_message(encode_defunct(text=message), other.key).signature.hex()
    with pytest.raises(DomainError) as caught:
        moves.register(client, "base", nonce, account.address, forged)
    assert caught.value.code == "invalid_signature"
    good = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
    assert moves.register(client, "base", nonce, account.address, good) == account.address
    with pytest.raises(Conflict):
        moves.register(client, "base", nonce, account.address, good)  # a challenge serves once
    with pytest.raises(DomainError) as caught:
        moves.challenge(client, "internal")
    assert caught.value.code == "not_a_public_network"


def test_a_screened_out_address_is_refused(world):
    ctx, service, moves = world
    client = service.onboard("Blocked").id
    nonce, message = moves.challenge(client, "base")
    with pytest.raises(DomainError) as caught:
        moves.register(client, "base", nonce, "0x" + "bad0" * 10, "0x" + "00" * 65)
    assert caught.value.code == "invalid_signature"
    key = Account.create()
    service.clients.compliance.load_list(
        write_list(ctx.settings.data_dir / "sdn", [Listed("1", "SOMEONE LISTED", addresses=(("ETH", key.address),))]),
        by="test",
    )
    nonce, message = moves.challenge(client, "base")
    signature = Account.sign_message(encode_defunct(text=message), key.key).signature.hex()
    with pytest.raises(DomainError) as caught:
        moves.register(client, "base", nonce, key.address, signature)
    assert caught.value.code == "sanctions_hit"
    (alert,) = service.clients.compliance.alerts(rule="sanctions_address")
    assert alert.subject == f"base:{key.address}"
    with pytest.raises(DomainError) as caught:
        service.mint(client, "base", 1, "nope")
    assert caught.value.code == "no_registered_address"


def test_a_move_there_and_back_keeps_every_supply_equal_to_the_ledger(world):
    ctx, service, moves = world
    client = funded(service, "Mover", 10_000)
    settle(ctx, service)
    address, _ = own_address(ctx, moves, client)
    wallet = service.wallet(client, "internal").address
    out = moves.move(client, "internal", "base", 4_000, "move-out")
    assert moves.move(client, "internal", "base", 4_000, "move-out").id == out.id  # a replay
    settle(ctx, service)
    done = service.ops.get(out.id)
    assert done.status == OpStatus.SUCCEEDED, done.error_message
    assert (chain_balance(service, "internal", wallet), chain_balance(service, "base", address)) == (6_000, 4_000)
    assert (mirror(service, "internal", wallet), mirror(service, "base", address)) == (6_000, 4_000)
    # Back: the client approves the bank's minter from its own wallet, then asks for the move.
    with pytest.raises(DomainError) as caught:
        moves.move(client, "base", "internal", 1_500, "move-back")
    assert caught.value.code == "approval_required"
    service.chain("base").transact(
        address, Call(service.token_address("base"), TOKEN_ABI.encode_call("approve", service.bank("minter"), 1_500))
    )
    back = moves.move(client, "base", "internal", 1_500, "move-back")
    settle(ctx, service)
    assert service.ops.get(back.id).status == OpStatus.SUCCEEDED
    assert (chain_balance(service, "internal", wallet), chain_balance(service, "base", address)) == (7_500, 2_500)
    report = reconcile(ctx)
    assert report.breaks == [], report.breaks
    assert any(c.check == "total" and c.ok for c in report.checks)


def test_paused_networks_and_rate_limits_refuse_moves_with_clear_codes(world):
    ctx, service, moves = world
    client = funded(service, "Limited", 10_000)
    settle(ctx, service)
    own_address(ctx, moves, client)
    moves.pause("base", "incident 42")
    with pytest.raises(DomainError) as caught:
        moves.move(client, "internal", "base", 100, "paused")
    assert caught.value.code == "network_paused" and "incident 42" in caught.value.message
    moves.resume("base")
    network = ctx.settings.networks["internal"]
    ctx.settings.networks["internal"] = network.model_copy(
        update={"move_outbound_capacity": 1_000, "move_outbound_refill_per_s": 0}
    )
    from andchain.tokens import schema

    with ctx.engine.begin() as conn:
        conn.execute(schema.network_controls.delete())
    moves.move(client, "internal", "base", 800, "within")
    with pytest.raises(DomainError) as caught:
        moves.move(client, "internal", "base", 300, "over")
    assert caught.value.code == "rate_limited"
    assert moves.controls("internal").outbound_available == 200
    with pytest.raises(NotFound):
        service.ops.by_key("over")  # a refused move records nothing
    settle(ctx, service)
    assert reconcile(ctx).breaks == []


def test_many_moves_in_one_request_are_accepted_or_refused_one_by_one(world):
    """`POST /v1/tokens/moves/batch`: each item checked as a single move is, against what the batch's earlier
    items take from a holder, the allowance a client's own address gave, and the networks' rate limits."""
    ctx, service, moves = world
    out, back = funded(service, "Batch out", 10_000), funded(service, "Batch back", 1_000)
    stranger = service.onboard("No address").id
    service.deposit(stranger, 1_000, "fund-stranger")
    service.mint(stranger, "internal", 1_000, "mint-stranger")
    settle(ctx, service)
    own_address(ctx, moves, out)
    address, _ = own_address(ctx, moves, back)
    first = moves.move(back, "internal", "base", 1_000, "back-there")
    settle(ctx, service)
    assert service.ops.get(first.id).status == OpStatus.SUCCEEDED
    service.chain("base").transact(
        address, Call(service.token_address("base"), TOKEN_ABI.encode_call("approve", service.bank("minter"), 700))
    )
    network = ctx.settings.networks["internal"]
    ctx.settings.networks["internal"] = network.model_copy(
        update={"move_outbound_capacity": 5_000, "move_outbound_refill_per_s": 0}
    )
    from andchain.tokens import schema

    with ctx.engine.begin() as conn:
        conn.execute(schema.network_controls.delete())
    items = [
        {"client": out, "source": "internal", "destination": "base", "amount": "30.00"},
        {"client": back, "source": "base", "destination": "internal", "amount": "4.00"},
        {"client": back, "source": "base", "destination": "internal", "amount": "4.00"},  # 8 > the 7 approved
        {"client": out, "source": "internal", "destination": "internal", "amount": "1.00"},  # same network
        {"client": stranger, "source": "internal", "destination": "base", "amount": "1.00"},  # no address there
        {"client": out, "source": "internal", "destination": "base", "amount": "25.00"},  # past the 50 left
        {"client": out, "source": "internal", "destination": "base", "amount": "20.00", "key": "out-own"},
        {"client": out, "source": "internal", "destination": "base", "amount": "60.00"},  # 30+25+20+60 > 100
    ]
    with TestClient(create_app(ctx), base_url="http://localhost", raise_server_exceptions=False) as http:
        bank = Bank(ctx, service, http)
        operator = bank.key("operator")
        batch = bank.post("/v1/tokens/moves/batch", {"moves": items}, operator, key="moves-1")
        assert batch.status_code == 200, batch.text
        body = batch.json()
        codes = [r["error"]["code"] if r["error"] else None for r in body["results"]]
        assert codes == [
            None,
            None,
            "approval_required",
            "same_network",
            "no_registered_address",
            "rate_limited",
            None,
            "insufficient_funds",
        ], body
        assert "taken by earlier items of this batch" in body["results"][7]["error"]["message"]
        again = bank.post("/v1/tokens/moves/batch", {"moves": items}, operator, key="moves-1")
        assert again.json() == body and again.headers["Idempotent-Replayed"] == "true"
        single = {k: v for k, v in items[6].items() if k != "key"}
        mine = bank.post("/v1/tokens/move", single, operator, key="out-own")
        assert mine.json()["id"] == body["results"][6]["operation"]["id"]  # an item's own key is a move's key
        me = bank.key("client", out)
        theirs = bank.post("/v1/tokens/moves/batch", {"moves": [{**items[1], "key": "k"}]}, me)
        assert theirs.status_code == 404 and theirs.json()["code"] == "client_not_found"
    assert moves.controls("internal").outbound_available == 0  # 30 and 20 (the 25 refused took nothing)
    settle(ctx, service)
    ids = [r["operation"]["id"] for r in body["results"] if r["operation"]]
    assert [service.ops.get(i).status for i in ids] == [OpStatus.SUCCEEDED] * 3
    assert mirror(service, "base", address) == 600 and chain_balance(service, "base", address) == 600
    assert reconcile(ctx).breaks == []


def test_a_destination_that_refuses_the_mint_is_compensated_on_the_source(world):
    ctx, service, moves = world
    client = funded(service, "Compensated", 5_000)
    settle(ctx, service)
    address, _ = own_address(ctx, moves, client)
    wallet = service.wallet(client, "internal").address
    base = service.chain("base")
    token = service.token_address("base")
    base.transact(service.bank("pauser"), Call(token, TOKEN_ABI.encode_call("pause")))
    try:
        op = moves.move(client, "internal", "base", 2_000, "doomed")
        settle(ctx, service)
    finally:
        base.transact(service.bank("pauser"), Call(token, TOKEN_ABI.encode_call("unpause")))
    done = service.ops.get(op.id)
    assert done.status == OpStatus.FAILED and done.error_code == "destination_failed"
    assert done.result["compensated"] is True
    assert chain_balance(service, "internal", wallet) == 5_000 and chain_balance(service, "base", address) == 0
    assert service.ledger.transfer(f"move:{op.id}").pending_status == "voided"
    assert mirror(service, "internal", wallet) == 5_000
    assert reconcile(ctx).breaks == []


def test_the_destination_node_down_during_a_move_only_delays_it(world, base_node):
    ctx, service, moves = world
    client = funded(service, "Patient", 3_000)
    settle(ctx, service)
    address, _ = own_address(ctx, moves, client)
    worker = token_worker(ctx, service)
    op = moves.move(client, "internal", "base", 1_000, "delayed")
    base_node.stop()
    try:
        service.chain("base").rpc.retries_max = 0
        for _ in range(30):
            worker.run_once()
            if "burn" in {d["step"] for d in service.ops.get(op.id).state.get("done", [])}:
                break
        for _ in range(5):
            worker.run_once()
        waiting = service.ops.get(op.id)
        assert not waiting.terminal and waiting.error_code == "node_unreachable"
    finally:
        base_node.start()
        service.chain("base").rpc.retries_max = 4
    service.ops.retry(op.id)
    settle(ctx, service)
    assert service.ops.get(op.id).status == OpStatus.SUCCEEDED
    assert chain_balance(service, "base", address) == 1_000
    assert reconcile(ctx).breaks == []


def test_a_reorg_of_the_burn_on_the_source_delays_the_mint_until_the_burn_is_final(world):
    ctx, service, moves = world
    client = funded(service, "Reorged", 2_000)
    settle(ctx, service)
    address, _ = own_address(ctx, moves, client)
    first = moves.move(client, "internal", "base", 2_000, "to-base")
    settle(ctx, service)
    assert service.ops.get(first.id).status == OpStatus.SUCCEEDED
    base = service.chain("base")
    approved = base.transact(
        address, Call(service.token_address("base"), TOKEN_ABI.encode_call("approve", service.bank("minter"), 700))
    )
    wallet = service.wallet(client, "internal").address
    before = chain_balance(service, "internal", wallet)
    worker = token_worker(ctx, service)
    op = moves.move(client, "base", "internal", 700, "from-base")
    burned = None
    for _ in range(100):  # sign and send the burn, and stop as soon as it is mined (before it is final)
        if not service.ops.get(op.id).state.get("tx"):
            worker.run_once()
        state = service.ops.get(op.id).state
        burned = base.receipts([state["tx"]["hash"]]).get(state["tx"]["hash"]) if state.get("tx") else None
        if burned is not None:
            break
        time.sleep(0.1)
    assert burned is not None and burned.block_number > approved.block_number
    burn_hash = burned.tx_hash
    # anvil replaces the burn's block (and any after it) with empty ones: the burn is gone. The node mines on
    # its interval meanwhile: a block mined between reading the head and the reorg leaves the burn's block
    # in place, and the reorg is asked again from the new head.
    for _ in range(10):
        base.rpc.call("anvil_reorg", [base.block_number() - burned.block_number + 1, []])
        if base.receipts([burn_hash]) == {}:
            break
    assert base.receipts([burn_hash]) == {}
    worker.run_once()
    assert chain_balance(service, "internal", wallet) == before  # nothing minted on an unfinal burn
    for _ in range(50):
        base.rpc.call("anvil_mine", ["0x1"])
        worker.run_once()
        if service.ops.get(op.id).terminal:
            break
    final = service.ops.get(op.id)
    assert final.status == OpStatus.SUCCEEDED, ([h.detail for h in service.ops.history(op.id)], final.error_message)
    assert chain_balance(service, "internal", wallet) == before + 700
    assert chain_balance(service, "base", address) == 1_300
    settle(ctx, service)
    assert reconcile(ctx).breaks == []


@pytest.mark.parametrize("boundary", ["before_submit", "after_submit", "after_receipt"])
@pytest.mark.parametrize("step", ["approve", "burn", "mint"])
def test_a_worker_killed_at_any_step_of_a_move_loses_and_doubles_nothing(
    world, anvil, base_node, tmp_path, step, boundary
):
    ctx, service, moves = world
    client = funded(service, f"Crash {step} {boundary}", 3_000)
    settle(ctx, service)
    address, _ = own_address(ctx, moves, client)
    wallet = service.wallet(client, "internal").address
    op = moves.move(client, "internal", "base", 1_200, f"crash-{step}-{boundary}")
    env = {
        **os.environ,
        "ANDCHAIN_DATA_DIR": str(tmp_path),
        "ANDCHAIN_KEYSTORE__PASSPHRASE": "test-only-passphrase",
        "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
        "ANDCHAIN_NETWORKS__INTERNAL__RPC_URL": anvil.network.rpc_url,
        "ANDCHAIN_NETWORKS__BASE__RPC_URL": base_node.network.rpc_url,
        **{f"ANDCHAIN_NETWORKS__{n}__ENABLED": "false" for n in ("ETHEREUM", "TEMPO", "SWIFT")},
    }
    command = ["worker", "--until-idle", "--seconds", "60"]
    killed = run_andchain(command, {**env, "ANDCHAIN_FAILPOINT": f"move:{step}:{boundary}"}, timeout_s=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    restarted = run_andchain(command, env, timeout_s=120)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    done = service.ops.get(op.id)
    assert done.status == OpStatus.SUCCEEDED, done.error_message
    assert [h.status for h in service.ops.history(op.id)].count("succeeded") == 1
    assert (chain_balance(service, "internal", wallet), chain_balance(service, "base", address)) == (1_800, 1_200)
    assert reconcile(ctx).breaks == []


def test_a_low_gas_wallet_on_a_public_network_raises_an_alert_not_a_break(world):
    ctx, service, _ = world
    ctx.settings.networks["base"] = ctx.settings.networks["base"].model_copy(update={"gas_alert_below_wei": 10**30})
    report = reconcile(ctx)
    assert report.breaks == []
    assert any(f"gas wallet low on base: bank minter {service.bank('minter')}" in a for a in report.alerts)
    assert not any("on internal" in a for a in report.alerts)  # the bank's own chain charges no gas
