"""The Coinbase Prime adapter against a Prime that answers as its documentation says, its
signature recomputed from the documented recipe on every request."""

from __future__ import annotations

import base64
import hashlib
import hmac

import httpx
import pytest

from andchain.custody.adapters.coinbase_prime import STATES, CoinbasePrimeCustodian, PrimeSigner, prime_key, state_of
from andchain.custody.assets import AssetMap
from andchain.custody.port import (
    CustodianRefused,
    CustodianUnavailable,
    Destination,
    TransferRequest,
    WebhookRejected,
    submit_once,
)
from andchain.custody.states import CustodyState
from tests.custody.fake_prime import ACCESS_KEY, PASSPHRASE, PORTFOLIO, SIGNING_KEY, FakePrime

ASSETS = {"ETH@ethereum": "ETH", "USDC@base": "USDC", "BTC@bitcoin": "BTC"}
ADDRESS = "0x2222222222222222222222222222222222222222"


@pytest.fixture
def world():
    fake = FakePrime()
    custodian = CoinbasePrimeCustodian(
        access_key=ACCESS_KEY,
        passphrase=PASSPHRASE,
        signing_key=SIGNING_KEY,
        portfolio_id=PORTFOLIO,
        assets=AssetMap.parse("coinbase_prime", ASSETS),
        base_url="https://api.prime.test",
        transport=fake.transport(),
        clock=lambda: fake.now_s,
    )
    return fake, custodian


def test_the_signature_is_the_documented_hmac_of_timestamp_method_path_and_body():
    # A value computed by hand from the documented recipe, not by the signer's own code path.
    signer = PrimeSigner(ACCESS_KEY, PASSPHRASE, SIGNING_KEY, clock=lambda: 1_780_000_000)
    body = b'{"amount":"1.5"}'
    headers = signer("POST", f"/v1/portfolios/{PORTFOLIO}/wallets/w/withdrawals?ignored=1", body)
    message = b"1780000000POST/v1/portfolios/" + PORTFOLIO.encode() + b"/wallets/w/withdrawals" + body
    assert (
        headers["X-CB-ACCESS-SIGNATURE"]
        == base64.b64encode(hmac.new(SIGNING_KEY.encode(), message, hashlib.sha256).digest()).decode()
    )
    assert headers["X-CB-ACCESS-TIMESTAMP"] == "1780000000"


def funded(fake: FakePrime, custodian: CoinbasePrimeCustodian, account: str, symbol: str, amount: str) -> str:
    custodian.deposit_address(
        account,
        {"ETH": "ETH", "USDC": "USDC", "BTC": "BTC"}[symbol],
        {"ETH": "ethereum", "USDC": "base", "BTC": "bitcoin"}[symbol],
    )
    wallet = next(w for w in fake.wallets.values() if w["name"] == f"{account} {symbol}")
    fake.balances[wallet["id"]] = {"amount": amount, "holds": "0"}
    return wallet["id"]


def test_an_account_is_a_name_whose_wallets_are_made_with_their_first_address(world):
    fake, custodian = world
    account = custodian.create_account("clients:acme", owner="acme", idempotency_key="k")
    assert fake.seen == []  # nothing to make at Prime yet
    address = custodian.deposit_address(account.id, "USDC", "base")
    again = custodian.deposit_address(account.id, "USDC", "base")
    assert address == again and address.address.startswith("0x")
    creations = [s for s in fake.seen if s[0] == "POST"]
    assert len(creations) == 1
    with pytest.raises(CustodianRefused):
        custodian.create_account("two words", owner="acme", idempotency_key="k")


def test_a_wallet_prime_is_still_creating_is_not_yet_then_found(world):
    fake, custodian = world
    fake.wallet_delay = 1
    with pytest.raises(CustodianUnavailable, match="still creating"):
        custodian.deposit_address("desk", "ETH", "ethereum")
    address = custodian.deposit_address("desk", "ETH", "ethereum")
    assert address.asset == "ETH" and len(fake.wallets) == 1
    assert len([s for s in fake.seen if s[0] == "POST"]) == 1  # listed before making it again


def test_balances_subtract_holds_and_are_exact(world):
    fake, custodian = world
    wallet = funded(fake, custodian, "clients:acme", "BTC", "1.23456789")
    fake.balances[wallet]["holds"] = "0.2"
    (balance,) = custodian.balances("clients:acme")
    assert (balance.asset, balance.total_minor, balance.available_minor) == ("BTC", 123_456_789, 103_456_789)
    assert custodian.balances("clients:globex") == []


def test_a_withdrawal_sends_a_uuid_idempotency_key_derived_from_ours_and_an_exact_amount(world):
    fake, custodian = world
    wallet = funded(fake, custodian, "desk", "USDC", "100")
    request = TransferRequest("wd-7", "desk", Destination(address=ADDRESS), "USDC", "base", 2_500_000)
    sent = custodian.withdraw(request)
    method, target, content = fake.seen[-1]
    assert (method, target) == ("POST", f"/v1/portfolios/{PORTFOLIO}/wallets/{wallet}/withdrawals")
    assert content == (
        b'{"amount":"2.5","destination_type":"DESTINATION_BLOCKCHAIN","idempotency_key":"'
        + prime_key("wd-7").encode()
        + b'","currency_symbol":"USDC","blockchain_address":{"address":"'
        + ADDRESS.encode()
        + b'"}}'
    )
    assert sent.state is CustodyState.CREATED
    seen = custodian.get(sent.id)
    assert seen.amount_minor == 2_500_000 and seen.destination == Destination(address=ADDRESS)
    assert seen.source_account_id == "desk"


def test_a_timeout_after_prime_took_the_withdrawal_is_found_among_the_newest_and_never_sent_twice(world):
    fake, custodian = world
    funded(fake, custodian, "desk", "USDC", "100")
    request = TransferRequest("wd-8", "desk", Destination(address=ADDRESS), "USDC", "base", 1_000_000)

    def lose_the_answer(req):
        if req.method == "POST" and req.url.path.endswith("/withdrawals"):
            fake.fault = None
            fake._answer(req)  # Prime takes it
            raise httpx.ReadTimeout("lost", request=req)
        return None

    fake.fault = lose_the_answer
    with pytest.raises(CustodianUnavailable):
        submit_once(custodian, request)
    found = submit_once(custodian, request)
    assert len(fake.transactions) == 1 and found.id == fake.transactions[0]["id"]
    assert found.idempotency_key == "wd-8"
    assert len([s for s in fake.seen if s[0] == "POST" and s[1].endswith("/withdrawals")]) == 1


def test_an_internal_transfer_goes_wallet_to_wallet_of_the_same_currency(world):
    fake, custodian = world
    funded(fake, custodian, "desk", "ETH", "3")
    target = funded(fake, custodian, "clients:acme", "ETH", "0")
    moved = custodian.transfer(
        TransferRequest("tr-1", "desk", Destination(account_id="clients:acme"), "ETH", "ethereum", 10**18)
    )
    assert fake.seen[-1][2].startswith(b'{"amount":"1","destination":"' + target.encode())
    assert custodian.get(moved.id).destination == Destination(account_id="clients:acme")
    with pytest.raises(CustodianRefused, match="no ETH wallet"):
        custodian.transfer(
            TransferRequest("tr-2", "desk", Destination(account_id="clients:globex"), "ETH", "ethereum", 1)
        )


def test_statuses_map_to_normalised_states(world):
    fake, custodian = world
    funded(fake, custodian, "desk", "USDC", "100")
    sent = custodian.withdraw(TransferRequest("wd-9", "desk", Destination(address=ADDRESS), "USDC", "base", 1))
    for status in ["TRANSACTION_REQUESTED", "TRANSACTION_APPROVED", "TRANSACTION_BROADCASTING", "TRANSACTION_DONE"]:
        fake.transactions[0]["status"] = status
        assert custodian.get(sent.id).state is STATES[status]
    assert state_of("TRANSACTION_REJECTED") is CustodyState.REJECTED
    assert state_of("TRANSACTION_EXPIRED") is CustodyState.FAILED
    assert state_of("OTHER_TRANSACTION_STATUS") is CustodyState.UNKNOWN
    documented = {
        "TRANSACTION_CREATED",
        "TRANSACTION_REQUESTED",
        "TRANSACTION_APPROVED",
        "TRANSACTION_GASSING",
        "TRANSACTION_GASSED",
        "TRANSACTION_PROVISIONED",
        "TRANSACTION_PLANNED",
        "TRANSACTION_PROCESSING",
        "TRANSACTION_RESTORED",
        "TRANSACTION_DONE",
        "TRANSACTION_IMPORT_PENDING",
        "TRANSACTION_IMPORTED",
        "TRANSACTION_CANCELLED",
        "TRANSACTION_REJECTED",
        "TRANSACTION_DELAYED",
        "TRANSACTION_RETRIED",
        "TRANSACTION_FAILED",
        "TRANSACTION_EXPIRED",
        "TRANSACTION_BROADCASTING",
        "TRANSACTION_CONSTRUCTED",
    }
    assert documented == set(STATES)


def test_the_transfer_list_follows_primes_cursor(world):
    fake, custodian = world
    funded(fake, custodian, "desk", "USDC", "100")
    for n in range(3):
        custodian.withdraw(TransferRequest(f"wd-{n}", "desk", Destination(address=ADDRESS), "USDC", "base", 1))
    page = custodian.transfers(limit=2)
    assert len(page.transfers) == 2 and page.more
    rest = custodian.transfers(page.cursor, limit=2)
    assert len(rest.transfers) == 1 and not rest.more


def test_cancel_and_webhooks_refuse_with_the_reason(world):
    _, custodian = world
    with pytest.raises(CustodianRefused, match="approval flow"):
        custodian.cancel("tx-1")
    with pytest.raises(WebhookRejected, match="polling"):
        custodian.verify_webhook({}, b"{}")


def test_server_errors_are_unavailable_and_client_errors_refusals(world):
    fake, custodian = world
    fake.fault = lambda request: httpx.Response(502, text="bad gateway")
    with pytest.raises(CustodianUnavailable):
        custodian.balances("desk")
    fake.fault = lambda request: httpx.Response(400, json={"message": "invalid address"})
    with pytest.raises(CustodianRefused, match="invalid address"):
        custodian.balances("desk")


def test_a_key_not_among_the_newest_transactions_read_is_unknown_not_never_sent(world, monkeypatch):
    from andchain.custody.adapters import coinbase_prime

    fake, custodian = world
    funded(fake, custodian, "desk", "USDC", "100")
    for n in range(3):
        custodian.withdraw(TransferRequest(f"wd-{n}", "desk", Destination(address=ADDRESS), "USDC", "base", 1))
    monkeypatch.setattr(coinbase_prime, "FIND_PAGES_MAX", 1)
    monkeypatch.setattr(coinbase_prime, "PAGE_SIZE_MAX", 2)
    with pytest.raises(CustodianUnavailable, match="newest transactions"):
        submit_once(custodian, TransferRequest("wd-0", "desk", Destination(address=ADDRESS), "USDC", "base", 1))
    assert len(fake.transactions) == 3
    monkeypatch.setattr(coinbase_prime, "PAGE_SIZE_MAX", 100)
    assert (
        submit_once(custodian, TransferRequest("wd-0", "desk", Destination(address=ADDRESS), "USDC", "base", 1)).id
        == fake.transactions[0]["id"]
    )
