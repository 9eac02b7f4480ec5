"""The Fireblocks adapter against a Fireblocks that answers as its documentation says, checking
every request's JWT independently of the library that signs it."""

from __future__ import annotations

import json

import httpx
import pytest

from andchain.custody.adapters.fireblocks import STATES, FireblocksCustodian, state_of
from andchain.custody.assets import AssetMap, AssetNotSupported
from andchain.custody.port import (
    DESK,
    CustodianAnswerUnreadable,
    CustodianRefused,
    CustodianUnavailable,
    Destination,
    TransferNotFound,
    TransferRequest,
    WebhookRejected,
    submit_once,
)
from andchain.custody.states import CustodyState
from andchain.errors import DomainError
from tests.custody.fake_fireblocks import API_KEY, FakeFireblocks, new_rsa_key, public_pem, sign_webhook

ASSETS = {"ETH@ethereum": "ETH", "USDC@base": "USDC_BASECHAIN_ETH_5I5C", "BTC@bitcoin": "BTC"}
CLIENT_ADDRESS = "0x1111111111111111111111111111111111111111"


@pytest.fixture
def world():
    user_key, user_pem = new_rsa_key()
    webhook_key, _ = new_rsa_key()
    fake = FakeFireblocks(user_key.public_key())
    custodian = FireblocksCustodian(
        api_key=API_KEY,
        private_key_pem=user_pem,
        assets=AssetMap.parse("fireblocks", ASSETS),
        webhook_public_key_pem=public_pem(webhook_key),
        base_url="https://api.fireblocks.test",
        transport=fake.transport(),
        clock=lambda: fake.now_ms / 1000,
    )
    return fake, custodian, webhook_key


def withdrawal(key: str = "wd-1", amount_minor: int = 1_500_000, source: str = "0") -> TransferRequest:
    return TransferRequest(key, source, Destination(address=CLIENT_ADDRESS), "USDC", "base", amount_minor, note="n")


def test_every_request_carries_a_jwt_over_its_exact_path_query_and_body(world):
    fake, custodian, _ = world
    account = custodian.create_account("clients:acme", owner="acme", idempotency_key="acct-acme")
    custodian.deposit_address(account.id, "USDC", "base")
    custodian.transfers(cursor="1780000000000", limit=10)
    assert [s.method for s in fake.seen] == ["POST", "GET", "POST", "GET"]
    listing = fake.seen[-1]
    assert listing.claims["uri"] == "/v1/transactions?orderBy=createdAt&sort=ASC&limit=10&after=1779999999999"
    assert fake.seen[0].claims["bodyHash"] != fake.seen[1].claims["bodyHash"]  # a body, then none
    assert fake.seen[0].json() == {
        "name": "clients:acme",
        "customerRefId": "acme",
        "hiddenOnUI": True,
        "autoFuel": False,
    }
    assert fake.seen[0].headers["idempotency-key"] == "acct-acme"


def test_a_deposit_address_creates_the_vaults_wallet_once_then_reads_it(world):
    fake, custodian, _ = world
    account = custodian.create_account("desk", owner=DESK, idempotency_key="acct-desk")
    first = custodian.deposit_address(account.id, "ETH", "ethereum")
    again = custodian.deposit_address(account.id, "ETH", "ethereum")
    assert first == again and first.address.startswith("0x") and first.asset == "ETH" and first.network == "ethereum"
    creations = [s for s in fake.seen if s.method == "POST" and s.target.endswith("/ETH")]
    assert len(creations) == 1 and creations[0].headers["idempotency-key"] == "wallet:0:ETH"
    with pytest.raises(AssetNotSupported):
        custodian.deposit_address(account.id, "ETH", "base")


def test_balances_are_exact_minor_units_and_assets_not_configured_are_left_out(world):
    fake, custodian, _ = world
    account = custodian.create_account("clients:acme", owner="acme", idempotency_key="a")
    fake.fund(account.id, "USDC_BASECHAIN_ETH_5I5C", "1234.567891", available="1000")
    fake.fund(account.id, "BTC", "0.00000001")
    fake.fund(account.id, "SOL", "5")
    balances = {b.asset: b for b in custodian.balances(account.id)}
    assert set(balances) == {"USDC", "BTC"}
    assert balances["USDC"].total_minor == 1_234_567_891 and balances["USDC"].available_minor == 1_000_000_000
    assert balances["BTC"].total_minor == 1
    fake.fund(account.id, "BTC", "0.000000001")  # finer than a satoshi: never rounded
    with pytest.raises(CustodianAnswerUnreadable, match="not exact"):
        custodian.balances(account.id)


def test_a_withdrawal_carries_the_key_as_external_tx_id_and_idempotency_key_and_an_exact_amount(world):
    fake, custodian, _ = world
    sent = custodian.withdraw(withdrawal())
    request = fake.seen[-1]
    assert request.target == "/v1/transactions" and request.headers["idempotency-key"] == "wd-1"
    assert request.json() == {
        "operation": "TRANSFER",
        "assetId": "USDC_BASECHAIN_ETH_5I5C",
        "amount": "1.5",
        "source": {"type": "VAULT_ACCOUNT", "id": "0"},
        "destination": {"type": "ONE_TIME_ADDRESS", "oneTimeAddress": {"address": CLIENT_ADDRESS}},
        "externalTxId": "wd-1",
        "note": "n",
    }
    assert sent.state is CustodyState.CREATED and sent.raw_status == "SUBMITTED" and sent.amount_minor == 1_500_000
    assert custodian.get(sent.id).amount_minor == 1_500_000  # amountInfo.amount, a string, not the float


def test_an_internal_transfer_goes_vault_to_vault(world):
    fake, custodian, _ = world
    request = TransferRequest("tr-1", "0", Destination(account_id="1"), "ETH", "ethereum", 10**18)
    moved = submit_once(custodian, request)
    assert fake.seen[-1].json()["destination"] == {"type": "VAULT_ACCOUNT", "id": "1"}
    assert fake.seen[-1].json()["amount"] == "1"
    assert custodian.get(moved.id).destination == Destination(account_id="1")
    with pytest.raises(CustodianRefused):
        custodian.withdraw(request)


def test_a_timeout_after_fireblocks_took_the_withdrawal_is_found_by_its_key_and_never_sent_twice(world):
    fake, custodian, _ = world

    def lose_the_answer(request, answer):
        if request.method == "POST" and request.url.path == "/v1/transactions":
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return None

    fake.fault = lose_the_answer
    with pytest.raises(CustodianUnavailable):
        submit_once(custodian, withdrawal())
    assert len(fake.transactions) == 1  # Fireblocks has it; we do not know
    fake.fault = None
    found = submit_once(custodian, withdrawal())
    assert len(fake.transactions) == 1
    assert found.idempotency_key == "wd-1" and found.id in fake.transactions
    posts = [s for s in fake.seen if s.method == "POST" and s.target == "/v1/transactions"]
    assert len(posts) == 1
    assert fake.seen[-1].target == "/v1/transactions/external_tx_id/wd-1"


def test_a_key_fireblocks_already_has_answers_with_its_transfer_never_a_second_one_nor_a_refusal(world):
    fake, custodian, _ = world
    first = custodian.withdraw(withdrawal())
    again = custodian.withdraw(withdrawal())  # Fireblocks refuses the externalTxId: it is ours
    assert again.id == first.id and len(fake.transactions) == 1


def test_a_lost_answer_then_a_look_up_that_does_not_see_it_yet_waits_never_refuses(world):
    fake, custodian, _ = world
    custodian.withdraw(withdrawal())
    hidden = {"n": 0}

    def not_visible_yet(request, answer):
        if "/external_tx_id/" in request.url.path and hidden["n"] < 2:
            hidden["n"] += 1
            return httpx.Response(404, json={"message": "Transaction not found", "code": 1404})
        return None

    fake.fault = not_visible_yet
    with pytest.raises(CustodianUnavailable, match="does not show it yet"):
        submit_once(custodian, withdrawal())
    assert len(fake.transactions) == 1
    assert submit_once(custodian, withdrawal()).idempotency_key == "wd-1"


def test_a_genuine_refusal_stays_a_refusal_after_the_look_up(world):
    fake, custodian, _ = world
    fake.refuse = lambda request: (
        httpx.Response(400, json={"message": "Invalid destination address", "code": 1427})
        if request.method == "POST"
        else None
    )
    with pytest.raises(CustodianRefused, match="Invalid destination"):
        custodian.withdraw(withdrawal())
    assert fake.transactions == {}


def test_an_amount_is_an_int_of_minor_units_never_a_float_or_a_bool():
    for amount in (1e6, 1.5, True, 0, -1):
        with pytest.raises(DomainError, match="positive integer"):
            withdrawal(amount_minor=amount)


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (httpx.Response(200, json={"status": "SUBMITTED"}), CustodianAnswerUnreadable),
        (httpx.Response(200, json=["not", "an", "object"]), CustodianAnswerUnreadable),
        (httpx.Response(200, content=b"<html>"), CustodianAnswerUnreadable),
        (httpx.Response(302, headers={"location": "https://elsewhere.test/"}), CustodianAnswerUnreadable),
        (httpx.Response(408), CustodianUnavailable),
    ],
)
def test_an_answer_that_cannot_be_read_after_a_create_is_unknown_never_a_refusal(world, answer, raised):
    fake, custodian, _ = world

    def odd(request, normal):
        return answer if request.method == "POST" else None

    fake.fault = odd
    with pytest.raises(raised):
        custodian.withdraw(withdrawal())
    assert issubclass(raised, CustodianUnavailable)


def test_idempotency_headers_stay_within_fireblocks_forty_characters(world):
    fake, custodian, _ = world
    long_key = "operation:" + "x" * 100
    sent = custodian.withdraw(withdrawal(key=long_key))
    custodian.cancel(sent.id)  # "cancel:<uuid>" would be 43 characters
    headers = [s.headers.get("idempotency-key") for s in fake.seen if s.method == "POST"]
    assert all(h is not None and len(h) <= 40 for h in headers)
    assert fake.transactions[sent.id]["externalTxId"] == long_key  # the key itself where it fits
    assert custodian.find(long_key).id == sent.id


@pytest.mark.parametrize(
    ("status", "answer"),
    [(429, {"message": "slow down"}), (500, {"message": "boom"}), (503, None)],
)
def test_throttling_and_server_errors_are_unavailable_never_refusals(world, status, answer):
    fake, custodian, _ = world
    fake.fault = lambda request, normal: httpx.Response(status, json=answer)
    with pytest.raises(CustodianUnavailable):
        custodian.get("x")
    with pytest.raises(CustodianUnavailable):
        custodian.withdraw(withdrawal())


def test_an_unknown_transaction_is_not_found_and_find_says_none(world):
    _, custodian, _ = world
    with pytest.raises(TransferNotFound):
        custodian.get("no-such")
    assert custodian.find("never-sent") is None


def test_each_documented_status_maps_to_its_normalised_state_and_the_raw_one_is_kept(world):
    fake, custodian, _ = world
    sent = custodian.withdraw(withdrawal())
    for status, sub in [
        ("PENDING_AML_SCREENING", ""),
        ("PENDING_AUTHORIZATION", ""),
        ("PENDING_SIGNATURE", ""),
        ("BROADCASTING", ""),
        ("CONFIRMING", ""),
        ("COMPLETED", "CONFIRMED"),
    ]:
        fake.set_status(sent.id, status, sub, tx_hash="0xabc")
        seen = custodian.get(sent.id)
        assert seen.state is STATES[status] and seen.raw_status == status
    assert seen.raw_sub_status == "CONFIRMED" and seen.tx_hash == "0xabc" and seen.state is CustodyState.COMPLETED
    assert state_of("BLOCKED") is CustodyState.REJECTED and state_of("TIMEOUT") is CustodyState.FAILED
    assert state_of("CANCELLING") is CustodyState.UNKNOWN and state_of("SOMETHING_NEW") is CustodyState.UNKNOWN
    # a third party's approval comes after signing: it never ranks below what was reached
    assert state_of("PENDING_3RD_PARTY") is CustodyState.SIGNING
    documented = {
        "SUBMITTED",
        "PENDING_AML_SCREENING",
        "PENDING_ENRICHMENT",
        "PENDING_AUTHORIZATION",
        "QUEUED",
        "PENDING_SIGNATURE",
        "PENDING_3RD_PARTY_MANUAL_APPROVAL",
        "PENDING_3RD_PARTY",
        "BROADCASTING",
        "CONFIRMING",
        "COMPLETED",
        "CANCELLED",
        "BLOCKED",
        "REJECTED",
        "FAILED",
    }
    assert documented <= set(STATES)


def test_cancel_asks_fireblocks_and_reads_the_outcome(world):
    fake, custodian, _ = world
    sent = custodian.withdraw(withdrawal())
    cancelled = custodian.cancel(sent.id)
    assert cancelled.state is CustodyState.CANCELLED
    assert fake.seen[-2].target == f"/v1/transactions/{sent.id}/cancel"


def test_the_transfer_list_pages_by_creation_and_a_deposit_is_incoming(world):
    fake, custodian, _ = world
    first = custodian.withdraw(withdrawal("a"))
    fake.now_ms += 5
    deposit_id = "deposit-1"
    fake.transactions[deposit_id] = {
        "id": deposit_id,
        "status": "COMPLETED",
        "assetId": "BTC",
        "source": {"type": "UNKNOWN"},
        "destination": {"type": "VAULT_ACCOUNT", "id": "0"},
        "amountInfo": {"amount": "0.5"},
        "createdAt": fake.now_ms,
        "lastUpdated": fake.now_ms,
        "txHash": "ff" * 32,
    }
    page = custodian.transfers(limit=1)
    assert [t.id for t in page.transfers] == [first.id] and page.more
    page = custodian.transfers(page.cursor, limit=10)
    # from the cursor's own millisecond on: the first comes again (harmless), then the deposit
    assert [t.id for t in page.transfers] == [first.id, deposit_id] and not page.more
    deposit = page.transfers[-1]
    assert (
        deposit.incoming and deposit.amount_minor == 50_000_000 and deposit.destination == Destination(account_id="0")
    )
    assert custodian.transfers(page.cursor).transfers[-1].id == deposit_id


def test_a_webhook_is_accepted_only_with_fireblocks_signature_over_its_exact_body(world):
    fake, custodian, webhook_key = world
    sent = custodian.withdraw(withdrawal())
    data = fake.set_status(sent.id, "CONFIRMING", tx_hash="0xdef")
    body = json.dumps(
        {"type": "TRANSACTION_STATUS_UPDATED", "tenantId": "t", "timestamp": fake.now_ms, "data": data}
    ).encode()
    event = custodian.verify_webhook({"Fireblocks-Signature": sign_webhook(webhook_key, body)}, body)
    assert event.transfer is not None and event.transfer.state is CustodyState.CONFIRMING
    assert event.transfer.idempotency_key == "wd-1"
    assert event.id == f"TRANSACTION_STATUS_UPDATED:{sent.id}:CONFIRMING:{fake.now_ms}"
    forged = body.replace(b"CONFIRMING", b"COMPLETED")
    for headers, payload in [
        ({"Fireblocks-Signature": sign_webhook(webhook_key, body)}, forged),
        ({}, body),
        ({"fireblocks-signature": "not base64!"}, body),
        ({"fireblocks-signature": sign_webhook(new_rsa_key()[0], body)}, body),
    ]:
        with pytest.raises(WebhookRejected):
            custodian.verify_webhook(headers, payload)
