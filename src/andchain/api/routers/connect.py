"""Bank-to-wallet over HTTP: the OAuth 2.0 authorization server partners use, the consent screen a
customer signs in to, the customer's consents, and the FDX-style resources a partner reads with an
access token (docs/connect.md).

- `/.well-known/oauth-authorization-server` (RFC 8414): the metadata a standard client configures
  itself from. `/oauth/authorize` (GET: the consent screen; POST: its two steps), `/oauth/token`
  (authorization code with PKCE S256, refresh with rotation). No API key: the partner's client
  credentials and the customer's sign-in are the credentials there.
- `/v1/consents`: a customer (its client API key) lists and revokes its consents; the bank's roles
  read and revoke any.
- `/fdx/v6/accounts...`: a partner's access token (Authorization: Bearer), never an API key; only the
  consented accounts exist for it: any other id answers 403 `account_not_in_consent`, the same for an
  account that does not exist, naming nothing.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import InvalidRequestError, InvalidScopeError
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import app_service, context, idempotency
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import ApiProblem, responses
from andchain.api.routers.common import CLIENT_DESCRIPTION, CLIENT_REF_LENGTH_MAX, own_client
from andchain.api.routers.ledger import idempotent, scoped
from andchain.connect.cards import Cards
from andchain.connect.oauth import (
    SCOPES,
    AccountNotInConsent,
    ConnectService,
    Grantee,
    HttpIn,
    InsufficientScope,
    OAuth2Error,
    Unauthorized,
    consented_account,
    oauth_request,
)
from andchain.connect.pulls import Pulls
from andchain.connect.rewards import Rewards
from andchain.context import Context
from andchain.errors import DomainError
from andchain.events.store import iso
from andchain.money import format_minor

oauth = APIRouter()  # forms and redirects: not the JSON API's strict route
router = APIRouter(route_class=StrictJSONRoute)
SCOPE_WORDS = {
    "accounts:read": "see the accounts you choose, their balances and transactions",
    "payments:write": "pull funds from the accounts you choose into your wallet",
}


def connect_service(request: Request) -> ConnectService:
    ctx: Context = context(request)
    return app_service(
        request, "connect", lambda: ConnectService(ctx.engine, ctx.settings.connect, ctx.api_keys.digest,
                                                   clock=ctx.clock, ids=lambda: ctx.ledger.ids.new_id().lower()),
    )  # fmt: skip


def issuer(ctx: Context) -> str:
    configured = ctx.settings.connect.issuer
    if configured:
        return configured.rstrip("/")
    host = ctx.settings.api.host
    if host in ("0.0.0.0", "::", "[::]", ""):  # listening everywhere: partners on this machine use loopback
        host = "127.0.0.1"
    return f"http://{host}:{ctx.settings.api.port}"


async def _http_in(request: Request, ctx: Context) -> HttpIn:
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        parsed = await request.form()
        form = [(k, v) for k, v in parsed.multi_items() if isinstance(v, str)]
    query = list(request.query_params.multi_items())
    if any("\x00" in k or "\x00" in v for k, v in [*form, *query]):
        raise ApiProblem(400, "invalid_request", "a field holds a NUL character")
    url = issuer(ctx) + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HttpIn(request.method, url, {k.lower(): v for k, v in request.headers.items()}, query, form)


# --------------------------------------------------------------- metadata


@oauth.get("/.well-known/oauth-authorization-server", include_in_schema=False)
def metadata(request: Request) -> JSONResponse:
    ctx: Context = context(request)
    base = issuer(ctx)
    return JSONResponse(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            # RFC 9207: every authorization response names its issuer (a wallet that talks to several banks
            # tells them apart: no mix-up).
            "authorization_response_iss_parameter_supported": True,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": list(SCOPES),
            "service_documentation": f"{base}/docs",
        }
    )


# -------------------------------------------------------------- the screen


def _page(title: str, body: str, *, status: int = 200, redirect_uri: str | None = None) -> HTMLResponse:
    targets = "'self'"
    if redirect_uri:
        parts = urlsplit(redirect_uri)
        targets += f" {parts.scheme}://{parts.netloc}"
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>{body}</main>"
        "</body></html>"
    )
    response = HTMLResponse(text, status_code=status)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def _hidden(fields: list[tuple[str, str]]) -> str:
    return "".join(
        f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields
        if k not in ("customer_key", "session", "step", "decision", "account", "grant_scope", "days")
    )


def _with_iss(location: str, iss: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}{urlencode({'iss': iss})}"


def _oauth_error(error: OAuth2Error, redirect_uri: str | None, state: str | None, iss: str = "") -> Any:
    """An authorization error: back to the partner when its redirect URI was verified, else a page."""
    if redirect_uri:
        params = {"error": error.error, "iss": iss}
        if error.description:
            params["error_description"] = error.description
        if state:
            params["state"] = state
        return RedirectResponse(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}", 302)
    # Not back to an address the bank cannot vouch for; and nothing of the request echoed.
    return _page(
        "This request cannot go on",
        "<p>The app's request is not valid here (an unknown app, or a return address it did not register "
        f"with the bank). Go back to the app and try again.</p><p><code>{html.escape(error.error)}</code></p>",
        status=400,
    )


def _validated(service: ConnectService, http: HttpIn) -> Any:
    """The authorization request checked (client, redirect URI, response type, scope, PKCE); its grant."""
    grant = service.server.get_consent_grant(oauth_request(http))
    data = grant.request.payload.data
    if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
        # PKCE for every app, confidential or public, and S256 only (a missing method would mean plain).
        raise InvalidRequestError("PKCE is required: code_challenge with code_challenge_method=S256")
    asked = set((grant.request.payload.scope or "").split())
    if not asked:
        raise InvalidScopeError("the request names no scope")
    if not asked <= set(grant.client.scopes):
        # Never narrowed in silence: an app asks only for what the bank registered it for.
        raise InvalidScopeError(f"this app may ask for {' '.join(grant.client.scopes)}")
    return grant


def _request_key(http: HttpIn) -> str:
    data = dict([*http.query, *http.form])
    return "|".join(data.get(k, "") for k in ("client_id", "redirect_uri", "code_challenge", "state", "scope"))


def _verified_redirect(service: ConnectService, http: HttpIn) -> str | None:
    data = dict([*http.query, *http.form])
    partner = service.partner(data.get("client_id", ""), required=False)
    uri = data.get("redirect_uri")
    if partner is None or not partner.active:
        return None
    if uri:
        return uri if partner.check_redirect_uri(uri) else None
    return partner.get_default_redirect_uri()


def _sign_in_page(service: ConnectService, http: HttpIn, grant: Any, message: str = "", status: int = 200) -> Any:
    partner = grant.client
    scopes = (grant.request.payload.scope or "").split()
    items = "".join(f"<li>{html.escape(SCOPE_WORDS.get(s, s))}</li>" for s in scopes)
    warning = f"<p role=alert><strong>{html.escape(message)}</strong></p>" if message else ""
    body = (
        f"<p><strong>{html.escape(partner.name)}</strong> asks to connect to your bank accounts, to:</p>"
        f"<ul>{items}</ul>{warning}"
        '<form method=post action="/oauth/authorize">'
        f"{_hidden([*http.query, *http.form])}<input type=hidden name=step value=signin>"
        "<p><label>Your online-banking key <input type=password name=customer_key autocomplete=off required>"
        "</label></p><p><button type=submit>Sign in</button></p></form>"
    )
    return _page("Connect an app to your bank", body, status=status, redirect_uri=_verified_redirect(service, http))


def _consent_page(service: ConnectService, ctx: Context, http: HttpIn, grant: Any, customer: str) -> Any:
    partner = grant.client
    scopes = (grant.request.payload.scope or "").split()
    accounts = _customer_accounts(ctx, customer)
    choices = "".join(
        f'<li><label><input type=checkbox name=account value="{a.id}" checked> {html.escape(_account_label(a))} '
        f"({format_minor(a.balance_posted, ctx.settings.asset_registry.get(a.asset).scale)} {html.escape(a.asset)})"
        "</label></li>"
        for a in accounts
    )
    scope_boxes = "".join(
        f'<li><label><input type=checkbox name=grant_scope value="{html.escape(s)}" checked> '
        f"{html.escape(SCOPE_WORDS.get(s, s))}</label></li>"
        for s in scopes
    )
    settings = ctx.settings.connect
    days = "".join(
        f'<option value="{d}"{" selected" if d == settings.consent_days else ""}>{d} days</option>'
        for d in sorted({30, settings.consent_days, settings.consent_days_max})
    )
    session = service.session(customer, _request_key(http))
    body = (
        f"<p><strong>{html.escape(partner.name)}</strong> will be able to:</p>"
        '<form method=post action="/oauth/authorize">'
        f"{_hidden([*http.query, *http.form])}<input type=hidden name=step value=decide>"
        f'<input type=hidden name=session value="{html.escape(session)}">'
        f"<ul>{scope_boxes}</ul><p>for these accounts:</p><ul>{choices}</ul>"
        f"<p><label>until <select name=days>{days}</select></label></p>"
        "<p><button type=submit name=decision value=allow>Allow</button> "
        "<button type=submit name=decision value=deny>Deny</button></p></form>"
        "<p>You can see and revoke this consent at any time; the app's access ends at once.</p>"
    )
    return _page("Choose what to share", body, redirect_uri=_verified_redirect(service, http))


def _account_label(account: Any) -> str:
    name = str(account.name)
    kind = name.rsplit(":", 1)[-1]
    if ":card:" in name:
        return "Credit card"
    return {"dda": "Checking account"}.get(kind, name.split(":", 2)[-1])


@oauth.get("/oauth/authorize", include_in_schema=False)
async def authorize_page(request: Request, service: ConnectService = Depends(connect_service)) -> Any:
    ctx: Context = context(request)
    http = await _http_in(request, ctx)
    return await run_in_threadpool(_authorize_page, service, ctx, http)


def _authorize_page(service: ConnectService, ctx: Context, http: HttpIn) -> Any:
    try:
        grant = _validated(service, http)
    except OAuth2Error as error:
        return _oauth_error(error, _verified_redirect(service, http), dict(http.query).get("state"), issuer(ctx))
    return _sign_in_page(service, http, grant)


@oauth.post("/oauth/authorize", include_in_schema=False)
async def authorize_decide(request: Request, service: ConnectService = Depends(connect_service)) -> Any:
    ctx: Context = context(request)
    http = await _http_in(request, ctx)
    return await run_in_threadpool(_authorize_decide, service, ctx, http)


def _customer_accounts(ctx: Context, customer: str) -> list[Any]:
    """What a customer may share: its open USD accounts."""
    found: list[Any] = []
    after = 0
    while True:
        page = ctx.ledger.list_accounts(prefix=f"clients:{customer}:", after_id=after, limit=500)
        found.extend(a for a in page if a.asset == "USD" and not a.closed)
        if len(page) < 500:
            return found
        after = page[-1].id


def _authorize_decide(service: ConnectService, ctx: Context, http: HttpIn) -> Any:
    fields = dict(http.form)
    state = fields.get("state")
    iss = issuer(ctx)
    try:
        grant = _validated(service, http)
    except OAuth2Error as error:
        return _oauth_error(error, _verified_redirect(service, http), state, iss)
    if fields.get("step") == "signin":
        principal = ctx.api_keys.verify(fields.get("customer_key", "").strip())
        if principal is None or principal.role != Role.CLIENT or principal.client_id is None:
            return _sign_in_page(service, http, grant, "That key does not sign in a customer.", status=401)
        return _consent_page(service, ctx, http, grant, principal.client_id.lower())
    if fields.get("step") != "decide":
        return _page("This request cannot go on", "<p>Start again from the app.</p>", status=400)
    customer = service.customer_of_session(fields.get("session", ""), _request_key(http))
    if customer is None:
        return _sign_in_page(service, http, grant, "Your sign-in expired: sign in again.", status=401)
    if fields.get("decision") != "allow":
        status, _, headers = service.server.create_authorization_response(
            oauth_request(http), grant_user=None, grant=grant
        )
        return RedirectResponse(_with_iss(dict(headers)["Location"], iss), status)
    requested = set((grant.request.payload.scope or "").split())
    chosen = [v for k, v in http.form if k == "grant_scope" and v in requested]
    own = {a.id for a in _customer_accounts(ctx, customer)}
    try:
        accounts = sorted({int(v) for k, v in http.form if k == "account" and len(v) <= 18})
        days = int(fields.get("days") or ctx.settings.connect.consent_days)
    except ValueError:
        return _page("This request cannot go on", "<p>Start again from the app.</p>", status=400)
    if not chosen or not accounts or not set(accounts) <= own:
        return _page("Nothing was shared", "<p>Choose at least one account and one permission.</p>", status=400)
    try:
        consent = service.grant(grant.client.get_client_id(), customer, chosen, accounts, days)
    except DomainError as exc:
        return _page("Nothing was shared", f"<p>{html.escape(exc.message)}</p>", status=400)
    # The code carries what the customer chose, which may be less than what was asked.
    form = [(k, v) for k, v in http.form if k != "scope"] + [("scope", " ".join(sorted(chosen)))]
    narrowed = service.server.get_consent_grant(oauth_request(HttpIn(http.method, http.url, http.headers,
                                                                      http.query, form)))  # fmt: skip
    status, _, headers = service.server.create_authorization_response(
        narrowed.request, grant_user=Grantee(consent.id, customer), grant=narrowed
    )
    return RedirectResponse(_with_iss(dict(headers)["Location"], iss), status)


@oauth.post("/oauth/token", include_in_schema=False)
async def token(request: Request, service: ConnectService = Depends(connect_service)) -> JSONResponse:
    ctx: Context = context(request)
    http = await _http_in(request, ctx)

    def issue() -> tuple[int, Any, list[tuple[str, str]]]:
        try:
            answer: tuple[int, Any, list[tuple[str, str]]] = service.server.create_token_response(oauth_request(http))
            return answer
        except OAuth2Error as error:  # raised before authlib answers (an issuer it deems insecure)
            return error.status_code or 400, dict(error.get_body()), []
        except (UnicodeDecodeError, ValueError):  # a client authentication header that does not decode
            return 401, {"error": "invalid_client", "error_description": "the client credentials do not decode"}, []

    status, body, headers = await run_in_threadpool(issue)
    response = JSONResponse(body, status_code=status)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# ------------------------------------------------------------- consents


class ConsentOut(BaseModel):
    id: str
    partner: str
    partner_name: str | None
    customer: str
    scopes: list[str]
    accounts: list[str] = Field(description="the ledger account ids shared")
    status: str = Field(description="active, expired, revoked")
    created_at: str
    expires_at: str
    revoked_at: str | None


class ConsentsOut(BaseModel):
    data: list[ConsentOut]


def _consent_view(service: ConnectService, consent: Any) -> dict[str, Any]:
    partner = service.partner(consent.client_id, required=False)
    return dict(consent.view(service.clock(), partner.name if partner else None))


@router.get(
    "/v1/consents",
    response_model=ConsentsOut,
    tags=["connect"],
    summary="Consents given to partner apps, newest first",
    responses=responses({200: "the consents (a client: its own)"}),
)
def list_consents(
    client: str | None = Query(None, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION),
    principal: Principal = allow(READERS, Role.CLIENT),
    service: ConnectService = Depends(connect_service),
) -> Any:
    own = own_client(principal)
    customer = own if own is not None else (client.lower() if client else None)
    return {"data": [_consent_view(service, c) for c in service.consents(customer=customer)]}


@router.post(
    "/v1/consents/{consent_id}/revoke",
    response_model=ConsentOut,
    tags=["connect"],
    summary="Revoke a consent: every token of it stops working at once",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "the consent, revoked"},
        {404: "consent_not_found (also another client's)", 409: "consent_not_active"},
        post=True,
    ),
)
def revoke_consent(
    consent_id: str = PathParam(min_length=1, max_length=40),
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: ConnectService = Depends(connect_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def call() -> tuple[int, dict[str, Any]]:
        return 200, _consent_view(service, service.revoke(consent_id, customer=own_client(principal)))

    return store.run(scoped(principal, "POST /v1/consents/{consent_id}/revoke"), key, {"consent": consent_id}, call)


# ------------------------------------------------------------------- FDX


def partner_access(scope: str) -> Any:
    """The FDX routes' credential: a partner's OAuth access token carrying `scope`."""

    def dependency(request: Request, service: ConnectService = Depends(connect_service)) -> Any:
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        try:
            return service.access(bearer, scope)
        except Unauthorized as exc:
            raise ApiProblem(
                401, exc.code, exc.message, headers={"WWW-Authenticate": f'Bearer realm="fdx", error="{exc.code}"'}
            ) from None
        except InsufficientScope as exc:
            raise ApiProblem(
                403,
                exc.code,
                exc.message,
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            ) from None

    dependency.oauth_scope = scope  # type: ignore[attr-defined]
    return Depends(dependency)


FDX_REFUSED = {
    401: "invalid_token: no access token, or one unknown, expired or revoked (its consent ended)",
    403: "insufficient_scope; account_not_in_consent (also an account that does not exist)",
}


def _account(ctx: Context, access: Any, account_id: str) -> Any:
    """A consented account of the customer, or 403 naming nothing (another customer's, none at all)."""
    return consented_account(ctx.ledger, access, account_id)


def _fdx_account(ctx: Context, service: ConnectService, access: Any, account: Any) -> dict[str, Any]:
    scale = ctx.settings.asset_registry.get(account.asset).scale
    number = service.tokenized_account_number(access.consent_id, account.id)
    if ":card:" in account.name:
        # A credit card's line: what the customer owes, and the credit still available.
        card = Cards(ctx).card(account.name.rsplit(":", 1)[-1])
        return {
            "accountId": str(account.id),
            "accountCategory": "LOC_ACCOUNT",
            "accountType": "CREDITCARD",
            "accountNumberDisplay": "..." + number[-4:],
            "productName": "Credit card",
            "status": "OPEN" if card.status == "active" else "CLOSED",
            "currency": {"currencyCode": account.asset},
            "balanceType": "LIABILITY",
            "currentBalance": format_minor(card.limit_minor - account.balance_posted, scale),
            "availableBalance": format_minor(account.available, scale),
            "balanceAsOf": iso(ctx.clock()),
        }
    return {
        "accountId": str(account.id),
        "accountCategory": "DEPOSIT_ACCOUNT",
        "accountType": "CHECKING",
        "accountNumberDisplay": "..." + number[-4:],
        "productName": _account_label(account),
        "status": "CLOSED" if account.closed else "OPEN",
        "currency": {"currencyCode": account.asset},
        "balanceType": "ASSET",
        "currentBalance": format_minor(account.balance_posted, scale),
        "availableBalance": format_minor(account.available, scale),
        "balanceAsOf": iso(ctx.clock()),
    }


class FdxAccount(BaseModel):
    accountId: str
    accountCategory: str
    accountType: str
    accountNumberDisplay: str
    productName: str
    status: str
    currency: dict[str, str]
    balanceType: str
    currentBalance: str = Field(description="an exact decimal string (FDX writes a number)")
    availableBalance: str
    balanceAsOf: str


class FdxAccounts(BaseModel):
    accounts: list[FdxAccount]


class FdxTransaction(BaseModel):
    transactionId: str
    postedTimestamp: str
    amount: str
    debitCreditMemo: str
    description: str
    status: str = Field(description="POSTED or PENDING")


class FdxPage(BaseModel):
    nextOffset: str | None = None


class FdxTransactions(BaseModel):
    page: FdxPage
    transactions: list[FdxTransaction]


class FdxPaymentNetwork(BaseModel):
    bankId: str = Field(description="the bank's routing number")
    identifier: str = Field(description="a tokenized account number: never the real one")
    identifierType: str
    type: str
    transferIn: bool
    transferOut: bool


class FdxPaymentNetworks(BaseModel):
    paymentNetworks: list[FdxPaymentNetwork]


@router.get(
    "/fdx/v6/accounts",
    response_model=FdxAccounts,
    tags=["fdx"],
    summary="The accounts the customer shared with this partner",
    responses=responses({200: "the consented accounts"}, FDX_REFUSED, authenticated=False),
)
def fdx_accounts(
    request: Request, access: Any = partner_access("accounts:read"), service: ConnectService = Depends(connect_service)
) -> Any:
    ctx: Context = context(request)
    out = []
    for account_id in access.accounts:
        try:
            account = _account(ctx, access, str(account_id))
        except AccountNotInConsent:
            continue  # no longer the customer's (or closed since): not shown
        out.append(_fdx_account(ctx, service, access, account))
    return {"accounts": out}


@router.get(
    "/fdx/v6/accounts/{accountId}",
    response_model=FdxAccount,
    tags=["fdx"],
    summary="One consented account",
    responses=responses({200: "the account"}, FDX_REFUSED, authenticated=False),
)
def fdx_account(
    request: Request,
    account_id: str = PathParam(alias="accountId", min_length=1, max_length=40),
    access: Any = partner_access("accounts:read"),
    service: ConnectService = Depends(connect_service),
) -> Any:
    ctx: Context = context(request)
    return _fdx_account(ctx, service, access, _account(ctx, access, account_id))


@router.get(
    "/fdx/v6/accounts/{accountId}/transactions",
    response_model=FdxTransactions,
    tags=["fdx"],
    summary="A consented account's transactions, newest first, a page at a time",
    responses=responses({200: "a page; follow page.nextOffset"}, FDX_REFUSED, authenticated=False),
)
def fdx_transactions(
    request: Request,
    account_id: str = PathParam(alias="accountId", min_length=1, max_length=40),
    offset: str | None = Query(None, max_length=20, pattern=r"^[0-9]+$", description="page.nextOffset"),
    limit: int = Query(25, ge=1, le=100),
    access: Any = partner_access("accounts:read"),
) -> Any:
    ctx: Context = context(request)
    account = _account(ctx, access, account_id)
    scale = ctx.settings.asset_registry.get(account.asset).scale
    after = int(offset) if offset else 0
    if after > 2**62:
        raise ApiProblem(422, "invalid_request", "the offset is not one this API gave")
    rows = ctx.ledger.list_transfers(account_id=account.id, newest_first=True, after_seq=after, limit=limit)
    out = []
    for t in rows:
        if t.pending_id is not None or t.pending_status in ("voided", "expired"):
            continue  # a post or void of a hold is its hold's story, told once
        out.append(
            {
                "transactionId": t.id,
                "postedTimestamp": iso(t.created_at_us),
                "amount": format_minor(t.amount, scale),
                "debitCreditMemo": "DEBIT" if t.debit_account_id == account.id else "CREDIT",
                "description": t.memo or t.code,
                "status": "PENDING" if t.pending_status == "pending" else "POSTED",
            }
        )
    return {"page": {"nextOffset": str(rows[-1].seq) if len(rows) == limit else None}, "transactions": out}


@router.get(
    "/fdx/v6/accounts/{accountId}/payment-networks",
    response_model=FdxPaymentNetworks,
    tags=["fdx"],
    summary="How to move money to and from a consented account: the routing number and a tokenized number",
    responses=responses({200: "the payment networks"}, FDX_REFUSED, authenticated=False),
)
def fdx_payment_networks(
    request: Request,
    account_id: str = PathParam(alias="accountId", min_length=1, max_length=40),
    access: Any = partner_access("accounts:read"),
    service: ConnectService = Depends(connect_service),
) -> Any:
    ctx: Context = context(request)
    account = _account(ctx, access, account_id)
    return {
        "paymentNetworks": [
            {
                "bankId": ctx.settings.connect.routing_number,
                "identifier": service.tokenized_account_number(access.consent_id, account.id),
                "identifierType": "ACCOUNT_NUMBER",
                "type": "US_ACH",
                "transferIn": True,
                "transferOut": "payments:write" in access.scopes,
            }
        ]
    }


# ----------------------------------------------------------------- pulls


def pulls_service(request: Request) -> Pulls:
    return app_service(request, "connect_pulls", lambda: Pulls(context(request)))


class PullIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    accountId: str = Field(min_length=1, max_length=18, pattern=r"^[0-9]+$")
    amount: str = Field(pattern=r"^[0-9]{1,15}(\.[0-9]{1,2})?$", examples=["250.00"])
    memo: str = Field(default="", max_length=140)


class PullOut(BaseModel):
    pullId: str
    accountId: str
    amount: str
    currency: str
    memo: str
    status: str = Field(description="pending, posted, settled, returned")
    returnCode: str | None
    returnReason: str | None
    createdAt: str
    settlementDate: str
    returnWindowEnds: str


class PullsOut(BaseModel):
    data: list[PullOut]


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    code: str = Field(pattern=r"^R[0-9]{2}$", examples=["R10"])


@router.post(
    "/connect/v1/pulls",
    status_code=201,
    response_model=PullOut,
    tags=["fdx"],
    summary="Pull funds from a consented account into the customer's wallet (an ACH-like debit)",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "the pull: pending, or returned R01 at once when the account cannot cover it"},
        {
            **FDX_REFUSED,
            409: "idempotency_key_reused",
            422: "invalid_amount, pull_limit_exceeded, pull_velocity_exceeded",
        },
        post=True,
        authenticated=False,
    ),
)
def create_pull(
    body: PullIn,
    access: Any = partner_access("payments:write"),
    key: str = Depends(idempotency_key),
    pulls: Pulls = Depends(pulls_service),
) -> Any:
    """Held on the customer's account at once, posted on its settlement date, settled when its return
    window closes; the same Idempotency-Key answers the same pull."""
    return pulls.create(access, body.accountId, body.amount, body.memo, key).view()


@router.get(
    "/connect/v1/pulls/{pullId}",
    response_model=PullOut,
    tags=["fdx"],
    summary="One of this partner's pulls",
    responses=responses({200: "the pull"}, {**FDX_REFUSED, 404: "pull_not_found"}, authenticated=False),
)
def get_pull(
    pull_id: str = PathParam(alias="pullId", min_length=1, max_length=40),
    access: Any = partner_access("payments:write"),
    pulls: Pulls = Depends(pulls_service),
) -> Any:
    return pulls.get(pull_id, client_id=access.client_id, customer=access.customer).view()


@router.get(
    "/v1/connect/pulls",
    response_model=PullsOut,
    tags=["connect"],
    summary="Partners' pulls from customers' accounts, newest first",
    responses=responses({200: "the pulls (a client: from its own accounts)"}),
)
def list_pulls(
    client: str | None = Query(None, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = allow(READERS, Role.CLIENT),
    pulls: Pulls = Depends(pulls_service),
) -> Any:
    own = own_client(principal)
    customer = own if own is not None else (client.lower() if client else None)
    return {"data": [p.view() for p in pulls.list(customer=customer, limit=limit)]}


@router.post(
    "/v1/connect/pulls/{pull_id}/return",
    response_model=PullOut,
    tags=["connect"],
    summary="Return a pull before its window closes: released, or reversed to the customer's account",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "the pull, returned"},
        {404: "pull_not_found", 409: "return_window_closed, pull_returned", 422: "invalid_return_code"},
        post=True,
    ),
)
def return_pull(
    body: ReturnIn,
    pull_id: str = PathParam(min_length=1, max_length=40),
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    pulls: Pulls = Depends(pulls_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def call() -> tuple[int, dict[str, Any]]:
        return 200, pulls.return_(pull_id, body.code).view()

    payload = {"pull": pull_id, "code": body.code}
    return store.run(scoped(principal, "POST /v1/connect/pulls/{pull_id}/return"), key, payload, call)


# ------------------------------------------------------------------ cards


def cards_service(request: Request) -> Cards:
    return app_service(request, "connect_cards", lambda: Cards(context(request)))


class CardChargeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    accountId: str = Field(min_length=1, max_length=18, pattern=r"^[0-9]+$", description="the card's account")
    amount: str = Field(pattern=r"^[0-9]{1,15}(\.[0-9]{1,2})?$", examples=["100.00"])
    mcc: str = Field(pattern=r"^[0-9]{4}$", description="merchant category code; 6051: crypto (a cash advance)")
    merchant: str = Field(min_length=1, max_length=100)


class CardAuthorizationOut(BaseModel):
    authorizationId: str
    cardId: str
    amount: str
    fee: str = Field(description="the cash-advance fee, when one")
    currency: str
    mcc: str
    merchant: str
    cashAdvance: bool
    status: str = Field(description="authorized, captured, voided, expired")
    createdAt: str
    expiresAt: str


_CARD_REFUSED = {
    **FDX_REFUSED,
    404: "authorization_not_found",
    409: "authorization_not_open, idempotency_key_reused",
    422: "insufficient_credit (declined), invalid_amount, card_closed",
}


@router.post(
    "/connect/v1/card-authorizations",
    status_code=201,
    response_model=CardAuthorizationOut,
    tags=["fdx"],
    summary="Charge a consented credit card: an authorization held on its available credit",
    openapi_extra=idempotent(),
    responses=responses({201: "authorized"}, _CARD_REFUSED, post=True, authenticated=False),
)
def authorize_card(
    body: CardChargeIn,
    access: Any = partner_access("payments:write"),
    key: str = Depends(idempotency_key),
    cards: Cards = Depends(cards_service),
) -> Any:
    """Captured, voided, or expired after `connect.card_auth_ttl_s` (7 days); a crypto purchase (MCC
    6051) is a cash advance, with its fee and no points."""
    return cards.authorize(access, body.accountId, body.amount, body.mcc, body.merchant, key).view()


@router.get(
    "/connect/v1/card-authorizations/{authorizationId}",
    response_model=CardAuthorizationOut,
    tags=["fdx"],
    summary="One of this partner's card authorizations",
    responses=responses({200: "the authorization"}, _CARD_REFUSED, authenticated=False),
)
def get_card_authorization(
    auth_id: str = PathParam(alias="authorizationId", min_length=1, max_length=40),
    access: Any = partner_access("payments:write"),
    cards: Cards = Depends(cards_service),
) -> Any:
    return cards.get(auth_id, client_id=access.client_id).view()


@router.post(
    "/connect/v1/card-authorizations/{authorizationId}/capture",
    response_model=CardAuthorizationOut,
    tags=["fdx"],
    summary="Capture an authorization: the charge is posted (a purchase earns points)",
    openapi_extra=idempotent(),
    responses=responses({200: "captured"}, _CARD_REFUSED, post=True, authenticated=False),
)
def capture_card_authorization(
    auth_id: str = PathParam(alias="authorizationId", min_length=1, max_length=40),
    access: Any = partner_access("payments:write"),
    key: str = Depends(idempotency_key),
    cards: Cards = Depends(cards_service),
) -> Any:
    return cards.capture(auth_id, client_id=access.client_id).view()


@router.post(
    "/connect/v1/card-authorizations/{authorizationId}/void",
    response_model=CardAuthorizationOut,
    tags=["fdx"],
    summary="Void an authorization: the credit it held is released",
    openapi_extra=idempotent(),
    responses=responses({200: "voided"}, _CARD_REFUSED, post=True, authenticated=False),
)
def void_card_authorization(
    auth_id: str = PathParam(alias="authorizationId", min_length=1, max_length=40),
    access: Any = partner_access("payments:write"),
    key: str = Depends(idempotency_key),
    cards: Cards = Depends(cards_service),
) -> Any:
    return cards.void(auth_id, client_id=access.client_id).view()


# ---------------------------------------------------------------- rewards


def rewards_service(request: Request) -> Rewards:
    return app_service(
        request, "connect_rewards", lambda: Rewards(context(request), getattr(request.app.state, "custody", None))
    )


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str | None = Field(
        default=None, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION
    )
    points: int = Field(ge=1, le=10**12)
    network: str = Field(min_length=1, max_length=64, examples=["base"])


class RedemptionOut(BaseModel):
    id: str
    customer: str
    points: int
    usdc: str
    network: str
    address: str = Field(description="the customer's own verified address it is delivered to")
    withdrawal: str = Field(description="the custody_withdrawal operation")
    status: str = Field(description="pending, delivered (points taken), failed (points untouched)")
    created_at: str


class RedemptionsOut(BaseModel):
    data: list[RedemptionOut]
    points: int | None = Field(default=None, description="a client's points available now")


def _customer(principal: Principal, ref: str | None) -> str:
    own = own_client(principal)
    if own is not None:
        if ref is not None and ref.lower() != own:
            raise ApiProblem(404, "client_not_found", f"no client {ref!r}")
        return own
    if ref is None:
        raise ApiProblem(422, "invalid_request", "the request is not valid: body.client: the bank's roles name it")
    return ref.lower()


@router.post(
    "/v1/rewards/redemptions",
    status_code=201,
    response_model=RedemptionOut,
    tags=["connect"],
    summary="Redeem rewards points for USDC delivered to the customer's own wallet",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "the redemption: points held until the custodian delivers"},
        {
            404: "client_not_found",
            409: "idempotency_key_reused",
            422: "insufficient_funds (points), no_registered_address, treasury_insufficient, invalid_amount",
        },
        post=True,
    ),
)
def redeem_points(
    body: RedemptionIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    rewards: Rewards = Depends(rewards_service),
) -> Any:
    """The points are taken only when the custodian completes the USDC withdrawal; released if it fails."""
    customer = _customer(principal, body.client)
    return rewards.redeem(customer, body.points, body.network, key).view()


@router.get(
    "/v1/rewards/redemptions",
    response_model=RedemptionsOut,
    tags=["connect"],
    summary="Rewards redemptions, newest first (a client: its own, and its points available)",
    responses=responses({200: "the redemptions"}),
)
def list_redemptions(
    client: str | None = Query(None, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION),
    principal: Principal = allow(READERS, Role.CLIENT),
    rewards: Rewards = Depends(rewards_service),
) -> Any:
    own = own_client(principal)
    customer = own if own is not None else (client.lower() if client else None)
    return {
        "data": [r.view() for r in rewards.list(customer=customer)],
        "points": None if customer is None else rewards.points(customer),
    }
