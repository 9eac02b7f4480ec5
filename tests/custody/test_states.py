"""A custodian transfer's normalised state never moves backwards, and a terminal state never
changes, whatever order, repetition or contradiction the reports arrive in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from andchain.custody.states import TERMINAL, CustodyState, advance, check_terminal_unchanged
from andchain.errors import InvariantBroken

S = CustodyState
FORWARD = [S.CREATED, S.SCREENING, S.AWAITING_APPROVAL, S.SIGNING, S.BROADCASTING, S.CONFIRMING]


def test_the_normal_life_moves_forward_one_report_at_a_time():
    state = S.CREATED
    for reported in [*FORWARD[1:], S.COMPLETED]:
        step = advance(state, reported)
        assert step.changed and step.state is reported
        state = step.state


def test_a_late_report_changes_nothing():
    step = advance(S.CONFIRMING, S.AWAITING_APPROVAL)
    assert step.state is S.CONFIRMING and not step.changed and not step.contradiction


def test_a_duplicate_terminal_report_is_nothing_and_a_contradicting_one_is_flagged_not_applied():
    assert advance(S.COMPLETED, S.COMPLETED) == advance(S.COMPLETED, S.CONFIRMING)
    contradiction = advance(S.COMPLETED, S.FAILED)
    assert contradiction.state is S.COMPLETED and contradiction.contradiction and not contradiction.changed


def test_unknown_never_replaces_a_state_and_asks_for_a_look_up():
    step = advance(S.SIGNING, S.UNKNOWN)
    assert step.state is S.SIGNING and step.look_up and not step.changed
    assert advance(S.UNKNOWN, S.SIGNING).state is S.SIGNING


def test_a_terminal_report_ends_any_state_before_it():
    for state in FORWARD:
        for terminal in TERMINAL:
            assert advance(state, terminal).state is terminal


def test_the_stores_invariant_refuses_rewriting_a_terminal_state():
    check_terminal_unchanged(S.SIGNING, S.COMPLETED)
    check_terminal_unchanged(S.COMPLETED, S.COMPLETED)
    with pytest.raises(InvariantBroken):
        check_terminal_unchanged(S.COMPLETED, S.FAILED)


@given(st.lists(st.sampled_from(list(CustodyState)), max_size=30))
def test_any_order_of_reports_keeps_states_monotonic_and_the_first_terminal_for_good(reports):
    state = S.CREATED
    first_terminal = None
    for reported in reports:
        before = state
        state = advance(state, reported).state
        check_terminal_unchanged(before, state)
        if before not in TERMINAL and state not in TERMINAL:
            assert FORWARD.index(state) >= FORWARD.index(before)
        if first_terminal is None and reported in TERMINAL:
            first_terminal = reported
    if first_terminal is not None:
        assert state is first_terminal
    else:
        expected = max((r for r in reports if r in FORWARD), key=FORWARD.index, default=S.CREATED)
        assert state is expected
