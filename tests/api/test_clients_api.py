"""/v1/clients and /v1/deposits over HTTP: onboarding, deposits, wallets, registered addresses."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct

from tests.api.conftest import Bank


def test_clients_are_onboarded_funded_listed_and_shown(bank: Bank):
    operator, auditor = bank.key("operator"), bank.key("auditor")
    made = [bank.post("/v1/clients", {"name": f"Client {i}", "kind": "natural"}, operator) for i in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201]
    ids = [r.json()["id"] for r in made]
    assert made[0].json()["dda"] == {"account": f"clients:{ids[0]}:usd:dda", "posted": "0.00", "available": "0.00"}
    other_kind = bank.post("/v1/clients", {"name": "Client 0", "kind": "legal"}, operator)
    assert other_kind.status_code == 409 and other_kind.json()["code"] == "client_exists"
    first = bank.get("/v1/clients", auditor, limit=2).json()
    rest = bank.get("/v1/clients", auditor, limit=2, cursor=first["next_cursor"]).json()
    assert [c["id"] for c in first["data"] + rest["data"]] == ids and rest["next_cursor"] is None

    deposited = bank.post("/v1/deposits", {"client": "Client 1", "amount": "12.34", "reference": "NTRY-9"}, operator)
    assert deposited.status_code == 201, deposited.text
    assert deposited.json()["transfer_id"] == "deposit:NTRY-9" and deposited.json()["amount"] == "12.34"
    twice = bank.post("/v1/deposits", {"client": ids[1], "amount": "12.34", "reference": "NTRY-9"}, operator)
    assert twice.status_code == 201 and twice.json()["dda"]["posted"] == "12.34"  # the notice books once
    shown = bank.get(f"/v1/clients/{ids[1]}", bank.key("client", ids[1])).json()
    assert shown["name"] == "Client 1" and shown["kind"] == "natural" and shown["dda"]["posted"] == "12.34"

    for body, status, code in (
        ({"client": ids[0], "amount": "-1", "reference": "r"}, 422, "invalid_request"),
        ({"client": ids[0], "amount": "1.234", "reference": "r"}, 422, "excess_precision"),
        ({"client": "nobody", "amount": "1.00", "reference": "r"}, 404, "client_not_found"),
        ({"client": ids[0], "amount": "1.00", "reference": ""}, 422, "invalid_request"),
    ):
        r = bank.post("/v1/deposits", body, operator)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    assert bank.post("/v1/clients", {"name": ""}, operator).status_code == 422
    assert bank.post("/v1/deposits", {"client": ids[0], "amount": "1.00", "reference": "r"}, auditor).status_code == 403
    assert bank.get("/v1/clients/nobody", auditor).json()["code"] == "client_not_found"


def test_a_client_registers_its_own_address_on_a_public_network(bank: Bank):
    acme = bank.tokens.onboard("Acme").id
    me = bank.key("client", acme)
    assert bank.get(f"/v1/clients/{acme}/wallets", me).json() == {"client": acme, "wallets": [], "addresses": []}
    challenge = bank.post(f"/v1/clients/{acme}/addresses/challenge", {"network": "base"}, me)
    assert challenge.status_code == 201, challenge.text
    nonce, message = challenge.json()["nonce"], challenge.json()["message"]
    assert f"client: {acme}" in message and "chain id 8453" in message
    own = Account.create()
    signed = Account.sign_message(encode_defunct(text=message), own.key).signature.hex()
    signature = signed if signed.startswith("0x") else "0x" + signed
    body = {"network": "base", "nonce": nonce, "address": own.address, "signature": signature}

    stranger = Account.create()
    wrong = bank.post(f"/v1/clients/{acme}/addresses", {**body, "address": stranger.address}, me)
    assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_signature"
    registered = bank.post(f"/v1/clients/{acme}/addresses", body, me, key="register-1")
    assert registered.status_code == 201, registered.text
    assert registered.json() == {"client": acme, "network": "base", "address": own.address, "status": "verified"}
    replayed = bank.post(f"/v1/clients/{acme}/addresses", body, me, key="register-1")
    assert replayed.json() == registered.json() and replayed.headers["Idempotent-Replayed"] == "true"
    used = bank.post(f"/v1/clients/{acme}/addresses", body, me)
    assert used.status_code == 409 and used.json()["code"] == "challenge_used"

    wallets = bank.get(f"/v1/clients/{acme}/wallets", bank.key("compliance")).json()
    assert [(a["network"], a["address"], a["status"]) for a in wallets["addresses"]] == [
        ("base", own.address, "verified")
    ]
    internal = bank.post(f"/v1/clients/{acme}/addresses/challenge", {"network": "internal"}, me)
    assert internal.status_code == 422 and internal.json()["code"] == "not_a_public_network"
    unknown = bank.post(f"/v1/clients/{acme}/addresses/challenge", {"network": "mars"}, me)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_network"
