"""Security headers on every answer, the Host names the API answers to, documentation served locally."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from andchain.api.security import API_CSP, allowed_hosts, host_of
from andchain.config import ApiSettings

PROBLEM = "application/problem+json"


def assert_security_headers(response, *, no_store: bool = True) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    if no_store:
        assert response.headers["Cache-Control"] == "no-store"


def test_json_answers_and_refusals_carry_the_security_headers_and_a_strict_policy(client):
    for response in (
        client.get("/v1/accounts"),
        client.get("/v1/accounts/no-such-account"),
        client.post("/v1/accounts", json={}),  # 400: no Idempotency-Key
        client.get("/metrics"),
    ):
        assert_security_headers(response)
        assert response.headers["Content-Security-Policy"] == API_CSP


def test_an_internal_error_carries_them_too_with_its_request_id(client):
    @client.app.get("/test/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    response = client.get("/test/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert_security_headers(response)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links.extend(value for name, value in attrs if name in ("src", "href") and value)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_loads_nothing_from_outside_and_its_files_are_served_here(client, page):
    response = client.get(page)
    assert response.status_code == 200
    assert_security_headers(response)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self' 'unsafe-inline'" in policy
    html = response.text
    assert not re.search(r"(https?:)?//[a-z0-9]", html, re.I), "the page names a URL outside this server"
    parser = _Links()
    parser.feed(html)
    assert parser.links, "the page loads its scripts and styles"
    for link in parser.links:
        assert link.startswith("/static/docs/"), link
        asset = client.get(link)
        assert asset.status_code == 200 and len(asset.content) > 1000, link
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert "no-store" not in asset.headers.get("Cache-Control", "")  # files that never change may be kept


def test_a_host_not_configured_is_refused_with_a_problem(make_client):
    client = make_client(allowed_hosts=["api.bank.example", "*.internal.bank.example"])
    refused = client.get("/v1/accounts", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "invalid_host"
    assert_security_headers(refused)
    assert refused.headers["X-Request-Id"]
    for host in ("api.bank.example", "API.bank.example:8443", "ops.internal.bank.example"):
        assert client.get("/v1/accounts", headers={"Host": host}).status_code == 200, host
    for host in ("internal.bank.example", "evilinternal.bank.example", "api.bank.example.evil", "", "a b"):
        assert client.get("/v1/accounts", headers={"Host": host}).status_code == 400, host


def test_the_default_hosts_are_the_loopback_names_and_the_configured_host():
    assert allowed_hosts(ApiSettings()) == ["127.0.0.1", "localhost"]
    assert allowed_hosts(ApiSettings(host="api.bank.example")) == ["127.0.0.1", "localhost", "api.bank.example"]
    # The address `serve --host` listens on joins them; a wildcard address names no host.
    assert allowed_hosts(ApiSettings(), "10.1.2.3") == ["127.0.0.1", "localhost", "10.1.2.3"]
    assert allowed_hosts(ApiSettings(host="0.0.0.0"), "::") == ["127.0.0.1", "localhost"]
    assert allowed_hosts(ApiSettings(), "[::1]") == ["127.0.0.1", "localhost", "::1"]


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost:8000", "localhost"),
        ("LocalHost", "localhost"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("[nope]:80", None),
        ("[::1]x", None),
        ("host:port", None),
        ("user@host", None),
        ("", None),
    ],
)
def test_a_host_header_is_read_without_its_port(header, host):
    assert host_of(header) == host
