"""The reference custodian as a separate process on a node with a public network's profile: what
only a service shows (signed webhooks, its operator's approvals, a restart mid-transfer). What
every custodian must do is in test_contract.py."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from andchain.custody.adapters.reference import ReferenceCustodianAdapter
from andchain.custody.port import CustodianRefused, WebhookRejected, submit_once
from andchain.custody.states import TERMINAL, CustodyState
from andchain.money import DEFAULT_ASSETS, AssetRegistry
from tests.chains.conftest import start_public_node
from tests.custody.worlds import OUT, USDC, ReferenceWorld, request


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


@pytest.fixture
def world(tmp_path, base_node) -> Iterator[ReferenceWorld]:
    made = ReferenceWorld(tmp_path, base_node)
    yield made
    made.close()


def test_a_deposit_is_recorded_and_a_withdrawal_completes_on_chain_once_with_signed_webhooks(world):
    account, deposit = world.funded_account("acme", 50 * USDC)
    assert deposit.amount_minor == 50 * USDC and deposit.tx_hash
    sent = submit_once(world.custodian, request("wd-1", account.id, 20 * USDC), first_attempt=True)
    assert submit_once(world.custodian, request("wd-1", account.id, 20 * USDC)).id == sent.id  # a retry: found
    done = world.until(sent.id, TERMINAL)
    assert done.state is CustodyState.COMPLETED and done.tx_hash
    assert world.held(OUT) == 20 * USDC
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == balance.available_minor == 30 * USDC
    # every state change came as a webhook that verifies, and they never go backwards
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = [world.custodian.verify_webhook(r.headers, r.body) for r in world.receiver.delivered()]
        mine = [e.transfer.state for e in events if e.transfer is not None and e.transfer.id == sent.id]
        if CustodyState.COMPLETED in mine:
            break
        time.sleep(0.2)
    # one report per state, in the order they happened (the custodian delivers a transfer's
    # reports one after the other)
    assert mine == [
        CustodyState.CREATED,
        CustodyState.SCREENING,
        CustodyState.SIGNING,
        CustodyState.BROADCASTING,
        CustodyState.CONFIRMING,
        CustodyState.COMPLETED,
    ]
    assert len({e.id for e in events}) == len(events)


def test_above_the_threshold_a_withdrawal_waits_for_the_custodians_approver(world):
    account, _ = world.funded_account("globex", 400 * USDC)
    approved = submit_once(world.custodian, request("big-1", account.id, 150 * USDC), first_attempt=True)
    rejected = submit_once(world.custodian, request("big-2", account.id, 120 * USDC), first_attempt=True)
    cancelled = submit_once(world.custodian, request("big-3", account.id, 101 * USDC), first_attempt=True)
    for transfer in (approved, rejected, cancelled):
        world.until(transfer.id, {CustodyState.AWAITING_APPROVAL})
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == 400 * USDC and balance.available_minor == 29 * USDC  # held while they wait
    assert world.service.cli("approve", approved.id).returncode == 0
    result = world.service.cli("reject", rejected.id, "--reason", "not the client's usual address")
    assert result.returncode == 0 and "rejected" in result.stdout
    assert world.custodian.cancel(cancelled.id).state is CustodyState.CANCELLED
    assert world.until(approved.id, TERMINAL).state is CustodyState.COMPLETED
    refused = world.custodian.get(rejected.id)
    assert refused.state is CustodyState.REJECTED and refused.raw_sub_status == "not the client's usual address"
    assert world.held(OUT) == 150 * USDC
    again = world.service.cli("approve", rejected.id)
    assert again.returncode != 0 and "rejected" in (again.stdout + again.stderr)


@pytest.mark.parametrize("failpoint", ["custodian:after_sign", "custodian:after_broadcast"])
def test_a_custodian_killed_mid_transfer_sends_it_once_after_its_restart(world, failpoint):
    account, _ = world.funded_account("umbrella", 10 * USDC)
    world.service.stop()
    world.service.start(failpoint=failpoint)
    sent = submit_once(world.custodian, request("crash-1", account.id, 4 * USDC), first_attempt=True)
    assert world.service.process is not None
    world.service.process.wait(timeout=60)  # it killed itself at the failpoint
    assert world.service.process.returncode == -signal.SIGKILL
    world.service.start()
    assert world.until(sent.id, TERMINAL).state is CustodyState.COMPLETED
    assert world.held(OUT) == 4 * USDC
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == 6 * USDC


def test_a_float_amount_is_refused_by_the_service_and_forged_or_stale_webhooks_by_the_adapter(world):
    bad_key = ReferenceCustodianAdapter(
        base_url=str(world.custodian.http.client.base_url).rstrip("/"),
        api_key="wrong",
        webhook_secret="x",
        assets=AssetRegistry(DEFAULT_ASSETS),
    )
    with pytest.raises(CustodianRefused, match="401"):
        bad_key.balances("acct_x")
    account, _ = world.funded_account("pied", USDC)
    answer = httpx.post(
        f"{str(world.custodian.http.client.base_url).rstrip('/')}/v1/transfers",
        headers={"Authorization": world.service_key, "Idempotency-Key": "float-1"},
        json={
            "source_account": account.id,
            "destination": {"address": OUT},
            "asset": "USDC",
            "network": "base",
            "amount": 0.1,
        },
    )
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_amount"
    body = b'{"id":"x:1","type":"transfer.updated"}'
    now = str(int(time.time()))
    good = world.sign(now, body)
    assert (
        world.custodian.verify_webhook({"X-Custodian-Timestamp": now, "X-Custodian-Signature": good}, body).id == "x:1"
    )
    for headers in (
        {"X-Custodian-Timestamp": now, "X-Custodian-Signature": good.replace("v1=", "v1=0")},
        {
            "X-Custodian-Timestamp": str(int(time.time()) - 3600),
            "X-Custodian-Signature": world.sign(str(int(time.time()) - 3600), body),
        },
        {"X-Custodian-Timestamp": "²", "X-Custodian-Signature": good},
        {"X-Custodian-Timestamp": "9" * 5000, "X-Custodian-Signature": good},
    ):
        with pytest.raises(WebhookRejected):
            world.custodian.verify_webhook(headers, body)
