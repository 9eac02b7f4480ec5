"""/v1/compliance over HTTP: who may act, KYC, the list and its hits, the case queue, lawful orders,
credit notices, and the audit log that every bank write lands in."""

from __future__ import annotations

from andchain.tokens.model import dda_account
from tests.api.conftest import Bank
from tests.compliance.camt import Credit, camt054
from tests.compliance.sdn import Listed, write_list


def test_compliance_acts_readers_read_and_clients_see_nothing(bank: Bank):
    officer, auditor, operator = bank.key("compliance"), bank.key("auditor"), bank.key("operator")
    acme = bank.tokens.onboard("Acme").id
    me = bank.key("client", acme)
    changed = bank.post(f"/v1/compliance/parties/{acme}/kyc", {"tier": "basic", "reason": "small"}, officer)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["tier"], changed.json()["kyc_status"]) == ("basic", "approved")
    assert bank.post(f"/v1/compliance/parties/{acme}/kyc", {"tier": "enhanced"}, operator).status_code == 403
    assert bank.post(f"/v1/compliance/parties/{acme}/kyc", {"tier": "enhanced"}, me).status_code == 403
    assert bank.get(f"/v1/compliance/parties/{acme}", me).status_code == 403
    assert bank.get(f"/v1/compliance/parties/{acme}", auditor).json()["tier"] == "basic"
    refused = bank.post(f"/v1/compliance/parties/{acme}/kyc", {"status": "great"}, officer)
    assert refused.status_code == 422
    unknown = bank.post(f"/v1/compliance/parties/{acme}/kyc", {"tier": "platinum"}, officer)
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_tier")
    assert bank.get("/v1/compliance/parties/nobody", auditor).json()["code"] == "client_not_found"
    # The client's own request is not an operator action; the officer's are in the audit log.
    audited = bank.get("/v1/compliance/audit", auditor).json()["entries"]
    actions = [e["action"] for e in audited]
    assert "kyc.changed" in actions and "api POST /v1/compliance/parties/{client}/kyc" in actions
    assert not any(e["actor"].endswith(me["Authorization"][-6:]) for e in audited)
    verified = bank.get("/v1/compliance/audit/verify", auditor).json()
    assert verified["ok"] is True and verified["entries"] == len(audited)


def test_a_hit_is_refused_alerted_assigned_and_closed_over_http(bank: Bank, tmp_path):
    officer = bank.key("compliance")
    path = write_list(tmp_path / "sdn", [Listed("7", "HELIX MIXER SERVICE", addresses=(("ETH", "0x" + "ab" * 20),))])
    assert bank.post("/v1/compliance/sanctions/lists", {"path": "/etc"}, officer).status_code == 422  # no path
    bank.ctx.settings.compliance.sanctions_list_path = path
    loaded = bank.post("/v1/compliance/sanctions/lists", {}, officer)
    assert loaded.status_code == 200, loaded.text
    assert (loaded.json()["version"], loaded.json()["added"]) == (1, 1)
    hit = bank.post("/v1/clients", {"name": "Helix Mixer Service", "kind": "legal"}, bank.key("operator"))
    assert (hit.status_code, hit.json()["code"]) == (422, "sanctions_hit")
    alerts = bank.get("/v1/compliance/alerts", officer, status="open").json()["alerts"]
    assert [a["rule"] for a in alerts] == ["sanctions_name"]
    alert = alerts[0]["id"]
    assigned = bank.post(f"/v1/compliance/alerts/{alert}/assign", {"assignee": "ann"}, officer)
    assert assigned.json()["status"] == "assigned"
    no_reason = bank.post(f"/v1/compliance/alerts/{alert}/close", {"reason": "", "resolution": "no_action"}, officer)
    assert no_reason.status_code == 422
    closed = bank.post(
        f"/v1/compliance/alerts/{alert}/close",
        {"reason": "the same mixer; SAR filed", "resolution": "reported"},
        officer,
    )
    assert (closed.json()["status"], [h["action"] for h in closed.json()["history"]]) == (
        "closed",
        ["opened", "assigned", "closed"],
    )
    again = bank.post(f"/v1/compliance/alerts/{alert}/notes", {"note": "late"}, officer)
    assert (again.status_code, again.json()["code"]) == (409, "alert_closed")
    assert bank.get("/v1/compliance/alerts/nope", officer).status_code == 404


def test_a_credit_notice_funds_and_a_freeze_order_blocks_over_http(bank: Bank):
    officer, operator = bank.key("compliance"), bank.key("operator")
    acme = bank.tokens.onboard("Acme").id
    notice = camt054("MSG-HTTP-1", [Credit("BK-H1", "120.00", acme, end_to_end_id="E2E-H1")])
    booked = bank.post("/v1/compliance/credit-notices", {"camt054": notice.decode()}, operator)
    assert booked.status_code == 200, booked.text
    assert [c["status"] for c in booked.json()["credits"]] == ["booked"]
    assert bank.tokens.ledger.account(dda_account(acme)).balance_posted == 12_000
    bad = bank.post("/v1/compliance/credit-notices", {"camt054": "<nope/>"}, operator)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_message")
    order = bank.post(
        "/v1/compliance/orders", {"kind": "freeze", "client": acme, "reference": "ORD-1", "authority": "OFAC"}, officer
    )
    assert order.status_code == 201, order.text
    assert order.json()["operation"] is None  # no address on any network yet: the ledger alone
    assert bank.get(f"/v1/compliance/parties/{acme}", officer).json()["frozen_order"] == "ORD-1"
    blocked = bank.post("/v1/tokens/mint", {"client": acme, "network": "internal", "amount": "1.00"}, operator)
    assert (blocked.status_code, blocked.json()["code"]) == (422, "party_frozen")
    twice = bank.post(
        "/v1/compliance/orders", {"kind": "freeze", "client": acme, "reference": "ORD-2", "authority": "OFAC"}, officer
    )
    assert (twice.status_code, twice.json()["code"]) == (409, "already_frozen")
    seized = bank.post(
        "/v1/compliance/orders", {"kind": "seize", "client": acme, "reference": "ORD-1", "authority": "OFAC"}, officer
    )
    assert seized.json()["details"]["deposit_seized_minor"] == 12_000
    assert bank.tokens.ledger.account(dda_account(acme)).balance_posted == 0
    reserved = bank.post(
        "/v1/transfers",
        {"debit_account": dda_account(acme), "credit_account": "bank:usd:cash", "amount": "1.00", "asset": "USD",
         "code": "seize"},
        bank.key("admin"),
    )  # fmt: skip
    assert reserved.status_code == 422  # only a lawful order seizes
    listed = bank.get("/v1/compliance/orders", officer, client=acme).json()["orders"]
    assert [o["kind"] for o in listed] == ["seize", "freeze"]
    assert (
        bank.post(
            "/v1/compliance/orders", {"kind": "seize", "client": acme, "reference": "X", "authority": "Y"}, operator
        ).status_code
        == 403
    )
