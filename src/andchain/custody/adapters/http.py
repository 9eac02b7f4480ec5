"""What every HTTP custodian adapter shares: one signed request, errors sorted, exact amounts.

A body is serialised once and those exact bytes are both signed and sent (a signature over a
re-serialised body fails at the custodian for a space). Numbers in answers are read as
Decimal, never float. A timeout, a connection error, 429 or 5xx is CustodianUnavailable (the
request's effect is unknown: look it up before sending again); any other 4xx is
CustodianRefused with the custodian's own words; 404 is TransferNotFound where the caller asks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from andchain.custody.port import (
    CustodianAnswerUnreadable,
    CustodianRefused,
    CustodianUnavailable,
    TransferNotFound,
)
from andchain.money import MoneyError, format_minor, parse_minor
from andchain.tls import tls_context

# (method, path with its query, body bytes) -> the headers that authenticate the request
Signer = Callable[[str, str, bytes], Mapping[str, str]]
# How much of a custodian's answer a refusal quotes at most.
DETAIL_LENGTH_MAX = 500
# Answers that say "not now" rather than "never": a request timeout, too early, throttled.
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def obj(value: Any) -> dict[str, Any]:
    """A JSON object from a custodian's answer, or an empty one for anything else (a custodian
    that leaves a field out, or sends null, is read as having sent nothing)."""
    return value if isinstance(value, dict) else {}


def body_bytes(body: Mapping[str, Any] | None) -> bytes:
    if body is None:
        return b""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def decimal_text(amount_minor: int, scale: int) -> str:
    """Minor units as the plain decimal string custodians take ("1.5", never "1.500000")."""
    if type(amount_minor) is not int:
        raise TypeError(f"an amount in minor units is an int, was {type(amount_minor).__name__}")
    text = format_minor(amount_minor, scale)
    return text.rstrip("0").rstrip(".") if "." in text else text


def minor_units(value: Any, scale: int, *, what: str) -> int:
    """A custodian's decimal (a string, or a JSON number read as Decimal) in minor units: exact or
    refused. A custodian reporting more decimals than the asset has is a break, not a rounding."""
    if isinstance(value, int | Decimal | str) and not isinstance(value, bool):
        try:
            return parse_minor(value, scale, allow_negative=True)
        except MoneyError as exc:
            raise CustodianAnswerUnreadable(
                f"the custodian's {what} {value!r} is not exact at {scale} decimals: {exc}"
            ) from None
    raise CustodianAnswerUnreadable(f"the custodian's {what} must be a decimal, was {type(value).__name__}")


def path_part(value: str) -> str:
    """One segment of a request's path. "." and ".." would be resolved away by the HTTP client
    (the request would go elsewhere than where it was signed for), so they are refused."""
    if value in ("", ".", ".."):
        raise CustodianRefused(f"an id in a custodian's path cannot be {value!r}")
    return quote(value, safe="")


class ProviderHttp:
    """One custodian's HTTP API: a base URL, a signer, a bounded timeout."""

    def __init__(
        self,
        name: str,
        base_url: str,
        sign: Signer,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.sign = sign
        self.client = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport, verify=tls_context())

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        not_found: str | None = None,
    ) -> Any:
        """The answer's JSON. `not_found` names what a 404 means (TransferNotFound with that text);
        without it a 404 is a refusal like any other 4xx."""
        content = body_bytes(body)
        request = self.client.build_request(
            method, path, params=params, content=content or None, headers={"Accept": "application/json"}
        )
        # Signed over what goes on the wire: the path (with any prefix of the base URL) and the
        # query exactly as the client encoded them, and the body's exact bytes.
        target = request.url.raw_path.decode()
        request.headers.update({**self.sign(method, target, content), **(headers or {})})
        if body is not None:
            request.headers["Content-Type"] = "application/json"
        try:
            response = self.client.send(request)
        except httpx.TransportError as exc:
            # Neither the URL (it may carry an account id) nor httpx's text is needed to act.
            raise CustodianUnavailable(
                f"custodian {self.name} did not answer {method} {path}: {type(exc).__name__}", custodian=self.name
            ) from None
        status = response.status_code
        if status in TRANSIENT_STATUSES or status >= 500:
            raise CustodianUnavailable(
                f"custodian {self.name} answered {status} to {method} {path}: try again later",
                custodian=self.name,
                status=status,
            )
        if status == 404 and not_found is not None:
            raise TransferNotFound(not_found, custodian=self.name)
        if status >= 400:
            detail = response.text[:DETAIL_LENGTH_MAX]
            raise CustodianRefused(
                f"custodian {self.name} refused {method} {path} ({status}): {detail}",
                custodian=self.name,
                status=status,
                answer=detail,
            )
        if status >= 300:
            # A redirect is not an answer: where the request went and what it did is unknown.
            raise CustodianAnswerUnreadable(
                f"custodian {self.name} answered {method} {path} with a redirect ({status})", custodian=self.name
            )
        if not response.content:
            return {}
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise CustodianAnswerUnreadable(
                f"custodian {self.name} answered {method} {path} with something that is not JSON",
                custodian=self.name,
            ) from None
