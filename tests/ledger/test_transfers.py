"""The ledger's rules, each on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from andchain.db import write_transaction
from andchain.errors import NotFound
from andchain.ledger import (
    BATCH_SIZE_MAX,
    AccountFlags,
    AccountSpec,
    BatchTooLarge,
    Ledger,
    PendingStatus,
    Result,
    TransferFlags,
    TransferSpec,
)
from tests.ledger.helpers import balances, funded_client, open_accounts

LINKED = TransferFlags.LINKED
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING
VOID = TransferFlags.VOID_PENDING


def codes(results):
    return [r.result.value for r in results]


def test_a_transfer_moves_value_and_keeps_debits_equal_to_credits(ledger: Ledger):
    bank, client = funded_client(ledger, 10_000)
    assert ledger.account(client).balance_posted == 10_000
    assert ledger.account(bank).balance_posted == -10_000
    totals = ledger.totals()["USD"]
    assert totals["debits_posted"] == totals["credits_posted"] == 10_000
    assert ledger.verify() == []


def test_a_client_cannot_spend_more_than_it_holds(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    before = balances(ledger, bank, client)
    result = ledger.create_transfer(TransferSpec(client, bank, 101, id="overdraw"))
    assert result.result == Result.INSUFFICIENT_FUNDS
    assert balances(ledger, bank, client) == before
    assert ledger.lookup_transfers(["overdraw"]) == []
    assert ledger.create_transfer(TransferSpec(client, bank, 100, id="all")).result == Result.OK
    assert ledger.account(client).balance_posted == 0


def test_an_account_flagged_credits_must_not_exceed_debits_refuses_over_crediting(ledger: Ledger):
    source, loan = open_accounts(
        ledger,
        ("bank:funding", "USD", 0),
        ("clients:acme:usd:loan", "USD", AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
    )
    assert ledger.create_transfer(TransferSpec(loan, source, 500)).result == Result.OK
    assert ledger.create_transfer(TransferSpec(source, loan, 501)).result == Result.EXCEEDS_CREDITS
    assert ledger.create_transfer(TransferSpec(source, loan, 500)).result == Result.OK


def test_replaying_a_transfer_returns_exists_and_changes_nothing(ledger: Ledger):
    bank, client = funded_client(ledger, 0)
    spec = TransferSpec(bank, client, 250, id="pay-1", code="deposit", memo="camt.054 ref 9", metadata={"uetr": "x"})
    assert ledger.create_transfer(spec).result == Result.OK
    before = balances(ledger, bank, client)
    assert ledger.create_transfer(spec).result == Result.EXISTS
    assert ledger.create_transfers([spec, spec]) and balances(ledger, bank, client) == before
    assert ledger.count_transfers() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 251},
        {"memo": "other"},
        {"code": "fee"},
        {"metadata": {"uetr": "y"}},
        {"flags": int(PENDING)},
    ],
)
def test_reusing_an_id_with_different_fields_is_refused(ledger: Ledger, change):
    bank, client = funded_client(ledger, 0)
    base = {
        "debit_account_id": bank,
        "credit_account_id": client,
        "amount": 250,
        "id": "pay-1",
        "memo": "m",
        "code": "deposit",
        "metadata": {"uetr": "x"},
    }
    assert ledger.create_transfer(TransferSpec(**base)).result == Result.OK
    result = ledger.create_transfer(TransferSpec(**{**base, **change}))
    assert result.result == Result.EXISTS_WITH_DIFFERENT_FIELDS
    assert ledger.account(client).credits_posted == 250


def test_the_same_id_twice_in_one_batch_is_booked_once(ledger: Ledger):
    bank, client = funded_client(ledger, 0)
    spec = TransferSpec(bank, client, 5, id="dup")
    results = ledger.create_transfers([spec, spec, TransferSpec(bank, client, 6, id="dup")])
    assert codes(results) == ["ok", "exists", "exists_with_different_fields"]
    assert ledger.account(client).credits_posted == 5


@pytest.mark.parametrize("stand_in", [True, 1.0], ids=["bool", "float"])
def test_an_account_id_that_is_not_an_int_names_no_account_whatever_the_order(ledger: Ledger, stand_in):
    """True and 1.0 equal 1 in Python: neither may book against account 1, nor keep it from a transfer that names it."""
    bank, client = funded_client(ledger, 1_000)
    (other,) = open_accounts(ledger, ("clients:globex:usd:dda", "USD", 0))
    assert bank == stand_in  # the stand-in compares equal to a real account's id
    for n, order in enumerate(((0, 1, 2), (1, 2, 0), (2, 0, 1))):
        specs = [
            TransferSpec(client, bank, 5, id=f"right-{n}"),
            TransferSpec(other, stand_in, 1, id=f"credit-{n}"),
            TransferSpec(stand_in, other, 1, id=f"debit-{n}"),
        ]
        results = ledger.create_transfers([specs[i] for i in order])
        assert {r.id: r.result.value for r in results} == {
            f"right-{n}": "ok",
            f"credit-{n}": "credit_account_not_found",
            f"debit-{n}": "debit_account_not_found",
        }
    assert balances(ledger, bank, client, other) == [(0, 1_000, 0, 15), (0, 15, 0, 1_000), (0, 0, 0, 0)]
    assert ledger.verify() == []


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        (lambda b, c, e: TransferSpec(b, b, 1), "accounts_must_be_different"),
        (lambda b, c, e: TransferSpec(b, c, 0), "amount_must_be_positive"),
        (lambda b, c, e: TransferSpec(b, c, -5), "amount_must_be_positive"),
        (lambda b, c, e: TransferSpec(b, c, 2**128), "amount_exceeds_maximum"),
        (lambda b, c, e: TransferSpec(b, e, 1), "asset_mismatch"),
        (lambda b, c, e: TransferSpec(b, c, 1, asset="EUR"), "asset_mismatch"),
        (lambda b, c, e: TransferSpec(b, 9999, 1), "credit_account_not_found"),
        (lambda b, c, e: TransferSpec(9999, c, 1), "debit_account_not_found"),
        (lambda b, c, e: TransferSpec(None, c, 1), "debit_account_id_must_not_be_empty"),
        (lambda b, c, e: TransferSpec(b, None, 1), "credit_account_id_must_not_be_empty"),
        (lambda b, c, e: TransferSpec(b, c, 1, id=""), "id_must_not_be_empty"),
        (lambda b, c, e: TransferSpec(b, c, 1, id="x" * 129), "id_too_long"),
        (lambda b, c, e: TransferSpec(b, c, 1, flags=PENDING | POST), "flags_are_mutually_exclusive"),
        (lambda b, c, e: TransferSpec(b, c, 1, flags=64), "flags_are_mutually_exclusive"),
        (lambda b, c, e: TransferSpec(b, c, 1, timeout_s=5), "timeout_reserved_for_pending_transfer"),
        (lambda b, c, e: TransferSpec(b, c, 1, pending_id="p"), "pending_id_must_be_empty"),
        (lambda b, c, e: TransferSpec(flags=POST), "pending_id_must_not_be_empty"),
        (lambda b, c, e: TransferSpec(flags=POST, pending_id="nope"), "pending_transfer_not_found"),
        (lambda b, c, e: TransferSpec(flags=VOID, pending_id="funding"), "pending_transfer_not_pending"),
        (lambda b, c, e: TransferSpec(b, c, 1, memo="m" * 257), "memo_too_long"),
        (lambda b, c, e: TransferSpec(b, c, 1, code="c" * 65), "code_too_long"),
    ],
)
def test_invalid_transfers_are_refused_with_a_stable_code_and_change_nothing(ledger: Ledger, spec, code):
    bank, client = funded_client(ledger, 1_000)
    (euro,) = open_accounts(ledger, ("bank:eur:cash", "EUR", 0))
    before = balances(ledger, bank, client, euro)
    count = ledger.count_transfers()
    result = ledger.create_transfer(spec(bank, client, euro))
    assert result.result.value == code
    assert balances(ledger, bank, client, euro) == before
    assert ledger.count_transfers() == count


def test_a_closed_account_takes_no_new_transfers(ledger: Ledger):
    bank, client = funded_client(ledger, 10)
    ledger.close_account(client)
    assert ledger.create_transfer(TransferSpec(bank, client, 1)).result == Result.CREDIT_ACCOUNT_CLOSED
    assert ledger.create_transfer(TransferSpec(client, bank, 1)).result == Result.DEBIT_ACCOUNT_CLOSED


def test_a_linked_chain_succeeds_as_one(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    (fees,) = open_accounts(ledger, ("bank:usd:fees", "USD", 0))
    results = ledger.create_transfers(
        [TransferSpec(client, bank, 90, id="a", flags=LINKED), TransferSpec(client, fees, 10, id="b")]
    )
    assert codes(results) == ["ok", "ok"]
    assert ledger.account(client).balance_posted == 0
    assert ledger.account(fees).balance_posted == 10


def test_a_linked_chain_fails_as_one_and_leaves_the_rest_of_the_batch_alone(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    (fees,) = open_accounts(ledger, ("bank:usd:fees", "USD", 0))
    before = balances(ledger, bank, client, fees)
    results = ledger.create_transfers(
        [
            TransferSpec(client, bank, 60, id="a", flags=LINKED),
            TransferSpec(client, fees, 10, id="b", flags=LINKED | PENDING),
            TransferSpec(client, fees, 31, id="c"),  # 60 + 10 + 31 > 100: the whole chain fails
            TransferSpec(bank, fees, 7, id="d"),
        ]
    )
    assert codes(results) == ["linked_event_failed", "linked_event_failed", "insufficient_funds", "ok"]
    after = balances(ledger, bank, client, fees)
    assert after[1] == before[1]
    assert ledger.lookup_transfers(["a", "b", "c"]) == []
    assert ledger.account(fees).credits_posted == 7
    assert ledger.verify() == []


def test_a_chain_left_open_at_the_end_of_the_batch_fails(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    results = ledger.create_transfers(
        [TransferSpec(bank, client, 1, id="a", flags=LINKED), TransferSpec(bank, client, 1, id="b", flags=LINKED)]
    )
    assert codes(results) == ["linked_event_failed", "linked_event_chain_open"]
    assert ledger.account(client).credits_posted == 100


def test_a_failed_chain_releases_the_ids_it_used(ledger: Ledger):
    bank, client = funded_client(ledger, 10)
    ledger.create_transfers([TransferSpec(client, bank, 5, id="x", flags=LINKED), TransferSpec(client, bank, 50)])
    assert ledger.create_transfer(TransferSpec(client, bank, 5, id="x")).result == Result.OK


def test_two_phase_reserves_then_posts_part_and_releases_the_rest(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    assert ledger.create_transfer(TransferSpec(client, bank, 80, id="hold", flags=PENDING)).result == Result.OK
    held = ledger.account(client)
    assert (held.debits_pending, held.available) == (80, 20)
    # The reserve counts against the balance: another 21 cannot go out.
    assert ledger.create_transfer(TransferSpec(client, bank, 21)).result == Result.INSUFFICIENT_FUNDS
    post = TransferSpec(id="capture", flags=POST, pending_id="hold", amount=50)
    assert ledger.create_transfer(post).result == Result.OK
    after = ledger.account(client)
    assert (after.debits_pending, after.debits_posted, after.balance_posted) == (0, 50, 50)
    assert ledger.transfer("hold").pending_status == PendingStatus.POSTED
    assert ledger.create_transfer(post).result == Result.EXISTS
    again = TransferSpec(id="capture-2", flags=POST, pending_id="hold")
    assert ledger.create_transfer(again).result == Result.PENDING_TRANSFER_ALREADY_POSTED
    assert ledger.verify() == []


def test_two_phase_post_cannot_exceed_the_reserve(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    ledger.create_transfer(TransferSpec(client, bank, 30, id="hold", flags=PENDING))
    result = ledger.create_transfer(TransferSpec(id="p", flags=POST, pending_id="hold", amount=31))
    assert result.result == Result.EXCEEDS_PENDING_TRANSFER_AMOUNT
    assert ledger.account(client).debits_pending == 30


def test_two_phase_void_releases_everything(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    ledger.create_transfer(TransferSpec(client, bank, 30, id="hold", flags=PENDING))
    assert ledger.create_transfer(TransferSpec(id="v", flags=VOID, pending_id="hold")).result == Result.OK
    client_account = ledger.account(client)
    assert (client_account.debits_pending, client_account.debits_posted) == (0, 0)
    assert ledger.create_transfer(TransferSpec(id="p", flags=POST, pending_id="hold")).result == (
        Result.PENDING_TRANSFER_ALREADY_VOIDED
    )


def test_second_phase_must_name_the_pending_transfers_own_accounts(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    ledger.create_transfer(TransferSpec(client, bank, 30, id="hold", flags=PENDING))
    wrong = TransferSpec(bank, client, id="p", flags=POST, pending_id="hold")
    assert ledger.create_transfer(wrong).result == Result.PENDING_TRANSFER_HAS_DIFFERENT_FIELDS


def test_a_pending_transfer_expires_after_its_timeout(ledger: Ledger, clock):
    bank, client = funded_client(ledger, 100)
    ledger.create_transfer(TransferSpec(client, bank, 40, id="hold", flags=PENDING, timeout_s=30))
    clock.advance(29)
    assert ledger.expire_pending() == 0
    assert ledger.account(client).debits_pending == 40
    clock.advance(1)
    result = ledger.create_transfer(TransferSpec(id="late", flags=POST, pending_id="hold"))
    assert result.result == Result.PENDING_TRANSFER_EXPIRED
    client_account = ledger.account(client)
    assert (client_account.debits_pending, client_account.available) == (0, 100)
    assert ledger.transfer("hold").pending_status == PendingStatus.EXPIRED
    assert ledger.verify() == []


def test_the_expiry_sweep_releases_reserves_without_any_other_write(ledger: Ledger, clock):
    bank, client = funded_client(ledger, 100)
    ledger.create_transfers(
        [TransferSpec(client, bank, 10, id=f"h{i}", flags=PENDING, timeout_s=1 + i) for i in range(5)]
    )
    clock.advance(3)
    assert ledger.expire_pending() == 3
    assert ledger.account(client).debits_pending == 10 + 10
    clock.advance(10)
    assert ledger.expire_pending() == 2
    assert ledger.account(client).debits_pending == 0


def test_a_pending_transfer_can_be_posted_in_the_same_batch(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    results = ledger.create_transfers(
        [TransferSpec(client, bank, 10, id="h", flags=PENDING), TransferSpec(id="p", flags=POST, pending_id="h")]
    )
    assert codes(results) == ["ok", "ok"]
    assert ledger.transfer("h").pending_status == PendingStatus.POSTED
    assert ledger.account(client).balance_posted == 90


def test_amounts_at_ten_to_the_thirty_are_exact(ledger: Ledger):
    (reserve, holder) = open_accounts(ledger, ("bank:eth:reserve", "ETH", 0), ("clients:whale:eth", "ETH", 1))
    big = 10**30 + 7
    assert ledger.create_transfers([TransferSpec(reserve, holder, big, id=f"w{i}") for i in range(3)])
    account = ledger.account(holder)
    assert account.credits_posted == 3 * big
    assert ledger.transfer("w1").amount == big
    assert ledger.totals()["ETH"]["credits_posted"] == 3 * big
    assert ledger.create_transfer(TransferSpec(holder, reserve, 3 * big - 1)).result == Result.OK
    assert ledger.account(holder).balance_posted == 1
    assert ledger.verify() == []


def test_history_lists_an_accounts_transfers_in_order_with_a_cursor(ledger: Ledger):
    bank, client = funded_client(ledger, 0)
    ledger.create_transfers([TransferSpec(bank, client, i + 1, id=f"t{i}") for i in range(7)])
    first = ledger.list_transfers(account_id=client, limit=4)
    rest = ledger.list_transfers(account_id=client, after_seq=first[-1].seq, limit=4)
    assert [t.id for t in first + rest] == [f"t{i}" for i in range(7)]


def test_a_batch_larger_than_the_limit_is_refused_whole(ledger: Ledger):
    bank, client = funded_client(ledger, 0)
    with pytest.raises(BatchTooLarge):
        ledger.create_transfers([TransferSpec(bank, client, 1)] * (BATCH_SIZE_MAX + 1))
    assert ledger.count_transfers() == 0


def test_a_full_batch_is_accepted(ledger: Ledger):
    bank, client = funded_client(ledger, 0)
    results = ledger.create_transfers([TransferSpec(bank, client, 1) for _ in range(BATCH_SIZE_MAX)])
    assert all(r.result == Result.OK for r in results)
    assert len({r.id for r in results}) == BATCH_SIZE_MAX
    assert ledger.account(client).credits_posted == BATCH_SIZE_MAX


def test_accounts_are_idempotent_by_name_and_validated(ledger: Ledger):
    spec = AccountSpec("clients:acme:usd:dda", "USD", kind="liability", flags=1)
    first, again = ledger.create_accounts([spec, spec])
    assert (first.result, again.result) == (Result.OK, Result.EXISTS)
    assert first.account_id == again.account_id
    bad = ledger.create_accounts(
        [
            AccountSpec("clients:acme:usd:dda", "EUR"),
            AccountSpec("bad name", "USD"),
            AccountSpec("a::b", "USD"),
            AccountSpec("x", "XYZ"),
            AccountSpec("y", "USD", kind="nonsense"),
            AccountSpec("z", "USD", flags=3),
        ]
    )
    assert codes(bad) == [
        "exists_with_different_fields",
        "name_invalid",
        "name_invalid",
        "unknown_asset",
        "kind_invalid",
        "flags_are_mutually_exclusive",
    ]
    with pytest.raises(NotFound):
        ledger.account("bad name")


def test_a_post_placed_before_its_pending_stays_failed_when_the_batch_is_replayed(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    batch = [
        TransferSpec(id="capture", flags=POST, pending_id="hold"),
        TransferSpec(client, bank, 30, id="hold", flags=PENDING),
    ]
    assert codes(ledger.create_transfers(batch)) == ["pending_transfer_not_found", "ok"]
    assert codes(ledger.create_transfers(batch)) == ["id_already_failed", "exists"]
    assert ledger.lookup_transfers(["capture"]) == []
    client_account = ledger.account(client)
    assert (client_account.debits_pending, client_account.debits_posted) == (30, 0)
    assert ledger.failed_result("capture") == Result.PENDING_TRANSFER_NOT_FOUND
    assert ledger.verify() == []


@pytest.mark.parametrize(
    ("failing", "code", "fix"),
    [
        # Each transfer fails on the state of the book, then the state changes so that
        # the very same transfer would pass: its id still answers id_already_failed.
        ("overdraw", "insufficient_funds", "fund"),
        ("to-nobody", "credit_account_not_found", "open"),
    ],
)
def test_an_id_that_failed_on_the_state_of_the_book_never_succeeds_later(ledger: Ledger, failing, code, fix):
    bank, client = funded_client(ledger, 10)
    specs = {"overdraw": TransferSpec(client, bank, 50, id="t"), "to-nobody": TransferSpec(bank, 3, 5, id="t")}
    assert ledger.create_transfer(specs[failing]).result.value == code
    if fix == "fund":
        ledger.create_transfer(TransferSpec(bank, client, 100, id="more"))
    else:
        open_accounts(ledger, ("clients:late:usd", "USD", 0))
    before = balances(ledger, bank, client)
    assert ledger.create_transfer(specs[failing]).result == Result.ID_ALREADY_FAILED
    # The id is burned whatever the new transfer says: a caller must use a new id.
    assert ledger.create_transfer(TransferSpec(bank, client, 1, id="t")).result == Result.ID_ALREADY_FAILED
    assert balances(ledger, bank, client) == before
    assert ledger.lookup_transfers(["t"]) == []
    assert ledger.create_transfer(TransferSpec(**{**_fields(specs[failing]), "id": "t2"})).result == Result.OK


def _fields(spec: TransferSpec) -> dict:
    return {name: getattr(spec, name) for name in TransferSpec._fields}


def test_a_refusal_that_depends_only_on_the_transfer_is_not_recorded(ledger: Ledger):
    bank, client = funded_client(ledger, 10)
    assert ledger.create_transfer(TransferSpec(bank, client, 0, id="t")).result == Result.AMOUNT_MUST_BE_POSITIVE
    assert ledger.create_transfer(TransferSpec(bank, bank, 5, id="t")).result == Result.ACCOUNTS_MUST_BE_DIFFERENT
    assert ledger.failed_result("t") is None
    assert ledger.create_transfer(TransferSpec(bank, client, 5, id="t")).result == Result.OK


def test_in_a_failed_chain_only_the_transfer_that_broke_it_keeps_its_id_failed(ledger: Ledger):
    bank, client = funded_client(ledger, 100)
    chain = [
        TransferSpec(client, bank, 60, id="a", flags=LINKED),
        TransferSpec(client, bank, 50, id="b", flags=LINKED),  # 60 + 50 > 100
        TransferSpec(bank, client, 1, id="c"),
    ]
    assert codes(ledger.create_transfers(chain)) == ["linked_event_failed", "insufficient_funds", "linked_event_failed"]
    assert codes(ledger.create_transfers(chain)) == ["linked_event_failed", "id_already_failed", "linked_event_failed"]
    assert [ledger.failed_result(i) for i in "abc"] == [None, Result.INSUFFICIENT_FUNDS, None]
    assert codes(ledger.create_transfers([chain[0], chain[2]])) == ["ok", "ok"]
    assert ledger.account(client).balance_posted == 41


def test_an_id_failed_earlier_in_the_same_batch_answers_id_already_failed(ledger: Ledger):
    bank, client = funded_client(ledger, 10)
    results = ledger.create_transfers(
        [
            TransferSpec(client, bank, 50, id="t"),
            TransferSpec(bank, client, 100, id="top-up"),
            TransferSpec(client, bank, 50, id="t"),
        ]
    )
    assert codes(results) == ["insufficient_funds", "ok", "id_already_failed"]
    assert ledger.account(client).balance_posted == 110


def test_recorded_failures_roll_back_with_the_callers_transaction(ledger: Ledger):
    bank, client = funded_client(ledger, 10)
    with pytest.raises(RuntimeError), write_transaction(ledger.engine) as conn:
        result = ledger.create_transfer(TransferSpec(client, bank, 50, id="t"), conn=conn)
        assert result.result == Result.INSUFFICIENT_FUNDS
        raise RuntimeError("the caller's own write failed")
    assert ledger.failed_result("t") is None
    assert ledger.create_transfer(TransferSpec(client, bank, 10, id="t")).result == Result.OK
