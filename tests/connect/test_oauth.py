"""Bank-to-wallet consent over real HTTP: `andchain serve` runs as its own process, a partner (an
exchange) uses authlib's OAuth 2.0 client to do the whole authorization-code flow with PKCE (S256),
the customer signs in on andchain's consent screen and picks accounts and scopes, and the partner
reads the consented account through the FDX-style resources. Then every refusal: a wrong verifier, a
replayed or expired code, a redirect URI that is not registered, a scope the partner may not ask, a
refresh token used twice, a revoked consent, another customer's account."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from andchain.config import Settings
from andchain.connect.oauth import ConnectService
from andchain.context import Context
from andchain.devtools.postgres import free_port
from andchain.errors import DomainError
from andchain.tokens.service import TokenService
from tests.processes import start_andchain
from tests.serving import wait_until_answering

REDIRECT = "http://127.0.0.1:9/callback"


@dataclass
class Bank:
    base: str
    ctx: Context
    connect: ConnectService
    ada: str
    ada_key: str
    bob: str
    bob_key: str
    bob_account: int
    db: Path


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Iterator[Bank]:
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANDCHAIN_")}
    env.update({"ANDCHAIN_DATA_DIR": str(tmp / "var"), "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
                "ANDCHAIN_API__PORT": str(port), "ANDCHAIN_CONNECT__ISSUER": f"http://127.0.0.1:{port}"})  # fmt: skip
    settings = Settings(data_dir=tmp / "var", keystore={"scrypt_n": 1024}, api={"port": port},
                        connect={"issuer": f"http://127.0.0.1:{port}"})  # fmt: skip
    ctx = Context(settings)
    ctx.upgrade_database()
    tokens = TokenService(ctx)
    ada = tokens.onboard("Ada Lovelace", "natural").id
    tokens.deposit(ada, 2_500_00, "wire-ada", memo="salary")
    bob = tokens.onboard("Bob Babbage", "natural").id
    tokens.deposit(bob, 900_00, "wire-bob")
    _, ada_key = ctx.api_keys.create("client", client_id=ada, label="Ada's online banking")
    _, bob_key = ctx.api_keys.create("client", client_id=bob, label="Bob's online banking")
    connect = ConnectService(ctx.engine, settings.connect, ctx.api_keys.digest, clock=ctx.clock)
    process = start_andchain(["serve", "--port", str(port)], env, output=tmp / "serve.log", cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    if not wait_until_answering(f"{base}/health/live", process):
        process.kill()
        raise AssertionError((tmp / "serve.log").read_text()[-3000:])
    bob_account = ctx.ledger.account(f"clients:{bob}:usd:dda").id
    try:
        yield Bank(base, ctx, connect, ada, ada_key, bob, bob_key, bob_account, tmp / "var" / "andchain.db")
    finally:
        process.terminate()
        process.wait(timeout=20)
        ctx.close()


def partner(bank: Bank, scopes: list[str], public: bool = False) -> tuple[str, str | None]:
    made, secret = bank.connect.register_partner("Exchange One", [REDIRECT], scopes, public=public)
    return made.client_id, secret


def client(bank: Bank, client_id: str, secret: str | None, scope: str) -> OAuth2Client:
    return OAuth2Client(
        client_id, secret, scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
    )  # fmt: skip


def hidden(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<input type=hidden name="([^"]+)" value="([^"]*)">', page)


def unescape(value: str) -> str:
    import html

    return html.unescape(value)


def consent_flow(bank: Bank, oauth: OAuth2Client, verifier: str, *, key: str, decision: str = "allow",
                 url_extra: str = "") -> httpx.Response:  # fmt: skip
    """The customer in its browser: the app's link, sign in, choose, decide. The last answer (a redirect)."""
    meta = httpx.get(f"{bank.base}/.well-known/oauth-authorization-server").json()
    url, _state = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    browser = httpx.Client(follow_redirects=False)
    first = browser.get(url + url_extra)
    if first.status_code != 200:
        return first
    fields = [(k, unescape(v)) for k, v in hidden(first.text)]
    signed_in = post_form(browser, f"{bank.base}/oauth/authorize", [*fields, ("step", "signin"), ("customer_key", key)])
    if signed_in.status_code != 200:
        return signed_in
    fields = [(k, unescape(v)) for k, v in hidden(signed_in.text)]
    session = re.search(r'name=session value="([^"]+)"', signed_in.text).group(1)  # type: ignore[union-attr]
    accounts = re.findall(r'name=account value="([0-9]+)"', signed_in.text)
    scopes = re.findall(r'name=grant_scope value="([^"]+)"', signed_in.text)
    form = [*fields, ("step", "decide"), ("session", unescape(session)), ("days", "90"), ("decision", decision)]
    form += [("account", a) for a in accounts] + [("grant_scope", s) for s in scopes]
    return post_form(browser, f"{bank.base}/oauth/authorize", form)


def post_form(browser: httpx.Client, url: str, fields: list[tuple[str, str]]) -> httpx.Response:
    """A browser's form post (repeated fields kept, in order)."""
    return browser.post(url, content=urlencode(fields), headers={"content-type": "application/x-www-form-urlencoded"})


def verifier() -> str:
    return secrets.token_urlsafe(48)


def test_the_metadata_configures_a_standard_client(bank):
    meta = httpx.get(f"{bank.base}/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == bank.base
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert set(meta["scopes_supported"]) == {"accounts:read", "payments:write"}


def test_a_partner_reads_the_consented_account_through_the_whole_pkce_flow(bank):
    client_id, secret = partner(bank, ["accounts:read", "payments:write"])
    oauth = client(bank, client_id, secret, "accounts:read payments:write")
    code_verifier = verifier()
    back = consent_flow(bank, oauth, code_verifier, key=bank.ada_key)
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(REDIRECT) and "code=" in location
    assert parse_qs(urlsplit(location).query)["iss"] == [bank.base]  # RFC 9207
    token = oauth.fetch_token(f"{bank.base}/oauth/token", authorization_response=location, code_verifier=code_verifier)
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 900
    assert set(token["scope"].split()) == {"accounts:read", "payments:write"} and token["refresh_token"]

    accounts = oauth.get(f"{bank.base}/fdx/v6/accounts").json()["accounts"]
    assert [(a["accountType"], a["currentBalance"], a["currency"]["currencyCode"]) for a in accounts] == [
        ("CHECKING", "2500.00", "USD")
    ]
    account_id = accounts[0]["accountId"]
    page = oauth.get(f"{bank.base}/fdx/v6/accounts/{account_id}/transactions", params={"limit": 10}).json()
    assert [(t["amount"], t["debitCreditMemo"], t["status"]) for t in page["transactions"]] == [
        ("2500.00", "CREDIT", "POSTED")
    ]
    networks = oauth.get(f"{bank.base}/fdx/v6/accounts/{account_id}/payment-networks").json()["paymentNetworks"]
    assert networks[0]["bankId"] == "123456780" and networks[0]["type"] == "US_ACH"
    real = f"clients:{bank.ada}:usd:dda"
    assert len(networks[0]["identifier"]) == 17 and real not in networks[0]["identifier"]
    assert networks[0]["transferOut"] is True

    # The partner pulls funds from the account into the customer's wallet (an ACH-like debit).
    pull = {"accountId": account_id, "amount": "250.00", "memo": "fund wallet"}
    made = oauth.post(f"{bank.base}/connect/v1/pulls", json=pull, headers={"Idempotency-Key": "pull-1"})
    assert made.status_code == 201, made.text
    assert (made.json()["status"], made.json()["amount"]) == ("pending", "250.00")
    again = oauth.post(f"{bank.base}/connect/v1/pulls", json=pull, headers={"Idempotency-Key": "pull-1"})
    assert again.json()["pullId"] == made.json()["pullId"]
    seen = oauth.get(f"{bank.base}/connect/v1/pulls/{made.json()['pullId']}").json()
    assert seen["status"] in ("pending", "posted")
    balance = oauth.get(f"{bank.base}/fdx/v6/accounts/{account_id}").json()
    assert balance["availableBalance"] == "2250.00"  # held at once

    # Another customer's account: 403, naming nothing; the same answer as an account that does not exist.
    other = oauth.get(f"{bank.base}/fdx/v6/accounts/{bank.bob_account}")
    missing = oauth.get(f"{bank.base}/fdx/v6/accounts/999999")
    assert other.status_code == missing.status_code == 403
    assert other.json()["code"] == missing.json()["code"] == "account_not_in_consent"
    assert "Bob" not in other.text and str(bank.bob) not in other.text and "900" not in other.text

    # The refresh token rotates: the new pair works, the old refresh token used again revokes them all.
    old_refresh = token["refresh_token"]
    renewed = oauth.refresh_token(f"{bank.base}/oauth/token", refresh_token=old_refresh)
    assert renewed["refresh_token"] != old_refresh and renewed["access_token"] != token["access_token"]
    assert oauth.get(f"{bank.base}/fdx/v6/accounts").status_code == 200
    with pytest.raises(OAuthError) as reused:
        oauth.refresh_token(f"{bank.base}/oauth/token", refresh_token=old_refresh)
    assert reused.value.error == "invalid_grant"
    gone = oauth.get(f"{bank.base}/fdx/v6/accounts")
    assert gone.status_code == 401 and gone.headers["www-authenticate"].startswith("Bearer")
    customer = {"Authorization": f"Bearer {bank.ada_key}"}
    ended = [c for c in httpx.get(f"{bank.base}/v1/consents", headers=customer).json()["data"]
             if c["partner"] == client_id]  # fmt: skip
    assert [c["status"] for c in ended] == ["revoked"]  # the reuse ended the consent itself


def test_a_revoked_consent_stops_every_token_at_once(bank):
    client_id, secret = partner(bank, ["accounts:read"])
    oauth = client(bank, client_id, secret, "accounts:read")
    code_verifier = verifier()
    location = consent_flow(bank, oauth, code_verifier, key=bank.ada_key).headers["location"]
    token = oauth.fetch_token(f"{bank.base}/oauth/token", authorization_response=location, code_verifier=code_verifier)
    assert oauth.get(f"{bank.base}/fdx/v6/accounts").status_code == 200
    customer = {"Authorization": f"Bearer {bank.ada_key}"}
    consents = httpx.get(f"{bank.base}/v1/consents", headers=customer).json()["data"]
    mine = next(c for c in consents if c["partner"] == client_id)
    assert mine["status"] == "active" and mine["scopes"] == ["accounts:read"]
    # Bob sees nothing of Ada's consents, and cannot revoke them.
    bob = {"Authorization": f"Bearer {bank.bob_key}"}
    assert all(c["customer"] == bank.bob for c in httpx.get(f"{bank.base}/v1/consents", headers=bob).json()["data"])
    refused = httpx.post(f"{bank.base}/v1/consents/{mine['id']}/revoke", headers={**bob, "Idempotency-Key": "r0"})
    assert refused.status_code == 404
    revoked = httpx.post(f"{bank.base}/v1/consents/{mine['id']}/revoke", headers={**customer, "Idempotency-Key": "r1"})
    assert (revoked.status_code, revoked.json()["status"]) == (200, "revoked")
    assert oauth.get(f"{bank.base}/fdx/v6/accounts").status_code == 401
    with pytest.raises(OAuthError) as refresh:
        oauth.refresh_token(f"{bank.base}/oauth/token", refresh_token=token["refresh_token"])
    assert refresh.value.error == "invalid_grant"


def test_refusals_of_the_flow(bank):
    client_id, secret = partner(bank, ["accounts:read"])
    oauth = client(bank, client_id, secret, "accounts:read")
    token_url = f"{bank.base}/oauth/token"

    # A token without payments:write pulls nothing.
    code_verifier = verifier()
    location = consent_flow(bank, oauth, code_verifier, key=bank.ada_key).headers["location"]
    oauth.fetch_token(token_url, authorization_response=location, code_verifier=code_verifier)
    account_id = oauth.get(f"{bank.base}/fdx/v6/accounts").json()["accounts"][0]["accountId"]
    denied_pull = oauth.post(f"{bank.base}/connect/v1/pulls", json={"accountId": account_id, "amount": "1.00"},
                             headers={"Idempotency-Key": "p-scope"})  # fmt: skip
    assert (denied_pull.status_code, denied_pull.json()["code"]) == (403, "insufficient_scope")

    # A wrong verifier.
    code_verifier = verifier()
    location = consent_flow(bank, oauth, code_verifier, key=bank.ada_key).headers["location"]
    with pytest.raises(OAuthError) as wrong:
        oauth.fetch_token(token_url, authorization_response=location, code_verifier=verifier())
    assert wrong.value.error == "invalid_grant"

    # A code used twice: refused, and what the first use issued is revoked.
    code_verifier = verifier()
    location = consent_flow(bank, oauth, code_verifier, key=bank.ada_key).headers["location"]
    oauth.fetch_token(token_url, authorization_response=location, code_verifier=code_verifier)
    assert oauth.get(f"{bank.base}/fdx/v6/accounts").status_code == 200
    with pytest.raises(OAuthError) as replayed:
        oauth.fetch_token(token_url, authorization_response=location, code_verifier=code_verifier)
    assert replayed.value.error == "invalid_grant"
    assert oauth.get(f"{bank.base}/fdx/v6/accounts").status_code == 401

    # An expired code.
    code_verifier = verifier()
    location = consent_flow(bank, oauth, code_verifier, key=bank.ada_key).headers["location"]
    with sqlite3.connect(bank.db) as db:
        db.execute("UPDATE connect_codes SET expires_at_us = 1 WHERE used = 0")
    with pytest.raises(OAuthError) as expired:
        oauth.fetch_token(token_url, authorization_response=location, code_verifier=code_verifier)
    assert expired.value.error == "invalid_grant"

    # A redirect URI that is not registered: a page at the bank, never a redirect to it.
    evil = OAuth2Client(client_id, secret, scope="accounts:read", redirect_uri="https://evil.example/cb",
                        code_challenge_method="S256")  # fmt: skip
    page = consent_flow(bank, evil, verifier(), key=bank.ada_key)
    assert page.status_code == 400 and "location" not in page.headers and "evil" not in page.text.lower()

    # A scope the partner may not ask for: back to the partner with invalid_scope, nothing granted.
    greedy = client(bank, client_id, secret, "accounts:read payments:write")
    answer = consent_flow(bank, greedy, verifier(), key=bank.ada_key)
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_scope"]

    # No PKCE at all: refused.
    bare = OAuth2Client(client_id, secret, scope="accounts:read", redirect_uri=REDIRECT)
    url, _ = bare.create_authorization_url(f"{bank.base}/oauth/authorize")
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code == 302 and "error=invalid_request" in answer.headers["location"]

    # A key that is not a customer's signs nobody in; the customer who denies grants nothing.
    _, operator = bank.ctx.api_keys.create("operator", label="not a customer")
    answer = consent_flow(bank, oauth, verifier(), key=operator)
    assert answer.status_code == 401 and "does not sign in a customer" in answer.text
    denied = consent_flow(bank, oauth, verifier(), key=bank.ada_key, decision="deny")
    assert "error=access_denied" in denied.headers["location"]

    # A public client: PKCE alone, no secret.
    public_id, none = partner(bank, ["accounts:read"], public=True)
    public = client(bank, public_id, none, "accounts:read")
    code_verifier = verifier()
    location = consent_flow(bank, public, code_verifier, key=bank.bob_key).headers["location"]
    public.fetch_token(token_url, authorization_response=location, code_verifier=code_verifier)
    assert [a["currentBalance"] for a in public.get(f"{bank.base}/fdx/v6/accounts").json()["accounts"]] == ["900.00"]
    # Credentials that do not decode, and a NUL: clear refusals, never a 500.
    form = {"content-type": "application/x-www-form-urlencoded"}
    bad = httpx.post(token_url, content="grant_type=authorization_code&code=x",
                     headers={"Authorization": "Basic /w==", **form})  # fmt: skip
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    nul = httpx.post(token_url, content="grant_type=refresh_token&client_id=%00&refresh_token=x",
                     headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert nul.status_code == 400
    # A disabled partner: its tokens stop at once.
    bank.connect.set_active(public_id, False)
    assert public.get(f"{bank.base}/fdx/v6/accounts").status_code == 401
    # Registration takes only exact, safe redirect URIs.
    for uri in (
        "http://localhost.evil.example/cb",
        "https://user@evil.example/cb",
        "http://10.0.0.1/cb",
        "https://x/#f",
    ):
        with pytest.raises(DomainError):
            bank.connect.register_partner("Bad", [uri], ["accounts:read"])
    # An API key is not a partner's token.
    assert (
        httpx.get(f"{bank.base}/fdx/v6/accounts", headers={"Authorization": f"Bearer {bank.ada_key}"}).status_code
        == 401
    )


def test_s256_challenge_is_what_the_client_sent(bank):
    # (authlib computes the challenge; this checks the server compares the same transform)
    v = verifier()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    assert create_s256_code_challenge(v) == challenge


def test_a_partner_charges_a_consented_card_over_http(bank):
    from andchain.connect.cards import Cards

    card = Cards(bank.ctx).issue(bank.bob, "1000.00")
    client_id, secret = partner(bank, ["accounts:read", "payments:write"])
    oauth = client(bank, client_id, secret, "accounts:read payments:write")
    code_verifier = verifier()
    location = consent_flow(bank, oauth, code_verifier, key=bank.bob_key).headers["location"]
    oauth.fetch_token(f"{bank.base}/oauth/token", authorization_response=location, code_verifier=code_verifier)
    accounts = oauth.get(f"{bank.base}/fdx/v6/accounts").json()["accounts"]
    line = next(a for a in accounts if a["accountType"] == "CREDITCARD")
    assert (line["accountCategory"], line["currentBalance"], line["availableBalance"]) == (
        "LOC_ACCOUNT", "0.00", "1000.00")  # fmt: skip
    charge = {"accountId": line["accountId"], "amount": "200.00", "mcc": "6051", "merchant": "Exchange One"}
    made = oauth.post(f"{bank.base}/connect/v1/card-authorizations", json=charge, headers={"Idempotency-Key": "c1"})
    assert made.status_code == 201, made.text
    auth = made.json()
    assert (auth["status"], auth["cashAdvance"], auth["fee"]) == ("authorized", True, "10.00")
    captured = oauth.post(f"{bank.base}/connect/v1/card-authorizations/{auth['authorizationId']}/capture",
                          headers={"Idempotency-Key": "c1-capture"})  # fmt: skip
    assert captured.json()["status"] == "captured"
    line = oauth.get(f"{bank.base}/fdx/v6/accounts/{line['accountId']}").json()
    assert (line["currentBalance"], line["availableBalance"]) == ("210.00", "790.00")
    big = {**charge, "amount": "900.00", "mcc": "5999"}
    declined = oauth.post(f"{bank.base}/connect/v1/card-authorizations", json=big, headers={"Idempotency-Key": "c2"})
    assert (declined.status_code, declined.json()["code"]) == (422, "insufficient_credit")
    assert card.id
