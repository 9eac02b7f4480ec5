"""The bundled reference custodian behind the custodian port (HTTP to `andchain custodian serve`).

Its states are the normalised ones already (`state`), with the upper-case `status` as the raw
one. Its webhooks carry `X-Custodian-Timestamp` and `X-Custodian-Signature: v1=<hex HMAC-SHA256
of "<timestamp>.<body>">`; one older than `WEBHOOK_TOLERANCE_S` is refused (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx

from andchain.custody.adapters.http import ProviderHttp, decimal_text, minor_units, obj, path_part
from andchain.custody.port import (
    Balance,
    CustodianAnswerUnreadable,
    CustodyAccount,
    CustodyTransfer,
    DepositAddress,
    Destination,
    TransferPage,
    TransferRequest,
    WebhookEvent,
    WebhookRejected,
    check_direction,
)
from andchain.custody.states import CustodyState
from andchain.money import AssetRegistry

WEBHOOK_TOLERANCE_S = 300


class ReferenceCustodianAdapter:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        webhook_secret: str,
        assets: AssetRegistry,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "reference",
    ) -> None:
        self.name = name
        self.assets = assets
        self.webhook_secret = webhook_secret
        self.clock = clock
        bearer = {"Authorization": f"Bearer {api_key}"}
        self.http = ProviderHttp(
            name, base_url, lambda method, target, body: bearer, timeout_s=timeout_s, transport=transport
        )

    def create_account(self, name: str, *, owner: str, idempotency_key: str) -> CustodyAccount:
        answer = self.http.request(
            "POST", "/v1/accounts", body={"name": name, "owner": owner}, headers={"Idempotency-Key": idempotency_key}
        )
        return CustodyAccount(self.name, str(answer["id"]), str(answer["name"]), str(answer["owner"]))

    def deposit_address(self, account_id: str, asset: str, network: str) -> DepositAddress:
        answer = self.http.request(
            "POST", f"/v1/accounts/{path_part(account_id)}/addresses", body={"asset": asset, "network": network}
        )
        return DepositAddress(self.name, account_id, asset, network, str(answer["address"]), answer.get("tag"))

    def balances(self, account_id: str) -> list[Balance]:
        answer = self.http.request("GET", f"/v1/accounts/{path_part(account_id)}/balances")
        return balances_of(self.name, account_id, answer.get("balances"), self.assets)

    def _submit(self, request: TransferRequest) -> CustodyTransfer:
        answer = self.http.request(
            "POST",
            "/v1/transfers",
            body=request_body(request, self.assets),
            headers={"Idempotency-Key": request.idempotency_key},
        )
        return self.parse(answer)

    def withdraw(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=False)
        return self._submit(request)

    def transfer(self, request: TransferRequest) -> CustodyTransfer:
        check_direction(request, internal=True)
        return self._submit(request)

    def get(self, transfer_id: str) -> CustodyTransfer:
        answer = self.http.request(
            "GET",
            f"/v1/transfers/{path_part(transfer_id)}",
            not_found=f"no transfer {transfer_id} at the reference custodian",
        )
        return self.parse(answer)

    def find(self, idempotency_key: str) -> CustodyTransfer | None:
        answer = self.http.request("GET", "/v1/transfers", params={"idempotency_key": idempotency_key})
        found = answer.get("transfers") or []
        return self.parse(found[0]) if found else None

    def transfers(self, cursor: str | None = None, *, limit: int = 100) -> TransferPage:
        limit = max(1, min(limit, 500))
        answer = self.http.request("GET", "/v1/transfers", params={"after": int(cursor or 0), "limit": limit})
        rows = answer.get("transfers") or []
        return TransferPage(
            [self.parse(r) for r in rows], str(answer.get("cursor", cursor or 0)), more=len(rows) >= limit
        )

    def cancel(self, transfer_id: str) -> CustodyTransfer:
        answer = self.http.request(
            "POST",
            f"/v1/transfers/{path_part(transfer_id)}/cancel",
            not_found=f"no transfer {transfer_id} at the reference custodian",
        )
        return self.parse(answer)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        given = {k.lower(): v for k, v in headers.items()}
        timestamp = given.get("x-custodian-timestamp", "")
        signature = given.get("x-custodian-signature", "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not signature.startswith(
            "v1="
        ):
            raise WebhookRejected("the webhook has no valid X-Custodian-Timestamp and X-Custodian-Signature")
        if abs(self.clock() - int(timestamp)) > WEBHOOK_TOLERANCE_S:
            raise WebhookRejected("the webhook's timestamp is too far from now (a replay?)")
        wanted = hmac.new(self.webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(wanted, signature[3:]):
            raise WebhookRejected("the webhook's signature does not verify")
        try:
            event = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise WebhookRejected("the webhook's body is not JSON") from None
        if not isinstance(event, dict) or "id" not in event:
            raise WebhookRejected("the webhook's body has no id")
        transfer = self.parse(event["transfer"]) if isinstance(event.get("transfer"), dict) else None
        return WebhookEvent(self.name, str(event["id"]), str(event.get("type", "")), transfer, raw=event)

    def parse(self, row: Any) -> CustodyTransfer:
        return parse_view(self.name, self.assets, row)


def parse_view(custodian: str, assets: AssetRegistry, row: Any) -> CustodyTransfer:
    """A transfer as kept custody shows it (the reference service's answers, the `self` adapter's)."""
    row = obj(row)
    if not row.get("id") or not row.get("state"):
        raise CustodianAnswerUnreadable(f"custodian {custodian} reported a transfer without id or state")
    try:
        state = CustodyState(str(row["state"]))
    except ValueError:
        state = CustodyState.UNKNOWN
    asset = str(row["asset"])
    target = obj(row.get("destination"))
    destination: Destination | None = None
    kind = row.get("kind")
    if kind == "deposit" or target.get("account") is not None:
        destination = Destination(account_id=str(target["account"]))
    elif target.get("address"):
        destination = Destination(address=str(target["address"]), tag=target.get("tag") or None)
    return CustodyTransfer(
        custodian=custodian,
        id=str(row["id"]),
        idempotency_key=row.get("idempotency_key"),
        state=state,
        raw_status=str(row.get("status", "")),
        raw_sub_status=row.get("reason"),
        source_account_id=row.get("source_account"),
        destination=destination,
        asset=asset,
        network=str(row["network"]),
        amount_minor=minor_units(row["amount"], assets.get(asset).scale, what="amount"),
        tx_hash=row.get("tx_hash"),
        incoming=kind == "deposit",
        updated_at_ms=int(row["updated_at_us"]) // 1000 if row.get("updated_at_us") else None,
        raw=row,
    )


def request_body(request: TransferRequest, assets: AssetRegistry) -> dict[str, Any]:
    """What kept custody takes for a withdrawal or an internal transfer."""
    destination: dict[str, Any] = (
        {"account": request.destination.account_id}
        if request.destination.internal
        else {"address": request.destination.address}
    )
    body: dict[str, Any] = {
        "source_account": request.source_account_id,
        "destination": destination,
        "asset": request.asset,
        "network": request.network,
        "amount": decimal_text(request.amount_minor, assets.get(request.asset).scale),
        "note": request.note,
    }
    if request.travel_rule is not None:
        body["travel_rule"] = dict(request.travel_rule)
    return body


def balances_of(custodian: str, account_id: str, rows: Any, assets: AssetRegistry) -> list[Balance]:
    out = []
    for row in rows or []:
        scale = assets.get(str(row["asset"])).scale
        out.append(
            Balance(
                custodian,
                account_id,
                str(row["asset"]),
                minor_units(row["total"], scale, what="total balance"),
                minor_units(row["available"], scale, what="available balance"),
            )
        )
    return out
