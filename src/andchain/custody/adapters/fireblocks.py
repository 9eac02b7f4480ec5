"""Fireblocks behind the custodian port.

Written from Fireblocks' published API documentation and its Python SDK's request signing; it
has not run against the live service (tests/custody/test_fireblocks.py holds the request and
answer fixtures it is checked against).

- Auth: `X-API-Key` and `Authorization: Bearer <JWT>`, the JWT signed RS256 with the API user's
  private key, claims `uri` (path and query), `nonce` (unique per request), `iat`, `exp`
  (iat + 55 s, as the SDK; the docs ask for under 30 s of skew), `sub` (the API key) and
  `bodyHash` (hex SHA-256 of the exact body bytes sent, of "" without a body).
- Accounts are vault accounts; a deposit address is the vault's wallet for an asset id.
- A withdrawal or an internal transfer is `POST /v1/transactions` with `externalTxId` (our
  idempotency key, unique at Fireblocks for ever) and the `Idempotency-Key` header (24 h);
  after a timeout it is found by `GET /v1/transactions/external_tx_id/{externalTxId}`.
- Webhooks (v1): `Fireblocks-Signature` is the base64 RSA-SHA512 signature of the raw body,
  checked with Fireblocks' published public key (configured: it differs per environment).
  The v2 format (detached JWS, keys from a JWKS URL) is not read yet.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx
import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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
    TransferNotFound,
    TransferPage,
    TransferRequest,
    WebhookEvent,
    WebhookRejected,
    accepted,
    check_direction,
)
from andchain.custody.states import CustodyState

BASE_URL = "https://api.fireblocks.io"
TOKEN_LIFETIME_S = 55
PAGE_SIZE_MAX = 500  # Fireblocks' own maximum for GET /v1/transactions
IDEMPOTENCY_HEADER_LENGTH_MAX = 40  # Fireblocks refuses a longer Idempotency-Key

# Fireblocks' transaction statuses (and the older TIMEOUT) on the normalised ones. A third party's
# approval comes after signing in Fireblocks' order (PENDING_SIGNATURE, PENDING_3RD_PARTY...,
# BROADCASTING), so it ranks as SIGNING: mapped to AWAITING_APPROVAL it would rank below the
# state already reached and be dropped. CANCELLING (it may still fail to cancel) and
# PARTIALLY_COMPLETED are UNKNOWN: looked up again until they settle.
STATES: dict[str, CustodyState] = {
    "SUBMITTED": CustodyState.CREATED,
    "PENDING_AML_SCREENING": CustodyState.SCREENING,
    "PENDING_ENRICHMENT": CustodyState.SCREENING,
    "PENDING_AUTHORIZATION": CustodyState.AWAITING_APPROVAL,
    "PENDING_CONSOLE_APPROVAL": CustodyState.AWAITING_APPROVAL,
    "PENDING_3RD_PARTY_MANUAL_APPROVAL": CustodyState.SIGNING,
    "PENDING_3RD_PARTY": CustodyState.SIGNING,
    "QUEUED": CustodyState.SIGNING,
    "PENDING_SIGNATURE": CustodyState.SIGNING,
    "BROADCASTING": CustodyState.BROADCASTING,
    "CONFIRMING": CustodyState.CONFIRMING,
    "COMPLETED": CustodyState.COMPLETED,
    "CANCELLED": CustodyState.CANCELLED,
    "BLOCKED": CustodyState.REJECTED,
    "REJECTED": CustodyState.REJECTED,
    "FAILED": CustodyState.FAILED,
    "TIMEOUT": CustodyState.FAILED,
}


def header_key(key: str) -> str:
    """The Idempotency-Key header for `key`: itself when Fireblocks takes it, else a digest of it
    (the same key always gives the same header)."""
    if len(key) <= IDEMPOTENCY_HEADER_LENGTH_MAX and key.isascii():
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:IDEMPOTENCY_HEADER_LENGTH_MAX]


def state_of(status: str) -> CustodyState:
    return STATES.get(status, CustodyState.UNKNOWN)


class FireblocksSigner:
    """The JWT Fireblocks asks on every request."""

    def __init__(
        self,
        api_key: str,
        private_key_pem: str,
        *,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.api_key = api_key
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a Fireblocks API user's key is an RSA private key (PEM)")
        self.private_key: rsa.RSAPrivateKey = key
        self.clock = clock
        self.nonce = nonce

    def token(self, uri: str, body: bytes) -> str:
        now = int(self.clock())
        claims = {
            "uri": uri,
            "nonce": self.nonce(),
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "sub": self.api_key,
            "bodyHash": hashlib.sha256(body).hexdigest(),
        }
        return jwt.encode(claims, self.private_key, algorithm="RS256")

    def __call__(self, method: str, uri: str, body: bytes) -> Mapping[str, str]:
        return {"X-API-Key": self.api_key, "Authorization": f"Bearer {self.token(uri, body)}"}


class FireblocksCustodian:
    def __init__(
        self,
        *,
        api_key: str,
        private_key_pem: str,
        assets: AssetMap,
        webhook_public_key_pem: str | None = None,
        base_url: str = BASE_URL,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] | None = None,
        name: str = "fireblocks",
    ) -> None:
        self.name = name
        self.assets = assets
        signer = FireblocksSigner(api_key, private_key_pem, clock=clock, **({"nonce": nonce} if nonce else {}))
        self.http = ProviderHttp(name, base_url, signer, timeout_s=timeout_s, transport=transport)
        self.webhook_key = (
            serialization.load_pem_public_key(webhook_public_key_pem.encode()) if webhook_public_key_pem else None
        )

    # -- accounts ---------------------------------------------------------------------------

    def create_account(self, name: str, *, owner: str, idempotency_key: str) -> CustodyAccount:
        answer = self.http.request(
            "POST",
            "/v1/vault/accounts",
            body={"name": name, "customerRefId": owner, "hiddenOnUI": True, "autoFuel": False},
            headers={"Idempotency-Key": header_key(idempotency_key)},
        )
        if not isinstance(answer, dict) or answer.get("id") is None:
            raise CustodianAnswerUnreadable("Fireblocks created a vault account without saying its id: look it up")
        return CustodyAccount(self.name, str(answer["id"]), str(answer.get("name", name)), owner)

    def deposit_address(self, account_id: str, asset: str, network: str) -> DepositAddress:
        asset_id = self.assets.provider_id(asset, network)
        path = f"/v1/vault/accounts/{path_part(account_id)}/{path_part(asset_id)}"
        try:
            page = self.http.request("GET", f"{path}/addresses_paginated", not_found="no wallet yet")
            addresses = page.get("addresses") or []
        except TransferNotFound:
            addresses = []
        if addresses:
            first = addresses[0]
            return DepositAddress(
                self.name, account_id, asset, network, str(first["address"]), first.get("tag") or None
            )
        # The vault has no wallet for the asset yet: creating it gives its first address. The key
        # makes a retry after a timeout the same creation.
        made = self.http.request(
            "POST", path, body={}, headers={"Idempotency-Key": header_key(f"wallet:{account_id}:{asset_id}")}
        )
        return DepositAddress(self.name, account_id, asset, network, str(made["address"]), made.get("tag") or None)

    def balances(self, account_id: str) -> list[Balance]:
        vault = self.http.request("GET", f"/v1/vault/accounts/{path_part(account_id)}")
        found: list[Balance] = []
        for entry in vault.get("assets") or []:
            ours = self.assets.ours(str(entry.get("id")))
            if ours is None:
                continue  # an asset the bank does not book at this custodian
            scale = self.assets.scale(ours[0])
            total = minor_units(entry.get("total", "0"), scale, what="total balance")
            available = minor_units(entry.get("available", "0"), scale, what="available balance")
            found.append(Balance(self.name, account_id, ours[0], total, available))
        return found

    # -- transfers --------------------------------------------------------------------------

    def withdraw(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=False)
        return self._submit(request)

    def transfer(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=True)
        return self._submit(request)

    def _submit(self, request: TransferRequest) -> CustodyTransfer:
        asset_id = self.assets.provider_id(request.asset, request.network)
        destination: dict[str, Any]
        if request.destination.internal:
            destination = {"type": "VAULT_ACCOUNT", "id": request.destination.account_id}
        else:
            one_time: dict[str, Any] = {"address": request.destination.address}
            if request.destination.tag:
                one_time["tag"] = request.destination.tag
            destination = {"type": "ONE_TIME_ADDRESS", "oneTimeAddress": one_time}
        body: dict[str, Any] = {
            "operation": "TRANSFER",
            "assetId": asset_id,
            "amount": decimal_text(request.amount_minor, self.assets.scale(request.asset)),
            "source": {"type": "VAULT_ACCOUNT", "id": request.source_account_id},
            "destination": destination,
            "externalTxId": request.idempotency_key,
        }
        if request.note:
            body["note"] = request.note
        if request.travel_rule is not None:
            body["travelRuleMessage"] = dict(request.travel_rule)
        try:
            answer = self.http.request(
                "POST", "/v1/transactions", body=body, headers={"Idempotency-Key": header_key(request.idempotency_key)}
            )
        except CustodianRefused as refused:
            # A refusal of a create whose answer may have been lost before: Fireblocks refuses an
            # externalTxId it already has, and that transaction is ours. Only a key it does not
            # know makes the refusal final.
            found = self.find(request.idempotency_key)
            if found is not None:
                return found
            if "externaltxid" in str(refused.details.get("answer", "")).lower():
                raise CustodianUnavailable(
                    "Fireblocks has a transaction for this key but does not show it yet: look it up again"
                ) from None
            raise
        if not isinstance(answer, dict) or answer.get("id") is None:
            raise CustodianAnswerUnreadable("Fireblocks took the transaction without saying its id: look it up")
        status = str(answer.get("status", "SUBMITTED"))
        return accepted(self.name, str(answer["id"]), request, state_of(status), status, answer)

    def get(self, transfer_id: str) -> CustodyTransfer:
        answer = self.http.request(
            "GET",
            f"/v1/transactions/{path_part(transfer_id)}",
            not_found=f"no Fireblocks transaction {transfer_id}",
        )
        return self._parse_or_refuse(answer)

    def find(self, idempotency_key: str) -> CustodyTransfer | None:
        try:
            answer = self.http.request(
                "GET",
                f"/v1/transactions/external_tx_id/{path_part(idempotency_key)}",
                not_found="no transaction for that key",
            )
        except TransferNotFound:
            return None
        return self._parse_or_refuse(answer)

    def transfers(self, cursor: str | None = None, *, limit: int = 100) -> TransferPage:
        """Transactions by creation, oldest first, from the cursor's millisecond on: how the bank
        learns of transfers it did not make (a deposit into a vault). Fireblocks filters `after`
        on creation time (strictly after), so the state of a transfer already known is followed by
        its webhooks and by `get`, not here.

        The cursor is a `createdAt` in ms. Reading from that same millisecond again (not after it)
        keeps two transactions created in one millisecond across a page boundary; those already
        seen come again, which changes nothing (`advance`)."""
        limit = max(1, min(limit, PAGE_SIZE_MAX))
        params: dict[str, str | int] = {"orderBy": "createdAt", "sort": "ASC", "limit": limit}
        after = int(cursor) if cursor else None
        if after is not None:
            params["after"] = after - 1
        answer = self.http.request("GET", "/v1/transactions", params=params)
        rows = [row for row in answer if isinstance(row, dict)] if isinstance(answer, list) else []
        found = [t for t in (self._parse(row) for row in rows) if t is not None]
        newest = max((int(row.get("createdAt") or 0) for row in rows), default=after or 0)
        full = len(rows) >= limit
        if full and newest == after:
            # A full page inside one millisecond: step past it rather than read it for ever.
            newest += 1
        return TransferPage(found, str(newest) if newest else cursor, more=full)

    def cancel(self, transfer_id: str) -> CustodyTransfer:
        path = f"/v1/transactions/{path_part(transfer_id)}"
        self.http.request(
            "POST",
            f"{path}/cancel",
            body={},
            headers={"Idempotency-Key": header_key(f"cancel:{transfer_id}")},
            not_found=f"no Fireblocks transaction {transfer_id}",
        )
        return self.get(transfer_id)

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        if self.webhook_key is None or not isinstance(self.webhook_key, rsa.RSAPublicKey):
            raise WebhookRejected("no Fireblocks webhook public key is configured: webhooks are not accepted")
        wanted = {k.lower(): v for k, v in headers.items()}.get("fireblocks-signature")
        if not wanted:
            raise WebhookRejected("the webhook has no Fireblocks-Signature header")
        try:
            signature = base64.b64decode(wanted, validate=True)
            self.webhook_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA512())
        except (ValueError, InvalidSignature):
            raise WebhookRejected("the webhook's Fireblocks-Signature does not verify") from None
        try:
            event = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise WebhookRejected("the webhook's body is not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise WebhookRejected("the webhook's body has no type")
        data = event.get("data") if isinstance(event.get("data"), dict) else None
        transfer = None
        if data is not None and event["type"].startswith("TRANSACTION_"):
            try:
                transfer = self._parse(data)
            except (CustodianAnswerUnreadable, CustodianRefused, ValueError, TypeError):
                transfer = None  # signed but unreadable: the caller looks the transaction up
        # v1 webhooks carry no id of their own: the type, transaction, status and update time
        # name one report, so that a report delivered twice is recognised; without them, the body.
        fields = [data.get(k) for k in ("id", "status", "lastUpdated")] if data is not None else [None]
        ident = (
            f"{event['type']}:{fields[0]}:{fields[1]}:{fields[2]}"
            if all(f is not None for f in fields)
            else "sha256:" + hashlib.sha256(body).hexdigest()
        )
        return WebhookEvent(self.name, ident, event["type"], transfer, raw=event)

    # -- parsing ----------------------------------------------------------------------------

    def _parse_or_refuse(self, row: Any) -> CustodyTransfer:
        parsed = self._parse(row)
        if parsed is None:
            raise CustodianAnswerUnreadable(
                f"custodian {self.name} reported a transaction in an asset that is not configured"
            )
        return parsed

    def _parse(self, row: Any) -> CustodyTransfer | None:
        """A TransactionResponse; None for an asset the bank does not book here."""
        if not isinstance(row, dict) or "id" not in row or "status" not in row:
            raise CustodianAnswerUnreadable(f"custodian {self.name} reported a transaction without id or status")
        ours = self.assets.ours(str(row.get("assetId")))
        if ours is None:
            return None
        asset, network = ours
        info = obj(row.get("amountInfo"))
        amount = info.get("amount", row.get("amount", "0"))
        source = obj(row.get("source"))
        target = obj(row.get("destination"))
        destination: Destination | None
        if target.get("type") == "VAULT_ACCOUNT" and target.get("id") is not None:
            destination = Destination(account_id=str(target["id"]))
        elif row.get("destinationAddress"):
            destination = Destination(address=str(row["destinationAddress"]), tag=row.get("destinationTag") or None)
        else:
            destination = None
        ours_source = source.get("type") == "VAULT_ACCOUNT"
        status = str(row["status"])
        return CustodyTransfer(
            custodian=self.name,
            id=str(row["id"]),
            idempotency_key=row.get("externalTxId") or None,
            state=state_of(status),
            raw_status=status,
            raw_sub_status=row.get("subStatus") or None,
            source_account_id=str(source["id"]) if ours_source and source.get("id") is not None else None,
            destination=destination,
            asset=asset,
            network=network,
            amount_minor=minor_units(amount, self.assets.scale(asset), what="amount"),
            tx_hash=row.get("txHash") or None,
            incoming=not ours_source and target.get("type") == "VAULT_ACCOUNT",
            updated_at_ms=int(row["lastUpdated"]) if row.get("lastUpdated") is not None else None,
            raw=row,
        )
