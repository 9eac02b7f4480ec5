"""Headers every response carries, and the Host names the API answers to.

- `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`
  on every response; `Cache-Control: no-store` on every one but the documentation's static
  files (a browser or a proxy keeps no copy of an account or a balance).
- `Content-Security-Policy`: nothing may be loaded, framed or submitted for an API answer
  (JSON, problem+json, /metrics); the documentation pages (HTML) may load their own
  scripts, styles and images from this origin and nothing from anywhere else.
- Host: a request whose Host header is not one of `api.allowed_hosts` is refused with a
  problem+json 400 `invalid_host` before any route runs (DNS rebinding, poisoned links).

Strict-Transport-Security is for the TLS-terminating proxy in front to send: this process
speaks plain HTTP and cannot know the name a browser reached it by.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from andchain.api.problems import problem
from andchain.config import ApiSettings

STATIC_PREFIX = "/static/"
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc start from an inline script and inject inline styles; ReDoc's search
# runs in a worker made from a blob. Everything else they load comes from this origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ALWAYS:
                    headers.setdefault(name, value)
                if not static:
                    headers["Cache-Control"] = "no-store"
                html = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("Content-Security-Policy", DOCS_CSP if html else API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


_WILDCARD_ADDRESSES = {"", "0.0.0.0", "::", "[::]"}


def allowed_hosts(settings: ApiSettings, bind_host: str | None = None) -> list[str]:
    """The configured names, and the address the API listens on when it is one a client can use."""
    names = list(settings.allowed_hosts)
    for host in (settings.host, bind_host):
        if host is not None and host.strip().lower() not in _WILDCARD_ADDRESSES:
            names.append(_bare(host.strip().lower()))
    return list(dict.fromkeys(names))


def _bare(host: str) -> str:
    """A host without brackets: "[::1]" -> "::1"."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def host_of(header: str) -> str | None:
    """The name in a Host header, without its port, lower case; None when it cannot be one."""
    value = header.strip().lower()
    if not value or any(c in value for c in " /\\@?#"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        inner = value[1:end]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        return inner
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


def _matches(host: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
            return True
    return False


class AllowedHostsMiddleware:
    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")
        host = host_of(header)
        if host is None or not _matches(host, self.hosts):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            shown = header[:100]
            await problem(400, "invalid_host", f"this API does not answer to the host {shown!r}")(scope, receive, send)
            return
        await self.app(scope, receive, send)
