"""The network port: what andchain needs of any ledger network, EVM or not.

A network holds accounts with roles, takes signed transactions that mint, transfer
or burn a token, and answers what became of a transaction and what an account
holds. The EVM adapter implements it over the chain client; the Google Cloud
Universal Ledger adapter (chains/gcul.py) over GCUL's REST API. Domain code that
only needs these verbs can run on either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from andchain.chains.client import Call, ChainClient
from andchain.chains.contracts import artifact, memo32
from andchain.errors import DomainError

TOKEN_ABI = artifact("PermissionedToken").abi


class TxStatus(enum.StrEnum):
    PENDING = "pending"
    FINAL = "final"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the network does not know it (yet): look it up again, never assume


@dataclass(frozen=True)
class LedgerTx:
    """A token movement to sign and submit: mint (sender = a minter), transfer, or burn (the holder's own)."""

    kind: str
    token: str
    sender: str
    amount: int
    receiver: str | None = None
    memo: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("mint", "transfer", "burn"):
            raise DomainError(f"kind must be mint, transfer or burn, was {self.kind!r}", code="invalid_request")
        if self.amount <= 0:
            raise DomainError(f"amount must be positive, was {self.amount}", code="amount_must_be_positive")
        if self.kind != "burn" and not self.receiver:
            raise DomainError(f"a {self.kind} needs a receiver", code="invalid_request")


@dataclass(frozen=True)
class TxState:
    tx_id: str
    status: TxStatus
    detail: str = ""
    raw_status: str = ""


@dataclass(frozen=True)
class AccountState:
    account_id: str
    balances: dict[str, int]
    roles: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


class NetworkPort(Protocol):
    name: str

    def submit(self, tx: LedgerTx) -> str:
        """Sign with the sender's key and submit; returns the network's transaction id."""

    def transaction_state(self, tx_id: str) -> TxState: ...

    def account(self, account_id: str, tokens: tuple[str, ...] = ()) -> AccountState: ...


class EvmNetwork:
    """The port over an EVM network: a token is a PermissionedToken contract address."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self.name = client.name

    def submit(self, tx: LedgerTx) -> str:
        memo = memo32(tx.memo)
        if tx.kind == "mint":
            data = TOKEN_ABI.encode_call("mint", tx.receiver, tx.amount, memo)
        elif tx.kind == "transfer":
            data = TOKEN_ABI.encode_call("transferWithMemo", tx.receiver, tx.amount, memo)
        else:
            data = TOKEN_ABI.encode_call("redeem", tx.amount, memo)
        (sent,) = self.client.submit(tx.sender, [Call(tx.token, data)])
        return sent.hash

    def transaction_state(self, tx_id: str) -> TxState:
        receipt = self.client.receipts([tx_id]).get(tx_id)
        if receipt is None:
            known = self.client.known([tx_id])
            return TxState(
                tx_id,
                TxStatus.PENDING if known else TxStatus.UNKNOWN,
                "in the pool" if known else "not known to the node",
            )
        if not receipt.status:
            return TxState(tx_id, TxStatus.FAILED, "reverted", "0x0")
        depth = self.client.block_number() - receipt.block_number + 1
        final = depth >= self.client.network.confirmations
        return TxState(
            tx_id,
            TxStatus.FINAL if final else TxStatus.PENDING,
            f"block {receipt.block_number}, {depth} confirmation(s)",
            "0x1",
        )

    def account(self, account_id: str, tokens: tuple[str, ...] = ()) -> AccountState:
        balances, roles = {}, []
        for token in tokens:
            balance, listed, frozen, minter = self.client.read_many(
                token,
                TOKEN_ABI,
                [
                    ("balanceOf", (account_id,)),
                    ("allowlisted", (account_id,)),
                    ("frozen", (account_id,)),
                    ("isMinter", (account_id,)),
                ],
            )
            balances[token] = balance
            roles += [
                f"{name}:{token}" for name, on in (("holder", listed), ("frozen", frozen), ("minter", minter)) if on
            ]
        return AccountState(account_id, balances, tuple(roles))
