"""The normalised life of a custodian transfer, the same for every custodian.

Each custodian names its states its own way (Fireblocks' PENDING_AUTHORIZATION, Coinbase
Prime's TRANSACTION_REQUESTED...); an adapter maps them onto these and keeps the raw one
beside. Reports arrive late, twice and out of order (a webhook retried after a newer one, a
poll that read a replica behind the webhook), so a state is never replaced by an earlier one
and a terminal state never changes: `advance` is the only way a stored state moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from andchain.errors import InvariantBroken


class CustodyState(StrEnum):
    CREATED = "created"
    SCREENING = "screening"
    AWAITING_APPROVAL = "awaiting_approval"
    SIGNING = "signing"
    BROADCASTING = "broadcasting"
    CONFIRMING = "confirming"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    # The custodian said something this adapter does not know (a new status, a status in
    # transition such as Fireblocks' CANCELLING): never stored over a known state; whoever meets
    # it looks the transfer up again.
    UNKNOWN = "unknown"


TERMINAL: frozenset[CustodyState] = frozenset(
    {CustodyState.COMPLETED, CustodyState.FAILED, CustodyState.REJECTED, CustodyState.CANCELLED}
)
# Value has left the custodian's control once a transfer is being broadcast: from there it may
# still fail on chain, but it can no longer be cancelled.
BROADCAST: frozenset[CustodyState] = frozenset(
    {CustodyState.BROADCASTING, CustodyState.CONFIRMING, CustodyState.COMPLETED}
)
_ORDER: dict[CustodyState, int] = {
    CustodyState.UNKNOWN: -1,
    CustodyState.CREATED: 0,
    CustodyState.SCREENING: 1,
    CustodyState.AWAITING_APPROVAL: 2,
    CustodyState.SIGNING: 3,
    CustodyState.BROADCASTING: 4,
    CustodyState.CONFIRMING: 5,
}


@dataclass(frozen=True, slots=True)
class Step:
    """What a report did to a stored state."""

    state: CustodyState
    changed: bool
    # A report that contradicts a terminal state (COMPLETED, then FAILED): the stored state
    # stays, and an operator must look, because one of the custodian's two answers was wrong.
    contradiction: bool = False
    # The report said UNKNOWN: the caller looks the transfer up (`Custodian.get`).
    look_up: bool = False


def advance(current: CustodyState, reported: CustodyState) -> Step:
    """The state after `reported` arrives while `current` is stored.

    - a terminal state never changes (the same terminal again is a duplicate; another one is a
      contradiction, kept for an operator);
    - UNKNOWN never replaces anything and asks for a look-up;
    - a terminal report ends any non-terminal state;
    - otherwise the later of the two in the normal order wins: a late or duplicated report
      changes nothing.
    """
    if current in TERMINAL:
        contradiction = reported in TERMINAL and reported != current
        return Step(current, changed=False, contradiction=contradiction)
    if reported is CustodyState.UNKNOWN:
        return Step(current, changed=False, look_up=True)
    if reported in TERMINAL:
        return Step(reported, changed=True)
    if _ORDER[reported] > _ORDER[current]:
        return Step(reported, changed=True)
    return Step(current, changed=False)


def check_terminal_unchanged(before: CustodyState, after: CustodyState) -> None:
    """An invariant for the stores that write states: a terminal state is never rewritten."""
    if before in TERMINAL and after != before:
        raise InvariantBroken(f"a terminal custody state changed: {before} -> {after}")
