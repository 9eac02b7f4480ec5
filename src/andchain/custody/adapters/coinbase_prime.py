"""Coinbase Prime behind the custodian port.

Written from Prime's published REST documentation and its Python SDK's request signing; it has
not run against the live service (tests/custody/test_coinbase_prime.py holds the request and
answer fixtures it is checked against).

- Auth: `X-CB-ACCESS-KEY`, `X-CB-ACCESS-PASSPHRASE`, `X-CB-ACCESS-TIMESTAMP` (integer
  seconds) and `X-CB-ACCESS-SIGNATURE`, the base64 HMAC-SHA256 of timestamp + METHOD + path
  (with `/v1`, without the query) + body, keyed with the signing key as it is written.
- Prime keeps one wallet per currency in a portfolio. An andchain account at Prime is a name;
  its wallet for an asset is the portfolio's vault wallet named `<account> <SYMBOL>`, created
  when it is first needed (a deposit address). Wallet creation is asynchronous at Prime: until
  the new wallet is listed, the address is "not yet" (CustodianUnavailable: try again).
- Withdrawals and transfers carry `idempotency_key`, a UUID derived from andchain's key
  (uuid5), so that the same request always carries the same one. Prime has no look-up by that
  key: `find` reads the newest transactions, a bounded number of pages, for it.
- Prime does not cancel a transfer through its API (it is rejected in Prime's own approval
  flow), and its webhook signing is not published: `cancel` and `verify_webhook` refuse, and
  transfers are followed by polling.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from andchain.custody.adapters.http import ProviderHttp, decimal_text, minor_units, obj, path_part
from andchain.custody.assets import AssetMap
from andchain.custody.port import (
    Balance,
    CustodianAnswerUnreadable,
    CustodianRefused,
    CustodianUnavailable,
    CustodyAccount,
    CustodyTransfer,
    DepositAddress,
    Destination,
    TransferPage,
    TransferRequest,
    WebhookEvent,
    WebhookRejected,
    accepted,
    check_direction,
)
from andchain.custody.states import CustodyState

BASE_URL = "https://api.prime.coinbase.com"
PAGE_SIZE_MAX = 100
# How far back `find` looks for a key: pages of the newest transactions, newest first. A retry
# comes soon after its first attempt; a key not found within them is "not known", never "never
# sent" (CustodianUnavailable), and the transfer waits for an operator.
FIND_PAGES_MAX = 20
WALLET_PAGES_MAX = 50
# The namespace of the UUIDs derived from andchain's idempotency keys.
KEY_NAMESPACE = uuid.UUID("6f1c2a4e-8d0b-5b7e-9a53-2c1d7f4e0b61")

STATES: dict[str, CustodyState] = {
    "TRANSACTION_CREATED": CustodyState.CREATED,
    "TRANSACTION_CONSTRUCTED": CustodyState.CREATED,
    "TRANSACTION_IMPORT_PENDING": CustodyState.CREATED,
    "TRANSACTION_REQUESTED": CustodyState.AWAITING_APPROVAL,
    "TRANSACTION_APPROVED": CustodyState.SIGNING,
    "TRANSACTION_GASSING": CustodyState.SIGNING,
    "TRANSACTION_GASSED": CustodyState.SIGNING,
    "TRANSACTION_PROVISIONED": CustodyState.SIGNING,
    "TRANSACTION_PLANNED": CustodyState.SIGNING,
    "TRANSACTION_PROCESSING": CustodyState.SIGNING,
    "TRANSACTION_RESTORED": CustodyState.SIGNING,
    "TRANSACTION_RETRIED": CustodyState.SIGNING,
    "TRANSACTION_DELAYED": CustodyState.SIGNING,
    "TRANSACTION_BROADCASTING": CustodyState.BROADCASTING,
    "TRANSACTION_DONE": CustodyState.COMPLETED,
    "TRANSACTION_IMPORTED": CustodyState.COMPLETED,
    "TRANSACTION_CANCELLED": CustodyState.CANCELLED,
    "TRANSACTION_REJECTED": CustodyState.REJECTED,
    "TRANSACTION_FAILED": CustodyState.FAILED,
    "TRANSACTION_EXPIRED": CustodyState.FAILED,
}
INCOMING_TYPES = frozenset({"DEPOSIT", "INTERNAL_DEPOSIT", "COINBASE_DEPOSIT"})


def state_of(status: str) -> CustodyState:
    return STATES.get(status, CustodyState.UNKNOWN)


def prime_key(idempotency_key: str) -> str:
    return str(uuid.uuid5(KEY_NAMESPACE, idempotency_key))


class PrimeSigner:
    def __init__(
        self, access_key: str, passphrase: str, signing_key: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.access_key = access_key
        self.passphrase = passphrase
        self.signing_key = signing_key
        self.clock = clock

    def signature(self, timestamp: str, method: str, path: str, body: bytes) -> str:
        message = f"{timestamp}{method.upper()}{path}".encode() + body
        return base64.b64encode(hmac.new(self.signing_key.encode(), message, hashlib.sha256).digest()).decode()

    def __call__(self, method: str, target: str, body: bytes) -> Mapping[str, str]:
        timestamp = str(int(self.clock()))
        path = urlsplit(target).path  # the query is not signed
        return {
            "X-CB-ACCESS-KEY": self.access_key,
            "X-CB-ACCESS-PASSPHRASE": self.passphrase,
            "X-CB-ACCESS-SIGNATURE": self.signature(timestamp, method, path, body),
            "X-CB-ACCESS-TIMESTAMP": timestamp,
        }


class CoinbasePrimeCustodian:
    def __init__(
        self,
        *,
        access_key: str,
        passphrase: str,
        signing_key: str,
        portfolio_id: str,
        assets: AssetMap,
        base_url: str = BASE_URL,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "coinbase_prime",
    ) -> None:
        self.name = name
        self.assets = assets
        self.portfolio = f"/v1/portfolios/{path_part(portfolio_id)}"
        signer = PrimeSigner(access_key, passphrase, signing_key, clock=clock)
        self.http = ProviderHttp(name, base_url, signer, timeout_s=timeout_s, transport=transport)
        # wallet id -> (account, symbol), filled from the portfolio's wallet list
        self._wallets: dict[str, tuple[str, str]] = {}

    # -- accounts and wallets ---------------------------------------------------------------

    def create_account(self, name: str, *, owner: str, idempotency_key: str) -> CustodyAccount:
        if not name or " " in name:
            raise CustodianRefused(f"an account name at Coinbase Prime has no spaces, was {name!r}")
        # Nothing to create yet: Prime's wallets are per currency, made with the first address.
        return CustodyAccount(self.name, name, name, owner)

    def _list_wallets(self, symbol: str | None = None) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        cursor: str | None = None
        for _ in range(WALLET_PAGES_MAX):
            params: dict[str, str | int] = {"type": "VAULT", "limit": PAGE_SIZE_MAX}
            if symbol:
                params["symbols"] = symbol
            if cursor:
                params["cursor"] = cursor
            page = self.http.request("GET", f"{self.portfolio}/wallets", params=params)
            for wallet in page.get("wallets") or []:
                account, _, wallet_symbol = str(wallet.get("name", "")).rpartition(" ")
                if account and wallet_symbol == str(wallet.get("symbol", "")).upper():
                    found[str(wallet["id"])] = (account, wallet_symbol)
            pagination = page.get("pagination") or {}
            cursor = pagination.get("next_cursor") or None
            if not pagination.get("has_next") or not cursor:
                break
        self._wallets.update(found)
        return found

    def _wallet_id(self, account_id: str, symbol: str, *, create: bool) -> str | None:
        for known in (self._wallets, None):
            wallets = known if known is not None else self._list_wallets(symbol)
            for wallet_id, (account, wallet_symbol) in wallets.items():
                if account == account_id and wallet_symbol == symbol:
                    return wallet_id
        if not create:
            return None
        name = f"{account_id} {symbol}"
        self.http.request(
            "POST",
            f"{self.portfolio}/wallets",
            body={
                "name": name,
                "symbol": symbol,
                "wallet_type": "VAULT",
                "idempotency_key": prime_key(f"wallet:{name}"),
            },
        )
        for wallet_id, (account, wallet_symbol) in self._list_wallets(symbol).items():
            if account == account_id and wallet_symbol == symbol:
                return wallet_id
        raise CustodianUnavailable(
            f"Coinbase Prime is still creating the wallet {name!r}: try again", custodian=self.name
        )

    def deposit_address(self, account_id: str, asset: str, network: str) -> DepositAddress:
        symbol = self.assets.provider_id(asset, network)
        wallet_id = self._wallet_id(account_id, symbol, create=True)
        answer = self.http.request(
            "GET",
            f"{self.portfolio}/wallets/{path_part(str(wallet_id))}/deposit_instructions",
            params={"deposit_type": "CRYPTO"},
        )
        instructions = answer.get("crypto_instructions") or {}
        if not instructions.get("address"):
            raise CustodianUnavailable(f"Coinbase Prime gave no deposit address for {account_id} {symbol} yet")
        return DepositAddress(
            self.name,
            account_id,
            asset,
            network,
            str(instructions["address"]),
            instructions.get("account_identifier") or None,
        )

    def balances(self, account_id: str) -> list[Balance]:
        found: list[Balance] = []
        for wallet_id, (account, symbol) in sorted(self._list_wallets().items()):
            ours = self.assets.ours(symbol)
            if account != account_id or ours is None:
                continue
            answer = self.http.request("GET", f"{self.portfolio}/wallets/{path_part(wallet_id)}/balance")
            balance = answer.get("balance") or {}
            scale = self.assets.scale(ours[0])
            total = minor_units(balance.get("amount", "0"), scale, what="balance")
            holds = minor_units(balance.get("holds", "0") or "0", scale, what="holds")
            found.append(Balance(self.name, account_id, ours[0], total, total - holds))
        return found

    # -- transfers --------------------------------------------------------------------------

    def _source_wallet(self, request: TransferRequest) -> tuple[str, str]:
        symbol = self.assets.provider_id(request.asset, request.network)
        wallet_id = self._wallet_id(request.source_account_id, symbol, create=False)
        if wallet_id is None:
            raise CustodianRefused(
                f"account {request.source_account_id} has no {symbol} wallet at Coinbase Prime", custodian=self.name
            )
        return wallet_id, symbol

    def withdraw(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=False)
        wallet_id, symbol = self._source_wallet(request)
        address: dict[str, Any] = {"address": request.destination.address}
        if request.destination.tag:
            address["account_identifier"] = request.destination.tag
        body: dict[str, Any] = {
            "amount": decimal_text(request.amount_minor, self.assets.scale(request.asset)),
            "destination_type": "DESTINATION_BLOCKCHAIN",
            "idempotency_key": prime_key(request.idempotency_key),
            "currency_symbol": symbol,
            "blockchain_address": address,
        }
        if request.travel_rule is not None:
            body["travel_rule_data"] = dict(request.travel_rule)
        answer = self.http.request("POST", f"{self.portfolio}/wallets/{path_part(wallet_id)}/withdrawals", body=body)
        return self._accepted(request, answer)

    def transfer(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=True)
        account = str(request.destination.account_id)
        wallet_id, symbol = self._source_wallet(request)
        target = self._wallet_id(account, symbol, create=False)
        if target is None:
            raise CustodianRefused(f"account {account} has no {symbol} wallet at Coinbase Prime", custodian=self.name)
        body = {
            "amount": decimal_text(request.amount_minor, self.assets.scale(request.asset)),
            "destination": target,
            "idempotency_key": prime_key(request.idempotency_key),
            "currency_symbol": symbol,
        }
        answer = self.http.request("POST", f"{self.portfolio}/wallets/{path_part(wallet_id)}/transfers", body=body)
        return self._accepted(request, answer)

    def _accepted(self, request: TransferRequest, answer: Any) -> CustodyTransfer:
        if not isinstance(answer, dict) or not answer.get("transaction_id"):
            raise CustodianUnavailable("Coinbase Prime accepted the request without a transaction id: look it up")
        return accepted(
            self.name, str(answer["transaction_id"]), request, CustodyState.CREATED, "TRANSACTION_CREATED", answer
        )

    def get(self, transfer_id: str) -> CustodyTransfer:
        answer = self.http.request(
            "GET",
            f"{self.portfolio}/transactions/{path_part(transfer_id)}",
            not_found=f"no Coinbase Prime transaction {transfer_id}",
        )
        parsed = self._parse(answer.get("transaction"), None)
        if parsed is None:
            raise CustodianAnswerUnreadable(
                f"Coinbase Prime reported transaction {transfer_id} in an asset not configured"
            )
        return parsed

    def find(self, idempotency_key: str) -> CustodyTransfer | None:
        wanted = prime_key(idempotency_key)
        cursor: str | None = None
        for _ in range(FIND_PAGES_MAX):
            params: dict[str, str | int] = {"sort_direction": "DESC", "limit": PAGE_SIZE_MAX}
            if cursor:
                params["cursor"] = cursor
            page = self.http.request("GET", f"{self.portfolio}/transactions", params=params)
            for row in page.get("transactions") or []:
                if isinstance(row, dict) and row.get("idempotency_key") == wanted:
                    found = self._parse(row, idempotency_key)
                    if found is None:
                        raise CustodianAnswerUnreadable(
                            f"Coinbase Prime has the transfer for this key in {row.get('symbol')}, not configured here"
                        )
                    return found
            pagination = page.get("pagination") or {}
            cursor = pagination.get("next_cursor") or None
            if not pagination.get("has_next") or not cursor:
                return None
        # Read as far as the bound allows and more remain: not seen is not "never sent". The
        # retry waits (and ends with an operator) rather than risk a second transfer.
        raise CustodianUnavailable(
            f"the key was not among Coinbase Prime's {FIND_PAGES_MAX * PAGE_SIZE_MAX} newest transactions: "
            "look it up by hand before sending again",
            custodian=self.name,
        )

    def transfers(self, cursor: str | None = None, *, limit: int = 100) -> TransferPage:
        """The portfolio's transactions, oldest first, with Prime's own cursor."""
        params: dict[str, str | int] = {"sort_direction": "ASC", "limit": max(1, min(limit, PAGE_SIZE_MAX))}
        if cursor:
            params["cursor"] = cursor
        page = self.http.request("GET", f"{self.portfolio}/transactions", params=params)
        rows = [row for row in page.get("transactions") or [] if isinstance(row, dict)]
        found = [t for t in (self._parse(row, None) for row in rows) if t is not None]
        pagination = page.get("pagination") or {}
        next_cursor = pagination.get("next_cursor") or None
        return TransferPage(found, next_cursor or cursor, more=bool(pagination.get("has_next")) and bool(next_cursor))

    def cancel(self, transfer_id: str) -> CustodyTransfer:
        raise CustodianRefused(
            "Coinbase Prime does not cancel a transfer through its API: reject it in Prime's approval flow",
            code="cancel_not_supported",
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        raise WebhookRejected(
            "Coinbase Prime's webhook signature scheme is not published: its transfers are followed by polling"
        )

    # -- parsing ----------------------------------------------------------------------------

    def _account_of(self, wallet_id: str | None) -> str | None:
        if not wallet_id:
            return None
        if wallet_id not in self._wallets:
            self._list_wallets()
        known = self._wallets.get(wallet_id)
        return known[0] if known else None

    def _parse(self, row: Any, idempotency_key: str | None) -> CustodyTransfer | None:
        if not isinstance(row, dict) or not row.get("id") or not row.get("status"):
            raise CustodianAnswerUnreadable(f"custodian {self.name} reported a transaction without id or status")
        ours = self.assets.ours(str(row.get("symbol", "")).upper())
        if ours is None:
            return None
        asset, network = ours
        status = str(row["status"])
        to = obj(row.get("transfer_to"))
        source = obj(row.get("transfer_from"))
        destination: Destination | None = None
        if to.get("type") == "WALLET" and to.get("value"):
            destination = Destination(account_id=self._account_of(str(to["value"])) or str(to["value"]))
        elif to.get("address") or (to.get("type") == "ADDRESS" and to.get("value")):
            destination = Destination(
                address=str(to.get("address") or to["value"]), tag=to.get("account_identifier") or None
            )
        hashes = row.get("blockchain_ids") or []
        stamp = row.get("completed_at") or row.get("created_at")
        updated_ms = (
            int(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() * 1000) if stamp else None
        )
        source_wallet = str(source["value"]) if source.get("type") == "WALLET" and source.get("value") else None
        return CustodyTransfer(
            custodian=self.name,
            id=str(row["id"]),
            idempotency_key=idempotency_key,
            state=state_of(status),
            raw_status=status,
            raw_sub_status=None,
            source_account_id=self._account_of(source_wallet) if source_wallet else None,
            destination=destination,
            asset=asset,
            network=network,
            amount_minor=abs(minor_units(row.get("amount", "0"), self.assets.scale(asset), what="amount")),
            tx_hash=str(hashes[0]) if hashes else None,
            incoming=str(row.get("type", "")) in INCOMING_TYPES,
            updated_at_ms=updated_ms,
            raw=row,
        )
