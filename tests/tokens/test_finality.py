"""Reorgs deeper than the confirmations (finality violations) on a public network.

A mint (or a move's burn) that an operation saw final, then lost to a reorg deeper
than the network's confirmations, is detected and sent again with its recorded bytes
until it is final again; meanwhile reconcile counts it in flight and raises an alert,
and the operation stays succeeded. Tested with `anvil_reorg` and with
`evm_snapshot`/`evm_revert` of a hundred blocks.
"""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from andchain.chains.contracts import memo32
from andchain.ops import OpStatus, journal
from andchain.ops.journal import TxRecord
from andchain.reconcile import reconcile
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService
from tests.chains.conftest import make_context, start_public_node


@pytest.fixture
def world(tmp_path, anvil):
    base = start_public_node(tmp_path / "base")
    ctx = make_context(tmp_path, anvil)
    ctx.settings.networks["base"] = base.network
    for name in ("ethereum", "tempo"):
        ctx.settings.networks[name] = ctx.settings.networks[name].model_copy(update={"enabled": False})
    service = TokenService(ctx)
    service.setup("internal")
    service.setup("base")
    yield ctx, service, base
    ctx.close()
    base.stop()


def registered(service: TokenService, client: str) -> str:
    moves = Moves(service)
    account = Account.create()
    nonce, message = moves.challenge(client, "base")
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
    return moves.register(client, "base", nonce, account.address, signature)


def mints_with_memo(service: TokenService, memo: bytes) -> int:
    chain = service.chain("base")
    token = service.token_address("base")
    topic = "0x" + TOKEN_ABI.topic("Mint").hex()
    count = 0
    for log in chain.get_logs([token], 0, chain.block_number()):
        if log["topics"][0] == topic:
            args = TOKEN_ABI.decode_log(
                [bytes.fromhex(t[2:]) for t in log["topics"]], bytes.fromhex(log["data"][2:])
            ).args
            count += args["memo"] == memo
    return count


def minted_on_base(ctx, service: TokenService, amount: int) -> tuple[str, object, str]:
    client = service.onboard("Reorged holder").id
    service.deposit(client, 10_000, "fund")
    holder = registered(service, client)
    op = service.mint(client, "base", amount, "mint-on-base")
    assert run_until_idle(token_worker(ctx, service), seconds=60)
    done = service.ops.get(op.id)
    assert done.status == OpStatus.SUCCEEDED
    return client, done, holder


def restored(ctx, service: TokenService, tx_hash: str, *, seconds: float = 60) -> None:
    """Run the worker until the dropped transaction is final again."""
    worker = token_worker(ctx, service)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.run_once()
        entry = journal.get(ctx.engine, "base", tx_hash)
        if entry is not None and entry.status == TxRecord.FINAL and service.chain("base").receipts([tx_hash]):
            assert run_until_idle(worker, seconds=30)
            return
        time.sleep(0.2)
    raise AssertionError(f"{tx_hash} not final again")


def test_a_mint_dropped_by_a_reorg_deeper_than_the_confirmations_is_sent_again(world):
    ctx, service, base = world
    _, op, holder = minted_on_base(ctx, service, 6_000)
    chain = service.chain("base")
    tx_hash = op.result["tx_hash"]
    mined = chain.receipts([tx_hash])[tx_hash]
    depth = chain.block_number() - mined.block_number + 1
    assert depth >= base.network.confirmations  # it was final
    chain.rpc.call("anvil_reorg", [depth + 1, []])
    assert chain.receipts([tx_hash]) == {}
    # The worker's maintenance finds it, raises an alert and sends the same bytes again.
    handler = service.handler()
    assert handler.watch_finality(chain) == [tx_hash]
    report = reconcile(ctx)
    assert report.breaks == [], report.breaks  # counted in flight, not a break
    assert any("finality violation" in a and op.id in a for a in report.alerts)
    assert any(f.get("status") == "resending" and f["operation"] == op.id for f in report.in_flight)
    restored(ctx, service, tx_hash)
    assert service.ops.get(op.id).status == OpStatus.SUCCEEDED  # terminal states never change
    assert chain.read(service.token_address("base"), TOKEN_ABI, "balanceOf", holder) == 6_000
    assert mints_with_memo(service, memo32(op.id)) == 1
    report = reconcile(ctx)
    assert report.breaks == [] and not any("finality violation" in a for a in report.alerts), report.as_dict()


def test_a_revert_of_a_hundred_blocks_drops_the_mint_and_it_comes_back(world):
    ctx, service, _ = world
    chain = service.chain("base")
    snapshot = chain.rpc.call("evm_snapshot")
    _, op, holder = minted_on_base(ctx, service, 2_500)
    chain.rpc.call("anvil_mine", ["0x64"])  # a hundred blocks on top: long final
    assert run_until_idle(token_worker(ctx, service), seconds=60)
    assert reconcile(ctx).breaks == []
    chain.rpc.call("evm_revert", [snapshot])
    tx_hash = op.result["tx_hash"]
    assert chain.receipts([tx_hash]) == {}
    restored(ctx, service, tx_hash)
    assert chain.read(service.token_address("base"), TOKEN_ABI, "balanceOf", holder) == 2_500
    assert mints_with_memo(service, memo32(op.id)) == 1
    report = reconcile(ctx)
    assert report.breaks == [], report.as_dict()
