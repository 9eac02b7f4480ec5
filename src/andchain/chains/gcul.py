"""Google Cloud Universal Ledger behind the network port, over GCUL's published REST surface.

Built from the public API reference of `universalledger.googleapis.com` v1:
- POST /v1/{endpoint}:submitTransaction  {"serializedSignedTransaction": base64}
  -> {"transactionDigestHex": hex}, the SHA-256 of the serialized signed transaction;
- GET  /v1/{endpoint}:queryTransactionState?transactionDigestHex=...
  -> {"transactionAttempts": [{"status": ..., "proofOfInclusion": ..., "statusEvents": [...]}]};
- GET  /v1/{endpoint}:queryAccount -> the account's details;
with `endpoint` = projects/{project}/locations/{location}/endpoints/{endpoint} and an
OAuth bearer token (scope cloud-platform).

What is not published in enough detail to reproduce here, and therefore sits behind a
codec this module does not pretend to own: the protobuf wire format of ClientTransaction
and SignedTransaction, the signature scheme of sender keys, and the exact fields of an
account. `CanonicalJsonCodec` stands in for them so that every request, digest and
state mapping is exercised; a deployment plugs the official protobuf codec into the
same seam. This adapter has been tested against request/response fixtures built from
the published schemas only, never against the live service.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from andchain.chains.keys import Signer
from andchain.chains.port import AccountState, LedgerTx, TxState, TxStatus
from andchain.chains.rpc import NodeUnreachable
from andchain.errors import DomainError

DEFAULT_BASE_URL = "https://universalledger.googleapis.com"
FINAL_STATUSES = frozenset({"FINALIZED"})
FAILED_STATUSES = frozenset({"FAILED", "REJECTED", "EXPIRED", "INVALID"})
RETRIES_MAX = 3


class GculError(DomainError):
    code = "gcul_error"
    http_status = 502


class Codec(Protocol):
    def client_transaction(self, tx: LedgerTx, nonce: int) -> bytes: ...

    def signed_transaction(self, client_tx: bytes, signature: bytes) -> bytes: ...


class CanonicalJsonCodec:
    """A stand-in for GCUL's protobuf messages: canonical JSON with the published field names."""

    def client_transaction(self, tx: LedgerTx, nonce: int) -> bytes:
        body = {
            "sender": tx.sender,
            "kind": tx.kind,
            "token": tx.token,
            "receiver": tx.receiver,
            "amount": str(tx.amount),
            "memo": tx.memo,
            "nonce": nonce,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed_transaction(self, client_tx: bytes, signature: bytes) -> bytes:
        body = {
            "serializedClientTransaction": base64.b64encode(client_tx).decode(),
            "senderSignature": base64.b64encode(signature).decode(),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class GculConfig:
    project: str
    location: str
    endpoint: str
    base_url: str = DEFAULT_BASE_URL

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/endpoints/{self.endpoint}"


class GculNetwork:
    def __init__(
        self,
        name: str,
        config: GculConfig,
        signer_for: Callable[[str], Signer],
        access_token: Callable[[], str],
        *,
        codec: Codec | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        nonce: Callable[[], int] = lambda: time.time_ns(),
    ) -> None:
        self.name = name
        self.config = config
        self.signer_for = signer_for
        self.access_token = access_token
        self.codec = codec or CanonicalJsonCodec()
        self._sleep = sleep
        self._nonce = nonce
        self._http = httpx.Client(base_url=config.base_url, transport=transport, timeout=10.0)

    def _request(self, method: str, verb: str, **kwargs: Any) -> dict[str, Any]:
        url = f"/v1/{self.config.resource}:{verb}"
        headers = {"authorization": f"Bearer {self.access_token()}"}
        delay = 0.2
        for attempt in range(RETRIES_MAX + 1):
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt == RETRIES_MAX:
                    raise NodeUnreachable(f"GCUL {self.name} did not answer: {exc}", network=self.name) from None
                self._sleep(delay)
                delay *= 2
                continue
            if response.status_code in (429, 500, 502, 503, 504) and attempt < RETRIES_MAX:
                self._sleep(delay)
                delay *= 2
                continue
            if response.status_code >= 400:
                try:
                    error = response.json().get("error", {})
                except ValueError:
                    error = {}
                raise GculError(
                    f"GCUL {verb} refused ({response.status_code} {error.get('status', '')}): "
                    f"{error.get('message', response.text[:200])}",
                    code="gcul_refused",
                )
            data: dict[str, Any] = response.json()
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    def submit(self, tx: LedgerTx) -> str:
        client_tx = self.codec.client_transaction(tx, self._nonce())
        signer = self.signer_for(tx.sender)
        v, r, s = signer.sign_message_hash(hashlib.sha256(client_tx).digest())
        signed = self.codec.signed_transaction(client_tx, r + s + bytes([v]))
        expected = hashlib.sha256(signed).hexdigest()
        reply = self._request(
            "POST", "submitTransaction", json={"serializedSignedTransaction": base64.b64encode(signed).decode()}
        )
        digest = str(reply.get("transactionDigestHex", "")).lower()
        if digest != expected:
            raise GculError(
                f"GCUL returned transaction id {digest or '(none)'}, expected the SHA-256 of what was "
                f"sent ({expected})",
                code="gcul_digest_mismatch",
            )
        return digest

    def transaction_state(self, tx_id: str) -> TxState:
        reply = self._request("GET", "queryTransactionState", params={"transactionDigestHex": tx_id})
        attempts = reply.get("transactionAttempts") or []
        statuses = [str(a.get("status", "")) for a in attempts]
        if not statuses:
            return TxState(tx_id, TxStatus.UNKNOWN, "no attempt known to this validator")
        if any(s in FINAL_STATUSES for s in statuses):
            return TxState(tx_id, TxStatus.FINAL, "finalized with proof of inclusion", ",".join(statuses))
        if all(s in FAILED_STATUSES for s in statuses):
            return TxState(tx_id, TxStatus.FAILED, "every attempt failed", ",".join(statuses))
        return TxState(tx_id, TxStatus.PENDING, "in progress", ",".join(statuses))

    def account(self, account_id: str, tokens: tuple[str, ...] = ()) -> AccountState:
        reply = self._request("GET", "queryAccount", params={"accountId": account_id})
        account = reply.get("account", reply)
        balances = {}
        for entry in account.get("balances", []):
            token = str(entry.get("tokenId") or entry.get("currency") or "")
            if not tokens or token in tokens:
                balances[token] = int(entry.get("amount", "0"))
        roles = tuple(str(r) for r in account.get("roles", []))
        return AccountState(account_id, balances, roles, account)
