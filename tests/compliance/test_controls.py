"""Compliance's controls on both engines: KYC and tiers, sanctions screening with alerts, the monitoring
rules, the case queue, the travel rule, and the hash-chained audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from andchain.compliance import audit
from andchain.compliance import schema as t
from andchain.compliance.service import Compliance, SanctionsHit
from andchain.config import Settings
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError
from andchain.ledger import Ledger
from andchain.money import Asset
from andchain.tokens.clients import Clients
from tests.compliance.sdn import Listed, write_list

ZAKHAROV_ETH = "0x7F3a9b2C4d5E6f708192A3b4C5d6E7f8091a2B3c"
MIXER_XBT = "3Jq8sWnT4hJkRcYm2Vb7Nx9Qp5Lz6Ad1Ef"
LISTED = [
    Listed("100", "ZAKHAROV, Pavel Igorevich", "individual", (("ETH", ZAKHAROV_ETH),), ("ZAHAROV, Pavel",)),
    Listed(
        "101", "NORTHWIND DIGITAL EXCHANGE LLC", addresses=(("USDC", "0x2b5e8f1a9c3d7e6b4a0f1e2d3c4b5a6978695a4b"),)
    ),
    Listed("102", "HELIX MIXER SERVICE", addresses=(("XBT", MIXER_XBT),)),
]
DAY_S = 86_400


@pytest.fixture
def world(engine, clock, tmp_path):
    settings = Settings(data_dir=tmp_path)
    ledger = Ledger(engine, clock=clock)
    ledger.register_assets([Asset("MMF", 6)])
    clients = Clients(engine, ledger, None, settings, clock, ledger.ids)  # type: ignore[arg-type]
    return clients, clients.compliance, tmp_path


def load(compliance: Compliance, directory: Path, parties: list[Listed] = LISTED) -> dict:
    return compliance.load_list(write_list(directory, parties), by="test")


def alerts(compliance: Compliance, **kw) -> list:
    return compliance.alerts(**kw)


def admit(compliance: Compliance, client: str, flow: str, amount: int, ref: str, **kw) -> None:
    with write_transaction(compliance.engine) as conn:
        compliance.admit(conn, client, flow, amount, ref, **kw)


def day_totals(compliance: Compliance, client: str) -> list[tuple[int, int]]:
    """The party's day totals (out, cash), oldest first: what the limits read in one row."""
    d = t.party_days
    with compliance.engine.connect() as conn:
        rows = conn.execute(
            select(d.c.out_usd_minor, d.c.cash_usd_minor).where(d.c.client_id == client).order_by(d.c.day)
        ).all()
    return [(int(o), int(c)) for o, c in rows]


def activity_count(compliance: Compliance) -> int:
    with compliance.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.activity)).scalar_one())


# ------------------------------------------------------------------- KYC and tiers


def test_an_onboarded_client_is_a_party_approved_at_the_default_tier_and_the_onboarding_is_audited(world):
    clients, compliance, _ = world
    client = clients.onboard("Acme Corp", by="cli:ops")
    party = compliance.party(client.id)
    assert (party.kyc_status, party.tier, party.frozen) == ("approved", "standard", False)
    entries = audit.entries(compliance.engine)
    assert [(e.actor, e.action, e.subject) for e in entries] == [("cli:ops", "client.onboarded", f"client:{client.id}")]
    clients.onboard("Acme Corp")  # the same client again: nothing new
    assert audit.count(compliance.engine) == 1


def test_a_party_not_approved_moves_nothing_until_the_bank_approves_it(world):
    clients, compliance, _ = world
    compliance.cs.onboarding_kyc_status = "pending"
    client = clients.onboard("New Customer", kind="natural").id
    with pytest.raises(DomainError) as caught:
        admit(compliance, client, "mint", 100, "mint:1")
    assert caught.value.code == "kyc_pending"
    admit(compliance, client, "deposit", 100, "deposit:1", direction="in", cash=True, limits=False)  # money in is held
    for status, code in (("rejected", "kyc_rejected"), ("suspended", "kyc_suspended")):
        compliance.set_kyc(client, status=status, reason="review", by="compliance:ann")
        with pytest.raises(DomainError) as caught:
            admit(compliance, client, "payment", 100, f"pay:{status}")
        assert caught.value.code == code
    compliance.set_kyc(client, status="approved", tier="basic", country="US", reason="documents checked", by="ann")
    admit(compliance, client, "mint", 100, "mint:2")
    assert activity_count(compliance) == 2
    actions = [e.action for e in audit.entries(compliance.engine)]
    assert actions.count("kyc.changed") == 3


def test_kyc_decisions_refuse_what_is_not_a_status_a_tier_or_a_country(world):
    clients, compliance, _ = world
    client = clients.onboard("Acme").id
    for kw, code in (
        ({"status": "great"}, "invalid_kyc_status"),
        ({"tier": "platinum"}, "unknown_tier"),
        ({"country": "usa"}, "invalid_request"),
        ({}, "invalid_request"),
    ):
        with pytest.raises(DomainError) as caught:
            compliance.set_kyc(client, by="x", **kw)
        assert caught.value.code == code
    assert compliance.party(client).tier == "standard"


def test_each_tier_limits_a_transfer_and_a_day_and_a_refusal_records_nothing(world, clock):
    clients, compliance, _ = world
    client = clients.onboard("Small Shop").id
    compliance.set_kyc(client, tier="basic", by="x")  # 10,000.00 a transfer, 25,000.00 a day
    with pytest.raises(DomainError) as caught:
        admit(compliance, client, "payment", 1_000_001, "pay:big")
    assert (caught.value.code, caught.value.details["limit"]) == ("limit_exceeded", "per_transfer")
    admit(compliance, client, "payment", 1_000_000, "pay:1")
    admit(compliance, client, "withdrawal", 1_000_000, "wd:1")
    admit(compliance, client, "deposit", 9_000_000, "in:1", direction="in", limits=False)  # what arrives is not limited
    with pytest.raises(DomainError) as caught:
        admit(compliance, client, "mint", 500_001, "mint:over")
    assert (caught.value.code, caught.value.details["limit"]) == ("limit_exceeded", "per_day")
    assert activity_count(compliance) == 3
    admit(compliance, client, "mint", 500_000, "mint:exact")  # exactly the day's room
    assert day_totals(compliance, client) == [(2_500_000, 0)]  # what left it; no cash moved
    clock.advance(DAY_S)  # a new UTC day
    admit(compliance, client, "mint", 1_000_000, "mint:tomorrow")
    assert day_totals(compliance, client) == [(2_500_000, 0), (1_000_000, 0)]  # each day on its own row
    compliance.set_kyc(client, tier="enhanced", by="x")
    admit(compliance, client, "payment", 5_000_000, "pay:enhanced")


# ------------------------------------------------------------------ screening


def test_a_sanctioned_name_is_refused_at_onboarding_with_one_alert_and_nothing_onboarded(world):
    clients, compliance, tmp = world
    load(compliance, tmp / "list")
    for name in ("Pavel Zakharov", "ZAKHAROV Pavel Igorevich", "Pavel Zaharov"):
        with pytest.raises(SanctionsHit) as caught:
            clients.onboard(name, kind="natural")
        assert caught.value.code == "sanctions_hit"
    assert clients.clients() == []
    found = alerts(compliance, rule="sanctions_name")
    assert {a.subject for a in found} == {"Pavel Zakharov", "ZAKHAROV Pavel Igorevich", "Pavel Zaharov"}
    assert {a.details["uid"] for a in found} == {"100"}
    with pytest.raises(SanctionsHit):
        clients.onboard("Pavel Zakharov", kind="natural")  # the same hit again: the same alert
    assert len(alerts(compliance, rule="sanctions_name")) == 3
    assert clients.onboard("Pavel Zakharian Bakery").name == "Pavel Zakharian Bakery"  # not close enough


def test_a_hit_closed_as_a_false_positive_is_cleared_until_the_listed_entry_changes(world):
    clients, compliance, tmp = world
    load(compliance, tmp / "v1")
    with pytest.raises(SanctionsHit):
        clients.onboard("Northwind Digital Exchange LLC")
    (alert,) = alerts(compliance)
    with pytest.raises(DomainError) as caught:
        compliance.close(alert.id, "   ", "false_positive", by="ann")
    assert caught.value.code == "reason_required"
    compliance.close(alert.id, "another company, registered in Ohio; documents on file", "false_positive", by="ann")
    client = clients.onboard("Northwind Digital Exchange LLC")
    assert client.name == "Northwind Digital Exchange LLC"
    changed = [*LISTED[:1], Listed("101", "NORTHWIND DIGITAL EXCHANGE LLC", program="SDGT"), *LISTED[2:]]
    summary = load(compliance, tmp / "v2", changed)
    assert (summary["changed"], summary["added"], summary["removed"]) == (1, 0, 0)
    assert summary["rescreen_hits"] == 1  # the changed entry screens the client again
    with pytest.raises(SanctionsHit):
        compliance.screen_party(client.id, flow="payment")


def test_addresses_match_exactly_on_their_own_chain(world):
    _, compliance, tmp = world
    load(compliance, tmp / "list")
    for network in ("internal", "base", "ethereum"):  # an EVM address is the same key on every EVM network
        with pytest.raises(SanctionsHit):
            compliance.screen_address(network, ZAKHAROV_ETH.lower(), flow="move")
    with pytest.raises(SanctionsHit):
        compliance.screen_address("base", "0x2B5E8F1A9C3D7E6B4A0F1E2D3C4B5A6978695A4B", flow="withdrawal")
    with pytest.raises(SanctionsHit):
        compliance.screen_address("bitcoin", MIXER_XBT, flow="withdrawal")
    compliance.screen_address("bitcoin", MIXER_XBT.lower(), flow="withdrawal")  # base58 is case-sensitive
    compliance.screen_address("bitcoin", ZAKHAROV_ETH, flow="withdrawal")  # an EVM address is not a Bitcoin one
    compliance.screen_address("base", ZAKHAROV_ETH[:-1] + "d", flow="move")  # one character off: no hit
    assert {a.rule for a in alerts(compliance)} == {"sanctions_address"}


def test_a_list_update_diffs_by_content_not_order_and_screens_known_parties_again(world):
    clients, compliance, tmp = world
    first = load(compliance, tmp / "v1")
    assert (first["version"], first["added"]) == (1, 3)
    again = load(compliance, tmp / "v2", list(reversed(LISTED)))
    assert again["unchanged"] is True and again["version"] == 1
    client = clients.onboard("Quiet Hollow Trading Co.").id
    added = [*LISTED, Listed("103", "QUIET HOLLOW TRADING CO.", program="IRAN")]
    update = load(compliance, tmp / "v3", added)
    assert (update["version"], update["added"], update["removed"], update["changed"]) == (2, 1, 0, 0)
    assert update["rescreen_hits"] == 1
    (hit,) = alerts(compliance, client_id=client)
    assert (hit.rule, hit.details["uid"], hit.details["flow"]) == ("sanctions_name", "103", "rescreen")
    removed = load(compliance, tmp / "v4", LISTED[:1])
    assert (removed["removed"], removed["version"]) == (3, 3)
    compliance.screen_address("base", LISTED[1].addresses[0][1], flow="move")  # delisted: no hit now
    with compliance.engine.connect() as conn:
        versions = conn.execute(select(t.sanctions_lists.c.version).order_by(t.sanctions_lists.c.version)).scalars()
        assert list(versions) == [1, 2, 3]


def test_a_malformed_or_missing_list_is_refused_and_the_loaded_one_stays(world):
    _, compliance, tmp = world
    load(compliance, tmp / "good")
    with pytest.raises(DomainError) as caught:
        compliance.load_list(tmp / "nowhere", by="x")
    assert caught.value.code == "invalid_sanctions_list"
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "sdn.csv").write_text('1,"ONLY TWO COLUMNS"\n')
    (bad / "alt.csv").write_text("")
    with pytest.raises(DomainError) as caught:
        compliance.load_list(bad, by="x")
    assert caught.value.code == "invalid_sanctions_list"
    with pytest.raises(DomainError) as caught:
        compliance.load_list(None, by="x")
    assert caught.value.code == "sanctions_list_missing"
    assert compliance.list_version() == 1
    with pytest.raises(SanctionsHit):
        compliance.screen_name("Helix Mixer Service", flow="credit")


# ------------------------------------------------------------------ monitoring


def test_cash_over_ten_thousand_a_day_opens_one_alert(world):
    clients, compliance, _ = world
    client = clients.onboard("Cash Business").id
    admit(compliance, client, "deposit", 600_000, "d1", direction="in", cash=True, limits=False)
    admit(compliance, client, "payment", 900_000, "p1")  # not cash
    assert alerts(compliance, rule="cash_aggregate") == []
    admit(compliance, client, "deposit", 400_001, "d2", direction="in", cash=True, limits=False)
    admit(compliance, client, "deposit", 100, "d3", direction="in", cash=True, limits=False)
    (alert,) = alerts(compliance, rule="cash_aggregate")
    assert alert.details["cash_today_usd"] == "10000.01"


def test_several_cash_deposits_just_below_the_threshold_in_a_day_are_structuring(world, clock):
    clients, compliance, _ = world
    client = clients.onboard("Smurf").id
    for i, amount in enumerate((950_000, 920_000)):
        admit(compliance, client, "deposit", amount, f"d{i}", direction="in", cash=True, limits=False)
        clock.advance(3 * 3600)
    assert alerts(compliance, rule="structuring") == []
    admit(compliance, client, "deposit", 990_000, "d3", direction="in", cash=True, limits=False)
    (alert,) = alerts(compliance, rule="structuring")
    assert (alert.details["transactions"], alert.details["total_usd"]) == (3, "28600.00")
    other = clients.onboard("Spread Out").id
    for i in range(3):  # the same amounts a day and more apart: no pattern
        admit(compliance, other, "deposit", 950_000, f"o{i}", direction="in", cash=True, limits=False)
        clock.advance(DAY_S + 1)
    assert alerts(compliance, rule="structuring", client_id=other) == []


def test_velocity_and_dormant_reactivation_open_alerts(world, clock):
    clients, compliance, _ = world
    compliance.cs.monitoring.velocity_count_max = 3
    client = clients.onboard("Busy").id
    for i in range(4):
        admit(compliance, client, "payment", 100, f"p{i}")
    (fast,) = alerts(compliance, rule="velocity")
    assert fast.details["transactions"] == 4
    clock.advance(181 * DAY_S)
    admit(compliance, client, "payment", 100, "after-sleep")
    (dormant,) = alerts(compliance, rule="dormant_reactivation")
    assert dormant.details["idle_days"] == 181


def test_the_case_queue_keeps_every_step_of_an_alert(world):
    _, compliance, tmp = world
    load(compliance, tmp / "list")
    with pytest.raises(SanctionsHit):
        compliance.screen_name("Helix Mixer Service", flow="credit")
    (alert,) = alerts(compliance, status="open")
    compliance.assign(alert.id, "ann", by="api:lead")
    compliance.note(alert.id, "asked the correspondent for the originator's details", by="api:ann")
    with pytest.raises(DomainError) as caught:
        compliance.close(alert.id, "filed", "shrug", by="api:ann")
    assert caught.value.code == "invalid_request"
    closed = compliance.close(alert.id, "SAR filed 2026-11-26", "reported", by="api:ann")
    assert (closed.status, closed.assignee, closed.resolution) == ("closed", "ann", "reported")
    assert [h["action"] for h in closed.history] == ["opened", "assigned", "noted", "closed"]
    with pytest.raises(Conflict) as conflict:
        compliance.assign(alert.id, "bob", by="x")
    assert conflict.value.code == "alert_closed"
    with pytest.raises(DomainError) as missing:
        compliance.alert("nope")
    assert missing.value.code == "alert_not_found"
    assert [e.action for e in audit.entries(compliance.engine)][-3:] == [
        "alert.assigned",
        "alert.noted",
        "alert.closed",
    ]


# ------------------------------------------------------------------ travel rule


def _natural(name: str, last: str) -> dict:
    return {
        "naturalPerson": {
            "name": {
                "nameIdentifier": [
                    {"primaryIdentifier": last, "secondaryIdentifier": name, "nameIdentifierType": "LEGL"}
                ]
            },
            "customerIdentification": "C-1",
        }
    }


def test_the_travel_rule_is_required_from_the_jurisdictions_threshold_and_validated(world):
    _, compliance, tmp = world
    load(compliance, tmp / "list")
    assert compliance.travel_rule(flow="withdrawal", amount_usd_minor=299_999, supplied=None) is None
    with pytest.raises(DomainError) as caught:
        compliance.travel_rule(flow="withdrawal", amount_usd_minor=300_000, supplied=None)
    assert caught.value.code == "travel_rule_required"
    payload = {
        "originator": {"originatorPersons": [_natural("Jane", "Doe")], "accountNumber": ["acct-1"]},
        "beneficiary": {"beneficiaryPersons": [_natural("John", "Roe")], "accountNumber": ["0xabc"]},
    }
    carried = compliance.travel_rule(flow="withdrawal", amount_usd_minor=300_000, supplied=payload)
    assert carried is not None and carried["beneficiary"]["accountNumber"] == ["0xabc"]
    with pytest.raises(DomainError) as caught:
        compliance.travel_rule(flow="withdrawal", amount_usd_minor=300_000, supplied={"originator": {}})
    assert caught.value.code == "invalid_travel_rule"
    sanctioned = {**payload, "beneficiary": {"beneficiaryPersons": [_natural("Pavel", "Zakharov")]}}
    with pytest.raises(SanctionsHit):
        compliance.travel_rule(flow="withdrawal", amount_usd_minor=300_000, supplied=sanctioned)
    compliance.cs.jurisdiction = "FATF"  # 1,000
    with pytest.raises(DomainError) as caught:
        compliance.travel_rule(flow="withdrawal", amount_usd_minor=100_000, supplied=None)
    assert caught.value.code == "travel_rule_required"


# ------------------------------------------------------------------------ audit


def _entries(engine, n: int, clock) -> None:
    for i in range(n):
        audit.record(engine, clock, f"api:key{i}", "kyc.changed", f"client:{i}", {"n": i})
        clock.advance(1)


def test_the_audit_log_refuses_updates_and_deletes(engine, clock):
    _entries(engine, 2, clock)
    for statement in ("UPDATE audit_log SET actor = 'x' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 2"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert audit.verify(engine).ok


def _without_triggers(engine, statement: str) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
            conn.execute(text(statement))
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            conn.execute(text(statement))


def test_audit_verify_finds_an_edited_entry(engine, clock):
    _entries(engine, 5, clock)
    report = audit.verify(engine)
    assert (report.ok, report.entries, report.head_seq) == (True, 5, 5)
    _without_triggers(engine, "UPDATE audit_log SET actor = 'api:someone-else' WHERE seq = 3")
    broken = audit.verify(engine)
    assert not broken.ok
    assert broken.problems == ("entry 3 was changed (its content no longer gives its hash)",)


def test_audit_verify_finds_a_removed_entry_and_a_cut_tail_against_a_kept_head(engine, clock):
    _entries(engine, 5, clock)
    head = audit.verify(engine)
    _without_triggers(engine, "DELETE FROM audit_log WHERE seq = 2")
    broken = audit.verify(engine)
    assert "entry 2 is missing (the next entry is 3)" in broken.problems
    assert "entry 3 does not link to the entry before it" in broken.problems
    _without_triggers(engine, "DELETE FROM audit_log WHERE seq >= 2")
    assert audit.verify(engine).ok  # a shorter chain is valid on its own...
    cut = audit.verify(engine, expect_head=(head.head_seq, head.head_hash))
    assert cut.problems == ("the log ends at entry 1, the head kept was entry 5: entries were removed",)


def _twins(clients, compliance, n: int) -> list[tuple[str, str]]:
    """`n` pairs of parties at the basic tier (10,000.00 a transfer, 25,000.00 a day): the first of each pair
    admitted together, the second one movement after another."""
    pairs = [(clients.onboard(f"Together {i}").id, clients.onboard(f"Alone {i}").id) for i in range(n)]
    for pair in pairs:
        for client in pair:
            compliance.set_kyc(client, tier="basic", by="x")
    return pairs


def _admit_both(compliance, pairs, moves) -> list[str | None]:
    """The moves (party index, flow, amount, direction, limits) admitted together for the first of each pair
    and one after another for the second, each side in one transaction; each side's refusal, if any."""
    from andchain.compliance.service import Admission

    def admissions(side: int) -> list[Admission]:
        return [
            Admission(pairs[party][side], flow, amount, f"{flow}:{n}", direction, limits=limits)
            for n, (party, flow, amount, direction, limits) in enumerate(moves)
        ]

    refusals: list[str | None] = []
    for side, together in ((0, True), (1, False)):
        try:
            with write_transaction(compliance.engine) as conn:
                if together:
                    compliance.admit_many(conn, admissions(side))
                else:
                    for one in admissions(side):
                        compliance.admit(conn, one.client_id, one.flow, one.amount_usd_minor, one.ref,
                                         direction=one.direction, limits=one.limits)  # fmt: skip
        except DomainError as exc:
            refusals.append(f"{exc.code} {exc.details.get('limit')}: {exc}")
        else:
            refusals.append(None)
    return refusals


def _recorded(compliance, pairs, side: int) -> list:
    a = t.activity
    names = {pair[side]: n for n, pair in enumerate(pairs)}
    with compliance.engine.connect() as conn:
        rows = conn.execute(select(a.c.client_id, a.c.flow, a.c.direction, a.c.amount_usd_minor, a.c.ref)).all()
    return sorted((names[r[0]], *r[1:]) for r in rows if r[0] in names)


def test_movements_admitted_together_are_refused_at_the_first_over_a_limit_as_one_after_another(world):
    clients, compliance, _ = world
    pairs = _twins(clients, compliance, 2)
    for pair in pairs:  # the day's totals row exists before the batch
        for client in pair:
            admit(compliance, client, "payment", 1_000_000, "earlier")
    moves = [
        (0, "payment", 900_000, "out", True),
        (1, "deposit", 5_000_000, "in", False),  # what arrives is not limited
        (0, "mint", 600_000, "out", True),  # the day's room exactly: 25,000.00
        (1, "payment", 1_000_000, "out", True),
        (0, "payment", 1, "out", True),  # one cent over the day: refused, and the whole batch with it
    ]
    together, alone = _admit_both(compliance, pairs, moves)
    assert together == alone and together is not None
    assert together.startswith("limit_exceeded per_day: payment of 0.01 would bring today's movements to 25000.01")
    assert (
        _recorded(compliance, pairs, 0)
        == _recorded(compliance, pairs, 1)
        == [
            (0, "payment", "out", 1_000_000, "earlier"),
            (1, "payment", "out", 1_000_000, "earlier"),
        ]
    )
    assert [day_totals(compliance, c) for c in pairs[0]] == [[(1_000_000, 0)]] * 2

    per_transfer = [(1, "payment", 100, "out", True), (0, "payment", 1_000_001, "out", True)]
    together, alone = _admit_both(compliance, pairs, per_transfer)
    assert together == alone and together is not None and together.startswith("limit_exceeded per_transfer")


def test_movements_admitted_together_record_totals_and_alerts_as_one_after_another(world, clock):
    clients, compliance, _ = world
    compliance.cs.monitoring.velocity_count_max = 4
    pairs = _twins(clients, compliance, 2)
    for pair in pairs:
        admit(compliance, pair[0], "payment", 500, "long ago")
        admit(compliance, pair[1], "payment", 500, "long ago")
    clock.advance(181 * DAY_S)
    ghosts = (f"ghost-together-{clock()}", f"ghost-alone-{clock()}")  # no party yet: made as it is admitted
    pairs.append(ghosts)
    moves = [
        (0, "payment", 100, "out", True),
        (1, "payment", 2_000, "out", True),
        (0, "mint", 200, "out", True),
        (2, "deposit", None, "in", False),
        (0, "payment", 300, "out", True),
        (1, "deposit", 7_000, "in", False),
        (0, "payment", 400, "out", True),
        (0, "payment", 500, "out", True),  # the fifth of party 0 in the window: velocity
    ]
    assert _admit_both(compliance, pairs, moves) == [None, None]
    assert _recorded(compliance, pairs, 0) == _recorded(compliance, pairs, 1)
    assert len(_recorded(compliance, pairs, 0)) == 2 + len(moves)
    for together, alone in pairs:
        assert day_totals(compliance, together) == day_totals(compliance, alone)
        raised = [
            sorted((a.rule, str(a.details)) for a in alerts(compliance) if a.client_id == c) for c in (together, alone)
        ]
        assert raised[0] == raised[1]
    assert day_totals(compliance, pairs[0][0]) == [(500, 0), (1_500, 0)]
    assert day_totals(compliance, pairs[1][0]) == [(500, 0), (2_000, 0)]
    mine = {a.rule: a.details for a in alerts(compliance) if a.client_id == pairs[0][0]}
    assert mine["velocity"]["transactions"] == 5 and mine["dormant_reactivation"]["idle_days"] == 181
    assert compliance.party(ghosts[0]).tier == compliance.party(ghosts[1]).tier


def test_a_busy_partys_movements_look_their_alerts_up_once_and_open_each_once(world, clock):
    """Every movement past the velocity limit asks for the window's alert: a batch of them reads the open
    alerts in one statement, whatever its size, and opens the alert once, with the first movement's figures."""
    from sqlalchemy import event

    from andchain.compliance.service import Admission

    clients, compliance, _ = world
    compliance.cs.monitoring.velocity_count_max = 2
    busy = clients.onboard("Busy Corp").id
    looked_up: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "compliance_alerts" in statement:
            looked_up.append(statement)

    event.listen(compliance.engine, "before_cursor_execute", count)
    try:
        per_size = {}
        for size in (4, 40):
            looked_up.clear()
            with write_transaction(compliance.engine) as conn:
                compliance.admit_many(conn, [Admission(busy, "payment", 100, f"pay:{size}:{n}") for n in range(size)])
            per_size[size] = len(looked_up)
    finally:
        event.remove(compliance.engine, "before_cursor_execute", count)
    assert per_size == {4: 1, 40: 1}
    (velocity,) = alerts(compliance, rule="velocity", client_id=busy)
    assert velocity.details["transactions"] == 3  # the third movement of the window was the first past 2


def test_a_party_is_read_without_a_write_and_made_once_when_missing(world, monkeypatch):
    _, compliance, _ = world
    made = compliance.party("no-party-yet")  # missing: made with the onboarding status and default tier
    assert (made.kyc_status, made.tier, made.frozen) == ("approved", "standard", False)
    import andchain.compliance.service as service

    def no_write(*args, **kwargs):
        raise AssertionError("reading a party that exists took a write transaction")

    monkeypatch.setattr(service, "write_transaction", no_write)
    assert compliance.party("no-party-yet") == made
    with compliance.engine.connect() as conn:
        rows = conn.execute(select(func.count()).where(t.parties.c.client_id == "no-party-yet")).scalar_one()
    assert rows == 1
