"""JSON-RPC over HTTP with batching, bounded retries and a clear error when the node is away."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from andchain.config import shown_url
from andchain.errors import DomainError
from andchain.retry import Backoff, retrying
from andchain.tls import tls_context

log = logging.getLogger(__name__)

BATCH_SIZE_MAX = 1000


class NodeUnreachable(DomainError):
    code = "node_unreachable"
    http_status = 503
    transient = True


class RpcError(DomainError):
    """The node answered with a JSON-RPC error."""

    code = "rpc_error"
    http_status = 502
    # An error answer that is not a revert (nonce too low, underpriced, out of gas money,
    # a node in trouble) may well pass: the caller retries. Reverts are raised as TxReverted.
    transient = True

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.rpc_code = int(error.get("code", 0))
        self.rpc_message = str(error.get("message", ""))
        self.data = error.get("data")
        super().__init__(f"{method} failed: {self.rpc_message} (code {self.rpc_code})")


class Rpc:
    """One node's JSON-RPC endpoint.

    Transport failures (refused connection, timeout, 5xx) are retried with
    exponential backoff up to `retries_max` times, then raise NodeUnreachable.
    JSON-RPC errors are answers, not failures: they are never retried here.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "",
        timeout_s: float = 10.0,
        retries_max: int = 4,
        backoff_s: float = 0.1,
        backoff_max_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        batch_max: int = BATCH_SIZE_MAX,
    ) -> None:
        self.url = url
        self.batch_max = batch_max
        self.name = name or shown_url(url)
        self.retries_max = retries_max
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            headers={"content-type": "application/json"},
            verify=tls_context(),
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload, separators=(",", ":"))

        def once() -> Any:
            response = self._http.post(self.url, content=body)
            if response.status_code >= 500:
                raise httpx.HTTPStatusError("server error", request=response.request, response=response)
            response.raise_for_status()
            return response.json()

        def retry(attempt: int, exc: BaseException) -> None:
            log.info("rpc retry node=%s attempt=%d error=%s", self.name, attempt, type(exc).__name__)

        try:
            return retrying(
                once,
                attempts_max=self.retries_max + 1,
                retry_on=lambda exc: isinstance(exc, httpx.TransportError | httpx.HTTPStatusError),
                backoff=Backoff(self.backoff_s, self.backoff_max_s),
                sleep=self._sleep,
                on_retry=retry,
            )
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            # Neither the URL nor httpx's message (which quotes it) is shown: a provider's URL
            # carries its API key, and this message reaches logs, operations and API answers.
            detail = f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError) else str(exc)
            raise NodeUnreachable(
                f"node {self.name} at {shown_url(self.url)} did not answer after {self.retries_max + 1} attempts: "
                f"{type(exc).__name__}: {detail.replace(self.url, shown_url(self.url))}",
                network=self.name,
            ) from None

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        reply = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        if "error" in reply:
            raise RpcError(method, reply["error"])
        return reply.get("result")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send calls in JSON-RPC batches; each result is the value or an RpcError instance (not raised)."""
        results: list[Any] = []
        for start in range(0, len(calls), self.batch_max):
            chunk = calls[start : start + self.batch_max]
            first = next(self._ids)
            payload = [
                {"jsonrpc": "2.0", "id": first + i, "method": m, "params": list(p)} for i, (m, p) in enumerate(chunk)
            ]
            for _ in range(len(chunk) - 1):
                next(self._ids)
            replies = self._post(payload)
            if isinstance(replies, dict):  # the node refused the batch as a whole
                raise RpcError("batch", replies.get("error", {"message": str(replies)}))
            by_id = {r.get("id"): r for r in replies}
            for i, (method, _) in enumerate(chunk):
                reply = by_id.get(first + i, {"error": {"code": -32603, "message": "no reply in batch"}})
                results.append(RpcError(method, reply["error"]) if "error" in reply else reply.get("result"))
        return results
