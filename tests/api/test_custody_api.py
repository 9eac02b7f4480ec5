"""/v1/custody and /v1/stablecoin against the reference custodian running as its own process: a client
opens its account and gets its address, the custodian's signed webhook credits the deposit (its
event reaches the client), withdrawals and conversions are operations, another client sees nothing,
and a webhook that does not verify changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from andchain.api import create_app
from andchain.custody.service import CustodyHandler, CustodyService
from andchain.ops.core import OpStatus
from andchain.ops.worker import Worker
from andchain.tokens.moves import Moves
from andchain.tokens.service import TokenService
from tests.chains.conftest import start_public_node
from tests.custody.worlds import USDC, ReferenceWorld


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


class Api:
    def __init__(self, world: ReferenceWorld, http: TestClient, tokens: TokenService, service: CustodyService) -> None:
        self.world, self.http, self.tokens, self.service = world, http, tokens, service
        self.ctx = world.bank
        self._keys = 0

    def key(self, role: str, client_id: str | None = None) -> dict[str, str]:
        _, key = self.ctx.api_keys.create(role, client_id=client_id, label=f"test {role}")
        return {"Authorization": f"Bearer {key}"}

    def post(self, path: str, body: dict, who: dict[str, str], key: str | None = None):
        self._keys += 1
        return self.http.post(path, json=body, headers={**who, "Idempotency-Key": key or f"k-{self._keys}"})

    def hooks_for(self, transfer_id: str) -> list:
        return [
            h for h in self.world.receiver.requests if json.loads(h.body).get("transfer", {}).get("id") == transfer_id
        ]

    def deliver(self, hook) -> object:
        return self.http.post("/v1/custody/webhooks/reference", content=hook.body, headers=signed(hook))


def signed(hook) -> dict[str, str]:
    """The custodian's own headers of a delivery (its signature and timestamp among them)."""
    return {k: v for k, v in hook.headers.items() if k.startswith("x-custodian-") or k == "content-type"}


@pytest.fixture
def api(tmp_path, base_node) -> Iterator[Api]:
    world = ReferenceWorld(tmp_path, base_node)
    tokens = TokenService(world.bank)
    service = CustodyService(world.bank, custodians={"reference": world.custodian}, tokens=tokens)
    app = create_app(world.bank)
    app.state.tokens = tokens
    app.state.custody = service
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as http:
        yield Api(world, http, tokens, service)
    world.close()


def registered(tokens: TokenService, client: str) -> str:
    moves = Moves(tokens)
    account = Account.create()
    nonce, message = moves.challenge(client, "base")
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
    return moves.register(client, "base", nonce, account.address, signature)


def test_a_client_deposits_usdc_sees_it_credited_by_the_webhook_and_withdraws(api):
    alice = api.tokens.onboard("Alice").id
    bob = api.tokens.onboard("Bob").id
    as_alice, as_bob, operator = api.key("client", alice), api.key("client", bob), api.key("operator")

    opened = api.post("/v1/custody/accounts", {}, as_alice)
    assert opened.status_code == 200, opened.text
    assert opened.json()["owner"] == alice
    assert api.post("/v1/custody/accounts", {"owner": "desk"}, as_alice).status_code == 404
    assert api.post("/v1/custody/accounts", {"owner": bob}, as_alice).status_code == 404
    assert api.post("/v1/custody/accounts", {"custodian": "nobody"}, as_alice).status_code == 404
    found = api.post("/v1/custody/deposit-addresses", {"asset": "USDC", "network": "base"}, as_alice)
    assert found.status_code == 200, found.text
    address = found.json()["address"]
    assert api.http.get("/v1/custody/accounts", headers=as_bob).json() == {"data": []}

    api.world.mint(address, 40 * USDC)
    deadline = time.monotonic() + 120
    hooks: list = []
    while time.monotonic() < deadline:
        hooks = [h for h in api.world.receiver.requests if json.loads(h.body)["transfer"].get("kind") == "deposit"]
        if any(json.loads(h.body)["transfer"]["state"] == "completed" for h in hooks):
            break
        time.sleep(0.2)
    assert hooks, "the custodian sent no webhook for the deposit"
    # Tampered with, it is refused and changes nothing.
    tampered = hooks[0].body.replace(b"40.000000", b"90.000000")
    forged = api.http.post(
        "/v1/custody/webhooks/reference",
        content=tampered,
        headers=signed(hooks[0]),
    )
    assert forged.status_code == 401 and forged.json()["code"] == "webhook_rejected"
    assert api.http.post("/v1/custody/webhooks/nobody", content=hooks[0].body).status_code == 404
    for hook in hooks:
        first = api.deliver(hook)
        assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
    again = api.deliver(hooks[-1])
    assert again.status_code == 200 and again.json()["duplicate"] is True

    positions = api.http.get("/v1/custody/positions", headers=as_alice).json()["data"]
    assert [(p["asset"], p["balance"]) for p in positions] == [("USDC", "40.000000")]
    assert api.http.get("/v1/custody/positions", headers=as_bob).json() == {"data": []}
    assert api.http.get("/v1/custody/positions", params={"owner": alice}, headers=as_bob).status_code == 404
    events = api.http.get("/v1/events", params={"type": "custody.deposit_credited"}, headers=as_alice).json()
    assert [e["data"]["amount"] for e in events["data"]] == ["40.000000"]
    assert api.http.get("/v1/events", params={"type": "custody.deposit_credited"}, headers=as_bob).json()["data"] == []

    own = registered(api.tokens, alice)
    body = {"asset": "USDC", "network": "base", "amount": "15", "address": own}
    refused = api.post("/v1/custody/withdrawals", {**body, "address": "0x" + "12" * 20}, as_alice)
    assert refused.status_code == 422 and refused.json()["code"] == "address_not_registered"
    too_much = api.post("/v1/custody/withdrawals", {**body, "amount": "41"}, as_alice)
    assert too_much.status_code == 422, too_much.text
    taken = api.post("/v1/custody/withdrawals", body, as_alice, key="w1")
    assert taken.status_code == 202, taken.text
    op_id = taken.json()["id"]
    assert taken.headers["Location"] == f"/v1/operations/{op_id}"
    assert api.post("/v1/custody/withdrawals", body, as_alice, key="w1").json()["id"] == op_id
    assert api.http.get(f"/v1/operations/{op_id}", headers=as_bob).status_code == 404
    internal = {"source": alice, "destination": "desk", "asset": "USDC", "network": "base", "amount": "1"}
    assert api.post("/v1/custody/transfers", internal, as_alice).status_code == 403

    worker = Worker(api.tokens.ops, [CustodyHandler(api.service)])
    worker.run(seconds=90, until=lambda: api.tokens.ops.get(op_id).terminal)
    done = api.http.get(f"/v1/operations/{op_id}", headers=as_alice).json()
    assert done["status"] == OpStatus.SUCCEEDED.value, done
    assert api.world.held(own) == 15 * USDC
    positions = api.http.get("/v1/custody/positions", params={"owner": alice}, headers=operator).json()["data"]
    assert positions[0]["balance"] == "25.000000"

    # A conversion asked through the API: USDC to USD, held now, booked when the custodian completes it.
    conversion = api.post("/v1/stablecoin/conversions", {"amount": "10.00", "from": "USDC", "to": "USD"}, as_alice)
    assert conversion.status_code == 202, conversion.text
    assert conversion.json()["kind"] == "stablecoin_convert"
    odd = api.post("/v1/stablecoin/conversions", {"amount": "1", "from": "USDC", "to": "EUR"}, as_alice)
    assert odd.status_code == 422 and odd.json()["code"] == "conversion_not_supported"
