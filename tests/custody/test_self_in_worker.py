"""The bank's own (`self`) custodian, configured, is advanced by `andchain worker` like any other
part: a deposit to its account is seen and a withdrawal goes out once, on chain."""

from __future__ import annotations

import pytest

from andchain.chains.client import Call
from andchain.chains.usdc import deploy_stand_in
from andchain.config import CustodianAdapterSettings
from andchain.custody.port import Destination, TransferRequest, submit_once
from andchain.custody.registry import custodian
from andchain.custody.states import CustodyState
from andchain.tokens.runtime import run_until_idle, token_worker
from tests.chains.conftest import make_context, start_public_node
from tests.custody.worlds import ABI, OUT, USDC


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


def test_a_configured_self_custodian_is_a_part_of_the_banks_worker(tmp_path, base_node):
    ctx = make_context(tmp_path, base_node)
    chain = ctx.chain("base")
    issuer, minter = ctx.keys.create("usdc:issuer"), ctx.keys.create("usdc:minter")
    ctx.fund_gas("base", [issuer, minter])
    usdc = deploy_stand_in(chain, issuer, [minter])
    ctx.settings.custody.custodians["treasury"] = CustodianAdapterSettings(kind="self", tokens={"USDC@base": usdc})
    treasury = custodian(ctx, "treasury")
    account = treasury.create_account("treasury", owner="desk", idempotency_key="acct-treasury")
    address = treasury.deposit_address(account.id, "USDC", "base").address
    chain.transact(minter, Call(usdc, ABI.encode_call("mint", address, 7 * USDC)))
    worker = token_worker(ctx)
    assert "custody:treasury" in [part.name for part in worker.parts]
    for _ in range(20):  # rounds until the deposit's block is final and seen
        run_until_idle(worker, seconds=30)
        if any(t.incoming for t in treasury.transfers().transfers):
            break
    sent = submit_once(
        treasury,
        TransferRequest("out-1", account.id, Destination(address=OUT), "USDC", "base", 3 * USDC),
        first_attempt=True,
    )
    assert run_until_idle(worker, seconds=60)  # idle only once the withdrawal has ended
    assert treasury.get(sent.id).state is CustodyState.COMPLETED
    assert int(chain.read(usdc, ABI, "balanceOf", OUT)) == 3 * USDC
    (balance,) = treasury.balances(account.id)
    assert balance.total_minor == 4 * USDC
    ctx.close()
