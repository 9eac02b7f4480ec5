"""The network port on two kinds of ledger: a real EVM node, and GCUL's REST surface (fixtures)."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest

from andchain.chains.gcul import GculConfig, GculError, GculNetwork
from andchain.chains.keys import Signer
from andchain.chains.port import EvmNetwork, LedgerTx, TxStatus
from andchain.chains.rpc import NodeUnreachable
from andchain.errors import DomainError
from tests.chains.conftest import TokenWorld

RESOURCE = "projects/bank-prod/locations/us-east4/endpoints/gcul-main"


class FakeGcul:
    """GCUL's published REST contract, as fixtures: paths, bodies, digests, statuses."""

    def __init__(self) -> None:
        self.submitted: dict[str, bytes] = {}
        self.statuses: dict[str, list[str]] = {}
        self.fail_next: list[int] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"] == "Bearer token-1"
        if self.fail_next:
            return httpx.Response(self.fail_next.pop(0), json={"error": {"status": "UNAVAILABLE", "message": "x"}})
        path = request.url.path
        if path == f"/v1/{RESOURCE}:submitTransaction" and request.method == "POST":
            signed = base64.b64decode(json.loads(request.content)["serializedSignedTransaction"])
            digest = hashlib.sha256(signed).hexdigest()
            self.submitted[digest] = signed
            self.statuses[digest] = ["PENDING"]
            return httpx.Response(200, json={"transactionDigestHex": digest})
        if path == f"/v1/{RESOURCE}:queryTransactionState" and request.method == "GET":
            digest = request.url.params["transactionDigestHex"]
            attempts = [{"status": s, "statusEvents": []} for s in self.statuses.get(digest, [])]
            return httpx.Response(200, json={"transactionAttempts": attempts})
        if path == f"/v1/{RESOURCE}:queryAccount" and request.method == "GET":
            return httpx.Response(
                200,
                json={
                    "account": {
                        "accountId": request.url.params["accountId"],
                        "roles": ["ACCOUNT_MANAGER"],
                        "balances": [{"tokenId": "USDD", "amount": "125000"}, {"tokenId": "EURD", "amount": "7"}],
                    }
                },
            )
        return httpx.Response(404, json={"error": {"status": "NOT_FOUND", "message": path}})


@pytest.fixture
def gcul():
    fake = FakeGcul()
    signer = Signer(bytes([9]) * 32)
    network = GculNetwork(
        "gcul",
        GculConfig("bank-prod", "us-east4", "gcul-main"),
        lambda _: signer,
        lambda: "token-1",
        transport=httpx.MockTransport(fake),
        sleep=lambda _: None,
        nonce=lambda: 42,
    )
    return network, fake, signer


def test_gcul_submit_sends_a_signed_transaction_and_checks_the_digest(gcul):
    network, fake, signer = gcul
    tx_id = network.submit(LedgerTx("transfer", "USDD", "acct-acme", 2_500, "acct-globex", memo="INV-1"))
    signed = json.loads(fake.submitted[tx_id])
    client_tx = base64.b64decode(signed["serializedClientTransaction"])
    assert json.loads(client_tx) == {
        "sender": "acct-acme",
        "kind": "transfer",
        "token": "USDD",
        "receiver": "acct-globex",
        "amount": "2500",
        "memo": "INV-1",
        "nonce": 42,
    }
    signature = base64.b64decode(signed["senderSignature"])
    from coincurve import PublicKey

    recovered = PublicKey.from_signature_and_message(
        signature[:64] + bytes([signature[64] - 27]), hashlib.sha256(client_tx).digest(), hasher=None
    )
    assert recovered.format() == signer._key.public_key.format()
    assert tx_id == hashlib.sha256(fake.submitted[tx_id]).hexdigest()


def test_gcul_transaction_states_map_onto_the_port(gcul):
    network, fake, _ = gcul
    tx_id = network.submit(LedgerTx("mint", "USDD", "acct-issuer", 10, "acct-acme"))
    assert network.transaction_state(tx_id).status == TxStatus.PENDING
    fake.statuses[tx_id] = ["PENDING", "FINALIZED"]
    assert network.transaction_state(tx_id).status == TxStatus.FINAL
    fake.statuses[tx_id] = ["FAILED"]
    assert network.transaction_state(tx_id).status == TxStatus.FAILED
    assert network.transaction_state("00" * 32).status == TxStatus.UNKNOWN


def test_gcul_accounts_show_roles_and_balances(gcul):
    network, _, _ = gcul
    account = network.account("acct-acme", ("USDD",))
    assert account.balances == {"USDD": 125_000} and account.roles == ("ACCOUNT_MANAGER",)


def test_gcul_retries_transient_errors_and_reports_refusals(gcul):
    network, fake, _ = gcul
    fake.fail_next = [503, 429]
    assert network.account("acct-acme").balances["EURD"] == 7
    fake.fail_next = [403]
    with pytest.raises(GculError, match="403 UNAVAILABLE"):
        network.account("acct-acme")
    broken = GculNetwork(
        "gcul",
        GculConfig("p", "l", "e"),
        lambda _: Signer(bytes([1]) * 32),
        lambda: "t",
        transport=httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ConnectError("down"))),
        sleep=lambda _: None,
    )
    with pytest.raises(NodeUnreachable):
        broken.transaction_state("ab")


def test_gcul_refuses_a_digest_that_is_not_what_was_sent(gcul):
    network, fake, _ = gcul
    original = fake.__call__

    def lying(request: httpx.Request) -> httpx.Response:
        response = original(request)
        if request.url.path.endswith(":submitTransaction"):
            return httpx.Response(200, json={"transactionDigestHex": "00" * 32})
        return response

    network._http = httpx.Client(base_url=network.config.base_url, transport=httpx.MockTransport(lying))
    with pytest.raises(GculError) as caught:
        network.submit(LedgerTx("burn", "USDD", "acct-acme", 1))
    assert caught.value.code == "gcul_digest_mismatch"


def test_the_same_port_drives_a_real_evm_network(token: TokenWorld):
    network = EvmNetwork(token.chain)
    mint = network.submit(LedgerTx("mint", token.address, token.minter, 900, token.alice, memo="port"))
    token.chain.wait_hashes([mint])
    assert network.transaction_state(mint).status == TxStatus.FINAL
    pay = network.submit(LedgerTx("transfer", token.address, token.alice, 400, token.bob, memo="INV-2"))
    token.chain.wait_hashes([pay])
    assert network.account(token.bob, (token.address,)).balances == {token.address: 400}
    assert f"minter:{token.address}" in network.account(token.minter, (token.address,)).roles
    assert network.transaction_state("0x" + "00" * 32).status == TxStatus.UNKNOWN
    with pytest.raises(DomainError):
        LedgerTx("transfer", token.address, token.alice, 0, token.bob)
