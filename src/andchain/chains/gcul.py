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
same seam. Because the stand-in's bytes are not what GCUL signs or parses, it only ever
talks to a local endpoint (localhost, a loopback address): an emulator or a fixture.
This adapter has been tested against request/response fixtures built from the published
schemas only, never against the live service.

Submission is idempotent by a caller's key: the first `submit(tx, key=...)` signs with a
fresh nonce and records the serialized signed transaction in `network_submissions`
before anything is sent; every later call with the key (a retry after a timeout or a
crash) sends those same bytes, whose SHA-256 is the same transaction id. The same key
for another transaction is refused.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from andchain.chains import schema
from andchain.chains.keys import Signer
from andchain.chains.port import AccountState, LedgerTx, TxState, TxStatus
from andchain.chains.rpc import NodeUnreachable
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError
from andchain.ledger.model import Clock, system_clock_us
from andchain.retry import Backoff, retrying
from andchain.tls import tls_context

DEFAULT_BASE_URL = "https://universalledger.googleapis.com"
FINAL_STATUSES = frozenset({"FINALIZED"})
FAILED_STATUSES = frozenset({"FAILED", "REJECTED", "EXPIRED", "INVALID"})
RETRIES_MAX = 3
KEY_LENGTH_MAX = 200
NONCE_MAX = 2**63 - 1  # a BigInteger column on both engines


class _Busy(Exception):
    """GCUL answered 429 or 5xx: worth another try."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class GculError(DomainError):
    code = "gcul_error"
    http_status = 502


class Codec(Protocol):
    # True for a codec that only imitates GCUL's messages: it may talk to a local endpoint only.
    stand_in: bool

    def client_transaction(self, tx: LedgerTx, nonce: int) -> bytes: ...

    def signed_transaction(self, client_tx: bytes, signature: bytes) -> bytes: ...


class CanonicalJsonCodec:
    """A stand-in for GCUL's protobuf messages: canonical JSON with the published field names."""

    stand_in = True

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

    @property
    def is_local(self) -> bool:
        """Whether base_url names this machine: localhost or a loopback address, nothing else."""
        host = urlparse(self.base_url).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class Submission:
    """A signed transaction as recorded under its idempotency key, before it was first sent."""

    key: str
    request_sha256: str
    nonce: int
    signed_tx: bytes
    tx_id: str


class GculNetwork:
    def __init__(
        self,
        name: str,
        config: GculConfig,
        signer_for: Callable[[str], Signer],
        access_token: Callable[[], str],
        *,
        engine: Engine,
        codec: Codec | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        nonce: Callable[[], int] = lambda: time.time_ns(),
        clock: Clock = system_clock_us,
    ) -> None:
        codec = codec or CanonicalJsonCodec()
        if codec.stand_in and not config.is_local:
            raise GculError(
                f"GCUL network {name!r}: the stand-in codec ({type(codec).__name__}) talks to a local endpoint "
                f"only (localhost or 127.0.0.1), base_url was {config.base_url!r}; a real endpoint needs a codec "
                "of GCUL's protobuf messages",
                code="gcul_stand_in_codec",
            )
        self.name = name
        self.config = config
        self.signer_for = signer_for
        self.access_token = access_token
        self.engine = engine
        self.codec = codec
        self._sleep = sleep
        self._nonce = nonce
        self._clock = clock
        self._http = httpx.Client(base_url=config.base_url, transport=transport, timeout=10.0, verify=tls_context())

    def _request(self, method: str, verb: str, **kwargs: Any) -> dict[str, Any]:
        url = f"/v1/{self.config.resource}:{verb}"
        headers = {"authorization": f"Bearer {self.access_token()}"}

        def once() -> httpx.Response:
            response = self._http.request(method, url, headers=headers, **kwargs)
            if response.status_code in (429, 500, 502, 503, 504):
                raise _Busy(response)
            return response

        try:
            response = retrying(
                once,
                attempts_max=RETRIES_MAX + 1,
                retry_on=lambda exc: isinstance(exc, httpx.TransportError | _Busy),
                backoff=Backoff(0.2, 5.0),
                sleep=self._sleep,
            )
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"GCUL {self.name} did not answer: {exc}", network=self.name) from None
        except _Busy as busy:
            response = busy.response
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise GculError(
                f"GCUL {verb} refused ({response.status_code} {error.get('status', '')}): "
                f"{error.get('message', response.text[:200])}",
                code="gcul_refused",
                status=str(error.get("status", "")),
            )
        data: dict[str, Any] = response.json()
        return data

    def submit(self, tx: LedgerTx, *, key: str) -> str:
        """Sign and submit `tx` once under the caller's idempotency `key`; returns its transaction id.

        The signed bytes are recorded before they are sent, so a call that crashed or timed
        out anywhere can be repeated with the same key: it sends the same bytes again and
        returns the same digest. The same key with another transaction is a conflict.
        """
        if not 0 < len(key) <= KEY_LENGTH_MAX:
            raise DomainError(
                f"an idempotency key has 1 to {KEY_LENGTH_MAX} characters, was {len(key)}", code="invalid_request"
            )
        request = self._request_sha256(tx)
        submission = self.submission(key) or self._record(key, request, tx)
        if submission.request_sha256 != request:
            raise Conflict(
                f"idempotency key {key!r} was already used on {self.name} for another transaction ({submission.tx_id})",
                code="idempotency_key_reused",
            )
        self._send(submission)
        t = schema.network_submissions
        with write_transaction(self.engine) as conn:
            conn.execute(
                t.update()
                .where(t.c.network == self.name, t.c.idempotency_key == key)
                .values(submitted_at_us=self._clock())
            )
        return submission.tx_id

    def submission(self, key: str) -> Submission | None:
        """What was recorded under `key` on this network, if anything."""
        t = schema.network_submissions
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.network == self.name, t.c.idempotency_key == key)).first()
        if row is None:
            return None
        return Submission(key, row.request_sha256, row.nonce, bytes(row.signed_tx), row.tx_id)

    def _request_sha256(self, tx: LedgerTx) -> str:
        """What a key stands for: the endpoint and every field of the transaction, not the nonce."""
        body = {
            "resource": self.config.resource,
            "kind": tx.kind,
            "token": tx.token,
            "sender": tx.sender,
            "receiver": tx.receiver,
            "amount": str(tx.amount),
            "memo": tx.memo,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def _record(self, key: str, request: str, tx: LedgerTx) -> Submission:
        nonce = self._nonce()
        if not 0 <= nonce <= NONCE_MAX:
            raise GculError(f"a GCUL nonce must be within 0..2^63-1, was {nonce}", code="gcul_bad_nonce")
        client_tx = self.codec.client_transaction(tx, nonce)
        v, r, s = self.signer_for(tx.sender).sign_message_hash(hashlib.sha256(client_tx).digest())
        signed = self.codec.signed_transaction(client_tx, r + s + bytes([v]))
        submission = Submission(key, request, nonce, signed, hashlib.sha256(signed).hexdigest())
        t = schema.network_submissions
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    t.insert().values(
                        network=self.name,
                        idempotency_key=key,
                        request_sha256=request,
                        sender=tx.sender,
                        nonce=nonce,
                        signed_tx=signed,
                        tx_id=submission.tx_id,
                        created_at_us=self._clock(),
                    )
                )
        except IntegrityError:
            # Another process recorded this key first: its bytes are the transaction.
            first = self.submission(key)
            assert first is not None, f"key {key!r} conflicted on insert but is not recorded"
            return first
        return submission

    def _send(self, submission: Submission) -> None:
        body = {"serializedSignedTransaction": base64.b64encode(submission.signed_tx).decode()}
        try:
            reply = self._request("POST", "submitTransaction", json=body)
        except GculError as exc:
            # A retry may find the network already holding these bytes. Trusted only when the
            # network knows this very digest: ALREADY_EXISTS could also mean another
            # transaction took the nonce.
            already = exc.details.get("status") == "ALREADY_EXISTS"
            if already and self.transaction_state(submission.tx_id).status != TxStatus.UNKNOWN:
                return
            raise
        digest = str(reply.get("transactionDigestHex", "")).lower()
        if digest != submission.tx_id:
            raise GculError(
                f"GCUL returned transaction id {digest or '(none)'}, expected the SHA-256 of what was "
                f"sent ({submission.tx_id})",
                code="gcul_digest_mismatch",
            )

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
