"""andchain's own custody behind the custodian port: the `self` adapter.

The bank holds these keys itself, in andchain's key store, and signs with its own chain client:
for its treasury today, and for client custody the day the bank chooses to offer it. It runs
the same kept-custody domain as the reference custodian (`custody/kept/`), in the bank's
database (the `custody_kept_*` tables) and its worker, so it passes the same contract tests
as the other adapters (tests/custody/test_contract.py): the seam is the port, not the place.

In-process, it sends no webhooks: the bank's worker advances its transfers (`process`) and
reads them back like any other custodian's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from andchain.chains.keys import KeyStoreError
from andchain.chains.rpc import RpcError
from andchain.custody.adapters.reference import balances_of, parse_view, request_body
from andchain.custody.kept.service import KeptCustody
from andchain.custody.port import (
    Balance,
    CustodianRefused,
    CustodianUnavailable,
    CustodyAccount,
    CustodyTransfer,
    DepositAddress,
    TransferNotFound,
    TransferPage,
    TransferRequest,
    WebhookEvent,
    WebhookRejected,
    check_direction,
)
from andchain.errors import Conflict, DomainError, NotFound, is_transient
from andchain.money import AssetRegistry

T = TypeVar("T")


class SelfCustodian:
    def __init__(self, kept: KeptCustody, assets: AssetRegistry, *, name: str = "self") -> None:
        self.name = name
        self.kept = kept
        self.assets = assets

    def _call(self, fn: Callable[[], T]) -> T:
        """The domain's refusals in the port's words: a missing transfer is TransferNotFound, any other
        refusal CustodianRefused with its code; what is transient (a node away) passes as it is."""
        try:
            return fn()
        except NotFound as exc:
            if exc.code == "transfer_not_found":
                raise TransferNotFound(exc.message, custodian=self.name) from None
            if exc.code == "key_not_found":
                raise CustodianUnavailable(exc.message, custodian=self.name) from None
            raise CustodianRefused(exc.message, code=exc.code, custodian=self.name) from None
        except (KeyStoreError, RpcError) as exc:
            # Not the request's fault: the key store (a passphrase, a mount) or a node. Nothing is
            # known of the effect: try again, and an operator sees it when it lasts.
            raise CustodianUnavailable(str(exc), custodian=self.name) from None
        except Conflict as exc:
            if exc.code == "transfer_changed":  # the worker moved it meanwhile: the same call again
                raise CustodianUnavailable(exc.message, custodian=self.name) from None
            raise CustodianRefused(exc.message, code=exc.code, custodian=self.name) from None
        except DomainError as exc:
            if exc.transient:
                raise CustodianUnavailable(exc.message, custodian=self.name) from None
            raise CustodianRefused(exc.message, code=exc.code, custodian=self.name) from None
        except Exception as exc:
            if is_transient(exc):  # the database busy or away
                raise CustodianUnavailable(f"{type(exc).__name__}: try again", custodian=self.name) from None
            raise

    def process(self) -> int:
        """One round of the kept-custody worker (the bank's worker calls it beside its other parts)."""
        return self.kept.process()

    def create_account(self, name: str, *, owner: str, idempotency_key: str) -> CustodyAccount:
        made = self._call(lambda: self.kept.create_account(name, owner, idempotency_key))
        return CustodyAccount(self.name, str(made["id"]), str(made["name"]), str(made["owner"]))

    def deposit_address(self, account_id: str, asset: str, network: str) -> DepositAddress:
        found = self._call(lambda: self.kept.deposit_address(account_id, asset, network))
        return DepositAddress(self.name, account_id, asset, network, str(found["address"]), found.get("tag"))

    def balances(self, account_id: str) -> list[Balance]:
        return balances_of(self.name, account_id, self._call(lambda: self.kept.balances(account_id)), self.assets)

    def withdraw(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=False)
        return self._submit(request)

    def transfer(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=True)
        return self._submit(request)

    def _submit(self, request: TransferRequest) -> CustodyTransfer:
        view, _ = self._call(lambda: self.kept.submit(request_body(request, self.assets), request.idempotency_key))
        return parse_view(self.name, self.assets, view)

    def get(self, transfer_id: str) -> CustodyTransfer:
        return parse_view(self.name, self.assets, self._call(lambda: self.kept.get(transfer_id)))

    def find(self, idempotency_key: str) -> CustodyTransfer | None:
        found = self._call(lambda: self.kept.find(idempotency_key))
        return parse_view(self.name, self.assets, found) if found is not None else None

    def transfers(self, cursor: str | None = None, *, limit: int = 100) -> TransferPage:
        limit = max(1, min(limit, 500))
        rows, position = self._call(lambda: self.kept.list(int(cursor or 0), limit))
        return TransferPage(
            [parse_view(self.name, self.assets, r) for r in rows], str(position), more=len(rows) >= limit
        )

    def cancel(self, transfer_id: str) -> CustodyTransfer:
        return parse_view(self.name, self.assets, self._call(lambda: self.kept.cancel(transfer_id)))

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        raise WebhookRejected("the bank's own custody sends no webhooks: its worker reads its transfers")
