"""Account references: an id or a name, never both.

In a JSON body an integer is an id and a string is a name, except the one explicit
form "id:42". In a path or a query every reference is text, so there it is a name
unless it is `id:<ASCII digits>`. Today's ledger took any all-digit string for an id,
so an account opened under the name "2" would have received money meant for the
account whose id is 2; the API now decides what a reference means before the ledger
is asked, and hands it an int id or a name.
"""

from __future__ import annotations

import re

from andchain.api.problems import ApiProblem
from andchain.context import Context
from andchain.errors import NotFound
from andchain.ledger import Account
from andchain.ledger.model import NAME_LENGTH_MAX

# Account ids are 64-bit signed integers in the database (BIGINT, SQLite's rowid).
ACCOUNT_ID_MAX = 2**63 - 1
_ID_FORM = re.compile(r"id:([0-9]+)", re.ASCII)
# One past the range: what an id with too many digits to exist stands for.
_NO_SUCH_ID = ACCOUNT_ID_MAX + 1

AccountRef = int | str


def parse(ref: int | str) -> AccountRef:
    """An int id or a name. `id:<ASCII digits>` is an id; any other string is a name."""
    if isinstance(ref, bool):  # bool is an int in Python; the models refuse it before this
        raise TypeError(f"an account reference is an id or a name, was {ref!r}")
    if isinstance(ref, int):
        return ref
    match = _ID_FORM.fullmatch(ref)
    if match is None:
        return ref
    digits = match.group(1).lstrip("0")
    # Bounding the digits first keeps int() away from huge inputs (and from its 4,300-digit limit).
    return int(digits or "0") if len(digits) <= len(str(ACCOUNT_ID_MAX)) else _NO_SUCH_ID


def _cannot_exist(ref: AccountRef) -> bool:
    if isinstance(ref, int):
        return not 1 <= ref <= ACCOUNT_ID_MAX
    return not ref or len(ref) > NAME_LENGTH_MAX


def _describe(ref: AccountRef) -> str:
    if isinstance(ref, int):
        return f"with id {ref}" if ref <= ACCOUNT_ID_MAX else "with that id (ids are at most 2^63-1)"
    return f"named {ref[:NAME_LENGTH_MAX]!r}"


def account(ctx: Context, ref: AccountRef) -> Account:
    """The account a path or query names; 404 `account_not_found` when there is none."""
    if _cannot_exist(ref):
        raise NotFound(f"no account {_describe(ref)}", code="account_not_found")
    return ctx.ledger.account(ref)


def account_id(ctx: Context, ref: int | str, field: str) -> int:
    """The id of the account a request body names; 422 `account_not_found` when there is none.

    An id in range is handed to the ledger as it is: the ledger itself reports
    `debit_account_not_found` / `credit_account_not_found` for an id it does not hold.
    """
    parsed = parse(ref)
    if _cannot_exist(parsed):
        raise ApiProblem(422, "account_not_found", f"{field}: no account {_describe(parsed)}")
    if isinstance(parsed, int):
        return parsed
    try:
        return ctx.ledger.account(parsed).id
    except NotFound:
        raise ApiProblem(422, "account_not_found", f"{field}: no account {_describe(parsed)}") from None
