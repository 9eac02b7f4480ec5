"""A Coinbase Prime API as its documentation describes it, for the adapter's tests.

Every request's signature is recomputed here from the documented recipe (base64 HMAC-SHA256 of
timestamp + METHOD + path with /v1 and without the query + body, keyed with the signing key as
written) and the timestamp checked within 30 s. Answers have the shapes of Prime's reference:
wallets with pagination, deposit_instructions, balance, CreateWithdrawalResponse,
CreateTransferResponse, Transaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

ACCESS_KEY = "prime-access-key"
PASSPHRASE = "prime-passphrase"
SIGNING_KEY = "cHJpbWUtc2lnbmluZy1rZXk="  # used as written, never base64-decoded
PORTFOLIO = "7b1e-portfolio"


@dataclass
class FakePrime:
    now_s: int = 1_780_000_000
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    wallets: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, dict[str, str]] = field(default_factory=dict)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    # A wallet creation is listed only after this many further listings (Prime creates wallets
    # asynchronously, behind an activity).
    wallet_delay: int = 0
    pending_wallets: list[list[Any]] = field(default_factory=list)
    fault: Any = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _check(self, request: httpx.Request) -> None:
        headers = request.headers
        assert headers["X-CB-ACCESS-KEY"] == ACCESS_KEY and headers["X-CB-ACCESS-PASSPHRASE"] == PASSPHRASE
        timestamp = headers["X-CB-ACCESS-TIMESTAMP"]
        assert timestamp.isdigit() and abs(int(timestamp) - self.now_s) <= 30
        path = request.url.raw_path.decode().split("?")[0]  # as sent (encoded), without the query
        message = timestamp + request.method + path + request.content.decode()
        expected = base64.b64encode(hmac.new(SIGNING_KEY.encode(), message.encode(), hashlib.sha256).digest()).decode()
        assert headers["X-CB-ACCESS-SIGNATURE"] == expected

    def handle(self, request: httpx.Request) -> httpx.Response:
        self._check(request)
        self.seen.append((request.method, request.url.raw_path.decode(), request.content))
        if self.fault is not None:
            replaced = self.fault(request)
            if replaced is not None:
                return replaced
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        parts = [unquote(p) for p in request.url.path.split("/")[2:]]
        assert parts[:2] == ["portfolios", PORTFOLIO]
        rest = parts[2:]
        body = json.loads(request.content) if request.content else None
        params = request.url.params
        if rest == ["wallets"] and request.method == "GET":
            for entry in self.pending_wallets:
                entry[0] -= 1
            for entry in [e for e in self.pending_wallets if e[0] < 0]:
                self.pending_wallets.remove(entry)
                self.wallets[entry[1]["id"]] = entry[1]
            symbols = params.get("symbols")
            rows = [w for w in self.wallets.values() if not symbols or w["symbol"] == symbols]
            return httpx.Response(
                200,
                json={"wallets": rows, "pagination": {"next_cursor": "", "has_next": False, "sort_direction": "DESC"}},
            )
        if rest == ["wallets"] and request.method == "POST":
            known = [w for w in self.wallets.values() if w["name"] == body["name"]]
            wallet = (
                known[0]
                if known
                else {
                    "id": f"wallet-{len(self.wallets) + len(self.pending_wallets) + 1}",
                    "name": body["name"],
                    "symbol": body["symbol"],
                    "type": "VAULT",
                    "created_at": "2026-11-26T10:00:00Z",
                }
            )
            if not known and not any(e[1]["name"] == body["name"] for e in self.pending_wallets):
                self.pending_wallets.append([self.wallet_delay, wallet])
            return httpx.Response(
                200,
                json={"activity_id": "act-1", "name": body["name"], "symbol": body["symbol"], "wallet_type": "VAULT"},
            )
        if len(rest) == 3 and rest[0] == "wallets" and rest[2] == "deposit_instructions":
            wallet = self.wallets[rest[1]]
            return httpx.Response(
                200,
                json={
                    "crypto_instructions": {
                        "id": rest[1],
                        "name": wallet["name"],
                        "type": "CRYPTO",
                        "address": "0x" + hashlib.sha256(rest[1].encode()).hexdigest()[:40],
                        "account_identifier": "",
                        "account_identifier_name": "",
                        "network": "base",
                    }
                },
            )
        if len(rest) == 3 and rest[0] == "wallets" and rest[2] == "balance":
            balance = self.balances.get(rest[1], {"amount": "0", "holds": "0"})
            return httpx.Response(
                200,
                json={
                    "balance": {
                        "symbol": self.wallets[rest[1]]["symbol"],
                        **balance,
                        "bonded_amount": "0",
                        "reserved_amount": "0",
                    }
                },
            )
        if len(rest) == 3 and rest[0] == "wallets" and rest[2] in ("withdrawals", "transfers"):
            known = next((t for t in self.transactions if t["idempotency_key"] == body["idempotency_key"]), None)
            if known is None:
                known = {
                    "id": f"tx-{next(self._ids)}",
                    "wallet_id": rest[1],
                    "portfolio_id": PORTFOLIO,
                    "type": "WITHDRAWAL" if rest[2] == "withdrawals" else "INTERNAL_WITHDRAWAL",
                    "status": "TRANSACTION_CREATED",
                    "symbol": body["currency_symbol"],
                    "created_at": "2026-11-26T10:00:00Z",
                    "completed_at": "",
                    "amount": body["amount"],
                    "transfer_from": {"type": "WALLET", "value": rest[1]},
                    "transfer_to": {
                        "type": "ADDRESS",
                        "value": body["blockchain_address"]["address"],
                        "address": body["blockchain_address"]["address"],
                        "account_identifier": "",
                    }
                    if rest[2] == "withdrawals"
                    else {"type": "WALLET", "value": body["destination"]},
                    "network_fees": "0",
                    "fees": "0",
                    "blockchain_ids": [],
                    "idempotency_key": body["idempotency_key"],
                }
                self.transactions.append(known)
            return httpx.Response(
                200,
                json={
                    "activity_id": "act-2",
                    "approval_url": "https://prime.example/approve",
                    "symbol": known["symbol"],
                    "amount": known["amount"],
                    "fee": "0",
                    "destination_type": "DESTINATION_BLOCKCHAIN",
                    "source_type": "WALLET",
                    "transaction_id": known["id"],
                },
            )
        if rest == ["transactions"]:
            rows = list(self.transactions)
            if params.get("sort_direction") == "DESC":
                rows.reverse()
            start = int(params.get("cursor") or 0)
            limit = int(params.get("limit", "100"))
            page = rows[start : start + limit]
            more = start + limit < len(rows)
            return httpx.Response(
                200,
                json={
                    "transactions": page,
                    "pagination": {
                        "next_cursor": str(start + limit) if more else "",
                        "has_next": more,
                        "sort_direction": params.get("sort_direction", "DESC"),
                    },
                },
            )
        if len(rest) == 2 and rest[0] == "transactions":
            found = next((t for t in self.transactions if t["id"] == rest[1]), None)
            if found is None:
                return httpx.Response(404, json={"message": "transaction not found"})
            return httpx.Response(200, json={"transaction": found})
        return httpx.Response(404, json={"message": f"no route {request.url.path}"})
