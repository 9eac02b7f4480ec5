"""/v1/rules over HTTP: schedule, sweep, list, cancel; a client's rules are its own."""

from __future__ import annotations

from tests.api.conftest import Bank


def test_rules_are_made_listed_and_cancelled_by_their_client(bank: Bank):
    operator = bank.key("operator")
    acme, globex = bank.tokens.onboard("Acme").id, bank.tokens.onboard("Globex").id
    me = bank.key("client", acme)
    monthly = bank.post(
        "/v1/rules",
        {"kind": "scheduled", "payee": globex, "amount": "99.50", "memo": "rent", "in_s": 3600, "every_s": 30 * 86_400},
        me,
        key="rent",
    )
    assert monthly.status_code == 201, monthly.text
    rule = monthly.json()
    assert (rule["client"], rule["kind"], rule["payee"], rule["amount"], rule["every_s"]) == (
        acme,
        "scheduled",
        globex,
        "99.50",
        2_592_000,
    )
    assert rule["status"] == "active" and rule["runs"] == 0 and rule["next_run_at"]
    again = bank.post(
        "/v1/rules",
        {"kind": "scheduled", "payee": globex, "amount": "99.50", "memo": "rent", "in_s": 3600, "every_s": 30 * 86_400},
        me,
        key="rent",
    )
    assert again.json()["id"] == rule["id"] and again.headers["Idempotent-Replayed"] == "true"
    sweep = bank.post("/v1/rules", {"kind": "sweep", "max": "500.00"}, me)
    assert sweep.status_code == 201 and sweep.json()["max"] == "500.00" and sweep.json()["payee"] is None
    theirs = bank.post("/v1/rules", {"kind": "sweep", "client": globex, "max": "1.00"}, operator).json()

    mine = bank.get("/v1/rules", me).json()
    assert [r["id"] for r in mine["data"]] == [rule["id"], sweep.json()["id"]]
    page = bank.get("/v1/rules", bank.key("auditor"), limit=2).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    last = bank.get("/v1/rules", bank.key("auditor"), limit=2, cursor=page["next_cursor"]).json()
    assert [r["id"] for r in last["data"]] == [theirs["id"]] and last["next_cursor"] is None
    assert [r["id"] for r in bank.get("/v1/rules", operator, client=globex).json()["data"]] == [theirs["id"]]
    for hidden in (
        bank.get(f"/v1/rules/{theirs['id']}", me),
        bank.post(f"/v1/rules/{theirs['id']}/cancel", None, me),
        bank.get("/v1/rules", me, client=globex),
    ):
        assert hidden.status_code == 404, hidden.text
    assert bank.get(f"/v1/rules/{theirs['id']}", operator).json()["status"] == "active"

    cancelled = bank.post(f"/v1/rules/{rule['id']}/cancel", None, me)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    twice = bank.post(f"/v1/rules/{rule['id']}/cancel", None, me)
    assert twice.status_code == 422 and twice.json()["code"] == "rule_not_active"


def test_invalid_rules_are_refused(bank: Bank):
    operator = bank.key("operator")
    acme, globex = bank.tokens.onboard("Acme").id, bank.tokens.onboard("Globex").id
    base = {"kind": "scheduled", "client": acme, "payee": globex, "amount": "1.00"}
    for body, status, code in (
        ({**base, "payee": acme}, 422, "invalid_rule"),
        ({**base, "every_s": 5}, 422, "invalid_rule"),
        ({**base, "memo": "m" * 33}, 422, "invalid_rule"),
        ({**base, "amount": "0"}, 422, "invalid_rule"),
        ({**base, "network": "mars"}, 404, "unknown_network"),
        ({**base, "in_s": -1}, 422, "invalid_request"),
        ({**base, "payee": "nobody"}, 404, "client_not_found"),
        ({k: v for k, v in base.items() if k != "client"}, 422, "invalid_request"),
        ({**base, "kind": "monthly"}, 422, "invalid_request"),
        ({**base, "kind": "sweep"}, 422, "invalid_request"),
    ):
        r = bank.post("/v1/rules", body, operator)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    assert bank.post("/v1/rules", {"kind": "sweep", "client": acme, "max": "-1"}, operator).status_code == 422
    assert bank.get("/v1/rules", operator).json()["data"] == []
    assert bank.get("/v1/rules/nope", operator).json()["code"] == "rule_not_found"


def test_a_rule_whose_answer_was_lost_is_made_once(bank: Bank, monkeypatch):
    """The rule and the stored answer commit together: a failure after the rule was written leaves
    neither, and the retry under the same key makes the one rule (a standing payment made twice
    would pay twice, every time it runs)."""
    import andchain.api.routers.rules as rules_router

    operator = bank.key("operator")
    acme, globex = bank.tokens.onboard("Acme").id, bank.tokens.onboard("Globex").id
    body = {"kind": "scheduled", "client": acme, "payee": globex, "amount": "5.00", "every_s": 86_400}
    real = rules_router.rule_view
    calls = {"n": 0}

    def fails_once(rule):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the process failed after writing the rule")
        return real(rule)

    monkeypatch.setattr(rules_router, "rule_view", fails_once)
    lost = bank.post("/v1/rules", body, operator, key="standing")
    assert lost.status_code == 500
    assert bank.get("/v1/rules", operator).json()["data"] == []
    made = bank.post("/v1/rules", body, operator, key="standing")
    assert made.status_code == 201, made.text
    again = bank.post("/v1/rules", body, operator, key="standing")
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == made.json()
    assert [r["id"] for r in bank.get("/v1/rules", operator).json()["data"]] == [made.json()["id"]]
