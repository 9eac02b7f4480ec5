"""API keys and roles: who is calling, and what that caller may do.

A key is shown once, when it is created (`andchain keys create`): `ak_<id>_<secret>`.
The database keeps its id, role, client, expiry and revocation, and a keyed hash of
the secret: HMAC-SHA256 under a pepper that is not in the database (`api.key_pepper`;
in development a generated one beside the keys). The secrets are 256-bit random
values, not passwords, so a slow password hash would add nothing but latency to every
request: measured here, argon2id at argon2-cffi 25.1's defaults (t=3, 64 MiB, p=4)
verifies in about 105 ms, the HMAC in about 1.4 µs (docs/api.md). A request presents it
as `Authorization: Bearer <key>`.

Roles:
- `client`: sees and moves only its own client's accounts, wallets, operations, events;
- `operator`: runs the bank's operations (deposits, mints, moves, rules, operations);
- `compliance`: reads everything, and acts on compliance matters;
- `auditor`: reads everything, changes nothing;
- `admin`: keys and networks, and everything an operator may do.

Missing or bad credentials answer 401 with `WWW-Authenticate`; a role that may not do
a thing answers 403; another client's ids answer 404 with no data. Every route declares
who may call it with `allow(...)`, and a test walks every route with every role.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import BigInteger, Column, Engine, String, Table, select, update

from andchain.api.problems import ApiProblem
from andchain.db import metadata, write_transaction
from andchain.devtools.dev_secrets import dev_secret
from andchain.errors import DomainError, NotFound
from andchain.ledger.model import Clock

KEY_RE = re.compile(r"^ak_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$")
LABEL_LENGTH_MAX = 200


class Role(enum.StrEnum):
    CLIENT = "client"
    OPERATOR = "operator"
    COMPLIANCE = "compliance"
    AUDITOR = "auditor"
    ADMIN = "admin"
    # The trading desk: prices for clients, halts and resumes, reads its positions.
    DESK = "desk"


# Who may read what the bank sees (a client reads only its own, through its own routes' scoping).
READERS = frozenset({Role.OPERATOR, Role.COMPLIANCE, Role.AUDITOR, Role.ADMIN})
BANK_WRITERS = frozenset({Role.OPERATOR, Role.ADMIN})
EVERYONE = frozenset(Role)

keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("secret_hmac", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("client_id", String(32), nullable=True),
    Column("label", String(LABEL_LENGTH_MAX), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("revoked_at_us", BigInteger, nullable=True),
)


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    key_id: str
    role: Role
    client_id: str | None

    def sees_client(self, client_id: str | None) -> bool:
        """Whether this caller may see what belongs to `client_id` (bank roles see every client)."""
        return self.role != Role.CLIENT or (client_id is not None and client_id == self.client_id)

    def only_client(self) -> str | None:
        """The one client this caller is restricted to, or None for the bank's roles."""
        return self.client_id if self.role == Role.CLIENT else None


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: Role
    client_id: str | None
    label: str
    created_at_us: int
    expires_at_us: int | None
    revoked_at_us: int | None

    def usable(self, now_us: int) -> bool:
        return self.revoked_at_us is None and (self.expires_at_us is None or now_us < self.expires_at_us)


def _key_of(row: Any) -> ApiKey:
    return ApiKey(
        row.id,
        Role(row.role),
        row.client_id,
        row.label,
        int(row.created_at_us),
        None if row.expires_at_us is None else int(row.expires_at_us),
        None if row.revoked_at_us is None else int(row.revoked_at_us),
    )


def dev_pepper(directory: Path) -> bytes:
    """Development only: a pepper generated once and kept beside the keys (0600)."""
    return dev_secret(directory / ".api-pepper").encode()


class ApiKeys:
    def __init__(self, engine: Engine, pepper: bytes, clock: Clock) -> None:
        if len(pepper) < 16:
            raise DomainError("the API key pepper must be at least 16 bytes", code="api_key_pepper_invalid")
        self.engine = engine
        self._pepper = pepper
        self.clock = clock

    def _digest(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()

    def digest(self, secret: str) -> str:
        """A keyed hash under the API's pepper (for other secrets kept only as hashes: OAuth tokens)."""
        return self._digest(secret)

    def create(
        self, role: Role | str, *, client_id: str | None = None, label: str = "", ttl_s: int | None = None
    ) -> tuple[ApiKey, str]:
        """A new key; returns its record and the key itself, which is never shown again."""
        try:
            role = Role(role)
        except ValueError:
            raise DomainError(
                f"role must be one of {', '.join(r.value for r in Role)}, was {role!r}", code="invalid_role"
            ) from None
        if (role == Role.CLIENT) != (client_id is not None):
            raise DomainError("a client key names its client, and only a client key does", code="invalid_request")
        if len(label) > LABEL_LENGTH_MAX:
            raise DomainError(f"a label has at most {LABEL_LENGTH_MAX} characters", code="invalid_request")
        if ttl_s is not None and ttl_s <= 0:
            raise DomainError(f"a key's lifetime must be positive, was {ttl_s}s", code="invalid_request")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self.clock()
        values = dict(
            id=key_id,
            secret_hmac=self._digest(secret),
            role=role.value,
            client_id=client_id,
            label=label,
            created_at_us=now,
            expires_at_us=None if ttl_s is None else now + ttl_s * 1_000_000,
            revoked_at_us=None,
        )
        with write_transaction(self.engine) as conn:
            conn.execute(keys.insert().values(**values))
        return _key_of(_Row(values)), f"ak_{key_id}_{secret}"

    def get(self, key_id: str) -> ApiKey:
        with self.engine.connect() as conn:
            row = conn.execute(select(keys).where(keys.c.id == key_id)).first()
        if row is None:
            raise NotFound(f"no API key {key_id!r}", code="api_key_not_found")
        return _key_of(row)

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            return [_key_of(r) for r in conn.execute(select(keys).order_by(keys.c.created_at_us))]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key: from the next request on, it is refused."""
        with write_transaction(self.engine) as conn:
            done = conn.execute(
                update(keys)
                .where(keys.c.id == key_id, keys.c.revoked_at_us.is_(None))
                .values(revoked_at_us=self.clock())
            )
        key = self.get(key_id)
        if done.rowcount == 0 and key.revoked_at_us is None:  # pragma: no cover - a broken invariant
            raise DomainError(f"API key {key_id} was not revoked", code="api_key_not_revoked")
        return key

    def verify(self, token: str) -> Principal | None:
        """The principal a presented key stands for, or None (unknown, malformed, revoked, expired)."""
        match = KEY_RE.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        with self.engine.connect() as conn:
            row = conn.execute(select(keys).where(keys.c.id == key_id)).first()
        if row is None or not hmac.compare_digest(row.secret_hmac, self._digest(secret)):
            return None
        key = _key_of(row)
        if not key.usable(self.clock()):
            return None
        return Principal(key.id, key.role, key.client_id)


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


# ------------------------------------------------------------------ FastAPI

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer ak_...`")
CHALLENGE = 'Bearer realm="andchain"'


def unauthenticated(message: str, *, invalid: bool = False) -> ApiProblem:
    challenge = CHALLENGE + (', error="invalid_token"' if invalid else "")
    return ApiProblem(401, "unauthenticated", message, headers={"WWW-Authenticate": challenge})


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """The request's principal, from its bearer key; 401 without a usable one."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    if credentials is None:
        raise unauthenticated("this API needs an API key: send `Authorization: Bearer <key>`")
    api_keys: ApiKeys = request.app.state.api_keys
    principal = api_keys.verify(credentials.credentials)
    if principal is None:
        raise unauthenticated("the API key is unknown, revoked or expired", invalid=True)
    request.state.principal = principal
    return principal


class Allow:
    """A route's rule: the roles that may call it. Kept on the route for the role walk test."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    def __call__(self, principal: Principal = Depends(authenticate)) -> Principal:
        if principal.role not in self.roles:
            raise ApiProblem(
                403,
                "forbidden",
                f"the {principal.role.value} role may not do this; allowed: "
                f"{', '.join(sorted(r.value for r in self.roles))}",
            )
        return principal


def allow(*roles: Role | frozenset[Role]) -> Any:
    """A dependency that admits the given roles (or role sets) and returns the caller's principal."""
    wanted: set[Role] = set()
    for role in roles:
        wanted.update(role if isinstance(role, frozenset) else {role})
    return Depends(Allow(frozenset(wanted)))


def not_found_unless(principal: Principal, client_id: str | None, what: str) -> None:
    """Another client's resource is, for a client, not there at all."""
    if not principal.sees_client(client_id):
        raise NotFound(f"no {what}", code="not_found")
