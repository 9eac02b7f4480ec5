"""A Fireblocks API as its documentation describes it, for the adapter's tests.

It checks every request's JWT on its own terms (the token's parts decoded by hand and the RS256
signature verified with `cryptography`, not with the library the adapter signs with), and
answers with the shapes of Fireblocks' API reference: VaultAccount, CreateVaultAssetResponse,
paginated addresses, CreateTransactionResponse, TransactionResponse. It keeps what it was sent,
so a test sees exactly what reached "Fireblocks".
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

API_KEY = "3f2b5c8e-1a4d-4e6f-9b7a-0c2d4e6f8a1b"


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def new_rsa_key() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key, pem


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_webhook(key: rsa.RSAPrivateKey, body: bytes) -> str:
    """What Fireblocks puts in `Fireblocks-Signature`: base64 of RSA-SHA512 (PKCS#1 v1.5) of the body."""
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA512())).decode()


@dataclass
class Seen:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes
    claims: dict[str, Any]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class FakeFireblocks:
    """State: vault accounts with wallets and balances, and transactions by id and externalTxId."""

    api_user_key: rsa.RSAPublicKey
    now_ms: int = 1_780_000_000_000
    seen: list[Seen] = field(default_factory=list)
    vaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Faults: called with the request before it is answered; may raise (a timeout after the
    # request was taken) or return a response that replaces the normal answer.
    fault: Callable[[httpx.Request, Any], httpx.Response | None] | None = None
    # Called before the request is acted on: a response it returns is Fireblocks refusing it.
    refuse: Callable[[httpx.Request], httpx.Response | None] | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- the JWT, checked independently -----------------------------------------------------

    def _claims(self, request: httpx.Request) -> dict[str, Any]:
        assert request.headers["X-API-Key"] == API_KEY
        scheme, _, token = request.headers["Authorization"].partition(" ")
        assert scheme == "Bearer"
        head, payload, signature = token.split(".")
        assert json.loads(_b64url(head)) == {"alg": "RS256", "typ": "JWT"}
        self.api_user_key.verify(_b64url(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        claims = json.loads(_b64url(payload))
        target = request.url.raw_path.decode()
        assert claims["uri"] == target, (claims["uri"], target)
        assert claims["bodyHash"] == hashlib.sha256(request.content).hexdigest()
        assert claims["sub"] == API_KEY
        assert claims["exp"] - claims["iat"] == 55
        assert all(claims["nonce"] != s.claims["nonce"] for s in self.seen), "a nonce was used twice"
        return claims

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        claims = self._claims(request)
        key = request.headers.get("Idempotency-Key")
        if key is not None and len(key) > 40:  # Fireblocks' documented limit
            return self._error(400, 1100, "Idempotency-Key is longer than 40 characters")
        self.seen.append(
            Seen(request.method, request.url.raw_path.decode(), dict(request.headers), request.content, claims)
        )
        if self.refuse is not None:
            refused = self.refuse(request)
            if refused is not None:
                return refused
        answer = self._answer(request)
        if self.fault is not None:
            replaced = self.fault(request, answer)
            if replaced is not None:
                return replaced
        return answer

    def _answer(self, request: httpx.Request) -> httpx.Response:
        parts = [unquote(p) for p in request.url.path.split("/")[2:]]  # after /v1
        body = json.loads(request.content) if request.content else None
        method = request.method
        if parts == ["vault", "accounts"] and method == "POST":
            vault_id = str(len(self.vaults))
            self.vaults[vault_id] = {
                "id": vault_id,
                "name": body["name"],
                "customerRefId": body.get("customerRefId"),
                "hiddenOnUI": body.get("hiddenOnUI", False),
                "autoFuel": False,
                "assets": [],
            }
            return httpx.Response(200, json=self.vaults[vault_id])
        if parts[:2] == ["vault", "accounts"] and len(parts) == 3 and method == "GET":
            vault = self.vaults.get(parts[2])
            return httpx.Response(200, json=vault) if vault else self._error(404, 11001, "Vault account not found")
        if parts[:2] == ["vault", "accounts"] and len(parts) == 5 and parts[4] == "addresses_paginated":
            vault = self.vaults.get(parts[2])
            wallet = next((a for a in (vault or {}).get("assets", []) if a["id"] == parts[3]), None)
            if wallet is None:
                return self._error(404, 11006, "Asset wallet not found")
            return httpx.Response(
                200,
                json={
                    "addresses": [
                        {
                            "assetId": parts[3],
                            "address": wallet["_address"],
                            "description": "",
                            "tag": "",
                            "type": "Permanent",
                            "addressFormat": "BASE",
                        }
                    ],
                    "paging": {},
                },
            )
        if parts[:2] == ["vault", "accounts"] and len(parts) == 4 and method == "POST":
            vault = self.vaults[parts[2]]
            address = "0x" + hashlib.sha256(f"{parts[2]}:{parts[3]}".encode()).hexdigest()[:40]
            vault["assets"].append(
                {
                    "id": parts[3],
                    "total": "0",
                    "balance": "0",
                    "available": "0",
                    "pending": "0",
                    "frozen": "0",
                    "lockedAmount": "0",
                    "_address": address,
                }
            )
            return httpx.Response(200, json={"id": "1", "address": address, "legacyAddress": "", "tag": ""})
        if parts == ["transactions"] and method == "POST":
            if any(t["externalTxId"] == body["externalTxId"] for t in self.transactions.values()):
                return self._error(400, 1438, "externalTxId already used")
            tx_id = f"{next(self._ids):08d}-fb00-4000-8000-000000000000"
            destination = body["destination"]
            self.transactions[tx_id] = {
                "id": tx_id,
                "externalTxId": body["externalTxId"],
                "status": "SUBMITTED",
                "subStatus": "",
                "txHash": "",
                "operation": body.get("operation", "TRANSFER"),
                "note": body.get("note", ""),
                "assetId": body["assetId"],
                "source": {**body["source"], "name": "", "subType": ""},
                "destination": {"type": destination["type"], "id": destination.get("id"), "name": "", "subType": ""},
                "destinationAddress": destination.get("oneTimeAddress", {}).get("address", ""),
                "destinationTag": destination.get("oneTimeAddress", {}).get("tag", ""),
                "amountInfo": {
                    "amount": body["amount"],
                    "requestedAmount": body["amount"],
                    "netAmount": body["amount"],
                },
                "amount": float(body["amount"]),
                "createdAt": self.now_ms,
                "lastUpdated": self.now_ms,
            }
            return httpx.Response(200, json={"id": tx_id, "status": "SUBMITTED"})
        if parts[:2] == ["transactions", "external_tx_id"] and method == "GET":
            found = next((t for t in self.transactions.values() if t["externalTxId"] == parts[2]), None)
            return httpx.Response(200, json=found) if found else self._error(404, 1404, "Transaction not found")
        if parts == ["transactions"] and method == "GET":
            after = int(request.url.params.get("after", "0"))
            rows = sorted(
                (t for t in self.transactions.values() if t["createdAt"] > after), key=lambda t: t["createdAt"]
            )
            return httpx.Response(200, json=rows[: int(request.url.params.get("limit", "200"))])
        if parts[0] == "transactions" and len(parts) == 2 and method == "GET":
            found = self.transactions.get(parts[1])
            return httpx.Response(200, json=found) if found else self._error(404, 1404, "Transaction not found")
        if parts[0] == "transactions" and len(parts) == 3 and parts[2] == "cancel":
            found = self.transactions.get(parts[1])
            if found is None:
                return self._error(404, 1404, "Transaction not found")
            found["status"] = "CANCELLED"
            return httpx.Response(200, json={"success": True})
        return self._error(404, 0, f"no route {method} {request.url.path}")

    @staticmethod
    def _error(status: int, code: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"message": message, "code": code})

    # -- what a test does to the custodian's side -------------------------------------------

    def set_status(self, tx_id: str, status: str, sub_status: str = "", tx_hash: str = "") -> dict[str, Any]:
        self.now_ms += 1000
        tx = self.transactions[tx_id]
        tx.update(status=status, subStatus=sub_status, txHash=tx_hash or tx["txHash"], lastUpdated=self.now_ms)
        return tx

    def fund(self, vault_id: str, asset_id: str, total: str, available: str | None = None) -> None:
        for asset in self.vaults[vault_id]["assets"]:
            if asset["id"] == asset_id:
                asset.update(total=total, balance=total, available=available or total)
                return
        self.vaults[vault_id]["assets"].append(
            {"id": asset_id, "total": total, "balance": total, "available": available or total, "_address": "0x0"}
        )
