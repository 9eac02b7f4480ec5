"""Account names and references: a reference names one account, never two."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from andchain.errors import NotFound
from andchain.ledger import AccountSpec, Ledger, Result, TransferSpec
from andchain.ledger.rules import ACCOUNT_ID_MAX, account_ref, valid_account_name
from tests.ledger.helpers import open_accounts


@pytest.mark.parametrize(
    "name",
    [
        "2",  # digits only: would read as an id
        "0042",
        "id:42",  # the explicit id form
        "id:clients",
        "ID:7",
        "clients:²",  # superscript two: a Unicode digit, not ASCII
        "²",
        "clients:\u0663",  # Arabic-Indic three
        "\u0661\u0662",  # Arabic-Indic twelve, digits only
        "clients:café",  # a Unicode letter
        "clients:acme usd",
        "clients::acme",
        ":clients",
        "clients:",
        "x" * 201,
    ],
)
def test_an_account_name_that_is_not_an_ascii_colon_path_or_reads_as_an_id_is_refused(ledger: Ledger, name):
    (result,) = ledger.create_accounts([AccountSpec(name, "USD")])
    assert result.result == Result.NAME_INVALID
    assert ledger.list_accounts() == []


@pytest.mark.parametrize("name", ["clients:2", "2fa", "id", "idx:1", "a.b-c_d:E9", "bank:usd:cash"])
def test_an_ascii_colon_path_is_a_valid_name(ledger: Ledger, name):
    (result,) = ledger.create_accounts([AccountSpec(name, "USD")])
    assert result.result == Result.OK
    assert ledger.account(name).id == result.account_id


def test_an_id_is_an_int_or_written_id_colon_digits_and_any_other_string_is_a_name(ledger: Ledger):
    first, second = open_accounts(ledger, ("bank:usd:cash", "USD", 0), ("clients:2", "USD", 0))
    assert ledger.account(second).name == "clients:2"
    assert ledger.account(f"id:{second}").name == "clients:2"
    assert ledger.account(f"id:{first}").name == "bank:usd:cash"
    assert ledger.account_id(f"id:{second}") == second
    assert ledger.account_id("clients:2") == second
    # A bare number is a name, and no account can carry it: the answer says how ids are written.
    with pytest.raises(NotFound, match="id:2") as refused:
        ledger.account(str(second))
    assert refused.value.code == "account_not_found"
    with pytest.raises(NotFound):
        ledger.account_id(str(second))


@pytest.mark.parametrize(
    "ref",
    [
        2**63,
        2**64 + 1,
        0,
        -1,
        True,
        "id:9223372036854775808",  # 2^63
        "id:99999999999999999999999999",
        "id:0",
        "id:",
        "id:-1",
        "id:+1",
        "id: 1",
        "id:1 ",
        "id:1\n",
        "id:²",
        "id:\u0661",
        "id:0x1",
        "ID:1",
        "1",
        "²",
        "\u0661",
    ],
)
def test_a_reference_that_names_no_possible_account_is_account_not_found_never_a_crash(ledger: Ledger, ref):
    open_accounts(ledger, ("bank:usd:cash", "USD", 0))
    with pytest.raises(NotFound) as refused:
        ledger.account(ref)
    assert refused.value.code == "account_not_found"


def test_the_largest_id_is_a_valid_reference_that_finds_nothing(ledger: Ledger):
    assert ledger.account_id(f"id:{ACCOUNT_ID_MAX}") == ACCOUNT_ID_MAX
    with pytest.raises(NotFound):
        ledger.account(ACCOUNT_ID_MAX)
    result = ledger.create_transfer(TransferSpec(ACCOUNT_ID_MAX, ACCOUNT_ID_MAX - 1, 1, id="t"))
    assert result.result == Result.DEBIT_ACCOUNT_NOT_FOUND


@given(st.text(max_size=40))
def test_a_valid_name_is_never_read_as_an_id(text):
    if valid_account_name(text):
        assert account_ref(text) == text
        assert text.isascii() and not text.isdigit()


@given(st.integers(min_value=1, max_value=ACCOUNT_ID_MAX))
def test_every_id_written_id_colon_digits_reads_back_as_that_id(account_id):
    assert account_ref(f"id:{account_id}") == account_ref(account_id) == account_id
    assert not valid_account_name(f"id:{account_id}")
