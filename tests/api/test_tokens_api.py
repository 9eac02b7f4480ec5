"""/v1/tokens over HTTP against a real anvil node: 202 with the operation, followed to the end."""

from __future__ import annotations

from andchain.reconcile import reconcile
from tests.api.conftest import Bank


def onboard(bank: Bank, who: dict[str, str], name: str) -> str:
    r = bank.post("/v1/clients", {"name": name}, who)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def follow(bank: Bank, response, who: dict[str, str]) -> dict:
    """The operation an accepted request names at its Location, as it is now."""
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    assert location == f"/v1/operations/{response.json()['id']}"
    r = bank.get(location, who)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_client_story_over_http(bank: Bank):
    operator, auditor = bank.key("operator"), bank.key("auditor")
    acme, globex = onboard(bank, operator, "Acme Corp"), onboard(bank, operator, "Globex")
    again = bank.post("/v1/clients", {"name": "Acme Corp"}, operator)
    assert again.status_code == 200 and again.json()["id"] == acme

    funded = bank.post("/v1/deposits", {"client": acme, "amount": "1000.00", "reference": "NTRY-1"}, operator, key="d1")
    assert funded.status_code == 201, funded.text
    assert funded.json()["dda"] == {"account": f"clients:{acme}:usd:dda", "posted": "1000.00", "available": "1000.00"}
    replayed = bank.post(
        "/v1/deposits", {"client": acme, "amount": "1000.00", "reference": "NTRY-1"}, operator, key="d1"
    )
    assert replayed.json() == funded.json() and replayed.headers["Idempotent-Replayed"] == "true"

    # The client mints for itself: its own id is implied.
    me = bank.key("client", acme)
    minted = bank.post("/v1/tokens/mint", {"amount": "600.00"}, me, key="mint-1")
    op = follow(bank, minted, me)
    assert op["kind"] == "mint" and op["status"] == "received" and op["amounts"] == {"USDD": "600.00"}
    assert op["payload"]["client"] == acme and op["payload"]["amount"] == "60000"
    assert bank.get(f"/v1/clients/{acme}", me).json()["dda"]["available"] == "400.00"  # reserved at once
    again = bank.post("/v1/tokens/mint", {"amount": "600.00"}, me, key="mint-1")
    assert again.status_code == 202 and again.json()["id"] == op["id"]
    assert again.headers["Idempotent-Replayed"] == "true" and again.headers["Location"] == minted.headers["Location"]
    reused = bank.post("/v1/tokens/mint", {"amount": "601.00"}, me, key="mint-1")
    assert reused.status_code == 409 and reused.json()["code"] == "idempotency_key_reused"

    bank.settle()
    done = follow(bank, minted, me)
    assert done["status"] == "succeeded" and done["error"] is None
    assert done["history"][0]["status"] == "received" and done["history"][-1]["status"] == "succeeded"

    paid = bank.post("/v1/tokens/pay", {"payee": globex, "amount": "250.00", "memo": "INV-77"}, me)
    assert paid.status_code == 202, paid.text
    # The one-off scheduled payment runs in the worker's next round, as an operation of its own.
    rule = bank.post("/v1/rules", {"kind": "scheduled", "payee": globex, "amount": "10.00", "memo": "tip"}, me)
    assert rule.status_code == 201 and rule.json()["client"] == acme, rule.text
    redeemed = bank.post("/v1/tokens/redeem", {"client": acme, "amount": "100.00"}, operator)
    assert redeemed.status_code == 202, redeemed.text
    bank.settle()
    assert bank.get(f"/v1/operations/{paid.json()['id']}", me).json()["status"] == "succeeded"
    assert bank.get(f"/v1/rules/{rule.json()['id']}", me).json()["status"] == "completed"
    assert follow(bank, redeemed, operator)["status"] == "succeeded"
    assert bank.get(f"/v1/clients/{acme}", operator).json()["dda"]["posted"] == "500.00"

    holders = bank.get("/v1/tokens/internal/holders", auditor).json()
    by_client = {h["client"]: h for h in holders["data"] if h["client"]}
    assert by_client[acme]["chain"] == by_client[acme]["ledger"] == "240.00"
    assert by_client[globex]["chain"] == by_client[globex]["ledger"] == "260.00"
    assert all(h["agree"] for h in holders["data"]) and holders["symbol"] == "USDD"

    # What the payee sees: the payments to it, by acme and by the rule; not acme's mint.
    theirs = bank.get("/v1/operations", bank.key("client", globex)).json()["data"]
    assert sorted(o["kind"] for o in theirs) == ["pay", "pay"]
    wallets = bank.get(f"/v1/clients/{acme}/wallets", me).json()
    assert [w["network"] for w in wallets["wallets"]] == ["internal"] and wallets["wallets"][0]["allowlisted"]

    run = bank.post("/v1/reconcile", None, auditor)
    assert run.status_code == 201 and run.json()["ok"], run.json()["breaks"]
    assert bank.get("/v1/reconcile/last", auditor).json()["id"] == run.json()["id"]


def test_a_client_key_acts_for_its_own_client_only(bank: Bank):
    operator = bank.key("operator")
    acme, globex = onboard(bank, operator, "Acme"), onboard(bank, operator, "Globex")
    for client in (acme, globex):
        bank.tokens.deposit(client, 50_000, f"fund-{client}")
    theirs = bank.post("/v1/tokens/mint", {"client": globex, "amount": "1.00"}, operator)
    assert theirs.status_code == 202
    me = bank.key("client", acme)
    for ref in (globex, "Globex", "nobody"):
        for path, body in (
            ("/v1/tokens/mint", {"client": ref, "amount": "1.00"}),
            ("/v1/tokens/redeem", {"client": ref, "amount": "1.00"}),
            ("/v1/tokens/move", {"client": ref, "source": "internal", "destination": "base", "amount": "1.00"}),
            ("/v1/tokens/pay", {"payer": ref, "payee": acme, "amount": "1.00", "memo": "x"}),
            ("/v1/rules", {"kind": "sweep", "client": ref, "max": "1.00"}),
        ):
            refused = bank.post(path, body, me)
            assert refused.status_code == 404, (path, refused.text)
            assert refused.json()["code"] == "client_not_found" and refused.json()["detail"] == f"no client {ref!r}"
    for path in (f"/v1/clients/{globex}", f"/v1/clients/{globex}/wallets", f"/v1/operations/{theirs.json()['id']}"):
        hidden = bank.get(path, me)
        assert hidden.status_code == 404 and "Globex" not in hidden.text, (path, hidden.text)
    assert [c["id"] for c in bank.get("/v1/clients", me).json()["data"]] == [acme]
    assert bank.get("/v1/operations", me).json() == {"data": [], "next_cursor": None}
    challenge = bank.post(f"/v1/clients/{globex}/addresses/challenge", {"network": "base"}, me)
    assert challenge.status_code == 404
    # The bank's own decisions are not a client's to make.
    assert bank.post("/v1/tokens/dvp", {}, me).status_code == 403
    assert bank.post(f"/v1/operations/{theirs.json()['id']}/cancel", None, me).status_code == 403
    assert bank.post(f"/v1/clients/{acme}/status", {"status": "active"}, me).status_code == 403
    assert bank.get("/v1/tokens/internal/holders", me).status_code == 403
    # Its own mint goes through, and the bank's roles must name the client.
    assert bank.post("/v1/tokens/mint", {"amount": "1.00"}, me).status_code == 202
    unnamed = bank.post("/v1/tokens/mint", {"amount": "1.00"}, operator)
    assert unnamed.status_code == 422 and unnamed.json()["errors"][0]["location"] == "body.client"


def test_a_suspended_client_is_refused_until_it_is_active_again(bank: Bank):
    operator, compliance = bank.key("operator"), bank.key("compliance")
    acme, globex = onboard(bank, operator, "Acme"), onboard(bank, operator, "Globex")
    bank.tokens.deposit(acme, 10_000, "fund")
    suspended = bank.post(f"/v1/clients/{acme}/status", {"status": "suspended"}, compliance)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    me = bank.key("client", acme)
    for path, body, who in (
        ("/v1/tokens/mint", {"amount": "1.00"}, me),
        ("/v1/deposits", {"client": acme, "amount": "1.00", "reference": "N2"}, operator),
        ("/v1/tokens/pay", {"payer": acme, "payee": globex, "amount": "1.00", "memo": "x"}, operator),
    ):
        refused = bank.post(path, body, who)
        assert refused.status_code == 422 and refused.json()["code"] == "client_not_active", (path, refused.text)
    assert bank.tokens.ops.list() == []
    assert bank.get(f"/v1/clients/{acme}", me).json()["status"] == "suspended"  # it still sees itself
    active = bank.post(f"/v1/clients/{acme}/status", {"status": "active"}, operator)
    assert active.status_code == 200 and active.json()["status"] == "active"
    assert bank.post("/v1/tokens/mint", {"amount": "1.00"}, me).status_code == 202
    unknown = bank.post("/v1/clients/nobody/status", {"status": "suspended"}, compliance)
    assert unknown.status_code == 404 and unknown.json()["code"] == "client_not_found"
    assert bank.post(f"/v1/clients/{acme}/status", {"status": "closed"}, compliance).status_code == 422


def test_a_client_key_learns_nothing_of_another_client_from_a_payee(bank: Bank):
    """A payee that is no client, and one that is suspended, are one refusal to a client key, naming
    nothing; a request that would move nothing is refused for itself before the payee is looked at."""
    operator, compliance = bank.key("operator"), bank.key("compliance")
    acme, globex = onboard(bank, operator, "Acme"), onboard(bank, operator, "Globex")
    initech = onboard(bank, operator, "Initech")
    assert bank.post(f"/v1/clients/{initech}/status", {"status": "suspended"}, compliance).status_code == 200
    bank.tokens.deposit(acme, 10_000, "fund")
    assert bank.post("/v1/tokens/mint", {"client": acme, "amount": "50.00"}, operator).status_code == 202
    bank.settle()
    me = bank.key("client", acme)
    answers = {}
    for payee in ("nobody", initech, "Initech"):
        for path, body in (
            ("/v1/tokens/pay", {"payee": payee, "amount": "1.00", "memo": "x"}),
            ("/v1/rules", {"kind": "scheduled", "payee": payee, "amount": "1.00"}),
        ):
            r = bank.post(path, body, me)
            answers[(payee, path)] = (r.status_code, r.json()["code"], r.json()["detail"])
            assert "Initech" not in r.text and initech not in r.text
    assert set(answers.values()) == {
        (422, "payee_not_payable", "the payee cannot be paid: there is no active client by that reference")
    }
    # Nothing about the request depends on who the payee is: an empty payment is refused as such.
    for payee in ("nobody", globex, initech):
        r = bank.post("/v1/tokens/pay", {"payee": payee, "amount": "0", "memo": "x"}, me)
        assert r.json()["code"] == "amount_must_be_positive", r.text
        r = bank.post("/v1/tokens/pay", {"payee": payee, "amount": "1000.00", "memo": "x"}, me)
        assert r.json()["code"] == "insufficient_funds", r.text
    # The bank's roles get the precise refusal.
    precise = bank.post("/v1/tokens/pay", {"payer": acme, "payee": initech, "amount": "1.00", "memo": "x"}, operator)
    assert (precise.status_code, precise.json()["code"]) == (422, "client_not_active")
    assert [op.kind for op in bank.tokens.ops.list()] == ["mint"]
    assert bank.post("/v1/tokens/pay", {"payee": globex, "amount": "1.00", "memo": "x"}, me).status_code == 202


def test_bad_requests_are_refused_and_record_nothing(bank: Bank):
    operator = bank.key("operator")
    acme, globex = onboard(bank, operator, "Acme"), onboard(bank, operator, "Globex")
    bank.tokens.deposit(acme, 1_000, "fund")
    cases = [
        ({"client": acme, "amount": "1.001"}, 422, "excess_precision"),
        ({"client": acme, "amount": 5}, 422, "invalid_request"),
        ({"client": acme, "amount": "١٢"}, 422, "invalid_request"),
        ({"client": acme, "amount": "0"}, 422, "amount_must_be_positive"),
        ({"client": acme, "amount": "10.01"}, 422, "insufficient_funds"),
        ({"client": acme, "amount": "1.00", "network": "mars"}, 404, "unknown_network"),
        ({"client": acme, "amount": "1.00", "extra": True}, 422, "invalid_request"),
        ({"client": "nobody", "amount": "1.00"}, 404, "client_not_found"),
    ]
    for body, status, code in cases:
        r = bank.post("/v1/tokens/mint", body, operator)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    pays = [
        ({"payer": acme, "payee": acme, "amount": "1.00", "memo": "x"}, "accounts_must_be_different"),
        ({"payer": acme, "payee": globex, "amount": "1.00", "memo": "m" * 33}, "memo_too_long"),
        ({"payer": acme, "payee": globex, "amount": "1.00", "memo": "x"}, "insufficient_funds"),
    ]
    for body, code in pays:
        r = bank.post("/v1/tokens/pay", body, operator)
        assert (r.status_code, r.json()["code"]) == (422, code), (body, r.text)
    dvp = {"buyer": acme, "seller": globex, "cash": "1.00", "shares": "1.0000001"}
    assert bank.post("/v1/tokens/dvp", dvp, operator).json()["code"] == "excess_precision"
    moved = bank.post(
        "/v1/tokens/move", {"client": acme, "source": "internal", "destination": "internal", "amount": "1.00"}, operator
    )
    assert moved.json()["code"] == "same_network"
    stray = bank.post("/v1/tokens/return-stray", {"receiver": "0xnope", "amount": "1.00"}, operator)
    assert stray.status_code == 422 and stray.json()["code"] == "invalid_address"
    assert bank.tokens.ops.list() == []
    assert bank.get("/v1/tokens/mars/holders", operator).status_code == 404
    assert bank.get("/v1/tokens/internal/holders", operator, token="gold").status_code == 422


def test_fund_shares_and_a_dvp_over_http(bank: Bank):
    operator = bank.key("operator")
    buyer, seller = onboard(bank, operator, "Buyer"), onboard(bank, operator, "Seller")
    bank.tokens.deposit(buyer, 50_000, "fund")
    issued = bank.post("/v1/tokens/issue-shares", {"client": seller, "shares": "2.5"}, operator)
    assert issued.status_code == 202 and issued.json()["amounts"] == {"MMF": "2.500000"}, issued.text
    minted = bank.post("/v1/tokens/mint", {"client": buyer, "amount": "300.00"}, operator)
    assert minted.status_code == 202
    bank.settle()
    trade = bank.post("/v1/tokens/dvp", {"buyer": buyer, "seller": seller, "cash": "200.00", "shares": "1.5"}, operator)
    assert trade.status_code == 202 and trade.json()["amounts"] == {"USDD": "200.00", "MMF": "1.500000"}, trade.text
    bank.settle()
    assert follow(bank, trade, operator)["status"] == "succeeded"
    shares = bank.get("/v1/tokens/internal/holders", operator, token="mmf_share").json()
    held = {h["client"]: h["ledger"] for h in shares["data"] if h["client"]}
    assert held == {buyer: "1.500000", seller: "1.000000"} and shares["symbol"] == "MMF"
    assert reconcile(bank.ctx).breaks == []


def test_many_mints_in_one_request_are_accepted_or_refused_one_by_one(bank: Bank):
    operator = bank.key("operator")
    acme, globex = bank.tokens.onboard("Acme").id, bank.tokens.onboard("Globex").id
    bank.tokens.deposit(acme, 100_000, "fund-acme")
    bank.tokens.deposit(globex, 5_000, "fund-globex")
    mints = [
        {"client": acme, "amount": "300.00"},
        {"client": globex, "amount": "60.00"},  # more than Globex holds: refused, nothing recorded
        {"client": acme, "amount": "200.00", "key": "acme-own-key"},
        {"client": globex, "amount": "50.00"},
    ]
    batch = bank.post("/v1/tokens/mints/batch", {"mints": mints}, operator, key="batch-1")
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert (body["accepted"], body["refused"]) == (3, 1)
    assert body["results"][1]["error"]["code"] == "insufficient_funds" and body["results"][1]["operation"] is None
    ids = [r["operation"]["id"] for r in body["results"] if r["operation"]]
    available = {c: bank.tokens.ledger.account(f"clients:{c}:usd:dda").available for c in (acme, globex)}
    assert available == {acme: 50_000, globex: 0}  # reserved at once
    again = bank.post("/v1/tokens/mints/batch", {"mints": mints}, operator, key="batch-1")
    assert again.json() == body and again.headers["Idempotent-Replayed"] == "true"
    # An item's own key names its mint across batches.
    other = bank.post("/v1/tokens/mints/batch", {"mints": [mints[2]]}, operator, key="batch-2")
    assert other.json()["results"][0]["operation"]["id"] == body["results"][2]["operation"]["id"]
    too_many = bank.post("/v1/tokens/mints/batch", {"mints": [mints[0]] * 1001}, operator, key="batch-3")
    assert too_many.status_code == 422
    bank.settle()
    assert all(bank.tokens.ops.get(op_id).status.value == "succeeded" for op_id in ids)
    assert bank.tokens.dda_balance(acme) == 50_000 and bank.tokens.dda_balance(globex) == 0


def test_many_redemptions_in_one_request_are_accepted_or_refused_one_by_one(bank: Bank):
    operator, compliance = bank.key("operator"), bank.key("compliance")
    acme, globex = bank.tokens.onboard("Acme").id, bank.tokens.onboard("Globex").id
    for client in (acme, globex):
        bank.tokens.deposit(client, 100_000, f"fund-{client}")
        bank.tokens.mint(client, "internal", 10_000, f"mint-{client}")
    bank.settle()
    initech = bank.tokens.onboard("Initech").id
    assert bank.post(f"/v1/clients/{initech}/status", {"status": "suspended"}, compliance).status_code == 200
    redemptions = [
        {"client": acme, "amount": "30.00"},
        {"client": globex, "amount": "100.00"},  # all it holds
        {"client": acme, "amount": "80.00"},  # with the 30.00 above: more than 100
        {"client": initech, "amount": "1.00"},  # suspended: refused
        {"client": acme, "amount": "0.00"},  # nothing: refused
        {"client": acme, "amount": "70.00", "key": "acme-own"},  # the rest of what it holds
    ]
    batch = bank.post("/v1/tokens/redemptions/batch", {"redemptions": redemptions}, operator, key="redeem-1")
    assert batch.status_code == 200, batch.text
    body = batch.json()
    codes = [r["error"]["code"] if r["error"] else None for r in body["results"]]
    assert codes == [None, None, "insufficient_funds", "client_not_active", "amount_must_be_positive", None]
    assert "taken by earlier items of this batch" in body["results"][2]["error"]["message"]
    assert (body["accepted"], body["refused"]) == (3, 3)
    assert [r["operation"]["kind"] for r in body["results"] if r["operation"]] == ["redeem"] * 3
    again = bank.post("/v1/tokens/redemptions/batch", {"redemptions": redemptions}, operator, key="redeem-1")
    assert again.json() == body and again.headers["Idempotent-Replayed"] == "true"
    mine = bank.post("/v1/tokens/redeem", {"client": acme, "amount": "70.00"}, operator, key="acme-own")
    assert mine.json()["id"] == body["results"][5]["operation"]["id"]  # an item's own key is a redemption's key
    # Reserved at once: nothing more can leave the holders.
    late = bank.post("/v1/tokens/redeem", {"client": acme, "amount": "0.01"}, operator)
    assert late.status_code == 422 and late.json()["code"] == "insufficient_funds"
    # A client key redeems for its own client only.
    me = bank.key("client", acme)
    theirs = bank.post("/v1/tokens/redemptions/batch", {"redemptions": [{"client": globex, "amount": "1.00"}]}, me)
    assert theirs.status_code == 404 and theirs.json()["code"] == "client_not_found"
    too_many = bank.post("/v1/tokens/redemptions/batch", {"redemptions": [redemptions[0]] * 1001}, operator)
    assert too_many.status_code == 422
    bank.settle()
    ids = [r["operation"]["id"] for r in body["results"] if r["operation"]]
    assert all(bank.tokens.ops.get(op_id).status.value == "succeeded" for op_id in ids)
    assert bank.tokens.dda_balance(acme) == 100_000 and bank.tokens.dda_balance(globex) == 100_000
    holders = bank.get("/v1/tokens/internal/holders", operator).json()["data"]
    assert {h["client"]: h["ledger"] for h in holders if h["client"] in (acme, globex)} == {
        acme: "0.00",
        globex: "0.00",
    }
    assert reconcile(bank.ctx).breaks == []


def test_many_payments_in_one_request_are_accepted_or_refused_one_by_one(bank: Bank):
    operator, compliance = bank.key("operator"), bank.key("compliance")
    acme, globex = bank.tokens.onboard("Acme").id, bank.tokens.onboard("Globex").id
    initech = bank.tokens.onboard("Initech").id
    for client in (acme, globex):
        bank.tokens.deposit(client, 100_000, f"fund-{client}")
        bank.tokens.mint(client, "internal", 10_000, f"mint-{client}")
    bank.settle()
    assert bank.post(f"/v1/clients/{initech}/status", {"status": "suspended"}, compliance).status_code == 200
    payments = [
        {"payer": acme, "payee": globex, "amount": "10.00", "memo": "invoice 1"},
        {"payer": globex, "payee": acme, "amount": "5.00", "memo": "invoice 2"},  # the other way: no deadlock
        {"payer": acme, "payee": initech, "amount": "1.00", "memo": "x"},  # a suspended payee: refused
        {"payer": acme, "payee": acme, "amount": "1.00", "memo": "x"},  # to itself: refused
        {"payer": globex, "payee": acme, "amount": "500.00", "memo": "x"},  # more than it holds: refused
        {"payer": acme, "payee": globex, "amount": "2.00", "memo": "invoice 3", "key": "acme-invoice-3"},
        {"payer": globex, "payee": acme, "amount": "96.00", "memo": "x"},  # with the 5.00 above: more than 100
    ]
    batch = bank.post("/v1/tokens/payments/batch", {"payments": payments}, operator, key="pays-1")
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert (body["accepted"], body["refused"]) == (3, 4)
    codes = [r["error"]["code"] if r["error"] else None for r in body["results"]]
    assert codes == [None, None, "client_not_active", "accounts_must_be_different", "insufficient_funds", None,
                     "insufficient_funds"]  # fmt: skip
    assert "taken by earlier items of this batch" in body["results"][6]["error"]["message"]
    again = bank.post("/v1/tokens/payments/batch", {"payments": payments}, operator, key="pays-1")
    assert again.json() == body and again.headers["Idempotent-Replayed"] == "true"
    mine = bank.post("/v1/tokens/pay", {"payer": acme, "payee": globex, "amount": "2.00", "memo": "invoice 3"},
                     operator, key="acme-invoice-3")  # fmt: skip
    assert mine.json()["id"] == body["results"][5]["operation"]["id"]  # an item's own key is a payment's key
    # A client key pays from its own client only, and learns nothing of a payee it cannot pay.
    me = bank.key("client", acme)
    hidden = bank.post(
        "/v1/tokens/payments/batch",
        {
            "payments": [
                {"payee": initech, "amount": "1.00", "memo": "x"},
                {"payee": globex, "amount": "1.00", "memo": "y"},
            ]
        },
        me,
    )
    results = hidden.json()["results"]
    assert results[0]["error"]["code"] == "payee_not_payable" and initech not in hidden.text
    assert results[1]["operation"]["status"] == "received"
    stolen = bank.post("/v1/tokens/payments/batch", {"payments": [{**payments[1], "key": "k"}]}, me)
    assert stolen.status_code in (403, 404, 422) and stolen.json()["code"] != "received"
    bank.settle()
    ids = [r["operation"]["id"] for r in body["results"] if r["operation"]] + [results[1]["operation"]["id"]]
    assert all(bank.tokens.ops.get(op_id).status.value == "succeeded" for op_id in ids)
    holders = bank.get("/v1/tokens/internal/holders", operator).json()["data"]
    held = {h["client"]: h["ledger"] for h in holders if h["client"] in (acme, globex)}
    assert held == {acme: "92.00", globex: "108.00"}  # 100 each; acme paid 10, 2 and 1, and received 5
    assert reconcile(bank.ctx).breaks == []
