"""The monthly reserve attestation: tokens outstanding (ledger and chain), what backs them, reconcile runs,
redemptions and their timeliness, seizures; a bad or future month is refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from andchain import reconcile_store
from andchain.chains.contracts import artifact
from andchain.compliance.reserves import business_us, nearest_rank, render_text, reserve_report
from andchain.config import Settings
from andchain.context import Context
from andchain.devtools.postgres import free_port
from andchain.errors import DomainError
from andchain.ledger import AccountKind, AccountSpec, TransferFlags, TransferSpec
from andchain.ops import Operations, OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.model import BANK_CASH, BANK_SEIZED, DEPOSIT_TOKEN, TOKENS, holder_account
from andchain.tokens.service import TokenService
from tests.chains.conftest import anvil, ctx, network_settings  # noqa: F401 - fixtures shared with the chain tests
from tests.conftest import FakeClock
from tests.tokens.conftest import settle, tokens  # noqa: F401 - the token service fixture

DAY_S = 86_400
HOLDER = "0x" + "ab" * 20


def at(text: str) -> int:
    """An instant in microseconds from an ISO-8601 UTC time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000


def month_of(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).strftime("%Y-%m")


@pytest.fixture
def context_at(tmp_path: Path) -> Iterator[Callable[..., Context]]:
    """Contexts on their own SQLite file whose clock the test moves (no chain node is contacted)."""
    made: list[Context] = []

    def make(clock: FakeClock, **settings: Any) -> Context:
        keystore = {"passphrase": "test-only-passphrase", "scrypt_n": 1024}
        context = Context(Settings(data_dir=tmp_path, keystore=keystore, **settings), clock=clock)
        context.upgrade_database()
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def amounts_are_strings(value: Any, path: str = "") -> None:
    """Money never travels as a number: every amount is a decimal string."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("amount", "month_end", "now", "reserves", "client_deposits", "tokens_outstanding"):
                assert isinstance(item, str | dict), (path, key, item)
            amounts_are_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            amounts_are_strings(item, path)


# ------------------------------------------------------------------------------------------ on a real node


def test_the_current_month_shows_tokens_equal_to_supply_their_backing_and_the_redemption(ctx, tokens: TokenService):  # noqa: F811
    acme = tokens.onboard("Acme Corp").id
    tokens.deposit(acme, 100_000, reference="camt054-acme")
    tokens.mint(acme, "internal", 60_000, "mint-reserves")
    settle(ctx, tokens)
    redeem = tokens.redeem(acme, "internal", 10_000, "redeem-reserves")
    settle(ctx, tokens)
    done = tokens.ops.get(redeem.id)
    assert done.status == OpStatus.SUCCEEDED
    started = ctx.clock()
    found = reconcile(ctx)
    assert found.breaks == [], found.breaks
    reconcile_store.record(
        ctx.engine,
        found.as_dict(),
        started_at_us=started,
        finished_at_us=ctx.clock(),
        requested_by="test",
        ids=ctx.ledger.ids,
    )

    report = reserve_report(ctx, month_of(done.created_at_us), tokens=tokens)

    (internal,) = report["tokens_outstanding"]["networks"]
    assert internal["network"] == "internal"
    assert internal["now"] == internal["month_end"] == "500.00"
    chain = internal["chain"]
    assert chain["available"] and chain["total_supply"] == "500.00" and chain["matches_ledger_now"]
    assert chain["token_address"] == tokens.token_address("internal")
    assert 0 < chain["block"] <= chain["head_block"]
    assert report["tokens_outstanding"]["total"] == {"month_end": "500.00", "now": "500.00"}
    assert report["tokens_outstanding"]["other_networks"] == {"month_end": "0.00", "now": "0.00"}
    flows = report["tokens_outstanding"]["flows_in_month"]
    assert flows["minted"] == {"count": 1, "amount": "600.00"}
    assert flows["redeemed"] == {"count": 1, "amount": "100.00"}
    # The cash came in with the deposit and stays; the mint moved the liability from the deposit to the token.
    now = report["backing"]["now"]
    assert (now["reserves"], now["client_deposits"], now["tokens_outstanding"]) == ("1000.00", "500.00", "500.00")
    assert (now["coverage"], now["coverage_after_client_deposits"]) == ("2.000000", "1.000000")
    assert now["reserves_cover_tokens"] is True
    assert report["backing"]["month_end"] == now  # the month is still open: its end is now
    assert "clients:<id>:usd:dda" in report["backing"]["basis"]

    redemptions = report["redemptions"]
    assert (redemptions["count"], redemptions["amount"]) == (1, "100.00")
    assert redemptions["succeeded"] == {"count": 1, "amount": "100.00"}
    assert redemptions["in_flight"]["count"] == redemptions["failed"]["count"] == 0
    took_s = (done.updated_at_us - done.created_at_us) / 1_000_000
    assert redemptions["duration_s"] == {"p50": took_s, "p95": took_s, "max": took_s}
    assert took_s > 0
    assert redemptions["timeliness"]["succeeded_within"] == 1

    runs = report["reconciliation"]
    assert (runs["runs"], runs["runs_with_breaks"], runs["record_complete"]) == (1, 0, True)
    assert runs["last_run"]["ok"] is True
    assert report["seizures"]["total"] == {"count": 0, "amount": "0.00"}
    assert report["period"]["closed"] is False
    amounts_are_strings(report)
    assert json.loads(json.dumps(report)) == report  # plain JSON, nothing to convert

    text = render_text(report)
    assert "USDD reserve attestation" in text and "500.00 at block" in text and "2.000000" in text

    # A month long before anything happened: all zeros, and the chain's evidence of now still given.
    empty = reserve_report(ctx, "2020-01", tokens=tokens)
    (internal,) = empty["tokens_outstanding"]["networks"]
    assert internal["month_end"] == "0.00" and internal["chain"]["total_supply"] == "500.00"
    assert empty["period"] == {
        "start": "2020-01-01T00:00:00+00:00",
        "end": "2020-02-01T00:00:00+00:00",
        "end_exclusive": True,
        "as_of": "2020-02-01T00:00:00+00:00",
        "closed": True,
    }
    end = empty["backing"]["month_end"]
    assert (end["reserves"], end["client_deposits"], end["tokens_outstanding"], end["coverage"]) == (
        "0.00",
        "0.00",
        "0.00",
        None,
    )
    assert empty["redemptions"]["count"] == 0 and empty["redemptions"]["duration_s"]["p50"] is None
    assert empty["reconciliation"]["runs"] == 0 and empty["reconciliation"]["last_run"] is None
    assert all(f["count"] == 0 for f in empty["tokens_outstanding"]["flows_in_month"].values())
    assert "USDD reserve attestation for 2020-01 (closed)" in render_text(empty)


@pytest.mark.parametrize(
    "month", ["2026-1", "2026-13", "2026-00", "26-01", "2026-01-01", " 2026-01", "２０２６-01", 202601]
)
def test_a_month_not_written_yyyy_mm_is_refused(ctx, month):  # noqa: F811
    with pytest.raises(DomainError) as caught:
        reserve_report(ctx, month)
    assert caught.value.code == "invalid_request"
    assert "YYYY-MM" in caught.value.message


def test_a_month_that_has_not_begun_is_refused(ctx):  # noqa: F811
    year = datetime.now(tz=UTC).year + 1
    with pytest.raises(DomainError) as caught:
        reserve_report(ctx, f"{year}-01")
    assert caught.value.code == "invalid_request" and "has not begun" in caught.value.message


# ------------------------------------------------------------------------------------------ the ledger alone


def test_month_end_figures_come_from_the_transfers_posted_before_the_month_ended(context_at):
    clock = FakeClock(at("2026-01-30T12:00:00"))  # a Friday
    bank = context_at(clock)
    ops = Operations(bank.engine, clock=clock)

    def redemption(key: str, amount: int) -> Any:
        return ops.create("redeem", key, {"client": "acme", "network": "internal", "amount": amount})[0]

    paid_in_time = redemption("a", 5_000)
    clock.advance(1)
    paid_late = redemption("b", 7_000)
    clock.now_us = at("2026-01-30T13:00:00")
    refused = redemption("c", 3_000)
    clock.advance(300)
    ops.update(refused, status=OpStatus.FAILED, error=("tx_reverted", "paused"))
    clock.now_us = at("2026-01-31T10:00:00")  # a Saturday
    stuck = redemption("d", 2_000)

    clock.now_us = at("2026-01-31T23:00:00")
    mirror = holder_account("internal", TOKENS[DEPOSIT_TOKEN], HOLDER)
    opened = bank.ledger.create_accounts(
        [
            AccountSpec(BANK_CASH, "USD", kind=AccountKind.ASSET),
            AccountSpec("clients:acme:usd:dda", "USD", kind=AccountKind.LIABILITY),
            AccountSpec(mirror, "USD", kind=AccountKind.LIABILITY),
            AccountSpec(BANK_SEIZED, "USD", kind=AccountKind.LIABILITY),
        ]
    )
    cash, dda, holder, seized = (r.account_id for r in opened)

    def transfer(debit: int, credit: int, amount: int, code: str, **extra: Any) -> None:
        (result,) = bank.ledger.create_transfers([TransferSpec(debit, credit, amount, code=code, **extra)])
        assert result.ok, result

    transfer(cash, dda, 100_000, "deposit")
    clock.advance(1800)
    transfer(dda, holder, 40_000, "mint")
    clock.advance(600)
    transfer(dda, holder, 10_000, "mint", id="mint:late", flags=TransferFlags.PENDING)  # not final by the month's end
    clock.advance(600)
    transfer(holder, seized, 1_000, "seize")
    reconcile_store.record(
        bank.engine,
        {
            "ok": False,
            "breaks": [{"check": "supply", "subject": "USDD on internal (block 7)"}],
            "checks": [],
            "in_flight": [],
            "alerts": [],
        },
        started_at_us=clock() - 1_000,
        finished_at_us=clock(),
        requested_by="test",
        ids=bank.ledger.ids,
    )
    clock.now_us = at("2026-02-01T00:30:00")
    (posted,) = bank.ledger.create_transfers(
        [TransferSpec(id="mint:late:post", pending_id="mint:late", flags=TransferFlags.POST_PENDING, code="mint")]
    )
    assert posted.ok
    transfer(holder, dda, 5_000, "redeem")
    clock.now_us = at("2026-02-03T12:00:00")  # the Tuesday: exactly two business days after Friday noon
    ops.update(ops.get(paid_in_time.id), status=OpStatus.SUCCEEDED)
    clock.advance(2)
    ops.update(ops.get(paid_late.id), status=OpStatus.SUCCEEDED)
    clock.now_us = at("2026-02-04T09:00:00")
    ops.update(ops.get(stuck.id), status=OpStatus.NEEDS_ATTENTION, error=("node_unreachable", "silent"))
    clock.now_us = at("2026-02-05T00:00:00")

    january = reserve_report(bank, "2026-01")

    assert january["period"]["closed"] is True and january["period"]["as_of"] == "2026-02-01T00:00:00+00:00"
    (internal,) = january["tokens_outstanding"]["networks"]
    assert (internal["month_end"], internal["now"]) == ("390.00", "440.00")
    # Nothing is deployed here: the ledger's figures are given, the chain's evidence says why it is missing.
    assert internal["chain"]["available"] is False and "not deployed" in internal["chain"]["error"]
    end, now = january["backing"]["month_end"], january["backing"]["now"]
    assert (end["reserves"], end["client_deposits"], end["tokens_outstanding"]) == ("1000.00", "600.00", "390.00")
    assert (end["coverage"], end["coverage_after_client_deposits"]) == ("2.564102", "1.025641")  # rounded down
    assert (now["reserves"], now["client_deposits"], now["tokens_outstanding"]) == ("1000.00", "550.00", "440.00")
    assert (now["coverage"], now["coverage_after_client_deposits"]) == ("2.272727", "1.022727")
    flows = january["tokens_outstanding"]["flows_in_month"]
    assert flows["minted"] == {"count": 1, "amount": "400.00"}  # the pending mint is February's
    assert flows["redeemed"] == {"count": 0, "amount": "0.00"}
    assert flows["seized_and_burned"] == {"count": 1, "amount": "10.00"}
    seizures = january["seizures"]
    assert seizures["burned"] == seizures["total"] == {"count": 1, "amount": "10.00"}
    assert seizures["from_deposits"] == {"count": 0, "amount": "0.00"}

    red = january["redemptions"]
    assert (red["count"], red["amount"]) == (4, "170.00")
    assert red["succeeded"] == {"count": 2, "amount": "120.00"}
    assert red["failed"] == {"count": 1, "amount": "30.00"}
    assert red["in_flight"] == {"count": 1, "amount": "20.00", "needs_attention": 1, "overdue": 1}
    assert red["duration_s"] == {"p50": 4 * DAY_S, "p95": 4 * DAY_S + 1, "max": 4 * DAY_S + 1}
    assert red["timeliness"] == {
        "business_days": 2,
        "succeeded_within": 1,
        "succeeded_late": 1,
        "in_flight_overdue": 1,
    }
    runs = january["reconciliation"]
    assert (runs["runs"], runs["runs_with_breaks"], runs["breaks_total"]) == (1, 1, 1)
    assert runs["break_subjects"] == ["supply: USDD on internal (block 7)"]
    assert runs["last_run"]["ok"] is False

    february = reserve_report(bank, "2026-02")  # still open: its end is now
    assert february["period"]["closed"] is False and february["period"]["as_of"] == "2026-02-05T00:00:00+00:00"
    (internal,) = february["tokens_outstanding"]["networks"]
    assert internal["month_end"] == internal["now"] == "440.00"
    flows = february["tokens_outstanding"]["flows_in_month"]
    assert flows["minted"] == {"count": 1, "amount": "100.00"} and flows["redeemed"] == {"count": 1, "amount": "50.00"}
    assert february["redemptions"]["count"] == 0 and february["reconciliation"]["runs"] == 0

    with pytest.raises(DomainError) as caught:
        reserve_report(bank, "2026-03")
    assert caught.value.code == "invalid_request"


def test_amounts_of_10_to_the_30_stay_exact(context_at):
    clock = FakeClock(at("2026-03-10T10:00:00"))
    bank = context_at(clock)
    opened = bank.ledger.create_accounts(
        [
            AccountSpec(BANK_CASH, "USD", kind=AccountKind.ASSET),
            AccountSpec("clients:whale:usd:dda", "USD", kind=AccountKind.LIABILITY),
            AccountSpec(holder_account("internal", TOKENS[DEPOSIT_TOKEN], HOLDER), "USD", kind=AccountKind.LIABILITY),
        ]
    )
    cash, dda, holder = (r.account_id for r in opened)
    results = bank.ledger.create_transfers(
        [
            TransferSpec(cash, dda, 3 * 10**30, code="deposit"),
            TransferSpec(dda, holder, 10**30 + 7, code="mint"),
        ]
    )
    assert all(r.ok for r in results)
    clock.advance(60)
    report = reserve_report(bank, "2026-03")
    end = report["backing"]["month_end"]
    assert end["tokens_outstanding"] == "10000000000000000000000000000.07"
    assert end["reserves"] == "30000000000000000000000000000.00"
    assert end["client_deposits"] == "19999999999999999999999999999.93"
    assert end["coverage"] == "2.999999"  # just under 3, never rounded up to it


def test_a_node_that_does_not_answer_is_reported_for_its_network_not_raised(context_at):
    clock = FakeClock(at("2026-03-10T10:00:00"))
    ghost = network_settings(free_port(), chain_id=990_099, display_name="a node that is not there")
    bank = context_at(clock, networks={"ghost": ghost.model_dump()})
    bank.chain("ghost").record_deployment(DEPOSIT_TOKEN, artifact("PermissionedToken"), "0x" + "11" * 20, None, None)
    report = reserve_report(bank, "2026-03")
    (network,) = report["tokens_outstanding"]["networks"]
    assert network["network"] == "ghost" and network["month_end"] == "0.00"
    assert network["chain"]["available"] is False and "NodeUnreachable" in network["chain"]["error"]
    assert "unavailable: NodeUnreachable" in render_text(report)


# ------------------------------------------------------------------------------------------ arithmetic


def test_two_business_days_skip_the_weekend_exactly():
    friday_noon = at("2026-01-30T12:00:00")
    assert business_us(friday_noon, at("2026-02-03T12:00:00")) == 2 * DAY_S * 1_000_000
    assert business_us(friday_noon, at("2026-02-02T00:00:00")) == DAY_S // 2 * 1_000_000
    assert business_us(at("2026-01-31T08:00:00"), at("2026-02-02T00:00:00")) == 0  # all of it a weekend
    assert business_us(at("2026-02-02T00:00:00"), at("2026-02-09T00:00:00")) == 5 * DAY_S * 1_000_000


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (nearest_rank(values, 50), nearest_rank(values, 95), nearest_rank(values, 100)) == (50, 95, 100)
    assert nearest_rank([7], 50) == nearest_rank([7], 95) == 7
    assert nearest_rank([1, 2], 50) == 1 and nearest_rank([1, 2], 95) == 2
