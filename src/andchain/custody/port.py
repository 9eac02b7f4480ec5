"""The custodian port: what andchain asks of any custodian, whoever holds the keys.

A custodian (the reference service, Fireblocks, Coinbase Prime, or andchain's own key store
for the bank's treasury) keeps accounts (a vault, a portfolio wallet), gives deposit addresses
per asset and network, reports balances, and moves value out (a withdrawal to an external
address) or between two of its own accounts (an internal transfer). Every move carries the
caller's idempotency key: the custodian refuses to make a second transfer for it, and after a
timeout the transfer is found by that key before anything is sent again (`submit_once`).

Amounts are exact integers in the asset's minor units (`Asset.scale`); adapters convert to
and from the provider's decimal strings and refuse anything inexact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from andchain.custody.states import CustodyState
from andchain.errors import DomainError, NotFound, Unavailable

# The owner of an account that belongs to the bank's trading desk, not to a client.
DESK = "desk"
# Idempotency keys andchain gives a custodian are at most this long. Each adapter derives the
# form its custodian takes (Fireblocks' Idempotency-Key header has at most 40 characters,
# Prime's idempotency_key is a UUID) and keeps the key itself where it fits (externalTxId).
IDEMPOTENCY_KEY_LENGTH_MAX = 128


class CustodianUnavailable(Unavailable):
    """The custodian did not answer in time, or answered 5xx / 429: nothing is known of the
    request's effect. Whoever meets it looks the request up by its key before sending it again."""

    code = "custodian_unavailable"


class CustodianAnswerUnreadable(CustodianUnavailable):
    """The custodian answered something this adapter cannot read (no id, not JSON, a redirect):
    nothing is known of the request's effect, as after a timeout. Repeated, it ends in an
    operator's hands (the operation's attempts), never in a refusal that would release holds."""

    code = "custodian_answer_unreadable"


class CustodianRefused(DomainError):
    """The custodian refused the request for good (4xx: bad address, unknown account, not enough
    funds, policy). Carries its own code and message in `details`."""

    code = "custodian_refused"
    http_status = 422


class TransferNotFound(NotFound):
    code = "custody_transfer_not_found"


class WebhookRejected(DomainError):
    """A webhook whose signature, timestamp or body does not verify: it changes nothing."""

    code = "webhook_rejected"
    http_status = 401


@dataclass(frozen=True, slots=True)
class CustodyAccount:
    """An account at a custodian (Fireblocks vault account, Prime wallet, reference account)."""

    custodian: str
    id: str
    name: str
    owner: str  # a client id, or DESK


@dataclass(frozen=True, slots=True)
class DepositAddress:
    custodian: str
    account_id: str
    asset: str
    network: str
    address: str
    tag: str | None = None  # a memo/destination tag where the network needs one


@dataclass(frozen=True, slots=True)
class Balance:
    """What the custodian reports for one asset of one account, in the asset's minor units.
    `available_minor` excludes what is held for pending withdrawals."""

    custodian: str
    account_id: str
    asset: str
    total_minor: int
    available_minor: int


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a transfer goes: an external address (a withdrawal), or another account at the same
    custodian (an internal transfer)."""

    address: str | None = None
    tag: str | None = None
    account_id: str | None = None

    def __post_init__(self) -> None:
        if (self.address is None) == (self.account_id is None):
            raise DomainError("a destination is an external address or an account at the custodian, exactly one")

    @property
    def internal(self) -> bool:
        return self.account_id is not None


@dataclass(frozen=True, slots=True)
class TransferRequest:
    idempotency_key: str
    source_account_id: str
    destination: Destination
    asset: str
    network: str
    amount_minor: int
    note: str = ""
    # IVMS101 originator/beneficiary data, carried when the amount is above the travel-rule
    # threshold (the caller decides; the adapter passes it in the provider's field).
    travel_rule: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.idempotency_key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
            raise DomainError(
                f"an idempotency key has 1-{IDEMPOTENCY_KEY_LENGTH_MAX} characters, had {len(self.idempotency_key)}"
            )
        # An int and nothing else: a float (1e6) or a bool would be formatted into another amount.
        if type(self.amount_minor) is not int or self.amount_minor <= 0:
            raise DomainError(f"a transfer's amount is a positive integer of minor units, was {self.amount_minor!r}")


@dataclass(frozen=True, slots=True)
class CustodyTransfer:
    """A transfer as the custodian reports it: the normalised state and the provider's own."""

    custodian: str
    id: str
    idempotency_key: str | None
    state: CustodyState
    raw_status: str
    raw_sub_status: str | None
    source_account_id: str | None
    destination: Destination | None
    asset: str
    network: str
    amount_minor: int
    tx_hash: str | None = None
    # Whether the custodian moved value into one of its accounts from outside (a deposit seen on
    # chain), rather than out of one.
    incoming: bool = False
    updated_at_ms: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def accepted(
    custodian: str, transfer_id: str, request: TransferRequest, state: CustodyState, raw_status: str, raw: Any
) -> CustodyTransfer:
    """The transfer a custodian just took for `request`, as far as its answer says."""
    return CustodyTransfer(
        custodian=custodian,
        id=transfer_id,
        idempotency_key=request.idempotency_key,
        state=state,
        raw_status=raw_status,
        raw_sub_status=None,
        source_account_id=request.source_account_id,
        destination=request.destination,
        asset=request.asset,
        network=request.network,
        amount_minor=request.amount_minor,
        raw=raw if isinstance(raw, dict) else {},
    )


def check_direction(request: TransferRequest, *, internal: bool) -> None:
    """A withdrawal goes to an external address, an internal transfer to an account here."""
    if request.destination.internal and not internal:
        raise CustodianRefused("a withdrawal goes to an external address; use transfer for an account")
    if internal and not request.destination.internal:
        raise CustodianRefused("an internal transfer goes to an account at the custodian; use withdraw")


@dataclass(frozen=True, slots=True)
class TransferPage:
    transfers: list[CustodyTransfer]
    # Where to read on from (pass it back); None only when nothing was ever read.
    cursor: str | None
    # A full page came back: read on at once. Otherwise there is nothing more for now, and a later
    # call with the same cursor returns what happened since.
    more: bool = False


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified notification: its id (for de-duplication), its type, and the transfer it
    reports when it reports one."""

    custodian: str
    id: str
    type: str
    transfer: CustodyTransfer | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@runtime_checkable
class Custodian(Protocol):
    """One custodian. Every method may raise CustodianUnavailable (try again later, looking the
    request up first) or CustodianRefused (never again with the same request)."""

    name: str

    def create_account(self, name: str, *, owner: str, idempotency_key: str) -> CustodyAccount: ...

    def deposit_address(self, account_id: str, asset: str, network: str) -> DepositAddress: ...

    def balances(self, account_id: str) -> list[Balance]: ...

    def withdraw(self, request: TransferRequest) -> CustodyTransfer: ...

    def transfer(self, request: TransferRequest) -> CustodyTransfer: ...

    def get(self, transfer_id: str) -> CustodyTransfer: ...

    def find(self, idempotency_key: str) -> CustodyTransfer | None: ...

    def transfers(self, cursor: str | None = None, *, limit: int = 100) -> TransferPage: ...

    def cancel(self, transfer_id: str) -> CustodyTransfer: ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent: ...


def submit_once(custodian: Custodian, request: TransferRequest, *, first_attempt: bool = False) -> CustodyTransfer:
    """Send `request` unless the custodian already has a transfer for its key.

    After a timeout nothing says whether the custodian accepted the request, so every attempt
    but the first (which the caller recorded before sending: nothing can exist yet) looks it up
    by its key first, and sends only when the custodian has none. The custodian's own
    idempotency (the same key refused or answered with the first transfer) closes the window
    between the look-up and the send; an adapter that meets that refusal looks the key up again
    rather than call the transfer refused."""
    if not first_attempt:
        found = custodian.find(request.idempotency_key)
        if found is not None:
            return found
    if request.destination.internal:
        return custodian.transfer(request)
    return custodian.withdraw(request)
