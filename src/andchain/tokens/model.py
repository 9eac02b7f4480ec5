"""What the bank issues on its networks, and the ledger names that mirror it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from andchain.errors import DomainError
from andchain.money import AMOUNT_MAX_MINOR, Asset

DEPOSIT_TOKEN = "deposit_token"
FUND_SHARE = "mmf_share"
DVP = "dvp"


@dataclass(frozen=True)
class TokenDef:
    deployment: str
    name: str
    symbol: str
    decimals: int
    asset: Asset  # the ledger asset the token mirrors, at the same scale


TOKENS = {
    DEPOSIT_TOKEN: TokenDef(DEPOSIT_TOKEN, "Bank USD Deposit Token", "USDD", 2, Asset("USD", 2)),
    FUND_SHARE: TokenDef(FUND_SHARE, "Bank Money Market Fund Share", "MMF", 6, Asset("MMF", 6)),
}

BANK_ROLES = ("admin", "master_minter", "minter", "pauser", "compliance", "treasury")


class ClientKind(enum.StrEnum):
    LEGAL = "legal"
    NATURAL = "natural"


class ClientStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    kind: str
    status: str
    created_at_us: int


@dataclass(frozen=True)
class Wallet:
    client_id: str
    network: str
    address: str
    allowlisted: bool


@dataclass(frozen=True)
class RegisteredAddress:
    """An address a client owns on a public network, proven by its EIP-191 signature and screened."""

    client_id: str
    network: str
    address: str
    status: str  # verified, or blocked by screening
    allowlisted: bool
    registered_at_us: int


def dda_account(client_id: str) -> str:
    return f"clients:{client_id.lower()}:usd:dda"


def holder_account(network: str, token: TokenDef, address: str) -> str:
    """The ledger's mirror of one holder's balance of one token on one network."""
    return f"tokens:{network}:{token.symbol.lower()}:{address.lower()}"


def holders_prefix(network: str, token: TokenDef) -> str:
    return f"tokens:{network}:{token.symbol.lower()}:"


BANK_CASH = "bank:usd:cash"
BANK_SUSPENSE = "bank:usd:suspense"
BANK_SEIZED = "bank:usd:seized"


def check_amount(amount_minor: object, what: str = "amount") -> int:
    """The one check every entry point applies to an amount of minor units: a positive int that fits."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise DomainError(
            f"{what} must be a positive integer of minor units, was {amount_minor!r}", code="amount_must_be_positive"
        )
    if amount_minor > AMOUNT_MAX_MINOR:
        raise DomainError(f"{what} exceeds the maximum of 2^128-1 minor units", code="amount_exceeds_maximum")
    return amount_minor
