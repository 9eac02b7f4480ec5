"""The network port on two kinds of ledger: a real EVM node, and GCUL's REST surface (fixtures)."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest
from sqlalchemy import select

from andchain.chains import schema
from andchain.chains.gcul import CanonicalJsonCodec, GculConfig, GculError, GculNetwork
from andchain.chains.keys import Signer
from andchain.chains.port import EvmNetwork, LedgerTx, TxStatus
from andchain.chains.rpc import NodeUnreachable
from andchain.errors import DomainError
from tests.chains.conftest import TokenWorld

RESOURCE = "projects/bank-prod/locations/us-east4/endpoints/gcul-main"
# The stand-in codec talks to a local endpoint only: an emulator, or these fixtures.
LOCAL = "http://127.0.0.1:8790"


class FakeGcul:
    """GCUL's published REST contract, as fixtures: paths, bodies, digests, statuses."""

    def __init__(self) -> None:
        self.submitted: dict[str, bytes] = {}
        self.statuses: dict[str, list[str]] = {}
        self.fail_next: list[int] = []
        self.requests: list[httpx.Request] = []
        self.refuse_duplicates = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"] == "Bearer token-1"
        if self.fail_next:
            return httpx.Response(self.fail_next.pop(0), json={"error": {"status": "UNAVAILABLE", "message": "x"}})
        path = request.url.path
        if path == f"/v1/{RESOURCE}:submitTransaction" and request.method == "POST":
            signed = base64.b64decode(json.loads(request.content)["serializedSignedTransaction"])
            digest = hashlib.sha256(signed).hexdigest()
            if self.refuse_duplicates and digest in self.submitted:
                return httpx.Response(409, json={"error": {"status": "ALREADY_EXISTS", "message": "duplicate"}})
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


SIGNER = Signer(bytes([9]) * 32)


def gcul_network(engine, fake, *, nonce: int = 42, transport: httpx.BaseTransport | None = None) -> GculNetwork:
    return GculNetwork(
        "gcul",
        GculConfig("bank-prod", "us-east4", "gcul-main", base_url=LOCAL),
        lambda _: SIGNER,
        lambda: "token-1",
        engine=engine,
        transport=transport or httpx.MockTransport(fake),
        sleep=lambda _: None,
        nonce=lambda: nonce,
    )


@pytest.fixture
def gcul(engine):
    fake = FakeGcul()
    return gcul_network(engine, fake), fake, SIGNER


def test_gcul_submit_sends_a_signed_transaction_and_checks_the_digest(gcul):
    network, fake, signer = gcul
    tx_id = network.submit(LedgerTx("transfer", "USDD", "acct-acme", 2_500, "acct-globex", memo="INV-1"), key="inv-1")
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
    tx_id = network.submit(LedgerTx("mint", "USDD", "acct-issuer", 10, "acct-acme"), key="mint-1")
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
    broken = gcul_network(
        network.engine, fake, transport=httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ConnectError("down")))
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
        network.submit(LedgerTx("burn", "USDD", "acct-acme", 1), key="burn-1")
    assert caught.value.code == "gcul_digest_mismatch"


def test_gcul_with_the_stand_in_codec_refuses_any_endpoint_but_a_local_one(engine):
    fake = FakeGcul()

    def network(base_url: str, codec=None) -> GculNetwork:
        config = GculConfig("bank-prod", "us-east4", "gcul-main", base_url=base_url)
        return GculNetwork("gcul", config, lambda _: SIGNER, lambda: "t", engine=engine, codec=codec)

    for remote in (
        "https://universalledger.googleapis.com",
        "http://10.0.0.5:8080",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
    ):
        with pytest.raises(GculError) as caught:
            network(remote)
        assert caught.value.code == "gcul_stand_in_codec"
        assert "local endpoint" in caught.value.message and remote in caught.value.message
    for local in ("http://localhost:8790", "http://127.0.0.1:8790", "http://[::1]:8790"):
        assert network(local).config.base_url == local

    class OfficialCodec(CanonicalJsonCodec):
        stand_in = False  # what a codec of GCUL's protobuf messages declares

    assert network("https://universalledger.googleapis.com", OfficialCodec()).name == "gcul"
    assert fake.requests == []


def submit_requests(fake: FakeGcul) -> list[bytes]:
    return [r.content for r in fake.requests if r.url.path.endswith(":submitTransaction")]


def test_gcul_resubmits_the_same_signed_bytes_under_the_same_key(engine):
    fake = FakeGcul()
    tx = LedgerTx("transfer", "USDD", "acct-acme", 2_500, "acct-globex", memo="INV-9")
    first = gcul_network(engine, fake, nonce=42).submit(tx, key="pay-inv-9")
    # Another process, whose clock would give another nonce, retries the same request.
    again = gcul_network(engine, fake, nonce=43).submit(tx, key="pay-inv-9")
    assert again == first
    sent = submit_requests(fake)
    assert len(sent) == 2 and sent[0] == sent[1]
    assert list(fake.submitted) == [first]
    client_tx = json.loads(base64.b64decode(json.loads(fake.submitted[first])["serializedClientTransaction"]))
    assert client_tx["nonce"] == 42


class Crash(BaseException):
    """The process dies: nothing after this point runs, no handler catches it."""


def test_a_crash_between_recording_and_submitting_is_recovered_with_the_same_transaction(engine):
    fake = FakeGcul()
    tx = LedgerTx("mint", "USDD", "acct-issuer", 1_000_000, "acct-acme", memo="MINT-7")
    recorded_before_sending = []

    def dies_on_submit(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(":submitTransaction"):
            t = schema.network_submissions
            with engine.connect() as conn:
                recorded_before_sending.append(conn.execute(select(t.c.tx_id, t.c.nonce)).all())
            raise Crash()
        return fake(request)

    with pytest.raises(Crash):
        gcul_network(engine, fake, nonce=42, transport=httpx.MockTransport(dies_on_submit)).submit(tx, key="mint-7")
    assert fake.submitted == {}
    ((tx_id, nonce),) = recorded_before_sending[0]
    assert nonce == 42

    restarted = gcul_network(engine, fake, nonce=10**18)
    assert restarted.submit(tx, key="mint-7") == tx_id
    assert list(fake.submitted) == [tx_id]
    assert restarted.transaction_state(tx_id).status == TxStatus.PENDING
    assert restarted.submission("mint-7").nonce == 42


def test_the_same_key_for_another_transaction_is_refused_and_nothing_is_sent(gcul):
    network, fake, _ = gcul
    tx_id = network.submit(LedgerTx("transfer", "USDD", "acct-acme", 100, "acct-globex"), key="pay-1")
    with pytest.raises(DomainError) as caught:
        network.submit(LedgerTx("transfer", "USDD", "acct-acme", 101, "acct-globex"), key="pay-1")
    assert caught.value.code == "idempotency_key_reused" and caught.value.http_status == 409
    assert tx_id in caught.value.message
    assert len(submit_requests(fake)) == 1
    with pytest.raises(DomainError) as empty:
        network.submit(LedgerTx("transfer", "USDD", "acct-acme", 100, "acct-globex"), key="")
    assert empty.value.code == "invalid_request"


def test_a_resubmission_the_network_already_holds_is_accepted_only_for_that_digest(gcul):
    network, fake, _ = gcul
    fake.refuse_duplicates = True
    tx = LedgerTx("burn", "USDD", "acct-acme", 5)
    tx_id = network.submit(tx, key="burn-5")
    assert network.submit(tx, key="burn-5") == tx_id
    # ALREADY_EXISTS for bytes the network does not know by their digest is no success.
    fake.statuses.pop(tx_id)
    with pytest.raises(GculError, match="ALREADY_EXISTS"):
        network.submit(tx, key="burn-5")


def test_two_processes_recording_the_same_key_at_once_keep_the_first_transaction(engine):
    fake = FakeGcul()
    tx = LedgerTx("transfer", "USDD", "acct-acme", 7, "acct-globex")

    def dies_on_submit(request: httpx.Request) -> httpx.Response:
        raise Crash()

    first = gcul_network(engine, fake, nonce=42, transport=httpx.MockTransport(dies_on_submit))
    second = gcul_network(engine, fake, nonce=43)
    looked_up = second.submission
    looks = []

    def not_recorded_yet_on_the_first_look(key: str):
        # Both processes looked before either recorded: the second learns of the first on insert.
        looks.append(key)
        return None if len(looks) == 1 else looked_up(key)

    second.submission = not_recorded_yet_on_the_first_look
    with pytest.raises(Crash):
        first.submit(tx, key="race")
    tx_id = second.submit(tx, key="race")
    assert len(looks) == 2
    assert list(fake.submitted) == [tx_id] and tx_id == looked_up("race").tx_id
    client_tx = json.loads(base64.b64decode(json.loads(fake.submitted[tx_id])["serializedClientTransaction"]))
    assert client_tx["nonce"] == 42


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
