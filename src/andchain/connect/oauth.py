"""The OAuth 2.0 authorization server partner apps use (authlib's RFC 6749 core, with PKCE, RFC 7636).

- Partners (an exchange) are registered with exact redirect URIs and the scopes they may ask for
  (`accounts:read`, `payments:write`); a confidential partner authenticates at the token endpoint
  with its secret (basic or post), a public one with none; every authorization request carries a
  PKCE challenge, S256 only.
- The customer grants a consent on andchain's consent screen: which accounts, which scopes, for how
  long. The authorization code names that consent; it lives `connect.code_ttl_s`, is used once
  (claimed when it is looked up; a second use ends the consent and every token of it).
- Access tokens live `connect.access_token_ttl_s`; a refresh token is used once: the rotation issues
  a new pair, and a retired refresh token presented again ends its consent and every token of it
  (RFC 9700's reuse detection).
- A consent is ACTIVE until its end (then EXPIRED) or until the customer revokes it (REVOKED): every
  token of a consent stops working with it, at once (each use looks the consent up).

Tokens and codes are kept only as keyed hashes (`digest`, the API's pepper).
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from sqlalchemy import Engine, select, update

from andchain.config import ConnectSettings
from andchain.connect import schema
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound

SCOPES = ("accounts:read", "payments:write")
ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"
GRANT_TYPES = ("authorization_code", "refresh_token")

__all__ = ["ConnectService", "OAuth2Error"]


class Unauthorized(DomainError):
    """A bearer token that is missing, unknown, expired or revoked (its consent ended)."""

    code = "invalid_token"
    http_status = 401


class AccountNotInConsent(DomainError):
    """Any account a consent does not share: another customer's, or none at all (one answer for both)."""

    code = "account_not_in_consent"
    http_status = 403


def consented_account(ledger: Any, access: Access, account_id: str, accept: Callable[[Any], bool] = bool) -> Any:
    """The ledger account `account_id` if the consent shares it, it is the customer's, and `accept`
    takes it; else 403 naming nothing."""
    refused = AccountNotInConsent("this account is not shared with you by this consent")
    text = str(account_id)
    if not text.isdigit() or len(text) > 18 or int(text) not in access.accounts:
        raise refused
    try:
        account = ledger.account(int(text))
    except DomainError:
        raise refused from None
    if not account.name.startswith(f"clients:{access.customer}:") or not accept(account):
        raise refused
    return account


class InsufficientScope(DomainError):
    code = "insufficient_scope"
    http_status = 403


@dataclass(frozen=True)
class Partner(ClientMixin):  # type: ignore[misc]
    client_id: str
    name: str
    secret_hmac: str | None
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    active: bool
    digest: Callable[[str], str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exactly: no prefixes, no patterns

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hmac is not None and hmac.compare_digest(self.secret_hmac, self.digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint != "token":
            return True
        if self.secret_hmac is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES

    def view(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "public": self.secret_hmac is None,
            "redirect_uris": list(self.redirect_uris),
            "scopes": list(self.scopes),
            "active": self.active,
        }


@dataclass(frozen=True)
class Consent:
    id: str
    client_id: str
    customer: str
    scopes: tuple[str, ...]
    accounts: tuple[int, ...]
    status: str
    created_at_us: int
    expires_at_us: int
    revoked_at_us: int | None

    def status_at(self, now_us: int) -> str:
        if self.status == ACTIVE and now_us >= self.expires_at_us:
            return EXPIRED
        return self.status

    def view(self, now_us: int, partner_name: str | None = None) -> dict[str, Any]:
        from andchain.events.store import iso

        return {
            "id": self.id,
            "partner": self.client_id,
            "partner_name": partner_name,
            "customer": self.customer,
            "scopes": list(self.scopes),
            "accounts": [str(a) for a in self.accounts],
            "status": self.status_at(now_us),
            "created_at": iso(self.created_at_us),
            "expires_at": iso(self.expires_at_us),
            "revoked_at": None if self.revoked_at_us is None else iso(self.revoked_at_us),
        }


@dataclass
class Grantee:
    """The resource owner of an authorization: the customer, through one consent."""

    consent_id: str
    customer: str

    def get_user_id(self) -> str:
        return self.customer


@dataclass
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code_hmac: str
    client_id: str
    consent_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at_us: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token(TokenMixin):  # type: ignore[misc]
    id: str
    client_id: str
    consent_id: str
    scope: str
    expires_at_us: int
    refresh_expires_at_us: int | None
    revoked: bool
    now_us: int

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, (self.expires_at_us - self.now_us) // 1_000_000)

    def is_expired(self) -> bool:
        return self.refresh_expires_at_us is not None and self.now_us >= self.refresh_expires_at_us

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass(frozen=True)
class Access:
    """What a valid access token lets its partner see: the consent's accounts, within its scopes."""

    token_id: str
    client_id: str
    consent_id: str
    customer: str
    scopes: tuple[str, ...]
    accounts: tuple[int, ...]


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    @property
    def data(self) -> dict[str, str]:
        return dict(self._items)

    @property
    def datalist(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, value in self._items:
            out.setdefault(key, []).append(value)
        return out


@dataclass(frozen=True)
class HttpIn:
    """An HTTP request as the authorization server needs it (built by the API from Starlette's)."""

    method: str
    url: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]


class _Headers(dict[str, str]):
    """HTTP headers, whatever the case a reader asks them in (authlib asks "Authorization")."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in headers.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, http: HttpIn) -> None:
        super().__init__(http.method, http.url, headers=_Headers(http.headers))
        self.payload = _Payload([*http.query, *http.form])
        self._query = dict(http.query)
        self._fields = dict(http.form)

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self._fields


def oauth_request(http: HttpIn) -> OAuth2Request:
    return _Request(http)


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, service: ConnectService) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.service = service

    def query_client(self, client_id: str) -> Partner | None:
        partner = self.service.partner(client_id, required=False)
        return partner if partner is not None and partner.active else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.service._save_token(token, request)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else oauth_request(request)

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(
        self, status: int, body: Any, headers: Iterable[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class _S256Only(CodeChallenge):  # type: ignore[misc]
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        service: ConnectService = self.server.service
        grantee: Grantee = request.user
        payload = request.payload.data
        if not payload.get("code_challenge") or payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required: code_challenge with code_challenge_method=S256")
        with write_transaction(service.engine) as conn:
            conn.execute(
                schema.codes.insert().values(
                    code_hmac=service.digest(code),
                    client_id=request.client.get_client_id(),
                    consent_id=grantee.consent_id,
                    redirect_uri=payload.get("redirect_uri") or "",
                    scope=payload.get("scope") or "",
                    code_challenge=payload.get("code_challenge"),
                    code_challenge_method="S256",
                    expires_at_us=service.clock() + service.settings.code_ttl_s * 1_000_000,
                    used=False,
                )
            )

    def query_authorization_code(self, code: str, client: Partner) -> Code | None:
        """The code, claimed at once (used from here on, whatever follows): of two requests presenting it,
        one alone gets it; the other is a reuse, which ends the consent (RFC 6749 4.1.2, RFC 9700)."""
        service: ConnectService = self.server.service
        t = schema.codes
        digest = service.digest(code)
        with service.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.code_hmac == digest)).first()
        if row is None or row.client_id != client.get_client_id():
            return None  # another partner's code says nothing, and revokes nothing
        with write_transaction(service.engine) as conn:
            claimed = conn.execute(update(t).where(t.c.code_hmac == digest, t.c.used.is_(False)).values(used=True))
        if claimed.rowcount != 1:
            service.compromised(row.consent_id)
            return None
        if service.clock() >= row.expires_at_us:
            return None
        return Code(row.code_hmac, row.client_id, row.consent_id, row.redirect_uri, row.scope, row.code_challenge,
                    row.code_challenge_method, row.expires_at_us)  # fmt: skip

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Nothing: the code was claimed when it was looked up."""

    def authenticate_user(self, authorization_code: Code) -> Grantee | None:
        service: ConnectService = self.server.service
        consent = service.consent(authorization_code.consent_id, required=False)
        if consent is None or consent.status_at(service.clock()) != ACTIVE:
            return None
        return Grantee(consent.id, consent.customer)


class _RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        """The refresh token, claimed at once (retired from here on): of two requests presenting it, one
        alone gets a new pair; a retired one presented again ends the consent (RFC 9700 4.14.2)."""
        service: ConnectService = self.server.service
        t = schema.tokens
        with service.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.refresh_hmac == service.digest(refresh_token))).first()
        if row is None or row.client_id != self.request.client.get_client_id():
            return None  # another partner's token says nothing, and revokes nothing
        with write_transaction(service.engine) as conn:
            claimed = conn.execute(
                update(t).where(t.c.id == row.id, t.c.refresh_used.is_(False)).values(refresh_used=True, revoked=True)
            )
        if claimed.rowcount != 1:
            service.compromised(row.consent_id)
            return None
        now = service.clock()
        consent = service.consent(row.consent_id, required=False)
        if row.revoked or consent is None or consent.status_at(now) != ACTIVE:
            return None
        if row.refresh_expires_at_us is not None and now >= row.refresh_expires_at_us:
            return None
        return Token(row.id, row.client_id, row.consent_id, row.scope, row.expires_at_us, row.refresh_expires_at_us,
                     False, now)  # fmt: skip

    def authenticate_user(self, refresh_token: Token) -> Grantee | None:
        consent = self.server.service.consent(refresh_token.consent_id, required=False)
        return None if consent is None else Grantee(consent.id, consent.customer)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Nothing: the refresh token was retired when it was looked up."""


def _redirect_ok(uri: str) -> bool:
    if len(uri) > 2000 or "#" in uri or any(c.isspace() for c in uri):
        return False
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and host in ("localhost", "127.0.0.1", "::1")


class ConnectService:
    def __init__(
        self,
        engine: Engine,
        settings: ConnectSettings,
        digest: Callable[[str], str],
        *,
        clock: Callable[[], int] | None = None,
        ids: Callable[[], str] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.digest = digest
        self.clock = clock or (lambda: time.time_ns() // 1000)
        self.new_id = ids or (lambda: secrets.token_hex(12))
        self.server = _Server(self)
        self.server.register_grant(_CodeGrant, [_S256Only(required=True)])
        self.server.register_grant(_RefreshGrant)
        self.server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda *a, **k: "at_" + secrets.token_urlsafe(32),
                refresh_token_generator=lambda *a, **k: "rt_" + secrets.token_urlsafe(32),
                expires_generator=lambda client, grant_type: settings.access_token_ttl_s,
            ),
        )

    # -------------------------------------------------------------- partners

    def register_partner(
        self, name: str, redirect_uris: list[str], scopes: list[str], *, public: bool = False
    ) -> tuple[Partner, str | None]:
        """A partner app; returns it and its secret (shown once; none for a public client)."""
        if not name.strip() or len(name) > 200:
            raise DomainError("a partner has a name of 1-200 characters", code="invalid_request")
        if not redirect_uris:
            raise DomainError("a partner registers at least one redirect URI", code="invalid_request")
        for uri in redirect_uris:
            if not _redirect_ok(uri):
                raise DomainError(
                    f"a redirect URI is https with a host (or http on this machine: localhost, 127.0.0.1, ::1), "
                    f"without user info or a fragment: {uri[:100]!r}",
                    code="invalid_redirect_uri",
                )
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise DomainError(f"scopes are among {', '.join(SCOPES)}, were {scopes}", code="invalid_scope")
        client_id = "p_" + secrets.token_hex(10)
        secret = None if public else "ps_" + secrets.token_urlsafe(32)
        with write_transaction(self.engine) as conn:
            conn.execute(
                schema.partners.insert().values(
                    client_id=client_id, name=name.strip(), secret_hmac=None if secret is None else self.digest(secret),
                    redirect_uris=json.dumps(redirect_uris), scopes=json.dumps(sorted(set(scopes))), active=True,
                    created_at_us=self.clock(),
                )
            )  # fmt: skip
        partner = self.partner(client_id)
        assert partner is not None
        return partner, secret

    def set_active(self, client_id: str, active: bool) -> Partner:
        """Disable a partner (its tokens stop working at once, it gets no new ones) or enable it again."""
        self.partner(client_id)
        with write_transaction(self.engine) as conn:
            conn.execute(update(schema.partners).where(schema.partners.c.client_id == client_id).values(active=active))
        partner = self.partner(client_id)
        assert partner is not None
        return partner

    def partner(self, client_id: str, *, required: bool = True) -> Partner | None:
        t = schema.partners
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.client_id == client_id)).first()
        if row is None:
            if required:
                raise NotFound(f"no partner {client_id!r}", code="partner_not_found")
            return None
        return Partner(row.client_id, row.name, row.secret_hmac, tuple(json.loads(row.redirect_uris)),
                       tuple(json.loads(row.scopes)), bool(row.active), self.digest)  # fmt: skip

    def partners(self) -> list[Partner]:
        t = schema.partners
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(select(t.c.client_id).order_by(t.c.created_at_us))]
        return [p for p in (self.partner(i) for i in ids) if p is not None]

    # -------------------------------------------------------------- consents

    def grant(
        self, client_id: str, customer: str, scopes: list[str], accounts: list[int], days: int | None = None
    ) -> Consent:
        """The customer's consent, as it chose on the consent screen."""
        days = days or self.settings.consent_days
        if not 1 <= days <= self.settings.consent_days_max:
            raise DomainError(f"a consent lasts 1 to {self.settings.consent_days_max} days", code="invalid_request")
        if not accounts:
            raise DomainError("a consent names at least one account", code="invalid_request")
        now = self.clock()
        consent_id = "cns_" + self.new_id()
        with write_transaction(self.engine) as conn:
            conn.execute(
                schema.consents.insert().values(
                    id=consent_id, client_id=client_id, customer=customer, scopes=json.dumps(sorted(set(scopes))),
                    accounts=json.dumps(sorted(set(accounts))), status=ACTIVE, created_at_us=now,
                    expires_at_us=now + days * 86_400 * 1_000_000, revoked_at_us=None,
                )
            )  # fmt: skip
        consent = self.consent(consent_id)
        assert consent is not None
        return consent

    def consent(self, consent_id: str, *, required: bool = True, customer: str | None = None) -> Consent | None:
        t = schema.consents
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == consent_id)).first()
        if row is None or (customer is not None and row.customer != customer):
            if required:
                raise NotFound(f"no consent {consent_id!r}", code="consent_not_found")
            return None
        return Consent(row.id, row.client_id, row.customer, tuple(json.loads(row.scopes)),
                       tuple(json.loads(row.accounts)), row.status, row.created_at_us, row.expires_at_us,
                       row.revoked_at_us)  # fmt: skip

    def consents(self, *, customer: str | None = None, limit: int = 100) -> list[Consent]:
        t = schema.consents
        query = select(t.c.id).order_by(t.c.created_at_us.desc()).limit(limit)
        if customer is not None:
            query = query.where(t.c.customer == customer)
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(query)]
        return [c for c in (self.consent(i, required=False) for i in ids) if c is not None]

    def revoke(self, consent_id: str, *, customer: str | None = None) -> Consent:
        """The customer (or the bank) ends a consent: every token of it stops working at once."""
        consent = self.consent(consent_id, customer=customer)
        assert consent is not None
        now = self.clock()
        if consent.status_at(now) != ACTIVE:
            raise Conflict(f"consent {consent_id} is {consent.status_at(now)}", code="consent_not_active")
        t = schema.consents
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(t).where(t.c.id == consent_id, t.c.status == ACTIVE).values(status=REVOKED, revoked_at_us=now)
            )
            conn.execute(update(schema.tokens).where(schema.tokens.c.consent_id == consent_id).values(revoked=True))
        revoked = self.consent(consent_id)
        assert revoked is not None
        return revoked

    def compromised(self, consent_id: str) -> None:
        """A code or refresh token presented twice: stolen or replayed. The consent ends, and with it every
        token of it, those in flight included (each use looks the consent up)."""
        now = self.clock()
        t = schema.consents
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(t).where(t.c.id == consent_id, t.c.status == ACTIVE).values(status=REVOKED, revoked_at_us=now)
            )
            conn.execute(update(schema.tokens).where(schema.tokens.c.consent_id == consent_id).values(revoked=True))

    # ---------------------------------------------------------------- tokens

    def _save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        grantee: Grantee = request.user
        now = self.clock()
        refresh = token.get("refresh_token")
        with write_transaction(self.engine) as conn:
            conn.execute(
                schema.tokens.insert().values(
                    id="tok_" + self.new_id(),
                    access_hmac=self.digest(token["access_token"]),
                    refresh_hmac=None if refresh is None else self.digest(refresh),
                    client_id=request.client.get_client_id(),
                    consent_id=grantee.consent_id,
                    scope=token.get("scope") or "",
                    issued_at_us=now,
                    expires_at_us=now + int(token["expires_in"]) * 1_000_000,
                    refresh_expires_at_us=None
                    if refresh is None
                    else now + self.settings.refresh_token_ttl_s * 1_000_000,
                    revoked=False,
                    refresh_used=False,
                )
            )

    def access(self, bearer: str | None, scope: str) -> Access:
        """What an access token lets its partner do, or 401 (unknown, expired, revoked, consent ended) /
        403 (a scope the token does not carry)."""
        if not bearer:
            raise Unauthorized("an access token is required: Authorization: Bearer <token>")
        t = schema.tokens
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.access_hmac == self.digest(bearer))).first()
        now = self.clock()
        if row is None or row.revoked or now >= row.expires_at_us:
            raise Unauthorized("the access token is not valid (unknown, expired or revoked)")
        consent = self.consent(row.consent_id, required=False)
        if consent is None or consent.status_at(now) != ACTIVE:
            raise Unauthorized("the consent behind this access token has ended")
        partner = self.partner(row.client_id, required=False)
        if partner is None or not partner.active:
            raise Unauthorized("the app this access token was issued to is disabled")
        scopes = tuple(row.scope.split())
        if scope not in scopes:
            raise InsufficientScope(f"this token does not carry the scope {scope}")
        return Access(row.id, row.client_id, consent.id, consent.customer, scopes, consent.accounts)

    # ------------------------------------------------------------ the screen

    def session(self, customer: str, request_key: str, ttl_s: int = 600) -> str:
        """A short-lived proof, on the consent screen's second step, that the customer signed in for this
        authorization request (never the customer's own credential)."""
        expires = self.clock() // 1_000_000 + ttl_s
        return f"{customer}.{expires}.{self.digest(f'consent-screen|{customer}|{expires}|{request_key}')}"

    def customer_of_session(self, session: str, request_key: str) -> str | None:
        customer, _, rest = session.partition(".")
        expires, _, mac = rest.partition(".")
        if not (customer and expires.isdigit() and mac):
            return None
        wanted = self.digest(f"consent-screen|{customer}|{expires}|{request_key}")
        if not hmac.compare_digest(mac, wanted) or int(expires) < self.clock() // 1_000_000:
            return None
        return customer

    def tokenized_account_number(self, consent_id: str, account_id: int) -> str:
        """A 17-digit number standing for the account toward this partner (never the real one)."""
        mac = self.digest(f"tan|{consent_id}|{account_id}")
        return str(int(mac, 16) % 10**17).rjust(17, "0")
