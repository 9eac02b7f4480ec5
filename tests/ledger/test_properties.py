"""Property tests: any sequence of batches keeps the book balanced and every bound held.

How many examples, and whether they are derandomized, comes from the hypothesis
profile (tests/conftest.py): fixed for `make test`, random and many for `make test-deep`.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from andchain.ledger import AccountFlags, AccountSpec, Ledger, Result, TransferFlags, TransferSpec
from andchain.ledger.rules import TRANSIENT_RESULTS
from tests.conftest import reset

ACCOUNTS = [
    ("bank:usd:cash", "USD", 0),
    ("clients:a:usd", "USD", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    ("clients:b:usd", "USD", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    ("bank:usd:loans", "USD", AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
    ("bank:eur:cash", "EUR", 0),
    ("clients:a:eur", "EUR", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
]
IDS = [f"t{i}" for i in range(24)]
SUCCESS = {Result.OK, Result.EXISTS}

transfer_specs = st.builds(
    TransferSpec,
    debit_account_id=st.sampled_from([1, 2, 3, 4, 5, 6, 99, None]),
    credit_account_id=st.sampled_from([1, 2, 3, 4, 5, 6, None]),
    amount=st.one_of(st.integers(min_value=-2, max_value=400), st.just(10**30), st.none()),
    id=st.sampled_from(IDS),
    flags=st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 8, 9]),
    pending_id=st.one_of(st.none(), st.sampled_from(IDS[:8])),
    timeout_s=st.sampled_from([0, 0, 5]),
    code=st.just(""),
    memo=st.just(""),
    metadata=st.none(),
    asset=st.none(),
)
batches = st.lists(st.lists(transfer_specs, min_size=1, max_size=12), min_size=1, max_size=6)


def snapshot(ledger: Ledger) -> dict[int, tuple[int, int, int, int]]:
    return {
        a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in ledger.list_accounts(limit=100)
    }


def chains(specs: list[TransferSpec]) -> list[range]:
    out, start = [], 0
    for i, spec in enumerate(specs):
        if not spec.flags & TransferFlags.LINKED or i == len(specs) - 1:
            out.append(range(start, i + 1))
            start = i + 1
    return out


@given(batches=batches, seed_amount=st.integers(min_value=0, max_value=1000))
def test_any_sequence_of_batches_keeps_the_book_balanced(ledger: Ledger, clock, batches, seed_amount):
    reset(ledger.engine)
    ledger.create_accounts([AccountSpec(n, a, flags=f) for n, a, f in ACCOUNTS])
    if seed_amount:
        ledger.create_transfers(
            [
                TransferSpec(1, 2, seed_amount, id="seed-a"),
                TransferSpec(4, 1, seed_amount, id="seed-loan"),
                TransferSpec(5, 6, seed_amount, id="seed-eur"),
            ]
        )
    for specs in batches:
        before = snapshot(ledger)
        known_before = {t.id for t in ledger.list_transfers(limit=1000)}
        results = ledger.create_transfers(specs)
        assert [r.index for r in results] == list(range(len(specs)))
        # The book stays balanced per asset, every cached balance equals the one
        # derived from the transfers, and every flagged account within its bound.
        assert ledger.verify() == []
        created = {t.id for t in ledger.list_transfers(limit=1000)} - known_before
        ok_ids = {specs[r.index].id for r in results if r.result == Result.OK}
        assert created == ok_ids
        # A linked chain is all or nothing.
        for chain in chains(specs):
            outcomes = {results[i].result in SUCCESS for i in chain}
            assert len(outcomes) == 1, [results[i].result for i in chain]
        if not ok_ids:
            after = snapshot(ledger)
            # Nothing created: only expiries may have moved pending amounts.
            assert {k: (v[1], v[3]) for k, v in after.items()} == {k: (v[1], v[3]) for k, v in before.items()}
        # Every transfer that failed on the state of the book has its id recorded.
        for r in results:
            if r.result in TRANSIENT_RESULTS:
                assert ledger.failed_result(r.id) == r.result
        # A replay of the whole batch books nothing new.
        mid = snapshot(ledger)
        count = ledger.count_transfers()
        replay = ledger.create_transfers(specs)
        assert ledger.count_transfers() == count
        assert snapshot(ledger) == mid
        linked = {i for chain in chains(specs) if len(chain) > 1 for i in chain}
        for first, again in zip(results, replay, strict=True):
            if first.result == Result.OK:
                assert again.result in (
                    Result.EXISTS,
                    Result.LINKED_EVENT_FAILED,
                    Result.LINKED_EVENT_CHAIN_OPEN,
                    Result.EXISTS_WITH_DIFFERENT_FIELDS,
                )
            elif first.result in TRANSIENT_RESULTS:
                # Its id stays failed, whatever the book looks like now. In a chain, an
                # earlier transfer may now fail first, and this one answers linked_event_failed.
                expected = {Result.ID_ALREADY_FAILED, Result.LINKED_EVENT_FAILED}
                assert again.result in (expected if first.index in linked else {Result.ID_ALREADY_FAILED})
        clock.advance(3)


@given(
    holds=st.lists(
        st.tuples(st.integers(min_value=1, max_value=50), st.sampled_from([0, 2, 10])), min_size=1, max_size=8
    ),
    actions=st.lists(
        st.tuples(st.sampled_from(["post", "void", "wait"]), st.integers(0, 7), st.integers(0, 60)), max_size=12
    ),
)
def test_two_phase_post_void_and_expiry_are_exact(ledger: Ledger, clock, holds, actions):
    reset(ledger.engine)
    ledger.create_accounts([AccountSpec(n, a, flags=f) for n, a, f in ACCOUNTS[:3]])
    ledger.create_transfer(TransferSpec(1, 2, 10_000, id="fund"))
    ledger.create_transfers(
        [
            TransferSpec(2, 3, amount, id=f"h{i}", flags=TransferFlags.PENDING, timeout_s=timeout)
            for i, (amount, timeout) in enumerate(holds)
        ]
    )
    expected_posted = 0
    for n, (action, index, value) in enumerate(actions):
        if action == "wait":
            clock.advance(value / 10)
            continue
        if index >= len(holds):
            continue
        held = ledger.transfer(f"h{index}")
        flags = TransferFlags.POST_PENDING if action == "post" else TransferFlags.VOID_PENDING
        amount = (value % held.amount) + 1 if action == "post" else None
        result = ledger.create_transfer(TransferSpec(id=f"a{n}", flags=flags, pending_id=f"h{index}", amount=amount))
        if result.result == Result.OK and action == "post":
            expected_posted += amount
    ledger.expire_pending()
    still_pending = sum(
        t.amount for t in ledger.lookup_transfers([f"h{i}" for i in range(len(holds))]) if t.pending_status == "pending"
    )
    client = ledger.account(2)
    assert client.debits_posted == expected_posted
    assert client.debits_pending == still_pending
    assert ledger.account(3).credits_posted == expected_posted
    assert ledger.verify() == []
